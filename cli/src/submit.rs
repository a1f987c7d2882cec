//! `pictor submit`: a RenderJob or TrainingJob from flags, or the jobs of a YAML file, applied
//! with server-side apply under the field manager `pictor-cli`.
//!
//! Only the flags given become fields, so the submitter owns exactly what they said and the
//! operator's defaults fill the rest. The API server's CEL rules judge the object; a refusal is
//! printed field by field with what to fix.

use super::{CliError, FIELD_MANAGER, Hub};
use clap::{Args, Subcommand};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use pictor_crds::contract::OCTAS_PER_APT;
use pictor_crds::v1alpha1::{RenderJob, TrainingJob};
use serde_json::{Map, Value, json};
use std::path::PathBuf;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(super) struct SubmitArgs {
    /// YAML file with one or more RenderJob / TrainingJob documents (`-` reads standard input).
    #[arg(long, short = 'f')]
    file: Option<PathBuf>,
    /// Let the API server judge the objects without storing them.
    #[arg(long, global = true)]
    dry_run: bool,
    #[command(subcommand)]
    kind: Option<SubmitKind>,
}

#[derive(Subcommand)]
enum SubmitKind {
    /// A Blender render split into chunks of frames.
    Render(RenderFlags),
    /// A torchrun gang on one member.
    Training(TrainingFlags),
}

/// GPU needs, budget and tier: what both kinds of job share.
#[derive(Args)]
struct SharedFlags {
    /// GPU vendor: any, nvidia or amd.
    #[arg(long)]
    vendor: Option<String>,
    /// Allowed GPU model, as `pictor.network/gpu.product` names it (repeatable).
    #[arg(long = "model")]
    models: Vec<String>,
    /// Least memory per GPU, in GiB.
    #[arg(long)]
    min_memory_gib: Option<i64>,
    /// GPUs per pod (per chunk, or per worker).
    #[arg(long)]
    gpus: Option<i64>,
    /// Highest price per GPU-hour: octas, or APT written as `0.9APT`.
    #[arg(long, value_parser = parse_octas)]
    max_price_per_gpu_hour: Option<i64>,
    /// Most the whole job may cost: octas, or APT written as `2.5APT`.
    #[arg(long, value_parser = parse_octas)]
    budget: Option<i64>,
    /// Which providers may run it: any, community or partner.
    #[arg(long)]
    tier: Option<String>,
    /// Secret in the job's namespace with object-storage credentials.
    #[arg(long)]
    credentials_secret: Option<String>,
}

#[derive(Args)]
struct RenderFlags {
    /// Name of the RenderJob.
    name: String,
    /// URL of the `.blend` scene.
    #[arg(long)]
    scene: String,
    /// Frames: START-END, optionally `:STEP` (e.g. `1-240` or `1-240:2`).
    #[arg(long, value_parser = parse_frames)]
    frames: (i64, i64, Option<i64>),
    /// Frames per WorkUnit.
    #[arg(long)]
    chunk_size: Option<i64>,
    /// URL of the folder the frames are written to.
    #[arg(long)]
    output: String,
    /// Image format: PNG, OPEN_EXR, JPEG or TIFF.
    #[arg(long)]
    format: Option<String>,
    /// Blender engine: Cycles or Eevee.
    #[arg(long)]
    engine: Option<String>,
    /// Container image with Blender and the render worker.
    #[arg(long)]
    image: Option<String>,
    /// Finish before this time (RFC 3339).
    #[arg(long)]
    deadline: Option<String>,
    /// Percent of chunks verified by a second provider.
    #[arg(long)]
    verification_percent: Option<i64>,
    /// Attempts per chunk before it fails.
    #[arg(long)]
    retries_per_chunk: Option<i64>,
    #[command(flatten)]
    shared: SharedFlags,
}

#[derive(Args)]
struct TrainingFlags {
    /// Name of the TrainingJob.
    name: String,
    /// Container image with the training code.
    #[arg(long)]
    image: String,
    /// Worker pods (torchrun nodes).
    #[arg(long)]
    workers: i64,
    /// Environment for every worker: NAME=VALUE (repeatable).
    #[arg(long = "env")]
    env: Vec<String>,
    /// URL of the dataset.
    #[arg(long)]
    dataset: Option<String>,
    /// URL of the checkpoint folder.
    #[arg(long)]
    checkpoint: Option<String>,
    /// OnFailure, ExitCode or Never.
    #[arg(long)]
    restart_policy: Option<String>,
    /// Gang restarts before the job fails.
    #[arg(long)]
    restart_limit: Option<i64>,
    /// Rendezvous port of worker 0.
    #[arg(long)]
    master_port: Option<i64>,
    #[command(flatten)]
    shared: SharedFlags,
    /// The entrypoint and its arguments, after `--` (e.g. `-- torchrun train.py`).
    #[arg(last = true)]
    command: Vec<String>,
}

/// An amount of money as octas: a whole number of octas, or APT with up to 8 decimals followed
/// by `APT` (exactly, without floating point).
pub fn parse_octas(text: &str) -> Result<i64, String> {
    let trimmed = text.trim();
    let lower = trimmed.to_ascii_lowercase();
    let Some(apt) = lower.strip_suffix("apt").map(str::trim) else {
        return trimmed
            .parse::<i64>()
            .map_err(|_| format!("{text:?}: write whole octas (90000000) or APT (0.9APT)"));
    };
    let (whole, fraction) = apt.split_once('.').unwrap_or((apt, ""));
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !digits_only(whole) || !digits_only(fraction) {
        return Err(format!("{text:?} is not an amount of APT such as 0.9APT"));
    }
    if fraction.len() > 8 {
        return Err(format!("{text:?}: APT has at most 8 decimals (1 octa = 0.00000001 APT)"));
    }
    let whole: i64 =
        if whole.is_empty() { 0 } else { whole.parse().map_err(|_| format!("{text:?} is too large"))? };
    let fraction: i64 = format!("{fraction:0<8}").parse().unwrap_or(0);
    whole
        .checked_mul(OCTAS_PER_APT as i64)
        .and_then(|w| w.checked_add(fraction))
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// `START-END[:STEP]`.
fn parse_frames(text: &str) -> Result<(i64, i64, Option<i64>), String> {
    let bad = || format!("{text:?}: write frames as START-END or START-END:STEP, e.g. 1-240");
    let (range, step) = match text.split_once(':') {
        Some((range, step)) => (range, Some(step.parse().map_err(|_| bad())?)),
        None => (text, None),
    };
    let (start, end) = range.split_once('-').ok_or_else(bad)?;
    Ok((start.trim().parse().map_err(|_| bad())?, end.trim().parse().map_err(|_| bad())?, step))
}

fn insert<T: Into<Value>>(map: &mut Map<String, Value>, key: &str, value: Option<T>) {
    if let Some(value) = value {
        map.insert(key.to_string(), value.into());
    }
}

fn shared_fields(spec: &mut Map<String, Value>, shared: SharedFlags) {
    let mut gpu = Map::new();
    insert(&mut gpu, "vendor", shared.vendor);
    if !shared.models.is_empty() {
        gpu.insert("models".into(), json!(shared.models));
    }
    insert(&mut gpu, "minMemoryGiB", shared.min_memory_gib);
    insert(&mut gpu, "count", shared.gpus);
    if !gpu.is_empty() {
        spec.insert("gpu".into(), Value::Object(gpu));
    }
    let mut budget = Map::new();
    insert(&mut budget, "maxPricePerGpuHour", shared.max_price_per_gpu_hour);
    insert(&mut budget, "maxTotal", shared.budget);
    if !budget.is_empty() {
        spec.insert("budget".into(), Value::Object(budget));
    }
    insert(spec, "tier", shared.tier);
    insert(spec, "credentialsSecret", shared.credentials_secret);
}

fn job_document(kind: &str, name: &str, spec: Map<String, Value>) -> Value {
    json!({
        "apiVersion": "pictor.network/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    })
}

fn render_document(flags: RenderFlags) -> Value {
    let mut spec = Map::new();
    spec.insert("scene".into(), json!(flags.scene));
    let (start, end, step) = flags.frames;
    let mut frames = json!({"start": start, "end": end});
    if let Some(step) = step {
        frames["step"] = json!(step);
    }
    spec.insert("frames".into(), frames);
    insert(&mut spec, "chunkSize", flags.chunk_size);
    let mut output = json!({"location": flags.output});
    if let Some(format) = flags.format {
        output["format"] = json!(format);
    }
    spec.insert("output".into(), output);
    let mut renderer = Map::new();
    insert(&mut renderer, "engine", flags.engine);
    insert(&mut renderer, "image", flags.image);
    if !renderer.is_empty() {
        spec.insert("renderer".into(), Value::Object(renderer));
    }
    insert(&mut spec, "deadline", flags.deadline);
    insert(&mut spec, "verificationPercent", flags.verification_percent);
    insert(&mut spec, "retriesPerChunk", flags.retries_per_chunk);
    shared_fields(&mut spec, flags.shared);
    job_document("RenderJob", &flags.name, spec)
}

fn training_document(flags: TrainingFlags) -> Result<Value, CliError> {
    let mut spec = Map::new();
    spec.insert("image".into(), json!(flags.image));
    spec.insert("workers".into(), json!(flags.workers));
    if !flags.command.is_empty() {
        spec.insert("command".into(), json!(flags.command));
    }
    let env = flags
        .env
        .iter()
        .map(|pair| {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| CliError::Usage(format!("--env {pair:?}: write NAME=VALUE")))?;
            Ok(json!({"name": name, "value": value}))
        })
        .collect::<Result<Vec<_>, CliError>>()?;
    if !env.is_empty() {
        spec.insert("env".into(), json!(env));
    }
    insert(&mut spec, "dataset", flags.dataset);
    insert(&mut spec, "checkpoint", flags.checkpoint);
    insert(&mut spec, "restartPolicy", flags.restart_policy);
    insert(&mut spec, "restartLimit", flags.restart_limit);
    insert(&mut spec, "masterPort", flags.master_port);
    shared_fields(&mut spec, flags.shared);
    Ok(job_document("TrainingJob", &flags.name, spec))
}

/// The documents of a YAML stream, empty documents skipped.
pub fn yaml_documents(text: &str) -> Result<Vec<Value>, String> {
    use serde::Deserialize;
    let mut documents = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(document).map_err(|e| format!("document {}: {e}", index + 1))?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

/// The refusal of the API server as a person fixes it: one line per field, without the
/// schema's echo of the whole value.
pub fn describe_refusal(kind: &str, namespace: &str, name: &str, status: &kube::core::Status) -> String {
    let causes: Vec<String> = status
        .details
        .as_ref()
        .map(|d| {
            d.causes
                .iter()
                .map(|c| {
                    let message = without_value_echo(&c.message);
                    if c.field.is_empty() {
                        format!("  - {message}")
                    } else {
                        format!("  - {}: {message}", c.field)
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let mut text = format!("the hub refused {kind} {namespace}/{name}");
    if status.code == 409 {
        text.push_str(&format!(
            ": {}\n  another field manager owns these fields; change them where they were set, \
             or delete the job and submit it again",
            status.message
        ));
        return text;
    }
    if causes.is_empty() {
        text.push_str(&format!(": {}", status.message));
    } else {
        text.push_str(":\n");
        text.push_str(&causes.join("\n"));
    }
    text.push_str("\nfix the fields above and submit again");
    text
}

/// `Invalid value: "object": frames.end …` → `frames.end …`. The API server echoes the value
/// quoted, as JSON, or not at all (newer CEL errors); only a recognisable echo is dropped.
fn without_value_echo(message: &str) -> &str {
    let Some(rest) = message.strip_prefix("Invalid value: ") else { return message };
    if let Some(quoted) = rest.strip_prefix('"')
        && let Some(end) = quoted.find("\": ")
    {
        return &quoted[end + 3..];
    }
    match rest.split_once(": ") {
        Some((value, detail)) if serde_json::from_str::<Value>(value).is_ok() => detail,
        _ => rest,
    }
}

fn resource_of(kind: &str) -> Option<ApiResource> {
    match kind {
        "RenderJob" => Some(ApiResource::erase::<RenderJob>(&())),
        "TrainingJob" => Some(ApiResource::erase::<TrainingJob>(&())),
        _ => None,
    }
}

/// Applies one job document; returns what kubectl would print for it.
async fn apply(hub: &Hub, mut document: Value, dry_run: bool) -> Result<String, CliError> {
    let kind = document["kind"].as_str().unwrap_or_default().to_string();
    let api_version = document["apiVersion"].as_str().unwrap_or_default();
    let resource = resource_of(&kind).filter(|_| api_version == "pictor.network/v1alpha1").ok_or_else(|| {
        CliError::Usage(format!(
            "pictor submit takes pictor.network/v1alpha1 RenderJob and TrainingJob documents, not {api_version} {kind:?}"
        ))
    })?;
    let name = document["metadata"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| CliError::Usage(format!("a {kind} needs metadata.name")))?
        .to_string();
    let namespace = match document["metadata"]["namespace"].as_str() {
        Some(ns) => ns.to_string(),
        None => {
            document["metadata"]["namespace"] = json!(hub.namespace);
            hub.namespace.clone()
        }
    };
    let api: Api<DynamicObject> = Api::namespaced_with(hub.client.clone(), &namespace, &resource);
    let before = api.get_opt(&name).await.map_err(super::hub(format!("read {kind} {namespace}/{name}")))?;
    let mut params = PatchParams::apply(FIELD_MANAGER);
    params.dry_run = dry_run;
    let after = match api.patch(&name, &params, &Patch::Apply(&document)).await {
        Ok(after) => after,
        Err(kube::Error::Api(status)) if matches!(status.code, 400 | 409 | 422) => {
            return Err(CliError::Refused(describe_refusal(&kind, &namespace, &name, &status)));
        }
        Err(e) => return Err(CliError::Hub { what: format!("apply {kind} {namespace}/{name}"), source: e }),
    };
    let verb = match before {
        None => "created",
        Some(b) if b.metadata.resource_version == after.metadata.resource_version => "unchanged",
        Some(_) => "configured",
    };
    let dry = if dry_run { " (server dry run)" } else { "" };
    Ok(format!("{}.pictor.network/{name} {verb} in namespace {namespace}{dry}", kind.to_lowercase()))
}

pub(super) async fn run(hub: &Hub, args: SubmitArgs) -> Result<(), CliError> {
    let documents = match (args.file, args.kind) {
        (Some(path), None) => {
            let text = if path.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())
            } else {
                std::fs::read_to_string(&path)
            }
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
            let documents =
                yaml_documents(&text).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
            if documents.is_empty() {
                return Err(CliError::Usage(format!("{} holds no document", path.display())));
            }
            documents
        }
        (None, Some(SubmitKind::Render(flags))) => vec![render_document(flags)],
        (None, Some(SubmitKind::Training(flags))) => vec![training_document(flags)?],
        _ => {
            return Err(CliError::Usage(
                "say what to submit: `pictor submit render …`, `pictor submit training …` or `pictor submit -f FILE`"
                    .into(),
            ));
        }
    };
    let mut refusals = Vec::new();
    for document in documents {
        match apply(hub, document, args.dry_run).await {
            Ok(line) => println!("{line}"),
            Err(e @ CliError::Refused(_)) => {
                eprintln!("error: {e}");
                refusals.push(e);
            }
            Err(e) => return Err(e),
        }
    }
    match refusals.len() {
        0 => Ok(()),
        1 => Err(CliError::Refused("1 job was refused".into())),
        n => Err(CliError::Refused(format!("{n} jobs were refused"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;
    use kube::core::response::StatusDetails;

    #[test]
    fn money_is_octas_or_exact_apt() {
        assert_eq!(parse_octas("90000000"), Ok(90_000_000));
        assert_eq!(parse_octas("0.9APT"), Ok(90_000_000));
        assert_eq!(parse_octas("2.5 apt"), Ok(250_000_000));
        assert_eq!(parse_octas("0.00000001APT"), Ok(1));
        assert_eq!(parse_octas(".5APT"), Ok(50_000_000));
        assert!(parse_octas("0.000000001APT").unwrap_err().contains("8 decimals"));
        assert!(parse_octas("1.5").is_err(), "a bare fraction is neither octas nor APT");
        assert!(parse_octas("APT").is_err());
    }

    #[test]
    fn frames_read_as_start_end_and_step() {
        assert_eq!(parse_frames("1-240"), Ok((1, 240, None)));
        assert_eq!(parse_frames("10-20:2"), Ok((10, 20, Some(2))));
        assert!(parse_frames("240").is_err());
    }

    #[test]
    fn flags_become_only_the_fields_given() {
        use clap::Parser;
        #[derive(Parser)]
        struct Test {
            #[command(subcommand)]
            kind: SubmitKind,
        }
        let cli = Test::parse_from([
            "t",
            "render",
            "shot",
            "--scene",
            "s3://s/a.blend",
            "--frames",
            "1-48:2",
            "--output",
            "s3://o/",
            "--vendor",
            "nvidia",
            "--model",
            "NVIDIA-H100-80GB-HBM3",
            "--gpus",
            "2",
            "--budget",
            "1.5APT",
        ]);
        let SubmitKind::Render(flags) = cli.kind else { panic!("render") };
        let document = render_document(flags);
        assert_eq!(
            document,
            json!({
                "apiVersion": "pictor.network/v1alpha1", "kind": "RenderJob", "metadata": {"name": "shot"},
                "spec": {"scene": "s3://s/a.blend", "frames": {"start": 1, "end": 48, "step": 2},
                         "output": {"location": "s3://o/"},
                         "gpu": {"vendor": "nvidia", "models": ["NVIDIA-H100-80GB-HBM3"], "count": 2},
                         "budget": {"maxTotal": 150_000_000}}
            })
        );
        let cli = Test::parse_from([
            "t",
            "training",
            "llm",
            "--image",
            "ghcr.io/x/train:1",
            "--workers",
            "4",
            "--env",
            "EPOCHS=3",
            "--",
            "torchrun",
            "train.py",
        ]);
        let SubmitKind::Training(flags) = cli.kind else { panic!("training") };
        let spec = training_document(flags).unwrap()["spec"].clone();
        assert_eq!(spec["command"], json!(["torchrun", "train.py"]));
        assert_eq!(spec["env"], json!([{"name": "EPOCHS", "value": "3"}]));
        assert_eq!(spec["workers"], json!(4));
    }

    #[test]
    fn a_yaml_stream_yields_each_document() {
        let docs = yaml_documents("kind: RenderJob\n---\n---\nkind: TrainingJob\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["kind"], "TrainingJob");
        assert!(yaml_documents("kind: [").is_err());
    }

    #[test]
    fn a_refusal_lists_each_field_with_the_rules_message() {
        let mut status = Status::failure(
            "RenderJob.pictor.network \"shot\" is invalid: spec.frames: Invalid value: \"object\": frames.end must not be before frames.start",
            "Invalid",
        )
        .with_code(422);
        status.details = Some(serde_json::from_value::<StatusDetails>(json!({
            "name": "shot", "group": "pictor.network", "kind": "RenderJob",
            "causes": [{"reason": "FieldValueInvalid", "field": "spec.frames",
                        "message": "Invalid value: \"object\": frames.end must not be before frames.start"}]
        })).unwrap());
        let text = describe_refusal("RenderJob", "default", "shot", &status);
        assert_eq!(
            text,
            "the hub refused RenderJob default/shot:\n  - spec.frames: frames.end must not be before frames.start\n\
             fix the fields above and submit again"
        );
        assert_eq!(without_value_echo("Invalid value: 0: must be at least 1"), "must be at least 1");
        assert_eq!(without_value_echo("Required value"), "Required value");
        assert_eq!(without_value_echo("Invalid value: {\"a\":1}: no"), "no");
        assert_eq!(
            without_value_echo("Invalid value: frames.end must not be before frames.start: start to end"),
            "frames.end must not be before frames.start: start to end"
        );
    }
}
