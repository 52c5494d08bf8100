//! Conversions between the engine's [`Image`] and the `image` crate's buffers.
//!
//! - Into an [`Image`]: `From<DynamicImage>` and `From<RgbImage>`, moving the samples without a copy where the
//!   layout matches (8- and 16-bit gray, gray+alpha, RGB and RGBA); float images become 16-bit.
//! - Out of an [`Image`]: `TryFrom<Image>` for [`DynamicImage`] (any image the engine makes or takes) and for
//!   [`RgbImage`] (8-bit RGB only). They fail when the samples do not fill `width * height * channels`, or when the
//!   image is not what the target holds.

use image::{DynamicImage, ImageBuffer, RgbImage};

use crate::engine::{Image, Samples};

/// Why an [`Image`] could not become an `image` crate buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// The image has a channel count other than 1 to 4.
    #[error("an image has 1 to 4 channels, this one has {0}")]
    Channels(u8),
    /// `samples.len()` is not `width * height * channels`.
    #[error("{width}x{height} with {channels} channels needs {expected} samples, the image has {got}")]
    SampleCount { width: u32, height: u32, channels: u8, expected: u64, got: usize },
    /// The target holds another layout (an [`RgbImage`] holds 8-bit RGB only).
    #[error("{target} holds 8-bit RGB; this image has {channels} channels of {bit_depth} bits")]
    Layout { target: &'static str, channels: u8, bit_depth: u8 },
}

impl From<DynamicImage> for Image {
    fn from(img: DynamicImage) -> Image {
        let (width, height) = (img.width(), img.height());
        let (channels, samples) = match img {
            DynamicImage::ImageLuma8(b) => (1, Samples::U8(b.into_raw())),
            DynamicImage::ImageLumaA8(b) => (2, Samples::U8(b.into_raw())),
            DynamicImage::ImageRgb8(b) => (3, Samples::U8(b.into_raw())),
            DynamicImage::ImageRgba8(b) => (4, Samples::U8(b.into_raw())),
            DynamicImage::ImageLuma16(b) => (1, Samples::U16(b.into_raw())),
            DynamicImage::ImageLumaA16(b) => (2, Samples::U16(b.into_raw())),
            DynamicImage::ImageRgb16(b) => (3, Samples::U16(b.into_raw())),
            DynamicImage::ImageRgba16(b) => (4, Samples::U16(b.into_raw())),
            DynamicImage::ImageRgb32F(_) => (3, Samples::U16(img.to_rgb16().into_raw())),
            DynamicImage::ImageRgba32F(_) => (4, Samples::U16(img.to_rgba16().into_raw())),
            // `DynamicImage` is non-exhaustive; any future variant goes through the widest common form.
            other => {
                if other.color().has_alpha() {
                    (4, Samples::U16(other.to_rgba16().into_raw()))
                } else {
                    (3, Samples::U16(other.to_rgb16().into_raw()))
                }
            }
        };
        Image { width, height, channels, samples }
    }
}

impl From<RgbImage> for Image {
    fn from(img: RgbImage) -> Image {
        Image { width: img.width(), height: img.height(), channels: 3, samples: Samples::U8(img.into_raw()) }
    }
}

/// Checks the channel count and the sample count.
fn check(img: &Image) -> Result<(), ConvertError> {
    if !(1..=4).contains(&img.channels) {
        return Err(ConvertError::Channels(img.channels));
    }
    let expected = u64::from(img.width) * u64::from(img.height) * u64::from(img.channels);
    let got = match &img.samples {
        Samples::U8(v) => v.len(),
        Samples::U16(v) => v.len(),
    };
    if got as u64 != expected {
        return Err(ConvertError::SampleCount {
            width: img.width,
            height: img.height,
            channels: img.channels,
            expected,
            got,
        });
    }
    Ok(())
}

impl TryFrom<Image> for DynamicImage {
    type Error = ConvertError;
    fn try_from(img: Image) -> Result<DynamicImage, ConvertError> {
        check(&img)?;
        let (w, h) = (img.width, img.height);
        // `check` made the sample count right, so every `from_raw` below succeeds.
        let fits = "the sample count was checked";
        Ok(match (img.channels, img.samples) {
            (1, Samples::U8(v)) => DynamicImage::ImageLuma8(ImageBuffer::from_raw(w, h, v).expect(fits)),
            (2, Samples::U8(v)) => DynamicImage::ImageLumaA8(ImageBuffer::from_raw(w, h, v).expect(fits)),
            (3, Samples::U8(v)) => DynamicImage::ImageRgb8(ImageBuffer::from_raw(w, h, v).expect(fits)),
            (_, Samples::U8(v)) => DynamicImage::ImageRgba8(ImageBuffer::from_raw(w, h, v).expect(fits)),
            (1, Samples::U16(v)) => DynamicImage::ImageLuma16(ImageBuffer::from_raw(w, h, v).expect(fits)),
            (2, Samples::U16(v)) => DynamicImage::ImageLumaA16(ImageBuffer::from_raw(w, h, v).expect(fits)),
            (3, Samples::U16(v)) => DynamicImage::ImageRgb16(ImageBuffer::from_raw(w, h, v).expect(fits)),
            (_, Samples::U16(v)) => DynamicImage::ImageRgba16(ImageBuffer::from_raw(w, h, v).expect(fits)),
        })
    }
}

impl TryFrom<Image> for RgbImage {
    type Error = ConvertError;
    fn try_from(img: Image) -> Result<RgbImage, ConvertError> {
        check(&img)?;
        match (img.channels, img.samples) {
            (3, Samples::U8(v)) => {
                Ok(ImageBuffer::from_raw(img.width, img.height, v).expect("the sample count was checked"))
            }
            (channels, samples) => Err(ConvertError::Layout {
                target: "RgbImage",
                channels,
                bit_depth: if matches!(samples, Samples::U8(_)) { 8 } else { 16 },
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layout_round_trips() {
        let (w, h) = (3u32, 2u32);
        for channels in 1..=4u8 {
            let n = (w * h) as usize * channels as usize;
            for samples in
                [Samples::U8((0..n).map(|i| i as u8).collect()), Samples::U16((0..n).map(|i| i as u16 * 257).collect())]
            {
                let img = Image { width: w, height: h, channels, samples };
                let dynamic = DynamicImage::try_from(img.clone()).unwrap();
                assert_eq!(dynamic.color().channel_count(), channels);
                assert_eq!(Image::from(dynamic), img);
            }
        }
    }

    #[test]
    fn rgb_image_both_ways_and_bad_images_are_errors() {
        let rgb = RgbImage::from_fn(4, 3, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let img = Image::from(rgb.clone());
        assert_eq!((img.width, img.height, img.channels), (4, 3, 3));
        assert_eq!(RgbImage::try_from(img.clone()).unwrap(), rgb);

        let short = Image { samples: Samples::U8(vec![0; 5]), ..img.clone() };
        assert!(matches!(DynamicImage::try_from(short), Err(ConvertError::SampleCount { expected: 36, got: 5, .. })));
        let five = Image { channels: 5, ..img.clone() };
        assert_eq!(DynamicImage::try_from(five), Err(ConvertError::Channels(5)));
        let rgba = Image { width: 1, height: 1, channels: 4, samples: Samples::U8(vec![1, 2, 3, 4]) };
        assert!(matches!(RgbImage::try_from(rgba), Err(ConvertError::Layout { channels: 4, bit_depth: 8, .. })));
    }
}
