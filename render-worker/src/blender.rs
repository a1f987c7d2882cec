//! Running Blender: which Cycles device to ask for, the command line, and finding the frames it
//! wrote.

use pictor_crds::contract::render_output::frame_stem;
use pictor_crds::v1alpha1::{ImageFormat, RenderEngine};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

/// Lines of Blender's output kept for an error message.
const OUTPUT_TAIL_LINES: usize = 30;
/// Printed by the device probe before its JSON answer.
const PROBE_MARKER: &str = "PICTOR_CYCLES_DEVICES=";

/// What can go wrong running Blender.
#[derive(Debug, thiserror::Error)]
pub enum BlenderError {
    #[error("cannot start Blender at {blender}: {source}; install Blender or pass --blender PATH")]
    Start { blender: PathBuf, source: std::io::Error },
    #[error("Blender failed ({status}); its last lines:\n{tail}")]
    Failed { status: std::process::ExitStatus, tail: String },
    #[error("Blender exited without writing frame {frame} into {dir}; its last lines:\n{tail}")]
    MissingFrame { frame: i64, dir: PathBuf, tail: String },
    #[error("cannot list the frames in {dir}: {source}")]
    ListFrames { dir: PathBuf, source: std::io::Error },
    #[error("invalid frame selection: {0}")]
    Frames(String),
}

/// The device the chunk asked for (`--device`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RequestedDevice {
    /// The node's GPU if Blender can use it (NVIDIA: OptiX, then CUDA; AMD: HIP), else the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
    Optix,
    Hip,
}

/// A Cycles device type, as `--cycles-device` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CyclesDevice {
    Cpu,
    Cuda,
    Optix,
    Hip,
}

impl CyclesDevice {
    /// Blender's name of the device type.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "CPU",
            Self::Cuda => "CUDA",
            Self::Optix => "OPTIX",
            Self::Hip => "HIP",
        }
    }
}

/// The GPUs the node gives this container, from the device files the GPU runtimes create.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeGpus {
    pub nvidia: bool,
    pub amd: bool,
}

impl NodeGpus {
    /// Looks at `/dev`: the NVIDIA driver creates `/dev/nvidia0…`, ROCm needs `/dev/kfd`.
    pub fn detect() -> Self {
        let nvidia = std::fs::read_dir("/dev").is_ok_and(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.strip_prefix("nvidia")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
        });
        Self { nvidia, amd: Path::new("/dev/kfd").exists() }
    }
}

/// The device types worth asking Blender about, best first.
pub fn device_candidates(requested: RequestedDevice, node: NodeGpus) -> Vec<CyclesDevice> {
    match requested {
        RequestedDevice::Auto => {
            let mut candidates = Vec::new();
            if node.nvidia {
                candidates.extend([CyclesDevice::Optix, CyclesDevice::Cuda]);
            }
            if node.amd {
                candidates.push(CyclesDevice::Hip);
            }
            candidates
        }
        RequestedDevice::Cpu => Vec::new(),
        RequestedDevice::Cuda => vec![CyclesDevice::Cuda],
        RequestedDevice::Optix => vec![CyclesDevice::Optix],
        RequestedDevice::Hip => vec![CyclesDevice::Hip],
    }
}

/// The device to render on: the first candidate Blender has a device of, else the CPU with
/// the reason (a Blender built without GPU support, like Debian's, renders on CPU only).
pub fn choose_device(candidates: &[CyclesDevice], usable: &[CyclesDevice]) -> (CyclesDevice, Option<String>) {
    if candidates.is_empty() {
        return (CyclesDevice::Cpu, None);
    }
    match candidates.iter().find(|c| usable.contains(c)) {
        Some(device) => (*device, None),
        None => {
            let wanted: Vec<_> = candidates.iter().map(|c| c.name()).collect();
            (
                CyclesDevice::Cpu,
                Some(format!(
                    "this Blender finds no {} device (a build without GPU support, such as Debian's, renders on CPU only); rendering on CPU",
                    wanted.join(" or ")
                )),
            )
        }
    }
}

/// Asks Blender which GPU device types it can render on here: it must be built with them and
/// see a device of each.
pub async fn usable_gpu_devices(blender: &Path) -> Result<Vec<CyclesDevice>, BlenderError> {
    // `_cycles.available_devices(type)` lists the devices of that type plus the CPU.
    let script = format!(
        "import json, _cycles\n\
         found = {{}}\n\
         for t in ('OPTIX', 'CUDA', 'HIP'):\n\
         \x20   try:\n\
         \x20       found[t] = sum(1 for d in _cycles.available_devices(t) if d[1] != 'CPU')\n\
         \x20   except Exception:\n\
         \x20       found[t] = 0\n\
         print('{PROBE_MARKER}' + json.dumps(found))\n"
    );
    let args: Vec<OsString> =
        ["--factory-startup", "-b", "--python-expr", &script].iter().map(OsString::from).collect();
    let output = run_blender(blender, &args, None).await?;
    Ok(parse_probe(&output.tail))
}

fn parse_probe(lines: &str) -> Vec<CyclesDevice> {
    let Some(json) = lines.lines().find_map(|l| l.strip_prefix(PROBE_MARKER)) else {
        return Vec::new();
    };
    let counts: std::collections::BTreeMap<String, u32> = serde_json::from_str(json).unwrap_or_default();
    [CyclesDevice::Optix, CyclesDevice::Cuda, CyclesDevice::Hip]
        .into_iter()
        .filter(|d| counts.get(d.name()).is_some_and(|n| *n > 0))
        .collect()
}

/// Blender's name of a render engine (`-E`).
pub fn engine_name(engine: RenderEngine) -> &'static str {
    match engine {
        RenderEngine::Cycles => "CYCLES",
        // Blender 4.2–4.4 name it BLENDER_EEVEE_NEXT; 3.x and 4.5 on accept this one.
        RenderEngine::Eevee => "BLENDER_EEVEE",
    }
}

/// Blender's name of an image format (`-F`).
pub fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Png => "PNG",
        ImageFormat::OpenExr => "OPEN_EXR",
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::Tiff => "TIFF",
    }
}

/// Inclusive frames `first..=last`, every `step`th.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameSelection {
    pub first: i64,
    pub last: i64,
    pub step: i64,
}

impl FrameSelection {
    /// Checks the selection against Blender's limits.
    pub fn new(first: i64, last: i64, step: i64) -> Result<Self, BlenderError> {
        if !(0..=1_048_574).contains(&first) || !(0..=1_048_574).contains(&last) {
            return Err(BlenderError::Frames(format!(
                "frames {first}..{last} must lie in 0..1048574, Blender's frame limits"
            )));
        }
        if last < first {
            return Err(BlenderError::Frames(format!("--last {last} is before --first {first}")));
        }
        if step < 1 {
            return Err(BlenderError::Frames(format!("--step {step} must be at least 1")));
        }
        Ok(Self { first, last, step })
    }

    /// The frame numbers Blender renders.
    pub fn frames(&self) -> impl Iterator<Item = i64> + use<> {
        (self.first..=self.last).step_by(self.step as usize)
    }
}

/// One Blender render of frames from a local scene file into the scene's folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderInvocation {
    pub scene: PathBuf,
    pub engine: RenderEngine,
    pub format: ImageFormat,
    pub frames: FrameSelection,
    pub device: CyclesDevice,
}

impl RenderInvocation {
    /// Blender's arguments. They run in order: the scene loads first, output and format apply to
    /// it, the frame range comes last before `-a` renders it, and Cycles' options follow `--`.
    pub fn arguments(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            // Preferences of whoever built the image must not change the render.
            "--factory-startup".into(),
            // A scene is a stranger's file: the Python it carries (registered text blocks,
            // driver expressions) must never run on the provider's machine.
            "--disable-autoexec".into(),
            "-b".into(),
            self.scene.clone().into(),
            "-E".into(),
            engine_name(self.engine).into(),
            "-o".into(),
            // `//` is the scene's folder; `#` is the zero-padded frame number.
            "//frame_######".into(),
            "-F".into(),
            format_name(self.format).into(),
            "-x".into(),
            "1".into(),
            "-s".into(),
            self.frames.first.to_string().into(),
            "-e".into(),
            self.frames.last.to_string().into(),
            "-j".into(),
            self.frames.step.to_string().into(),
            "-a".into(),
        ];
        if self.engine == RenderEngine::Cycles {
            args.extend(["--".into(), "--cycles-device".into(), self.device.name().into()]);
        }
        args
    }

    /// The folder Blender writes the frames into.
    pub fn output_dir(&self) -> PathBuf {
        self.scene.parent().map(Path::to_path_buf).unwrap_or_default()
    }

    /// Runs Blender and returns every frame's file, in frame order.
    pub async fn run(&self, blender: &Path) -> Result<RenderedFiles, BlenderError> {
        tracing::info!(
            blender = %blender.display(),
            args = ?self.arguments(),
            "starting Blender"
        );
        let started = Instant::now();
        let output = run_blender(blender, &self.arguments(), Some(&self.output_dir())).await?;
        let seconds = started.elapsed().as_secs_f64();
        let dir = self.output_dir();
        let names: Vec<String> = std::fs::read_dir(&dir)
            .map_err(|source| BlenderError::ListFrames { dir: dir.clone(), source })?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let mut files = Vec::new();
        for frame in self.frames.frames() {
            let stem = frame_stem(frame);
            // A scene may turn file extensions off; then the stem alone is the name.
            let name = names
                .iter()
                .find(|n| n.strip_prefix(&stem).is_some_and(|rest| rest.is_empty() || rest.starts_with('.')));
            match name {
                Some(name) => files.push((frame, dir.join(name))),
                None => {
                    return Err(BlenderError::MissingFrame { frame, dir: dir.clone(), tail: output.tail });
                }
            }
        }
        Ok(RenderedFiles { files, seconds })
    }
}

/// The frames one Blender run wrote.
#[derive(Clone, Debug)]
pub struct RenderedFiles {
    /// Frame number and file, in frame order.
    pub files: Vec<(i64, PathBuf)>,
    /// Wall-clock seconds Blender ran.
    pub seconds: f64,
}

struct BlenderOutput {
    tail: String,
}

/// Runs Blender, copying its output into our log (stderr: stdout carries only the result) and
/// keeping the last lines for error messages.
async fn run_blender(
    blender: &Path,
    args: &[OsString],
    dir: Option<&Path>,
) -> Result<BlenderOutput, BlenderError> {
    let mut command = Command::new(blender);
    command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let mut child =
        command.spawn().map_err(|source| BlenderError::Start { blender: blender.to_path_buf(), source })?;
    let stdout = child.stdout.take().map(forward_lines);
    let stderr = child.stderr.take().map(forward_lines);
    let status = child
        .wait()
        .await
        .map_err(|source| BlenderError::Start { blender: blender.to_path_buf(), source })?;
    let mut tail = VecDeque::new();
    for task in [stdout, stderr].into_iter().flatten() {
        if let Ok(lines) = task.await {
            tail.extend(lines);
        }
    }
    while tail.len() > OUTPUT_TAIL_LINES * 2 {
        tail.pop_front();
    }
    let tail = Vec::from(tail).join("\n");
    if !status.success() {
        return Err(BlenderError::Failed { status, tail });
    }
    Ok(BlenderOutput { tail })
}

fn forward_lines(
    stream: impl AsyncRead + Unpin + Send + 'static,
) -> tokio::task::JoinHandle<VecDeque<String>> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        let mut tail = VecDeque::with_capacity(OUTPUT_TAIL_LINES);
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("[blender] {line}");
            if tail.len() == OUTPUT_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        tail
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_keep_blenders_order() {
        let invocation = RenderInvocation {
            scene: "/tmp/chunk/scene.blend".into(),
            engine: RenderEngine::Cycles,
            format: ImageFormat::Png,
            frames: FrameSelection::new(1, 10, 2).unwrap(),
            device: CyclesDevice::Optix,
        };
        let args: Vec<String> =
            invocation.arguments().iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            args.join(" "),
            "--factory-startup --disable-autoexec -b /tmp/chunk/scene.blend -E CYCLES -o //frame_###### -F PNG -x 1 \
             -s 1 -e 10 -j 2 -a -- --cycles-device OPTIX"
        );
        let eevee = RenderInvocation { engine: RenderEngine::Eevee, ..invocation };
        let args: Vec<String> = eevee.arguments().iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args.last().map(String::as_str), Some("-a"));
        assert!(args.contains(&"BLENDER_EEVEE".to_string()));
    }

    #[test]
    fn auto_picks_the_nodes_gpu_that_blender_can_use() {
        let nvidia = NodeGpus { nvidia: true, amd: false };
        let amd = NodeGpus { nvidia: false, amd: true };
        let none = NodeGpus::default();
        assert_eq!(device_candidates(RequestedDevice::Auto, none), vec![]);
        assert_eq!(
            choose_device(&device_candidates(RequestedDevice::Auto, none), &[]),
            (CyclesDevice::Cpu, None)
        );

        let candidates = device_candidates(RequestedDevice::Auto, nvidia);
        assert_eq!(
            choose_device(&candidates, &[CyclesDevice::Cuda, CyclesDevice::Optix]).0,
            CyclesDevice::Optix
        );
        assert_eq!(choose_device(&candidates, &[CyclesDevice::Cuda]).0, CyclesDevice::Cuda);
        assert_eq!(
            choose_device(&device_candidates(RequestedDevice::Auto, amd), &[CyclesDevice::Hip]).0,
            CyclesDevice::Hip
        );
        assert_eq!(device_candidates(RequestedDevice::Cpu, nvidia), vec![]);
    }

    #[test]
    fn a_blender_without_gpu_support_falls_back_to_cpu_and_says_so() {
        let candidates = device_candidates(RequestedDevice::Auto, NodeGpus { nvidia: true, amd: false });
        let (device, note) = choose_device(&candidates, &[]);
        assert_eq!(device, CyclesDevice::Cpu);
        let note = note.unwrap();
        assert!(note.contains("OPTIX or CUDA") && note.contains("CPU"), "{note}");
        let (device, note) =
            choose_device(&device_candidates(RequestedDevice::Hip, NodeGpus::default()), &[]);
        assert_eq!(device, CyclesDevice::Cpu);
        assert!(note.is_some());
    }

    #[test]
    fn the_probe_answer_is_read_from_blenders_output() {
        let output =
            "Blender 3.4.1\nPICTOR_CYCLES_DEVICES={\"OPTIX\": 0, \"CUDA\": 2, \"HIP\": 0}\nBlender quit";
        assert_eq!(parse_probe(output), vec![CyclesDevice::Cuda]);
        assert_eq!(parse_probe("Python error"), vec![]);
    }

    #[test]
    fn frame_selections_follow_blenders_limits() {
        assert_eq!(FrameSelection::new(1, 7, 3).unwrap().frames().collect::<Vec<_>>(), vec![1, 4, 7]);
        assert!(FrameSelection::new(5, 4, 1).is_err());
        assert!(FrameSelection::new(1, 4, 0).is_err());
        assert!(FrameSelection::new(-1, 4, 1).is_err());
    }
}
