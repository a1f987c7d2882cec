//! `pictor preview`: a contact sheet of a RenderJob's finished frames, in frame order, each
//! downscaled into a grid tile with its frame number; frames not done yet are dark tiles.
//!
//! Frames are read from each succeeded unit's `status.outputs` through the render worker's
//! object-store code (file, s3, gs, az, http), so the same URLs and credentials work here.

use super::{CliError, Hub};
use clap::Args;
use futures::StreamExt;
use image::{Rgb, RgbImage, imageops};
use kube::api::Api;
use pictor_crds::v1alpha1::{FrameRange, RenderJob, WorkUnit, WorkUnitPhase};
use pictor_render_worker::storage::{StorageObject, StorageSettings};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Args)]
pub(super) struct PreviewArgs {
    /// The RenderJob.
    job: String,
    /// Where to write the PNG.
    #[arg(long, short = 'o')]
    output: PathBuf,
    /// Tiles per row (default: up to 8).
    #[arg(long)]
    columns: Option<u32>,
    /// Width of one tile in pixels.
    #[arg(long, default_value_t = 160)]
    thumb_width: u32,
}

/// Pixels between tiles and around the sheet.
pub const GAP: u32 = 4;
/// Colour between tiles.
pub const BACKGROUND: Rgb<u8> = Rgb([0, 0, 0]);
/// Colour of a tile whose frame is not done.
pub const MISSING: Rgb<u8> = Rgb([40, 40, 40]);

/// Where each tile of a contact sheet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SheetLayout {
    /// Tiles per row.
    pub columns: u32,
    /// Rows.
    pub rows: u32,
    /// Tile width.
    pub tile_width: u32,
    /// Tile height.
    pub tile_height: u32,
}

impl SheetLayout {
    /// A grid for `tiles` tiles of `tile_width` × `tile_height`, `columns` wide (at most 8 by
    /// default, never more than there are tiles).
    pub fn new(tiles: u32, columns: Option<u32>, tile_width: u32, tile_height: u32) -> Self {
        let columns = columns.unwrap_or(8).clamp(1, tiles.max(1));
        Self {
            columns,
            rows: tiles.div_ceil(columns).max(1),
            tile_width: tile_width.max(1),
            tile_height: tile_height.max(1),
        }
    }

    /// Width and height of the whole sheet.
    pub fn size(&self) -> (u32, u32) {
        (GAP + self.columns * (self.tile_width + GAP), GAP + self.rows * (self.tile_height + GAP))
    }

    /// Top-left corner of tile `index` (row by row).
    pub fn origin(&self, index: u32) -> (u32, u32) {
        let (column, row) = (index % self.columns, index / self.columns);
        (GAP + column * (self.tile_width + GAP), GAP + row * (self.tile_height + GAP))
    }
}

/// Tile height that keeps the first frame's aspect ratio at `tile_width` (16:9 without one).
pub fn tile_height(tile_width: u32, first_frame: Option<(u32, u32)>) -> u32 {
    let (w, h) = first_frame.filter(|(w, h)| *w > 0 && *h > 0).unwrap_or((16, 9));
    ((tile_width as u64 * h as u64) / w as u64).max(1) as u32
}

/// Frame numbers of a range, in order.
pub fn frame_numbers(range: &FrameRange) -> Vec<i64> {
    (0..range.len()).map(|i| range.start + i * range.step.max(1)).collect()
}

/// The frame number in a render worker's output name `frame_NNNNNN.<ext>`.
pub fn frame_of_url(url: &str) -> Option<i64> {
    let file = url.rsplit('/').next()?;
    let digits = file.strip_prefix("frame_")?.split('.').next()?;
    digits.parse().ok()
}

// 3×5 digits, one row per entry, bits from the left.
const DIGITS: [[u8; 5]; 10] = [
    [0b111, 0b101, 0b101, 0b101, 0b111],
    [0b010, 0b110, 0b010, 0b010, 0b111],
    [0b111, 0b001, 0b111, 0b100, 0b111],
    [0b111, 0b001, 0b111, 0b001, 0b111],
    [0b101, 0b101, 0b111, 0b001, 0b001],
    [0b111, 0b100, 0b111, 0b001, 0b111],
    [0b111, 0b100, 0b111, 0b101, 0b111],
    [0b111, 0b001, 0b010, 0b010, 0b010],
    [0b111, 0b101, 0b111, 0b101, 0b111],
    [0b111, 0b101, 0b111, 0b001, 0b111],
];
const SCALE: u32 = 2;
const LABEL_PAD: u32 = 2;

/// Writes `number` in the tile's bottom-left corner, white on black, where it fits.
fn label(sheet: &mut RgbImage, (x0, y0): (u32, u32), layout: &SheetLayout, number: i64) {
    let text = number.to_string();
    let width = LABEL_PAD * 2 + text.len() as u32 * 4 * SCALE - SCALE;
    let height = LABEL_PAD * 2 + 5 * SCALE;
    if width > layout.tile_width || height * 2 > layout.tile_height {
        return;
    }
    let top = y0 + layout.tile_height - height;
    for y in top..top + height {
        for x in x0..x0 + width {
            sheet.put_pixel(x, y, Rgb([0, 0, 0]));
        }
    }
    for (i, digit) in text.bytes().filter(u8::is_ascii_digit).enumerate() {
        let glyph = DIGITS[(digit - b'0') as usize];
        let left = x0 + LABEL_PAD + i as u32 * 4 * SCALE;
        for (row, bits) in glyph.iter().enumerate() {
            for column in 0..3 {
                if bits & (0b100 >> column) != 0 {
                    for dy in 0..SCALE {
                        for dx in 0..SCALE {
                            let (x, y) =
                                (left + column * SCALE + dx, top + LABEL_PAD + row as u32 * SCALE + dy);
                            sheet.put_pixel(x, y, Rgb([255, 255, 255]));
                        }
                    }
                }
            }
        }
    }
}

/// The contact sheet: one tile per frame in order, the frame scaled to fit its tile (centred,
/// aspect kept), dark where the frame is missing.
pub fn contact_sheet(layout: &SheetLayout, frames: &[(i64, Option<RgbImage>)]) -> RgbImage {
    let (width, height) = layout.size();
    let mut sheet = RgbImage::from_pixel(width, height, BACKGROUND);
    for (index, (number, frame)) in frames.iter().enumerate() {
        let (x0, y0) = layout.origin(index as u32);
        match frame {
            Some(frame) if frame.width() > 0 && frame.height() > 0 => {
                let scale = f64::min(
                    layout.tile_width as f64 / frame.width() as f64,
                    layout.tile_height as f64 / frame.height() as f64,
                );
                let w = ((frame.width() as f64 * scale).round() as u32).clamp(1, layout.tile_width);
                let h = ((frame.height() as f64 * scale).round() as u32).clamp(1, layout.tile_height);
                let thumb = imageops::resize(frame, w, h, imageops::FilterType::Triangle);
                let (dx, dy) = ((layout.tile_width - w) / 2, (layout.tile_height - h) / 2);
                imageops::replace(&mut sheet, &thumb, (x0 + dx) as i64, (y0 + dy) as i64);
            }
            _ => {
                let tile = RgbImage::from_pixel(layout.tile_width, layout.tile_height, MISSING);
                imageops::replace(&mut sheet, &tile, x0 as i64, y0 as i64);
            }
        }
        label(&mut sheet, (x0, y0), layout, *number);
    }
    sheet
}

/// Frame → URL of every frame the job's accepted units wrote (verification renders and output
/// a second provider could not reproduce left out), and the manifests to read for the rest.
pub fn frame_urls(units: &[WorkUnit]) -> (BTreeMap<i64, String>, Vec<String>) {
    let mut frames = BTreeMap::new();
    let mut manifests = Vec::new();
    for unit in units {
        let labels = unit.metadata.labels.clone().unwrap_or_default();
        let verification = labels.contains_key(pictor_crds::contract::labels::VERIFIES);
        let mismatch = labels.get(pictor_crds::contract::labels::VERDICT).map(String::as_str)
            == Some(pictor_crds::contract::MISMATCH);
        let status = unit.status.clone().unwrap_or_default();
        if verification || mismatch || status.phase != Some(WorkUnitPhase::Succeeded) {
            continue;
        }
        for output in status.outputs {
            match frame_of_url(&output.url) {
                Some(frame) => {
                    frames.entry(frame).or_insert(output.url);
                }
                None if output.url.ends_with(".json") => manifests.push(output.url),
                None => {}
            }
        }
    }
    (frames, manifests)
}

async fn read(url: &str, settings: &StorageSettings) -> Result<bytes::Bytes, String> {
    let object = StorageObject::open(url, settings).map_err(|e| e.to_string())?;
    object.read().await.map_err(|e| e.to_string())
}

pub(super) async fn run(hub: &Hub, args: PreviewArgs) -> Result<(), CliError> {
    let job = Api::<RenderJob>::namespaced(hub.client.clone(), &hub.namespace)
        .get_opt(&args.job)
        .await
        .map_err(super::hub(format!("read RenderJob {}", args.job)))?
        .ok_or_else(|| {
            CliError::Usage(format!("no RenderJob named {} in namespace {}", args.job, hub.namespace))
        })?;
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let units = super::logs::job_units(hub, &uid).await?;
    let settings = StorageSettings::from_environment();
    let (mut urls, manifests) = frame_urls(&units);
    for manifest in manifests {
        #[derive(serde::Deserialize)]
        struct Listed {
            frame: i64,
            url: String,
        }
        #[derive(serde::Deserialize)]
        struct Manifest {
            frames: Vec<Listed>,
        }
        match read(&manifest, &settings)
            .await
            .and_then(|b| serde_json::from_slice::<Manifest>(&b).map_err(|e| e.to_string()))
        {
            Ok(listed) => listed.frames.into_iter().for_each(|f| {
                urls.entry(f.frame).or_insert(f.url);
            }),
            Err(e) => eprintln!("warning: manifest {manifest}: {e}"),
        }
    }
    let numbers = frame_numbers(&job.spec.frames);
    let fetched: BTreeMap<i64, RgbImage> =
        futures::stream::iter(numbers.iter().filter_map(|n| Some((*n, urls.get(n)?.clone()))))
            .map(|(number, url)| {
                let settings = &settings;
                async move {
                    let decoded = read(&url, settings)
                        .await
                        .and_then(|bytes| image::load_from_memory(&bytes).map_err(|e| e.to_string()));
                    match decoded {
                        Ok(image) => Some((number, image.to_rgb8())),
                        Err(e) => {
                            eprintln!("warning: frame {number} ({url}): {e}; drawn as not done");
                            None
                        }
                    }
                }
            })
            .buffer_unordered(8)
            .filter_map(futures::future::ready)
            .collect()
            .await;
    let first = numbers.iter().find_map(|n| fetched.get(n)).map(|f| (f.width(), f.height()));
    let layout = SheetLayout::new(
        numbers.len() as u32,
        args.columns,
        args.thumb_width,
        tile_height(args.thumb_width, first),
    );
    let mut fetched = fetched;
    let frames: Vec<(i64, Option<RgbImage>)> = numbers.iter().map(|n| (*n, fetched.remove(n))).collect();
    let done = frames.iter().filter(|(_, f)| f.is_some()).count();
    let sheet = contact_sheet(&layout, &frames);
    sheet
        .save_with_format(&args.output, image::ImageFormat::Png)
        .map_err(|e| anyhow::anyhow!("write {}: {e}", args.output.display()))?;
    let (width, height) = layout.size();
    println!(
        "{}: {done} of {} frames, {} x {} tiles, {width}x{height} pixels",
        args.output.display(),
        numbers.len(),
        layout.columns,
        layout.rows
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_grid_holds_every_frame_row_by_row() {
        let layout = SheetLayout::new(10, Some(4), 32, 18);
        assert_eq!((layout.columns, layout.rows), (4, 3));
        assert_eq!(layout.size(), (4 + 4 * 36, 4 + 3 * 22));
        assert_eq!(layout.origin(0), (4, 4));
        assert_eq!(layout.origin(5), (4 + 36, 4 + 22));
        assert_eq!(SheetLayout::new(3, None, 10, 10).columns, 3, "never wider than the frames");
        assert_eq!(SheetLayout::new(0, None, 10, 10).rows, 1);
        assert_eq!(tile_height(160, Some((1920, 1080))), 90);
        assert_eq!(tile_height(160, None), 90);
        assert_eq!(tile_height(100, Some((100, 400))), 400);
    }

    #[test]
    fn frames_come_from_accepted_units_in_frame_order() {
        let range = FrameRange { start: 1, end: 9, step: 4 };
        assert_eq!(frame_numbers(&range), vec![1, 5, 9]);
        assert_eq!(frame_of_url("s3://o/shot/frame_000012.png"), Some(12));
        assert_eq!(frame_of_url("s3://o/manifest_1_9.json"), None);
        let unit = |name: &str, labels: serde_json::Value, phase: &str, urls: &[&str]| -> WorkUnit {
            let outputs: Vec<_> = urls.iter().map(|u| json!({"url": u, "sha256": "x"})).collect();
            serde_json::from_value(json!({
                "apiVersion": "pictor.network/v1alpha1", "kind": "WorkUnit",
                "metadata": {"name": name, "namespace": "pictor-member-a", "labels": labels},
                "spec": {"jobRef": {"kind": "RenderJob", "namespace": "default", "name": "j", "uid": "j"},
                         "pods": [{"name": "render", "image": "i", "gpuVendor": "nvidia", "gpus": 1}],
                         "agreedPricePerGpuHour": 1},
                "status": {"phase": phase, "outputs": outputs}
            }))
            .unwrap()
        };
        let units = [
            unit(
                "ok",
                json!({}),
                "Succeeded",
                &["file:///o/frame_000001.png", "file:///o/manifest_5_9.json"],
            ),
            unit(
                "bad",
                json!({"pictor.network/verdict": "mismatch"}),
                "Succeeded",
                &["file:///bad/frame_000005.png"],
            ),
            unit(
                "check",
                json!({"pictor.network/verifies": "ok"}),
                "Succeeded",
                &["file:///v/frame_000001.png"],
            ),
            unit("failed", json!({}), "Failed", &["file:///f/frame_000009.png"]),
        ];
        let (frames, manifests) = frame_urls(&units);
        assert_eq!(frames, BTreeMap::from([(1, "file:///o/frame_000001.png".to_string())]));
        assert_eq!(manifests, vec!["file:///o/manifest_5_9.json".to_string()]);
    }

    #[test]
    fn tiles_carry_the_frames_pixels_and_missing_frames_are_dark() {
        let red = RgbImage::from_pixel(64, 36, Rgb([200, 10, 10]));
        let tall = RgbImage::from_pixel(10, 40, Rgb([10, 200, 10]));
        let layout = SheetLayout::new(3, Some(2), 64, 36);
        let sheet = contact_sheet(&layout, &[(1, Some(red)), (2, None), (3, Some(tall))]);
        assert_eq!(sheet.dimensions(), layout.size());
        let centre = |i: u32| {
            let (x, y) = layout.origin(i);
            *sheet.get_pixel(x + 32, y + 12)
        };
        assert_eq!(centre(0), Rgb([200, 10, 10]));
        assert_eq!(centre(1), MISSING);
        assert_eq!(centre(2), Rgb([10, 200, 10]));
        // The tall frame is letterboxed: the tile's left edge stays black.
        let (x, y) = layout.origin(2);
        assert_eq!(*sheet.get_pixel(x + 1, y + 5), BACKGROUND);
        // Each tile has its frame number, white, in the bottom-left corner.
        let (x, y) = layout.origin(1);
        let label_area = (x..x + 12).flat_map(|px| (y + 22..y + 36).map(move |py| (px, py)));
        assert!(label_area.into_iter().any(|(px, py)| *sheet.get_pixel(px, py) == Rgb([255, 255, 255])));
    }
}
