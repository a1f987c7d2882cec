//! The worker binary end to end: real Blender renders of a tiny scene, stored in a local folder
//! and on a real S3-compatible server, verified against the originals and against altered ones.

mod fixtures;

use fixtures::{MotoServer, blender, run_worker, scene, sha256, stdout_json};
use image::DynamicImage;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::Value;
use std::path::Path;

fn file_url(path: &Path) -> String {
    url::Url::from_file_path(path).unwrap().to_string()
}

/// Inverts a 24×16 patch in the middle of the frame: what a tampered or wrong render looks like.
fn alter_frame(png: &[u8]) -> Vec<u8> {
    let mut frame = image::load_from_memory(png).unwrap().to_rgba8();
    let (cx, cy) = (frame.width() / 2, frame.height() / 2);
    for y in cy - 8..cy + 8 {
        for x in cx - 12..cx + 12 {
            let p = frame.get_pixel_mut(x, y);
            p.0 = [255 - p.0[0], 255 - p.0[1], 255 - p.0[2], p.0[3]];
        }
    }
    let mut out = Vec::new();
    DynamicImage::ImageRgba8(frame)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

#[test]
fn renders_frames_into_a_local_folder_with_their_digests() {
    let Some(blender) = blender() else { return };
    let scene = scene(&blender);
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("job 1/chunk-0");
    let result_file = dir.path().join("termination-log");
    let run = run_worker(
        &[
            "render",
            "--scene",
            &file_url(&scene),
            "--first",
            "1",
            "--last",
            "3",
            "--output",
            &file_url(&output),
            "--format",
            "PNG",
            "--engine",
            "Cycles",
            "--device",
            "auto",
            "--blender",
            blender.to_str().unwrap(),
            "--result-file",
            result_file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(run.status.success(), "render failed");
    let report = stdout_json(&run);
    assert_eq!(report["device"], "CPU", "this machine has no GPU Blender can use");
    assert!(report["renderSeconds"].as_f64().unwrap() > 0.0);
    let frames = report["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 3);
    for (frame, entry) in (1..=3).zip(frames) {
        assert_eq!(entry["frame"], frame);
        let file = output.join(format!("frame_{frame:06}.png"));
        assert_eq!(entry["url"].as_str().unwrap(), file_url(&file));
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(entry["sha256"].as_str().unwrap(), sha256(&bytes), "digest of frame {frame}");
        let image = image::load_from_memory(&bytes).unwrap();
        assert_eq!((image.width(), image.height()), (64, 36));
    }
    // The cube turns between frames: three different images, not one copied thrice.
    assert_ne!(frames[0]["sha256"], frames[2]["sha256"]);
    let termination: Value = serde_json::from_str(&std::fs::read_to_string(&result_file).unwrap()).unwrap();
    assert_eq!(termination, report);
}

#[tokio::test]
async fn renders_from_and_to_an_s3_server_and_verifies_there() {
    let Some(blender) = blender() else { return };
    let Some(moto) = MotoServer::start() else { return };
    moto.create_bucket("renders");
    let bucket = moto.bucket("renders");
    bucket
        .put(
            &ObjectPath::from("scenes/cube.blend"),
            PutPayload::from(std::fs::read(scene(&blender)).unwrap()),
        )
        .await
        .unwrap();

    // Credentials as a mounted Secret gives them: one file per key, beside Kubernetes' own
    // hidden entries.
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::create_dir_all(credentials.join("..2026_11_25_data")).unwrap();
    for (name, value) in moto.environment() {
        std::fs::write(credentials.join(name), format!("{value}\n")).unwrap();
    }
    let result_file = dir.path().join("result.json");
    let run = run_worker(
        &[
            "render",
            "--scene",
            "s3://renders/scenes/cube.blend",
            "--first",
            "1",
            "--last",
            "3",
            "--output",
            "s3://renders/job-1/chunk-0",
            "--engine",
            "Cycles",
            "--blender",
            blender.to_str().unwrap(),
            "--credentials-dir",
            credentials.to_str().unwrap(),
            "--result-file",
            result_file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(run.status.success(), "render to S3 failed");
    let report = stdout_json(&run);
    let frames = report["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 3);
    for (frame, entry) in (1..=3).zip(frames) {
        let key = format!("job-1/chunk-0/frame_{frame:06}.png");
        assert_eq!(entry["url"].as_str().unwrap(), format!("s3://renders/{key}"));
        let stored = bucket.get(&ObjectPath::from(key.as_str())).await.unwrap().bytes().await.unwrap();
        assert_eq!(entry["sha256"].as_str().unwrap(), sha256(&stored), "digest of {key}");
    }
    assert_eq!(
        serde_json::from_str::<Value>(&std::fs::read_to_string(&result_file).unwrap()).unwrap(),
        report
    );

    // Verification with the credentials in environment variables this time.
    let environment = moto.environment();
    let environment: Vec<(&str, &str)> = environment.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = run_worker(
        &[
            "verify",
            "--scene",
            "s3://renders/scenes/cube.blend",
            "--frame",
            "2",
            "--original",
            "s3://renders/job-1/chunk-0/frame_000002.png",
            "--blender",
            blender.to_str().unwrap(),
            "--result-file",
            result_file.to_str().unwrap(),
        ],
        &environment,
    );
    assert!(run.status.success(), "verify on S3 failed");
    let verdict = stdout_json(&run);
    assert_eq!(verdict["passed"], true, "{verdict}");
    assert_eq!(verdict["sha256"], frames[1]["sha256"]);

    // Without AWS_ALLOW_HTTP the plain-http endpoint is refused with what to set.
    let without_allow: Vec<(&str, &str)> =
        environment.iter().copied().filter(|(k, _)| *k != "AWS_ALLOW_HTTP").collect();
    let run = run_worker(
        &[
            "verify",
            "--scene",
            "s3://renders/scenes/cube.blend",
            "--frame",
            "2",
            "--original",
            "s3://renders/job-1/chunk-0/frame_000002.png",
            "--result-file",
            result_file.to_str().unwrap(),
        ],
        &without_allow,
    );
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("AWS_ALLOW_HTTP=true"));
}

#[test]
fn verification_passes_the_original_and_catches_an_altered_frame() {
    let Some(blender) = blender() else { return };
    let scene = file_url(&scene(&blender));
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out");
    let result_file = dir.path().join("result.json");
    let blender = blender.to_str().unwrap();
    let result = result_file.to_str().unwrap();
    let run = run_worker(
        &[
            "render",
            "--scene",
            &scene,
            "--first",
            "2",
            "--last",
            "2",
            "--output",
            &file_url(&output),
            "--blender",
            blender,
            "--result-file",
            result,
        ],
        &[],
    );
    assert!(run.status.success(), "render failed");
    let original = output.join("frame_000002.png");
    let original_url = file_url(&original);
    let verify = || {
        let run = run_worker(
            &[
                "verify",
                "--scene",
                &scene,
                "--frame",
                "2",
                "--original",
                &original_url,
                "--threshold-db",
                "30",
                "--blender",
                blender,
                "--result-file",
                result,
            ],
            &[],
        );
        assert!(run.status.success(), "a verdict, pass or fail, exits 0");
        let verdict = stdout_json(&run);
        let message = std::fs::read_to_string(&result_file).unwrap();
        assert_eq!(verdict, serde_json::from_str::<Value>(&message).unwrap());
        let report = pictor_crds::contract::VerificationReport::from_message(&message)
            .expect("the hub reads the termination message as a typed report");
        assert_eq!(report.passed, verdict["passed"]);
        verdict
    };

    let verdict = verify();
    assert_eq!(verdict["frame"], 2);
    assert_eq!(verdict["passed"], true, "{verdict}");
    assert!(verdict["psnrDb"].as_f64().unwrap() >= 30.0, "{verdict}");
    assert_eq!(verdict["sha256"].as_str().unwrap(), sha256(&std::fs::read(&original).unwrap()));

    let altered = alter_frame(&std::fs::read(&original).unwrap());
    std::fs::write(&original, &altered).unwrap();
    let verdict = verify();
    assert_eq!(verdict["passed"], false, "{verdict}");
    let psnr = verdict["psnrDb"].as_f64().unwrap();
    assert!(psnr < 30.0, "an inverted patch must be far below the threshold: {psnr} dB");
    assert_eq!(verdict["sha256"].as_str().unwrap(), sha256(&altered));

    // Another frame delivered in place of this one fails too.
    let run = run_worker(
        &[
            "render",
            "--scene",
            &scene,
            "--first",
            "20",
            "--last",
            "20",
            "--output",
            &file_url(&output),
            "--blender",
            blender,
            "--result-file",
            result,
        ],
        &[],
    );
    assert!(run.status.success());
    std::fs::copy(output.join("frame_000020.png"), &original).unwrap();
    assert_eq!(verify()["passed"], false);
}

#[test]
fn a_report_too_big_for_a_termination_message_is_stored_as_a_manifest() {
    let Some(blender) = blender() else { return };
    let scene = file_url(&scene(&blender));
    let dir = tempfile::tempdir().unwrap();
    // A long folder name makes every frame's URL long, so that 24 frames overflow 4096 bytes.
    let output = dir
        .path()
        .join("a-project-with-a-rather-long-name/shot-042-the-long-corridor/render-job-7f3c9a/chunk-0003");
    let result_file = dir.path().join("result.json");
    let run = run_worker(
        &[
            "render",
            "--scene",
            &scene,
            "--first",
            "1",
            "--last",
            "24",
            "--output",
            &file_url(&output),
            "--blender",
            blender.to_str().unwrap(),
            "--result-file",
            result_file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(run.status.success(), "render failed");
    let report = stdout_json(&run);
    assert_eq!(report["frames"].as_array().unwrap().len(), 24);
    assert!(serde_json::to_string(&report).unwrap().len() > 4096, "the test must overflow the limit");

    let termination = std::fs::read_to_string(&result_file).unwrap();
    assert!(termination.len() <= 4096, "{} bytes", termination.len());
    let termination: Value = serde_json::from_str(&termination).unwrap();
    assert_eq!(termination["frames"], 24);
    let manifest_file = output.join("manifest_1_24.json");
    assert_eq!(termination["manifest"]["url"].as_str().unwrap(), file_url(&manifest_file));
    let manifest = std::fs::read(&manifest_file).unwrap();
    assert_eq!(termination["manifest"]["sha256"].as_str().unwrap(), sha256(&manifest));
    assert_eq!(serde_json::from_slice::<Value>(&manifest).unwrap(), report);
}

/// A Blender that exits 0 having written only the first frame: a crash the exit code hides (the
/// scene is its fourth argument).
#[cfg(unix)]
#[test]
fn a_frame_blender_did_not_write_fails_the_chunk() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let fake_blender = dir.path().join("blender");
    std::fs::write(&fake_blender, "#!/bin/sh\n: > \"$(dirname \"$4\")/frame_000001.png\"\nexit 0\n").unwrap();
    std::fs::set_permissions(&fake_blender, std::fs::Permissions::from_mode(0o755)).unwrap();
    let scene = dir.path().join("scene.blend");
    std::fs::write(&scene, "not really a scene").unwrap();
    let result_file = dir.path().join("result.json");
    let run = run_worker(
        &[
            "render",
            "--scene",
            scene.to_str().unwrap(),
            "--first",
            "1",
            "--last",
            "2",
            "--output",
            dir.path().join("out").to_str().unwrap(),
            "--device",
            "cpu",
            "--blender",
            fake_blender.to_str().unwrap(),
            "--result-file",
            result_file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!run.status.success());
    assert!(run.stdout.is_empty(), "no result on stdout for a failed chunk");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("without writing frame 2"), "{stderr}");
    let failure: Value = serde_json::from_str(&std::fs::read_to_string(&result_file).unwrap()).unwrap();
    assert!(failure["error"].as_str().unwrap().contains("frame 2"), "{failure}");
    assert!(!dir.path().join("out/frame_000001.png").exists(), "nothing is stored for a failed chunk");
}

#[test]
fn a_missing_scene_or_original_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.blend");
    let result = dir.path().join("result.json");
    let run = run_worker(
        &[
            "render",
            "--scene",
            missing.to_str().unwrap(),
            "--first",
            "1",
            "--last",
            "1",
            "--output",
            dir.path().to_str().unwrap(),
            "--result-file",
            result.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains(&format!("{} does not exist", file_url(&missing))));

    let run = run_worker(
        &[
            "verify",
            "--scene",
            missing.to_str().unwrap(),
            "--frame",
            "1",
            "--original",
            "file:///nowhere/frame_000001.png",
            "--result-file",
            result.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!run.status.success(), "no verdict without the original");
    assert!(String::from_utf8_lossy(&run.stderr).contains("file:///nowhere/frame_000001.png does not exist"));

    let run = run_worker(
        &["render", "--scene", "x", "--first", "1", "--last", "1", "--output", "y", "--format", "GIF"],
        &[],
    );
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("PNG, OPEN_EXR, JPEG, TIFF"));
}

/// Deleting the pod sends SIGTERM: the worker stops at once, says why, and takes Blender down
/// with it instead of leaving it rendering for nobody.
#[cfg(unix)]
#[test]
fn sigterm_stops_the_worker_and_its_blender() {
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("blender.pid");
    let fake_blender = dir.path().join("blender");
    std::fs::write(&fake_blender, "#!/bin/sh\necho $$ > \"$PICTOR_TEST_PID_FILE\"\nexec sleep 60\n").unwrap();
    std::fs::set_permissions(&fake_blender, std::fs::Permissions::from_mode(0o755)).unwrap();
    let scene = dir.path().join("scene.blend");
    std::fs::write(&scene, "a scene").unwrap();
    let result_file = dir.path().join("result.json");
    let mut worker = std::process::Command::new(env!("CARGO_BIN_EXE_pictor-render-worker"))
        .args([
            "render",
            "--scene",
            scene.to_str().unwrap(),
            "--first",
            "1",
            "--last",
            "1",
            "--device",
            "cpu",
        ])
        .args(["--output", dir.path().join("out").to_str().unwrap()])
        .args(["--blender", fake_blender.to_str().unwrap(), "--result-file", result_file.to_str().unwrap()])
        .env("PICTOR_TEST_PID_FILE", &pid_file)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let blender_pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file).ok().filter(|p| p.ends_with('\n')) {
            break pid.trim().to_string();
        }
        assert!(Instant::now() < deadline, "the fake Blender never started");
        std::thread::sleep(Duration::from_millis(50));
    };
    let sent = std::process::Command::new("kill").args(["-TERM", &worker.id().to_string()]).status().unwrap();
    assert!(sent.success());

    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = worker.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = worker.kill();
            panic!("the worker ignored SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Blender is gone (or a zombie waiting for its new parent to reap it).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{blender_pid}/stat")).unwrap_or_default();
        let running = stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'));
        if !running {
            break;
        }
        if Instant::now() > deadline {
            let _ = std::process::Command::new("kill").args(["-KILL", &blender_pid]).status();
            panic!("Blender (pid {blender_pid}) outlived the worker");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!status.success());
    let failure: Value = serde_json::from_str(&std::fs::read_to_string(&result_file).unwrap()).unwrap();
    assert!(failure["error"].as_str().unwrap().contains("SIGTERM"), "{failure}");
}

#[test]
fn a_scene_over_http_renders_to_open_exr_and_verifies() {
    let Some(blender) = blender() else { return };
    let scene = scene(&blender);
    let Some(server) = fixtures::HttpFolderServer::start(scene.parent().unwrap()) else { return };
    let scene_url = format!("{}/{}", server.url, scene.file_name().unwrap().to_str().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("exr");
    let result_file = dir.path().join("result.json");
    let blender = blender.to_str().unwrap();
    let result = result_file.to_str().unwrap();
    let run = run_worker(
        &[
            "render",
            "--scene",
            &scene_url,
            "--first",
            "5",
            "--last",
            "5",
            "--output",
            output.to_str().unwrap(),
            "--format",
            "OPEN_EXR",
            "--blender",
            blender,
            "--result-file",
            result,
        ],
        &[],
    );
    assert!(run.status.success(), "render from http failed");
    let frame = output.join("frame_000005.exr");
    assert_eq!(
        stdout_json(&run)["frames"][0]["sha256"].as_str().unwrap(),
        sha256(&std::fs::read(&frame).unwrap())
    );

    let run = run_worker(
        &[
            "verify",
            "--scene",
            &scene_url,
            "--frame",
            "5",
            "--original",
            frame.to_str().unwrap(),
            "--blender",
            blender,
            "--result-file",
            result,
        ],
        &[],
    );
    assert!(run.status.success(), "verify failed");
    assert_eq!(stdout_json(&run)["passed"], true);
}

/// A scene that carries Python set to run when the file loads (a registered text block, the way
/// add-ons and rigs ship scripts) writes `marker` if it ever runs.
fn scene_with_autorun_script(blender: &Path, dir: &Path, marker: &Path) -> std::path::PathBuf {
    let armed = dir.join("armed.blend");
    let script = format!(
        "import bpy\n\
         text = bpy.data.texts.new('autorun.py')\n\
         text.write('open({marker:?}, \"w\").write(\"ran\")\\n')\n\
         text.use_module = True\n\
         bpy.ops.wm.save_as_mainfile(filepath={armed:?})\n",
        marker = marker.to_str().unwrap(),
        armed = armed.to_str().unwrap(),
    );
    let made = std::process::Command::new(blender)
        .args(["-b", "--factory-startup"])
        .arg(scene(blender))
        .args(["--python-expr", &script])
        .output()
        .unwrap();
    assert!(armed.exists(), "Blender saved no armed scene: {}", String::from_utf8_lossy(&made.stdout));
    assert!(!marker.exists(), "saving the scene ran its script");
    armed
}

#[test]
fn python_in_a_submitted_scene_never_runs() {
    let Some(blender) = blender() else { return };
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("the-scene-ran-code");
    let armed = scene_with_autorun_script(&blender, dir.path(), &marker);
    // The control: with Blender's auto-run allowed, loading the scene runs its script, so the
    // scene is armed and the check below can fail.
    let allowed = std::process::Command::new(&blender)
        .args(["-b", "--factory-startup", "--enable-autoexec"])
        .arg(&armed)
        .args(["--python-expr", "pass"])
        .output()
        .unwrap();
    assert!(
        marker.exists(),
        "the armed scene did not run its script even with --enable-autoexec: {}",
        String::from_utf8_lossy(&allowed.stdout)
    );
    std::fs::remove_file(&marker).unwrap();

    let output = dir.path().join("out");
    let run = run_worker(
        &[
            "render",
            "--scene",
            &file_url(&armed),
            "--first",
            "1",
            "--last",
            "1",
            "--output",
            &file_url(&output),
            "--format",
            "PNG",
            "--engine",
            "Cycles",
            "--device",
            "auto",
            "--blender",
            blender.to_str().unwrap(),
        ],
        &[],
    );
    assert!(run.status.success(), "render failed");
    assert!(output.join("frame_000001.png").exists(), "the frame was rendered");
    assert!(!marker.exists(), "the worker's Blender ran the scene's script");
}
