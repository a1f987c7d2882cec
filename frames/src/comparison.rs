//! How close a re-rendered frame is to the original: PSNR over the pixels, of the whole frame
//! and of its worst tile.
//!
//! Two renders of one frame differ only by render noise, spread evenly over the image; a
//! provider that skipped work, delivered another frame or tampered with the image is far off
//! somewhere. The whole frame's PSNR catches what is wrong everywhere; the worst
//! [`TILE`]-pixel tile's catches what is wrong in one place — a moved object in a neighbouring
//! frame, an edited patch — which a whole-frame average dilutes.

use image::DynamicImage;
use pictor_crds::contract::verification::{REPRODUCED_AT_PSNR_DB, REPRODUCED_AT_TILE_PSNR_DB};

/// Side of the square tiles of the worst-tile measure, in pixels (edge tiles may be smaller).
pub const TILE: u32 = 16;

/// What a comparison of two frames found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FrameComparison {
    /// Same size; PSNR in dB of the whole frame and of its worst tile, `f64::INFINITY` for
    /// identical pixels.
    Compared { psnr_db: f64, worst_tile_psnr_db: f64 },
    /// The frames differ in size, which no render of the same scene does.
    SizeMismatch { original: (u32, u32), rerendered: (u32, u32) },
}

/// What can go wrong reading a frame for comparison.
#[derive(Debug, thiserror::Error)]
pub enum ComparisonError {
    #[error("cannot decode the {which} frame as an image: {source}")]
    Decode { which: &'static str, source: image::ImageError },
}

impl FrameComparison {
    /// PSNR in dB, 0 for frames of different sizes.
    pub fn psnr_db(&self) -> f64 {
        match self {
            Self::Compared { psnr_db, .. } => *psnr_db,
            Self::SizeMismatch { .. } => 0.0,
        }
    }

    /// PSNR in dB of the tile that differs most, 0 for frames of different sizes.
    pub fn worst_tile_psnr_db(&self) -> f64 {
        match self {
            Self::Compared { worst_tile_psnr_db, .. } => *worst_tile_psnr_db,
            Self::SizeMismatch { .. } => 0.0,
        }
    }

    /// Whether the whole frame agrees with the original at `threshold_db` or better.
    pub fn passes(&self, threshold_db: f64) -> bool {
        matches!(self, Self::Compared { psnr_db, .. } if *psnr_db >= threshold_db)
    }

    /// Whether the re-render reproduces the original, as the hub judges a verification: the
    /// whole frame at [`REPRODUCED_AT_PSNR_DB`] and its worst tile at
    /// [`REPRODUCED_AT_TILE_PSNR_DB`] or better.
    pub fn reproduces(&self) -> bool {
        self.passes(REPRODUCED_AT_PSNR_DB) && self.worst_tile_psnr_db() >= REPRODUCED_AT_TILE_PSNR_DB
    }
}

fn psnr(squared_error: f64, samples: usize) -> f64 {
    let mse = squared_error / samples.max(1) as f64;
    if mse == 0.0 { f64::INFINITY } else { -10.0 * mse.log10() }
}

/// Compares two decoded frames: RGBA channels normalised to 0..1, the peak signal 1.
///
/// HDR values (OpenEXR) are clamped to 0..1 first, so that a few very bright pixels do not
/// swamp the measure: the comparison is of what a viewer would see on a display.
pub fn compare_frames(original: &DynamicImage, rerendered: &DynamicImage) -> FrameComparison {
    let original_size = (original.width(), original.height());
    let rerendered_size = (rerendered.width(), rerendered.height());
    if original_size != rerendered_size {
        return FrameComparison::SizeMismatch { original: original_size, rerendered: rerendered_size };
    }
    let a = original.to_rgba32f();
    let b = rerendered.to_rgba32f();
    let (width, height) = original_size;
    if a.as_raw().is_empty() {
        return FrameComparison::Compared { psnr_db: f64::INFINITY, worst_tile_psnr_db: f64::INFINITY };
    }
    let tiles_x = width.div_ceil(TILE) as usize;
    let mut tiles = vec![(0.0f64, 0usize); tiles_x * height.div_ceil(TILE) as usize];
    let mut squared_error = 0.0;
    for (i, (x, y)) in a.as_raw().chunks_exact(4).zip(b.as_raw().chunks_exact(4)).enumerate() {
        let pixel: f64 = x
            .iter()
            .zip(y)
            .map(|(x, y)| {
                let d = f64::from(display_value(*x)) - f64::from(display_value(*y));
                d * d
            })
            .sum();
        squared_error += pixel;
        let (px, py) = (i as u32 % width, i as u32 / width);
        let tile = &mut tiles[(py / TILE) as usize * tiles_x + (px / TILE) as usize];
        tile.0 += pixel;
        tile.1 += 4;
    }
    let worst_tile_psnr_db = tiles.iter().map(|(e, n)| psnr(*e, *n)).fold(f64::INFINITY, f64::min);
    FrameComparison::Compared { psnr_db: psnr(squared_error, a.as_raw().len()), worst_tile_psnr_db }
}

/// Compares two encoded frames (PNG, JPEG, TIFF, OpenEXR; the format is read from the bytes).
pub fn compare_encoded_frames(
    original: &[u8],
    rerendered: &[u8],
) -> Result<FrameComparison, ComparisonError> {
    let original = image::load_from_memory(original)
        .map_err(|source| ComparisonError::Decode { which: "original", source })?;
    let rerendered = image::load_from_memory(rerendered)
        .map_err(|source| ComparisonError::Decode { which: "re-rendered", source })?;
    Ok(compare_frames(&original, &rerendered))
}

fn display_value(v: f32) -> f32 {
    if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgba, RgbaImage};

    /// A frame with some structure, like a render: a gradient with a bright square.
    fn frame(width: u32, height: u32) -> RgbaImage {
        RgbaImage::from_fn(width, height, |x, y| {
            if (10..20).contains(&x) && (5..15).contains(&y) {
                Rgba([240, 240, 230, 255])
            } else {
                Rgba([(x * 255 / width) as u8, (y * 255 / height) as u8, 64, 255])
            }
        })
    }

    #[test]
    fn identical_frames_have_infinite_psnr_and_pass() {
        let a = DynamicImage::ImageRgba8(frame(64, 36));
        let comparison = compare_frames(&a, &a.clone());
        assert_eq!(
            comparison,
            FrameComparison::Compared { psnr_db: f64::INFINITY, worst_tile_psnr_db: f64::INFINITY }
        );
        assert!(comparison.reproduces());
        assert!(comparison.passes(30.0));
    }

    #[test]
    fn render_noise_stays_above_the_threshold() {
        let original = frame(64, 36);
        let mut noisy = original.clone();
        for (i, pixel) in noisy.pixels_mut().enumerate() {
            // ±1 level on a third of the pixels: what another CPU's float rounding gives.
            if i % 3 == 0 {
                pixel.0[0] = pixel.0[0].saturating_add(1);
            }
        }
        let comparison =
            compare_frames(&DynamicImage::ImageRgba8(original), &DynamicImage::ImageRgba8(noisy));
        assert!(comparison.psnr_db() > 50.0, "{comparison:?}");
        assert!(comparison.passes(30.0) && comparison.reproduces(), "{comparison:?}");
    }

    #[test]
    fn a_small_change_in_one_place_is_found_by_its_tile() {
        let original = frame(128, 72);
        let mut altered = original.clone();
        // A 6x6 patch: 0.4% of the pixels, the size of a small object that moved.
        for y in 30..36 {
            for x in 60..66 {
                let p = altered.get_pixel_mut(x, y);
                p.0 = [255 - p.0[0], 255 - p.0[1], 255 - p.0[2], 255];
            }
        }
        let comparison =
            compare_frames(&DynamicImage::ImageRgba8(original), &DynamicImage::ImageRgba8(altered));
        assert!(comparison.psnr_db() > comparison.worst_tile_psnr_db() + 10.0, "{comparison:?}");
        assert!(!comparison.reproduces(), "{comparison:?}");
    }

    #[test]
    fn a_changed_patch_gives_low_psnr_and_fails() {
        let original = frame(64, 36);
        let mut altered = original.clone();
        for y in 8..28 {
            for x in 16..48 {
                let p = altered.get_pixel_mut(x, y);
                p.0 = [255 - p.0[0], 255 - p.0[1], 255 - p.0[2], 255];
            }
        }
        let comparison =
            compare_frames(&DynamicImage::ImageRgba8(original), &DynamicImage::ImageRgba8(altered));
        assert!(comparison.psnr_db() < 20.0, "{comparison:?}");
        assert!(!comparison.passes(30.0));
    }

    #[test]
    fn frames_of_different_sizes_do_not_match() {
        let comparison = compare_frames(
            &DynamicImage::ImageRgba8(frame(64, 36)),
            &DynamicImage::ImageRgba8(frame(32, 18)),
        );
        assert_eq!(comparison, FrameComparison::SizeMismatch { original: (64, 36), rerendered: (32, 18) });
        assert!(!comparison.passes(0.0));
    }

    #[test]
    fn encoded_frames_are_decoded_by_content() {
        let mut png = Vec::new();
        DynamicImage::ImageRgba8(frame(16, 9))
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        assert!(compare_encoded_frames(&png, &png).unwrap().passes(30.0));
        let error = compare_encoded_frames(b"not an image", &png).unwrap_err();
        assert!(error.to_string().contains("original"), "{error}");
    }
}
