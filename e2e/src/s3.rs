//! The S3-compatible test server (moto, installed by `scripts/install-deps.sh`) on an address of
//! this machine's choosing: real nodes' pods reach it on the node bridge's address; and a
//! render's storage made on it (bucket, scene, the hub's credentials Secret).

use crate::control_plane::ControlPlane;
use crate::process::ManagedProcess;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use pictor_render_worker::storage::{StorageObject, StorageSettings};
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// A running moto server; stopped when dropped.
pub struct S3TestServer {
    /// `http://<address>:<port>`.
    pub endpoint: String,
    _process: ManagedProcess,
}

impl S3TestServer {
    /// Starts moto listening on `address` (a free port), logging into `log_dir`. Fails, naming
    /// the fix, when moto is not installed.
    pub fn start(address: IpAddr, log_dir: &Path) -> Result<Self, String> {
        let port =
            TcpListener::bind((address, 0)).and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
        let args =
            ["-m", "moto.server", "-H", &address.to_string(), "-p", &port.to_string()].map(String::from);
        let mut process = ManagedProcess::spawn("s3-moto", Path::new("python3"), &args, log_dir)
            .map_err(|e| format!("start moto: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect((address, port)).is_err() {
            if let Some(status) = process.exited() {
                return Err(format!(
                    "moto exited ({status}): {}; scripts/install-deps.sh installs moto[server]",
                    process.log_tail(5)
                ));
            }
            if Instant::now() > deadline {
                return Err(format!("moto did not listen on {address}:{port} within 30 s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(S3TestServer { endpoint: format!("http://{address}:{port}"), _process: process })
    }

    /// Creates a bucket with a plain path-style PUT (moto checks no signature).
    pub fn create_bucket(&self, bucket: &str) -> Result<(), String> {
        let host = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(host).map_err(|e| e.to_string())?;
        write!(
            stream,
            "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| e.to_string())?;
        let mut response = String::new();
        stream.read_to_string(&mut response).map_err(|e| e.to_string())?;
        if response.starts_with("HTTP/1.1 200") {
            Ok(())
        } else {
            Err(format!("creating bucket {bucket}: {response}"))
        }
    }

    /// The settings a client of this server uses, as `NAME=VALUE` environment pairs (moto takes
    /// any keys).
    pub fn environment(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec()
    }

    /// The agent flags that give a member's pods this server.
    pub fn work_env_flags(&self) -> Vec<String> {
        self.environment().into_iter().map(|(k, v)| format!("--work-env={k}={v}")).collect()
    }

    fn settings(&self) -> StorageSettings {
        StorageSettings::from_pairs(self.environment().into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)))
            .expect("known settings")
    }

    /// Writes `bytes` at `url` (`s3://bucket/key`).
    pub async fn put(&self, url: &str, bytes: Vec<u8>) -> Result<(), String> {
        let object = StorageObject::open(url, &self.settings()).map_err(|e| e.to_string())?;
        object.write(bytes.into()).await.map(|_| ()).map_err(|e| e.to_string())
    }

    /// Reads `url`.
    pub async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let object = StorageObject::open(url, &self.settings()).map_err(|e| e.to_string())?;
        object.read().await.map(|b| b.to_vec()).map_err(|e| e.to_string())
    }
}

/// A render's storage on the local network: the S3 test server on `address` with a bucket, the
/// scene `scripts/make-scene.py` makes (`width`×`height`, `frames` frames) stored at `scene`, and
/// on the hub the submitter's credentials Secret `secret` in `default` (what the hub reads the
/// frames with). Members' pods get the server through their agent's `--work-env`.
pub async fn render_store(
    plane: &ControlPlane,
    address: IpAddr,
    scene: &str,
    (width, height, frames): (u32, u32, u32),
    secret: &str,
) -> Result<S3TestServer, String> {
    let s3 = S3TestServer::start(address, plane.run_dir())?;
    let bucket =
        scene.strip_prefix("s3://").and_then(|rest| rest.split('/').next()).ok_or("scene is no s3:// URL")?;
    s3.create_bucket(bucket)?;
    let file = plane.run_dir().join("scene.blend");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-scene.py");
    let made = std::process::Command::new("blender")
        .args(["-b", "--factory-startup", "--python"])
        .arg(&script)
        .arg("--")
        .arg(&file)
        .args([width, height, frames].map(|n| n.to_string()))
        .output()
        .map_err(|e| format!("run blender: {e}; scripts/install-deps.sh installs Debian's blender"))?;
    if !file.exists() {
        return Err(format!("{} made no scene: {}", script.display(), String::from_utf8_lossy(&made.stdout)));
    }
    s3.put(scene, std::fs::read(&file).map_err(|e| e.to_string())?).await?;
    let credentials: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret, "namespace": "default"},
        "stringData": s3.environment().into_iter().collect::<std::collections::BTreeMap<_, _>>(),
    }))
    .map_err(|e| e.to_string())?;
    let hub = plane.hub.client().await.map_err(|e| e.to_string())?;
    Api::<Secret>::namespaced(hub, "default")
        .create(&PostParams::default(), &credentials)
        .await
        .map_err(|e| format!("create Secret {secret}: {e}"))?;
    Ok(s3)
}
