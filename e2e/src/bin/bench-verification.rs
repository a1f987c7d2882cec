//! Benchmark: the hub's verification policy against real Blender renders.
//!
//! A small animated scene (Cycles on the CPU) is rendered by several honest providers, each with
//! its own Cycles seed, one Blender run per seed. Every distinct pair of honest renders of one
//! frame is compared with the render worker's own comparison
//! (`pictor_render_worker::comparison::compare_encoded_frames`) at the hub's threshold
//! (`REPRODUCED_AT_PSNR_DB`): an honest pair below it would be a false penalty. The frames
//! cheaters would deliver are made from the same renders and compared the same way: blank
//! frames, the chunk's first frame copied to every frame, each odd frame's render delivered for
//! the frame before it too, one frame with an inverted patch.
//!
//! The policy is then simulated (Monte Carlo) over those measured outcomes, with the hub's own
//! decisions where they exist: which chunks are checked is `render_job::plan::sampled` with a
//! fresh `VerificationKey` per simulated career, and `CORDON_AFTER_MISMATCHES` mismatches cordon
//! a member. A checked chunk gets one frame, drawn uniformly, rendered again by an honest
//! verifier with another seed; a disagreement goes to a third honest provider, and the member
//! is penalised only if that one disagrees with it too. A member caught in a job has every other
//! chunk of that job checked (one frame each), each mismatch counting towards the cordon, and is
//! paid nothing for that job. Honest members run through the same policy.

use clap::Parser;
use pictor_crds::contract::verification::{REPRODUCED_AT_PSNR_DB, REPRODUCED_AT_TILE_PSNR_DB};
use pictor_operator::member_controller::CORDON_AFTER_MISMATCHES;
use pictor_operator::render_job::plan::sampled;
use pictor_operator::verification_key::VerificationKey;
use pictor_render_worker::comparison::{FrameComparison, TILE, compare_encoded_frames};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// Frames of the rendered animation (a multiple of --chunk-frames).
    #[arg(long, default_value_t = 60)]
    frames: usize,
    /// Honest providers, each rendering every frame with its own Cycles seed.
    #[arg(long, default_value_t = 7)]
    seeds: usize,
    /// Frame width in pixels.
    #[arg(long, default_value_t = 96)]
    width: u32,
    /// Frame height in pixels.
    #[arg(long, default_value_t = 54)]
    height: u32,
    /// Cycles samples per pixel.
    #[arg(long, default_value_t = 16)]
    samples: u32,
    /// How far the cube turns from one frame to the next, in radians.
    #[arg(long, default_value_t = 0.1)]
    radians_per_frame: f64,
    /// Chunks per simulated job.
    #[arg(long, default_value_t = 50)]
    chunks: usize,
    /// Frames per chunk.
    #[arg(long, default_value_t = 10)]
    chunk_frames: usize,
    /// Percent of its chunks a cheater fakes.
    #[arg(long, default_value_t = 10.0)]
    cheat_percent: f64,
    /// Verification shares to simulate (`verificationPercent`), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 5, 10])]
    shares: Vec<i64>,
    /// Simulated careers per setting.
    #[arg(long, default_value_t = 2000)]
    runs: usize,
    /// Jobs after which a cheater's career is cut off when it is not cordoned by then.
    #[arg(long, default_value_t = 300)]
    max_jobs: usize,
    /// Jobs over which earnings are compared (a career ends at the cordon or here).
    #[arg(long, default_value_t = 30)]
    career_jobs: usize,
    /// The goal: cordoned within this many jobs.
    #[arg(long, default_value_t = 15)]
    within_jobs: usize,
    /// Price paid for rendering, APT per GPU-hour.
    #[arg(long, default_value_t = 0.9)]
    price_apt_per_gpu_hour: f64,
    /// Seed of the simulation's random numbers.
    #[arg(long, default_value_t = 20_240_601)]
    seed: u64,
    /// Blender to render with.
    #[arg(long, env = "PICTOR_BLENDER", default_value = "blender")]
    blender: PathBuf,
}

/// SplitMix64: small, fast and good enough for a Monte Carlo of this size; seeded per career so
/// that results do not depend on how careers are spread over threads.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        let mut rng = Self(seed);
        rng.next_u64();
        rng
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// True with probability `percent` / 100.
    fn percent(&mut self, percent: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < percent / 100.0
    }

    /// Uniform in `0..n`, other than every value of `not`.
    fn other_than(&mut self, n: usize, not: &[usize]) -> usize {
        loop {
            let pick = self.below(n);
            if !not.contains(&pick) {
                return pick;
            }
        }
    }
}

/// What a member delivered for one frame, as far as comparing it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Delivered {
    /// Provider `seed`'s render of rendered frame `frame` (0-based).
    Render { seed: usize, frame: usize },
    /// A blank frame of the right size.
    Blank,
    /// Provider `seed`'s render of `frame` with a patch inverted.
    Altered { seed: usize, frame: usize },
}

/// The ways of cheating simulated, one per career.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cheat {
    /// Renders nothing and delivers blank frames.
    Blank,
    /// Renders the chunk's first frame and delivers it for every frame of the chunk.
    CopyFirst,
    /// Renders every second frame and delivers frame n+1's render for frame n as well.
    CopyNeighbour,
    /// Renders everything and alters one frame of the chunk.
    AlterOne,
}

impl Cheat {
    const ALL: [Cheat; 4] = [Cheat::Blank, Cheat::CopyFirst, Cheat::CopyNeighbour, Cheat::AlterOne];

    fn name(self) -> &'static str {
        match self {
            Cheat::Blank => "skip (blank frames)",
            Cheat::CopyFirst => "skip (first frame copied)",
            Cheat::CopyNeighbour => "copy-neighbour (n+1 for n)",
            Cheat::AlterOne => "alter-one (inverted patch)",
        }
    }

    /// What a chunk cheated this way delivers at `position`, given the member's seed, the
    /// rendered frame there, and the altered position (for `AlterOne`).
    fn delivers(
        self,
        seed: usize,
        frame: usize,
        position: usize,
        frames: usize,
        altered: usize,
    ) -> Delivered {
        match self {
            Cheat::Blank => Delivered::Blank,
            Cheat::CopyFirst => Delivered::Render { seed, frame: frame - position },
            Cheat::CopyNeighbour if position.is_multiple_of(2) && position + 1 < frames => {
                Delivered::Render { seed, frame: frame + 1 }
            }
            Cheat::AlterOne if position == altered => Delivered::Altered { seed, frame },
            _ => Delivered::Render { seed, frame },
        }
    }

    /// Frames a chunk cheated this way really renders.
    fn frames_rendered(self, frames: usize) -> usize {
        match self {
            Cheat::Blank => 0,
            Cheat::CopyFirst => 1,
            Cheat::CopyNeighbour => frames - frames / 2,
            Cheat::AlterOne => frames,
        }
    }
}

/// Whether a verifier's render (`verifier` seed, rendered frame `frame`) reproduces what was
/// delivered.
trait Comparisons: Sync {
    fn passes(&self, verifier: usize, frame: usize, delivered: Delivered) -> bool;
}

/// The comparisons measured on real renders.
struct Measured(HashMap<(usize, usize, Delivered), FrameComparison>);

impl Comparisons for Measured {
    fn passes(&self, verifier: usize, frame: usize, delivered: Delivered) -> bool {
        self.0
            .get(&(verifier, frame, delivered))
            .unwrap_or_else(|| panic!("no comparison of seed {verifier}'s frame {frame} with {delivered:?}"))
            .reproduces()
    }
}

/// The policy's parameters.
#[derive(Clone, Copy)]
struct Policy {
    chunks: usize,
    chunk_frames: usize,
    /// Distinct rendered frames the simulated ones map onto (cyclically, chunk by chunk).
    rendered_frames: usize,
    /// Honest providers (seeds) available as member, verifier and third provider.
    seeds: usize,
    percent: i64,
}

/// A simulated member: its seed, and how it cheats, on what percent of its chunks.
#[derive(Clone, Copy)]
struct Member {
    seed: usize,
    cheat: Option<(Cheat, f64)>,
}

/// What one job did to its member.
#[derive(Debug, Default, Clone, Copy)]
struct JobOutcome {
    /// Chunks paid (all, or none when the member was caught).
    paid_chunks: usize,
    /// Checks that the member failed, confirmed by a third provider.
    mismatches: usize,
    /// Checks where the third provider sided with the member against the first verifier.
    verifier_outvoted: usize,
    /// Frames rendered again to check the member (first verifiers and third providers).
    verification_frames: usize,
    /// Frames the member really rendered.
    member_frames: usize,
}

/// One job of `policy.chunks` chunks, all rendered by `member`.
fn simulate_job(
    policy: &Policy,
    comparisons: &dyn Comparisons,
    key: &VerificationKey,
    job_uid: &str,
    member: Member,
    rng: &mut Rng,
) -> JobOutcome {
    let n = policy.chunk_frames;
    let rendered_chunks = policy.rendered_frames / n;
    // How each chunk was made: cheated or not, and the altered position.
    let chunks: Vec<(Option<Cheat>, usize)> = (0..policy.chunks)
        .map(|_| match member.cheat {
            Some((cheat, percent)) if rng.percent(percent) => (Some(cheat), rng.below(n)),
            _ => (None, 0),
        })
        .collect();
    let mut outcome = JobOutcome {
        member_frames: chunks.iter().map(|(c, _)| c.map_or(n, |c| c.frames_rendered(n))).sum(),
        ..JobOutcome::default()
    };
    let mut check = |index: usize, outcome: &mut JobOutcome| {
        let (cheat, altered) = chunks[index];
        let position = rng.below(n);
        let frame = (index % rendered_chunks) * n + position;
        let delivered = match cheat {
            Some(cheat) => cheat.delivers(member.seed, frame, position, n, altered),
            None => Delivered::Render { seed: member.seed, frame },
        };
        let verifier = rng.other_than(policy.seeds, &[member.seed]);
        outcome.verification_frames += 1;
        if comparisons.passes(verifier, frame, delivered) {
            return;
        }
        let third = rng.other_than(policy.seeds, &[member.seed, verifier]);
        outcome.verification_frames += 1;
        if comparisons.passes(third, frame, delivered) {
            outcome.verifier_outvoted += 1;
        } else {
            outcome.mismatches += 1;
        }
    };
    let in_sample: Vec<bool> =
        (0..policy.chunks).map(|i| sampled(key, job_uid, i as i64, policy.percent)).collect();
    for index in (0..policy.chunks).filter(|i| in_sample[*i]) {
        check(index, &mut outcome);
    }
    if outcome.mismatches == 0 {
        outcome.paid_chunks = policy.chunks;
    } else {
        // Caught: every other chunk of the job is checked before any is paid, and none is.
        for index in (0..policy.chunks).filter(|i| !in_sample[*i]) {
            check(index, &mut outcome);
        }
    }
    outcome
}

/// One member's career: jobs until it is cordoned or `max_jobs` have run.
#[derive(Debug, Default, Clone)]
struct Career {
    /// The job in which it was cordoned (1-based).
    cordoned_at: Option<usize>,
    jobs: usize,
    caught_jobs: usize,
    mismatches: usize,
    verifier_outvoted: usize,
    /// Over the first `career_jobs` jobs (or until cordoned).
    earning_jobs: usize,
    paid_chunks: usize,
    member_frames: usize,
    verification_frames: usize,
}

fn simulate_career(
    policy: &Policy,
    comparisons: &dyn Comparisons,
    member: Member,
    max_jobs: usize,
    career_jobs: usize,
    rng: &mut Rng,
) -> Career {
    let secret: Vec<u8> = (0..4).flat_map(|_| rng.next_u64().to_le_bytes()).collect();
    let key = VerificationKey::new(&secret);
    let mut career = Career::default();
    for job in 1..=max_jobs {
        let outcome = simulate_job(policy, comparisons, &key, &format!("job-{job}"), member, rng);
        career.jobs = job;
        career.caught_jobs += usize::from(outcome.mismatches > 0);
        career.mismatches += outcome.mismatches;
        career.verifier_outvoted += outcome.verifier_outvoted;
        if job <= career_jobs {
            career.earning_jobs = job;
            career.paid_chunks += outcome.paid_chunks;
            career.member_frames += outcome.member_frames;
            career.verification_frames += outcome.verification_frames;
        }
        if career.mismatches as i64 >= CORDON_AFTER_MISMATCHES {
            career.cordoned_at = Some(job);
            break;
        }
        if member.cheat.is_none() && job >= career_jobs {
            break;
        }
    }
    career
}

/// `runs` careers, spread over the machine's cores; career `i` draws from its own seed.
fn simulate_careers(
    policy: &Policy,
    comparisons: &dyn Comparisons,
    member: impl Fn(&mut Rng) -> Member + Sync,
    runs: usize,
    max_jobs: usize,
    career_jobs: usize,
    seed: u64,
) -> Vec<Career> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(runs.max(1));
    let per_thread = runs.div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let member = &member;
                scope.spawn(move || {
                    (t * per_thread..((t + 1) * per_thread).min(runs))
                        .map(|run| {
                            let mut rng = Rng::new(seed ^ (run as u64).wrapping_mul(0xA24B_AED4_963E_E407));
                            let member = member(&mut rng);
                            simulate_career(policy, comparisons, member, max_jobs, career_jobs, &mut rng)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("a simulation thread panicked")).collect()
    })
}

/// The scene: a rotating cube, a sun and a camera; Cycles on the CPU, no denoiser, so that two
/// seeds differ in their noise.
fn scene_script(args: &Args) -> String {
    format!(
        r#"
import bpy, sys
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.engine = 'CYCLES'
scene.cycles.device, scene.cycles.samples, scene.cycles.use_denoising = 'CPU', {samples}, False
scene.render.resolution_x, scene.render.resolution_y = {width}, {height}
scene.render.resolution_percentage = 100
scene.frame_start, scene.frame_end = 1, {frames}
bpy.ops.mesh.primitive_cube_add(size=2)
cube = bpy.context.object
for frame, turn in ((1, 0.0), ({frames}, {turn})):
    cube.rotation_euler = (0.3, 0.2, turn)
    cube.keyframe_insert(data_path="rotation_euler", frame=frame)
# A steady turn, the same from every frame to the next (keyframes ease in and out by default).
for curve in cube.animation_data.action.fcurves:
    for point in curve.keyframe_points:
        point.interpolation = 'LINEAR'
bpy.ops.object.light_add(type='SUN', location=(4, -4, 6))
bpy.context.object.data.energy = 4
bpy.ops.object.camera_add(location=(5, -5, 4), rotation=(1.1, 0, 0.785))
scene.camera = bpy.context.object
world = bpy.data.worlds.new("World")
world.color = (0.2, 0.25, 0.3)
scene.world = world
bpy.ops.wm.save_as_mainfile(filepath=sys.argv[-1])
"#,
        samples = args.samples,
        width = args.width,
        height = args.height,
        frames = args.frames,
        turn = (args.frames - 1) as f64 * args.radians_per_frame,
    )
}

/// Every seed's render of every frame, PNG bytes, `[seed][frame]`.
struct Renders {
    frames: Vec<Vec<Vec<u8>>>,
    /// Wall-clock seconds of all Blender runs, start-up included.
    wall_seconds: f64,
    /// Blender's own per-frame times, summed.
    blender_seconds: f64,
}

/// Blender's " Time: 00:01.25 (Saving: 00:00.00)" after each saved frame, in seconds.
fn frame_seconds(line: &str) -> Option<f64> {
    let time = line.trim_start().strip_prefix("Time: ")?.split_whitespace().next()?;
    let (minutes, seconds) = time.rsplit_once(':')?;
    let hours_minutes =
        minutes.split(':').try_fold(0.0, |acc, part| Some(acc * 60.0 + part.parse::<f64>().ok()?))?;
    Some(hours_minutes * 60.0 + seconds.parse::<f64>().ok()?)
}

fn render(args: &Args, dir: &Path) -> anyhow::Result<Renders> {
    let scene = dir.join("scene.blend");
    let made = Command::new(&args.blender)
        .args(["-b", "--factory-startup", "--python-expr", &scene_script(args), "--"])
        .arg(&scene)
        .output()?;
    anyhow::ensure!(scene.exists(), "Blender made no scene: {}", String::from_utf8_lossy(&made.stdout));
    let mut renders = Renders { frames: Vec::new(), wall_seconds: 0.0, blender_seconds: 0.0 };
    for seed in 0..args.seeds {
        let out = dir.join(format!("seed-{seed}"));
        let started = Instant::now();
        let run = Command::new(&args.blender)
            .arg("-b")
            .arg(&scene)
            .args(["-E", "CYCLES", "-o"])
            .arg(out.join("f_####"))
            .args(["-F", "PNG", "-s", "1", "-e", &args.frames.to_string(), "--python-expr"])
            .arg(format!("import bpy; bpy.context.scene.cycles.seed = {}", seed + 1))
            .arg("-a")
            .output()?;
        renders.wall_seconds += started.elapsed().as_secs_f64();
        let stdout = String::from_utf8_lossy(&run.stdout);
        anyhow::ensure!(run.status.success(), "Blender failed for seed {}: {stdout}", seed + 1);
        renders.blender_seconds += stdout.lines().filter_map(frame_seconds).sum::<f64>();
        let frames = (1..=args.frames)
            .map(|f| std::fs::read(out.join(format!("f_{f:04}.png"))))
            .collect::<Result<Vec<_>, _>>()?;
        renders.frames.push(frames);
    }
    Ok(renders)
}

/// A blank frame of the renders' size, as PNG.
fn blank_frame(width: u32, height: u32) -> Vec<u8> {
    encode(image::RgbaImage::from_pixel(width, height, image::Rgba([0, 0, 0, 255])))
}

/// `png` with a patch of a ninth of its area, in the middle, inverted.
fn alter_frame(png: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut frame = image::load_from_memory(png)?.to_rgba8();
    let (w, h) = (frame.width() / 3, frame.height() / 3);
    for y in h..2 * h {
        for x in w..2 * w {
            let p = frame.get_pixel_mut(x, y);
            p.0 = [255 - p.0[0], 255 - p.0[1], 255 - p.0[2], p.0[3]];
        }
    }
    Ok(encode(frame))
}

fn encode(frame: image::RgbaImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::DynamicImage::ImageRgba8(frame)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("PNG encoding into memory does not fail");
    out
}

/// PSNR statistics of a set of comparisons: of the whole frame and of its worst tile.
#[derive(Default)]
struct Spread {
    compared: Vec<FrameComparison>,
}

impl Spread {
    /// Comparisons the hub would judge not reproduced.
    fn below_threshold(&self) -> usize {
        self.compared.iter().filter(|c| !c.reproduces()).count()
    }

    fn len(&self) -> usize {
        self.compared.len()
    }

    fn values(&self, tile: bool) -> Vec<f64> {
        let mut v: Vec<f64> =
            self.compared.iter().map(|c| if tile { c.worst_tile_psnr_db() } else { c.psnr_db() }).collect();
        v.sort_by(f64::total_cmp);
        v
    }

    /// `min .. median .. max` of one measure, in dB.
    fn range(&self, tile: bool) -> String {
        let v = self.values(tile);
        match (v.first(), v.get(v.len() / 2), v.last()) {
            (Some(min), Some(median), Some(max)) => format!("{min:.2} .. {median:.2} .. {max:.2}"),
            _ => "none".into(),
        }
    }
}

/// Compares every honest pair and every cheated frame a simulation can draw.
/// What the comparisons found: every outcome, the honest pairs, and each cheat's faked frames.
struct Compared {
    measured: Measured,
    honest: Spread,
    cheats: Vec<(Cheat, Spread)>,
}

fn compare_all(args: &Args, renders: &Renders) -> anyhow::Result<Compared> {
    let n = args.chunk_frames;
    let mut measured = HashMap::new();
    let mut compare = |verifier: usize, frame: usize, delivered: Delivered, bytes: &[u8]| {
        if let Some(compared) = measured.get(&(verifier, frame, delivered)) {
            return Ok::<FrameComparison, anyhow::Error>(*compared);
        }
        let psnr = compare_encoded_frames(&renders.frames[verifier][frame], bytes)?;
        measured.insert((verifier, frame, delivered), psnr);
        // The comparison is symmetric: the other provider checking this one's render.
        if let Delivered::Render { seed, frame: f } = delivered
            && f == frame
        {
            measured.insert((seed, frame, Delivered::Render { seed: verifier, frame }), psnr);
        }
        Ok(psnr)
    };
    let mut honest = Spread::default();
    for frame in 0..args.frames {
        for a in 0..args.seeds {
            for b in a + 1..args.seeds {
                let psnr =
                    compare(a, frame, Delivered::Render { seed: b, frame }, &renders.frames[b][frame])?;
                honest.compared.push(psnr);
            }
        }
    }
    let blank = blank_frame(args.width, args.height);
    let altered: Vec<Vec<Vec<u8>>> = renders
        .frames
        .iter()
        .map(|seed| seed.iter().map(|png| alter_frame(png)).collect::<anyhow::Result<_>>())
        .collect::<anyhow::Result<_>>()?;
    let mut cheats = Vec::new();
    for cheat in Cheat::ALL {
        let mut spread = Spread::default();
        for member in 0..args.seeds {
            for frame in 0..args.frames {
                let position = frame % n;
                // The altered frame is the one checked: the only case where it matters.
                let delivered = cheat.delivers(member, frame, position, n, position);
                let bytes = match delivered {
                    Delivered::Render { seed, frame: f } if (seed, f) == (member, frame) => continue,
                    Delivered::Render { seed, frame } => &renders.frames[seed][frame],
                    Delivered::Blank => &blank,
                    Delivered::Altered { seed, frame } => &altered[seed][frame],
                };
                for verifier in (0..args.seeds).filter(|v| *v != member) {
                    spread.compared.push(compare(verifier, frame, delivered, bytes)?);
                }
            }
        }
        cheats.push((cheat, spread));
    }
    Ok(Compared { measured: Measured(measured), honest, cheats })
}

fn percentile(sorted: &[Option<usize>], p: f64, max_jobs: usize) -> String {
    match sorted.get(((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1)) {
        Some(Some(jobs)) => jobs.to_string(),
        _ => format!("> {max_jobs}"),
    }
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = values.fold((0.0, 0usize), |(s, c), v| (s + v, c + 1));
    if count == 0 { f64::NAN } else { sum / count as f64 }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.chunk_frames > 0 && args.frames.is_multiple_of(args.chunk_frames),
        "--frames must be a multiple of --chunk-frames"
    );
    anyhow::ensure!(args.seeds >= 3, "--seeds must be at least 3 (member, verifier, third provider)");
    let dir = std::env::temp_dir().join(format!("pictor-bench-verification-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    println!(
        "Rendering {} frames of {}x{}, {} Cycles samples (CPU), a cube turning {} rad a frame, once per seed for {} honest providers, with {}",
        args.frames,
        args.width,
        args.height,
        args.samples,
        args.radians_per_frame,
        args.seeds,
        args.blender.display()
    );
    let renders = render(&args, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let renders = renders?;
    let rendered = (args.frames * args.seeds) as f64;
    let seconds_per_frame = renders.wall_seconds / rendered;
    println!(
        "  {rendered} frames in {:.1} s: {:.3} s per frame wall-clock (Blender start-up included), {:.3} s per frame as Blender reports its renders",
        renders.wall_seconds,
        seconds_per_frame,
        renders.blender_seconds / rendered
    );

    let started = Instant::now();
    let Compared { measured, honest, cheats } = compare_all(&args, &renders)?;
    println!(
        "\nComparisons (pictor_render_worker::comparison::compare_encoded_frames; reproduced at >= {REPRODUCED_AT_PSNR_DB} dB over the frame \
         and >= {REPRODUCED_AT_TILE_PSNR_DB} dB in its worst {TILE}-pixel tile), {} in {:.1} s; PSNR as min .. median .. max",
        measured.0.len(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "  {:<27} {:>5} distinct pairs (frame x pair of seeds); frame {} dB; worst tile {} dB; false penalties (not reproduced): {}",
        "honest",
        honest.len(),
        honest.range(false),
        honest.range(true),
        honest.below_threshold()
    );
    for (cheat, spread) in &cheats {
        println!(
            "  {:<27} {:>5} faked frames against an honest render; frame {} dB; worst tile {} dB; caught (not reproduced): {} ({:.1}%)",
            cheat.name(),
            spread.len(),
            spread.range(false),
            spread.range(true),
            spread.below_threshold(),
            100.0 * spread.below_threshold() as f64 / spread.len().max(1) as f64
        );
    }

    let pay_per_chunk = args.chunk_frames as f64 * seconds_per_frame * args.price_apt_per_gpu_hour / 3600.0;
    let chunk_frames_per_job = (args.chunks * args.chunk_frames) as f64;
    println!(
        "\nPolicy simulation: {} careers per setting (seed {}); jobs of {} chunks x {} frames; a cheater fakes {}% of its chunks; \
         cordoned at {CORDON_AFTER_MISMATCHES} mismatches; careers cut at {} jobs; earnings over at most {} jobs at {} APT/GPU-hour \
         ({:.3e} APT a chunk from the measured {:.3} s/frame)",
        args.runs,
        args.seed,
        args.chunks,
        args.chunk_frames,
        args.cheat_percent,
        args.max_jobs,
        args.career_jobs,
        args.price_apt_per_gpu_hour,
        pay_per_chunk,
        seconds_per_frame
    );
    let started = Instant::now();
    let mut aims = Vec::new();
    for (setting, &percent) in args.shares.iter().enumerate() {
        let policy = Policy {
            chunks: args.chunks,
            chunk_frames: args.chunk_frames,
            rendered_frames: args.frames,
            seeds: args.seeds,
            percent,
        };
        let seed = args.seed.wrapping_add(1_000 * setting as u64);
        let seeds = args.seeds;
        let honest_runs = simulate_careers(
            &policy,
            &measured,
            |rng| Member { seed: rng.below(seeds), cheat: None },
            args.runs,
            args.career_jobs,
            args.career_jobs,
            seed,
        );
        let honest_jobs: usize = honest_runs.iter().map(|c| c.jobs).sum();
        let honest_pay_per_job = honest_runs.iter().map(|c| c.paid_chunks).sum::<usize>() as f64
            * pay_per_chunk
            / honest_jobs as f64;
        println!("\nverificationPercent {percent}%");
        println!(
            "  honest providers: {} jobs; extra GPU time for verification {:.2}% of the chunks' ({} verification frames); \
             false penalties: {} mismatches, {} jobs unpaid, {} members cordoned; first verifier outvoted by the third: {}",
            honest_jobs,
            100.0 * honest_runs.iter().map(|c| c.verification_frames).sum::<usize>() as f64
                / (honest_jobs as f64 * chunk_frames_per_job),
            honest_runs.iter().map(|c| c.verification_frames).sum::<usize>(),
            honest_runs.iter().map(|c| c.mismatches).sum::<usize>(),
            honest_runs.iter().map(|c| c.caught_jobs).sum::<usize>(),
            honest_runs.iter().filter(|c| c.cordoned_at.is_some()).count(),
            honest_runs.iter().map(|c| c.verifier_outvoted).sum::<usize>(),
        );
        println!(
            "  {:<27} {:>8} {:>8} {:>8} {:>9} {:>9} {:>13} {:>13} {:>7} {:>12} {:>13}",
            "cheat",
            "caught/",
            "cordon",
            "cordon",
            "cordoned",
            "verif.",
            "cheater earns",
            "honest earns",
            "ratio",
            "GPU saved",
            "(earns+saved)"
        );
        println!(
            "  {:<27} {:>8} {:>8} {:>8} {:>9} {:>9} {:>13} {:>13} {:>7} {:>12} {:>13}",
            "",
            "job",
            "median",
            "p95",
            format!("<={} jobs", args.within_jobs),
            "GPU +%",
            "APT/career",
            "same jobs",
            "",
            "GPU-s/career",
            "/ honest"
        );
        for (k, cheat) in Cheat::ALL.into_iter().enumerate() {
            let cheat_percent = args.cheat_percent;
            let runs = simulate_careers(
                &policy,
                &measured,
                |rng| Member { seed: rng.below(seeds), cheat: Some((cheat, cheat_percent)) },
                args.runs,
                args.max_jobs,
                args.career_jobs,
                seed.wrapping_add(1 + k as u64),
            );
            let jobs: usize = runs.iter().map(|c| c.jobs).sum();
            let caught: usize = runs.iter().map(|c| c.caught_jobs).sum();
            let mut cordoned: Vec<Option<usize>> = runs.iter().map(|c| c.cordoned_at).collect();
            cordoned.sort_by_key(|c| c.unwrap_or(usize::MAX));
            let within = cordoned.iter().filter(|c| c.is_some_and(|j| j <= args.within_jobs)).count() as f64
                / runs.len() as f64;
            let earning_jobs: usize = runs.iter().map(|c| c.earning_jobs).sum();
            let cheater_earns = mean(runs.iter().map(|c| c.paid_chunks as f64 * pay_per_chunk));
            let honest_earns = mean(runs.iter().map(|c| c.earning_jobs as f64 * honest_pay_per_job));
            let saved = mean(runs.iter().map(|c| {
                (c.earning_jobs as f64 * chunk_frames_per_job - c.member_frames as f64) * seconds_per_frame
            }));
            println!(
                "  {:<27} {:>7.1}% {:>8} {:>8} {:>8.1}% {:>8.2}% {:>13.3e} {:>13.3e} {:>7.3} {:>12.1} {:>13.3}",
                cheat.name(),
                100.0 * caught as f64 / jobs as f64,
                percentile(&cordoned, 0.5, args.max_jobs),
                percentile(&cordoned, 0.95, args.max_jobs),
                100.0 * within,
                100.0 * runs.iter().map(|c| c.verification_frames).sum::<usize>() as f64
                    / (earning_jobs as f64 * chunk_frames_per_job),
                cheater_earns,
                honest_earns,
                cheater_earns / honest_earns,
                saved,
                (cheater_earns + saved * args.price_apt_per_gpu_hour / 3600.0) / honest_earns
            );
            if percent == 5 {
                aims.push((cheat, within));
            }
        }
    }
    println!("\n  simulated in {:.1} s", started.elapsed().as_secs_f64());
    if !aims.is_empty() {
        println!(
            "\nAim: at 5% verification a cheater faking {}% of its chunks is cordoned within {} jobs in >= 95% of careers",
            args.cheat_percent, args.within_jobs
        );
        for (cheat, within) in aims {
            let verdict = if within >= 0.95 { "met" } else { "NOT met" };
            println!("  {:<27} {:.1}% of careers: {verdict}", cheat.name(), 100.0 * within);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A render reproduces only the same frame, delivered as rendered; everything else fails.
    struct Exact;

    impl Comparisons for Exact {
        fn passes(&self, _verifier: usize, frame: usize, delivered: Delivered) -> bool {
            matches!(delivered, Delivered::Render { frame: f, .. } if f == frame)
        }
    }

    /// Like `Exact`, but verifier 1 sees every frame as a mismatch.
    struct BrokenVerifier;

    impl Comparisons for BrokenVerifier {
        fn passes(&self, verifier: usize, frame: usize, delivered: Delivered) -> bool {
            verifier != 1 && Exact.passes(verifier, frame, delivered)
        }
    }

    const POLICY: Policy = Policy { chunks: 50, chunk_frames: 10, rendered_frames: 60, seeds: 7, percent: 5 };

    #[test]
    fn a_cheater_faking_every_chunk_is_caught_whenever_a_chunk_is_sampled() {
        let key = VerificationKey::new(b"bench-verification test key");
        let mut rng = Rng::new(7);
        let member = Member { seed: 0, cheat: Some((Cheat::Blank, 100.0)) };
        let mut sampled_jobs = 0;
        for job in 0..200 {
            let uid = format!("job-{job}");
            let any = (0..POLICY.chunks).any(|i| sampled(&key, &uid, i as i64, POLICY.percent));
            let outcome = simulate_job(&POLICY, &Exact, &key, &uid, member, &mut rng);
            if any {
                sampled_jobs += 1;
                assert_eq!(outcome.paid_chunks, 0, "{outcome:?}");
                assert_eq!(outcome.mismatches, POLICY.chunks, "caught: every chunk checked, each a mismatch");
            } else {
                assert_eq!((outcome.paid_chunks, outcome.mismatches), (POLICY.chunks, 0));
            }
            assert_eq!(outcome.member_frames, 0);
        }
        assert!(sampled_jobs > 150, "at 5% of 50 chunks most jobs have a sample: {sampled_jobs}");
    }

    #[test]
    fn honest_members_are_never_penalised_and_pay_one_frame_per_sampled_chunk() {
        let key = VerificationKey::new(b"bench-verification test key");
        let mut rng = Rng::new(11);
        for job in 0..200 {
            let uid = format!("job-{job}");
            let in_sample =
                (0..POLICY.chunks).filter(|i| sampled(&key, &uid, *i as i64, POLICY.percent)).count();
            let member = Member { seed: job % POLICY.seeds, cheat: None };
            let outcome = simulate_job(&POLICY, &Exact, &key, &uid, member, &mut rng);
            assert_eq!((outcome.paid_chunks, outcome.mismatches), (POLICY.chunks, 0));
            assert_eq!(outcome.verification_frames, in_sample);
        }
        // A verifier that disagrees with everyone is outvoted by the third provider.
        let careers =
            simulate_careers(&POLICY, &BrokenVerifier, |_| Member { seed: 0, cheat: None }, 50, 30, 30, 3);
        assert!(
            careers.iter().all(|c| c.mismatches == 0 && c.cordoned_at.is_none() && c.paid_chunks == 30 * 50)
        );
        assert!(careers.iter().map(|c| c.verifier_outvoted).sum::<usize>() > 0);
    }

    #[test]
    fn cheats_deliver_what_they_claim() {
        // Chunk frames 10..20; position 3 is frame 13.
        assert_eq!(Cheat::CopyFirst.delivers(2, 13, 3, 10, 0), Delivered::Render { seed: 2, frame: 10 });
        assert_eq!(Cheat::CopyNeighbour.delivers(2, 12, 2, 10, 0), Delivered::Render { seed: 2, frame: 13 });
        assert_eq!(Cheat::CopyNeighbour.delivers(2, 13, 3, 10, 0), Delivered::Render { seed: 2, frame: 13 });
        assert_eq!(Cheat::AlterOne.delivers(2, 13, 3, 10, 3), Delivered::Altered { seed: 2, frame: 13 });
        assert_eq!(Cheat::AlterOne.delivers(2, 14, 4, 10, 3), Delivered::Render { seed: 2, frame: 14 });
        assert_eq!(Cheat::ALL.map(|c| c.frames_rendered(10)), [0, 1, 5, 10]);
        assert_eq!(frame_seconds(" Time: 01:02.50 (Saving: 00:00.00)"), Some(62.5));
    }
}
