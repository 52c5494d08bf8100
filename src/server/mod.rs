//! The HTTP service. (To be filled in.)
