//! The `pictor` CLI end to end on a real local control plane: a hub and one member whose single
//! RTX 4090 (kwok) renders the chunks of a job one after another, so progress moves in steps.
//! The CLI runs as a process, the way a submitter runs it, against the hub's API server.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use pictor_crds::v1alpha1::{Settlement, WorkUnit, WorkUnitPhase};
use pictor_e2e::network::{self, eventually};
use pictor_e2e::{ControlPlane, ControlPlaneOptions, fake_nodes, workspace_binary};
use serde_json::json;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const FRAMES: i64 = 40;

fn pictor(hub_kubeconfig: &Path, args: &[&str]) -> Output {
    let output = Command::new(workspace_binary("pictor-cli", "pictor"))
        .arg("--kubeconfig")
        .arg(hub_kubeconfig)
        .args(args)
        .output()
        .expect("run pictor");
    eprintln!(
        "$ pictor {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A frame's colour, distinct per frame.
fn colour(frame: i64) -> image::Rgb<u8> {
    image::Rgb([(frame * 6) as u8, 255 - (frame * 6) as u8, 128])
}

/// The `N` of the first ` N/TOTAL frames` in a watch line.
fn frames_done(line: &str) -> Option<i64> {
    let before = line.split(&format!("/{FRAMES} frames")).next()?;
    before.rsplit(' ').next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_submits_watches_shows_members_logs_earnings_and_a_contact_sheet() {
    let started = Instant::now();
    let plane = ControlPlane::start(ControlPlaneOptions { members: 1, kube_scheduler: false }).await.unwrap();
    plane.install_crds().await.unwrap();
    let member = &plane.members[0];
    let rtx = fake_nodes::model("rtx4090").unwrap();
    plane.add_nodes(member, fake_nodes::fleet(&member.name, &[(rtx, 1)])).await.unwrap();
    let _operator = network::start_operator(&plane, 30, Some(3), &[]).unwrap();
    let _scheduler = network::start_scheduler(&plane, member).unwrap();
    let agent_kubeconfig = network::agent_kubeconfig_path(&plane, member);
    network::member_add(
        &plane.hub,
        &member.name,
        "0xfeed",
        &["NVIDIA-GeForce-RTX-4090=40000000"],
        &agent_kubeconfig,
    )
    .unwrap();
    let agent = Some(network::start_agent(&plane, member, &agent_kubeconfig, "pictor-scheduler").unwrap());
    network::wait_for_members(&plane, Duration::from_secs(90)).await.unwrap();
    eprintln!("network up in {:?}", started.elapsed());
    let hub = plane.hub.client().await.unwrap();
    let kubeconfig = plane.hub.kubeconfig.clone();
    let frames_dir = tempfile::tempdir().unwrap();
    let output_url = format!("file://{}/", frames_dir.path().display());

    // The API server's CEL rules refuse a reversed range; the CLI says which field to fix.
    let refused = pictor(
        &kubeconfig,
        &[
            "submit",
            "render",
            "backwards",
            "-n",
            "default",
            "--scene",
            "s3://s/x.blend",
            "--frames",
            "10-1",
            "--output",
            "s3://o/",
        ],
    );
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("spec.frames: frames.end must not be before frames.start"), "{message}");
    assert!(message.contains("fix the fields above"), "{message}");

    let submitted = pictor(
        &kubeconfig,
        &[
            "submit",
            "render",
            "shot",
            "-n",
            "default",
            "--scene",
            "s3://scenes/shot.blend",
            "--frames",
            "1-40",
            "--chunk-size",
            "10",
            "--output",
            &output_url,
            "--vendor",
            "nvidia",
            "--max-price-per-gpu-hour",
            "0.5APT",
            "--verification-percent",
            "0",
        ],
    );
    assert!(submitted.status.success());
    assert_eq!(stdout(&submitted).trim(), "renderjob.pictor.network/shot created in namespace default");

    // Not a terminal: one line per change, until the job is done.
    let watch = tokio::process::Command::new(workspace_binary("pictor-cli", "pictor"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["watch", "shot", "-n", "default"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let watched = tokio::time::timeout(Duration::from_secs(180), watch.wait_with_output())
        .await
        .expect("pictor watch exits when the job is done")
        .unwrap();
    assert!(watched.status.success());
    let lines = stdout(&watched);
    eprintln!("$ pictor watch shot\n{lines}");
    let mut progress: Vec<i64> = lines.lines().filter_map(frames_done).collect();
    progress.dedup();
    assert!(progress.windows(2).all(|w| w[0] < w[1]), "progress only grows: {progress:?}");
    assert!(progress.len() >= 3, "progress moved through several values: {progress:?}");
    assert_eq!(progress.last(), Some(&FRAMES));
    let last = lines.lines().last().unwrap();
    assert!(last.starts_with("rj/shot  Succeeded  [####################]  40/40 frames  100%"), "{last}");
    assert!(last.contains(&format!("{} 4 Succeeded", member.name)), "{last}");

    // The member's inventory and record follow the job's end within a few seconds.
    let expected = ["community", "True", "NVIDIA-GeForce-RTX-4090", "1/1", "0.4 APT", "4 ok, 0 failed"];
    eventually("pictor members showing the freed GPU and 4 units done", Duration::from_secs(30), || async {
        let members = pictor(&kubeconfig, &["members"]);
        assert!(members.status.success());
        let table = stdout(&members);
        let row = table.lines().find(|l| l.starts_with(&member.name))?.to_string();
        expected.iter().all(|e| row.contains(e)).then_some(())
    })
    .await;

    // Every unit's log tail reaches the hub through the agent, marked final once the unit ended.
    let member_ns = format!("pictor-member-{}", member.name);
    let units: Vec<WorkUnit> = Api::<WorkUnit>::namespaced(hub.clone(), &member_ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(units.len(), 4);
    let config_maps: Api<ConfigMap> = Api::namespaced(hub.clone(), &member_ns);
    eventually("a final log copy of every unit on the hub", Duration::from_secs(60), || async {
        let list = config_maps.list(&ListParams::default().labels("pictor.network/unit-log")).await.ok()?;
        let finals = list
            .items
            .iter()
            .filter(|c| {
                c.metadata.annotations.as_ref().and_then(|a| a.get("pictor.network/log-final"))
                    == Some(&"true".to_string())
            })
            .count();
        (finals == units.len()).then_some(())
    })
    .await;
    let logs = pictor(&kubeconfig, &["logs", "shot", "-n", "default"]);
    assert!(logs.status.success());
    let text = stdout(&logs);
    assert_eq!(text.matches("==> ").count(), 4, "one section per unit");
    // kwok plays the kubelet's log endpoint: the member's API server serves each unit pod's
    // log, the agent copied it to the hub, and pictor logs prints it.
    assert_eq!(text.matches("fake render: frames written").count(), 4, "{text}");
    assert!(!text.contains("log unavailable"), "{text}");
    let one = units[0].metadata.name.clone().unwrap();
    let single = pictor(&kubeconfig, &["logs", "shot", "-n", "default", "--unit", &one]);
    assert_eq!(stdout(&single).matches("==> ").count(), 1);
    let owner = &config_maps.get(&format!("{one}-log")).await.unwrap().metadata.owner_references.unwrap()[0];
    assert_eq!((owner.kind.as_str(), Some(&owner.uid)), ("WorkUnit", units[0].metadata.uid.as_ref()));

    // Earnings from Settlements (made here as the billing controller would).
    Api::<Namespace>::all(hub.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "pictor-system"}})).unwrap(),
        )
        .await
        .unwrap();
    let settlements: Api<Settlement> = Api::namespaced(hub.clone(), "pictor-system");
    let settlement: Settlement = serde_json::from_value(json!({
        "apiVersion": "pictor.network/v1alpha1", "kind": "Settlement",
        "metadata": {"name": "payout-1"},
        "spec": {"provider": member.name, "payoutAddress": "0xfeed", "amountOctas": 1234, "amount": "0.00001234 APT",
                 "unitCount": 1, "units": [{"namespace": member_ns, "name": one, "uid": units[0].metadata.uid, "amountOctas": 1234}]}
    }))
    .unwrap();
    settlements.create(&PostParams::default(), &settlement).await.unwrap();
    settlements
        .patch_status(
            "payout-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Confirmed", "transactionHash": "0xc0ffee",
                                            "confirmedAt": "2026-11-25T12:00:00Z"}})),
        )
        .await
        .unwrap();
    let earnings = pictor(&kubeconfig, &["earnings", &member.name]);
    assert!(earnings.status.success());
    let text = stdout(&earnings);
    assert!(
        text.lines().any(|l| l.starts_with("payout-1")
            && l.contains("0.00001234 APT")
            && l.contains("Confirmed")
            && l.contains("0xc0ffee")
            && l.contains("2026-11-25T12:00:00Z")),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&pictor(&kubeconfig, &["earnings", "-o", "json"]).stdout).unwrap();
    assert_eq!(json[0]["settlements"][0]["transactionHash"], "0xc0ffee");

    // kwok writes no frames: write real ones, and point the units of the first three chunks at
    // them (the agent is stopped first, so it does not report its own outputs over them).

    drop(agent);
    let mut chunks_with_frames = 0;
    for unit in &units {
        assert_eq!(unit.status.as_ref().unwrap().phase, Some(WorkUnitPhase::Succeeded));
        let first: i64 = unit.spec.frames.split('-').next().unwrap().parse().unwrap();
        if first > 30 {
            continue;
        }
        chunks_with_frames += 1;
        let outputs: Vec<_> = (first..first + 10)
            .map(|frame| {
                let path = frames_dir.path().join(format!("frame_{frame:06}.png"));
                image::RgbImage::from_pixel(128, 72, colour(frame)).save(&path).unwrap();
                json!({"url": format!("file://{}", path.display()), "sha256": "0"})
            })
            .collect();
        Api::<WorkUnit>::namespaced(hub.clone(), &member_ns)
            .patch_status(
                unit.metadata.name.as_deref().unwrap(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"outputs": outputs}})),
            )
            .await
            .unwrap();
    }
    assert_eq!(chunks_with_frames, 3);
    let sheet_path = frames_dir.path().join("sheet.png");
    let preview = pictor(
        &kubeconfig,
        &[
            "preview",
            "shot",
            "-n",
            "default",
            "-o",
            sheet_path.to_str().unwrap(),
            "--columns",
            "10",
            "--thumb-width",
            "64",
        ],
    );
    assert!(preview.status.success());
    assert!(stdout(&preview).contains("30 of 40 frames"), "{}", stdout(&preview));
    let sheet = image::open(&sheet_path).unwrap().to_rgb8();
    // 10 × 4 tiles of 64 × 36 (the frames' 16:9), 4 pixels apart and around.
    assert_eq!(sheet.dimensions(), (4 + 10 * 68, 4 + 4 * 40));
    for frame in 1..=FRAMES {
        let index = (frame - 1) as u32;
        let (x, y) = (4 + (index % 10) * 68, 4 + (index / 10) * 40);
        let centre = *sheet.get_pixel(x + 40, y + 12);
        let expected = if frame <= 30 { colour(frame) } else { image::Rgb([40, 40, 40]) };
        assert_eq!(centre, expected, "tile of frame {frame}");
    }
    // A YAML file of several jobs, judged by the API server without being stored.
    let file = frames_dir.path().join("jobs.yaml");
    std::fs::write(
        &file,
        "apiVersion: pictor.network/v1alpha1\nkind: RenderJob\nmetadata:\n  name: from-file\nspec:\n  \
         scene: s3://s/a.blend\n  frames: {start: 1, end: 10}\n  output: {location: s3://o/}\n---\n\
         apiVersion: pictor.network/v1alpha1\nkind: TrainingJob\nmetadata:\n  name: llm\n  namespace: pictor-system\n\
         spec:\n  image: ghcr.io/x/train:1\n  workers: 2\n",
    )
    .unwrap();
    let dry = pictor(&kubeconfig, &["submit", "-f", file.to_str().unwrap(), "--dry-run", "-n", "default"]);
    assert!(dry.status.success());
    assert_eq!(
        stdout(&dry).lines().collect::<Vec<_>>(),
        [
            "renderjob.pictor.network/from-file created in namespace default (server dry run)",
            "trainingjob.pictor.network/llm created in namespace pictor-system (server dry run)",
        ]
    );
    eprintln!("cli test done in {:?}", started.elapsed());
}
