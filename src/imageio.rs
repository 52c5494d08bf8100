//! Decoding with limits checked from the header before any pixel is decoded, and streaming PNG encoding.
//! (To be filled in.)
