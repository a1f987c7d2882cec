//! How a render worker names the frames it stores, so the hub finds a frame by the same name
//! the worker gave it: `frame_NNNNNN.<ext>` under the job's output folder, the extension by
//! image format.

use crate::v1alpha1::ImageFormat;

/// The file extension of a frame stored in `format` (Blender's own choice for each format).
pub fn frame_extension(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Png => "png",
        ImageFormat::OpenExr => "exr",
        ImageFormat::Jpeg => "jpg",
        ImageFormat::Tiff => "tif",
    }
}

/// The format of a frame by its file extension, for a frame named only by its URL.
pub fn format_of_extension(extension: &str) -> Option<ImageFormat> {
    match extension.to_ascii_lowercase().as_str() {
        "png" => Some(ImageFormat::Png),
        "exr" => Some(ImageFormat::OpenExr),
        "jpg" | "jpeg" => Some(ImageFormat::Jpeg),
        "tif" | "tiff" => Some(ImageFormat::Tiff),
        _ => None,
    }
}

/// A frame's file name without its extension, zero-padded so names sort by frame.
pub fn frame_stem(frame: i64) -> String {
    format!("frame_{frame:06}")
}

/// The name a frame is stored under in the output folder.
pub fn frame_file_name(frame: i64, format: ImageFormat) -> String {
    format!("{}.{}", frame_stem(frame), frame_extension(format))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_reads_back_from_its_extension() {
        for format in [ImageFormat::Png, ImageFormat::OpenExr, ImageFormat::Jpeg, ImageFormat::Tiff] {
            assert_eq!(format_of_extension(frame_extension(format)), Some(format));
        }
        assert_eq!(format_of_extension("EXR"), Some(ImageFormat::OpenExr));
        assert_eq!(format_of_extension("blend"), None);
    }

    #[test]
    fn frames_are_named_zero_padded_with_their_extension() {
        assert_eq!(frame_stem(42), "frame_000042");
        assert_eq!(frame_file_name(1, ImageFormat::OpenExr), "frame_000001.exr");
    }
}
