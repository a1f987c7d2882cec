//! Talking to the kubelet's Registration service over its unix socket, and to any gRPC server on
//! a unix socket (the test kubelet uses the same dialer to reach a plugin).

use crate::v1beta1::registration_client::RegistrationClient;
use crate::v1beta1::{DevicePluginOptions, RegisterRequest, VERSION};
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::UnixStream;
use tonic::Code;
use tonic::transport::{Channel, Endpoint, Uri};

/// A kubelet that accepted the connection but does not answer is treated as not there yet.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// Nobody listens there (yet): the reason carries the whole chain, since tonic's own error
    /// says only "transport error".
    #[error("cannot reach {path}: {reason}")]
    Connect { path: PathBuf, reason: String },
    #[error("the kubelet refused to register {resource}: {status}")]
    Refused { resource: String, status: tonic::Status },
}

/// A gRPC channel to the server on the unix socket at `path`.
pub async fn unix_channel(path: &Path) -> Result<Channel, RegistrationError> {
    let socket = path.to_path_buf();
    // The URI is never dialled: the connector below opens the socket instead.
    Endpoint::from_static("http://[::1]:1")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { UnixStream::connect(socket).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|e| RegistrationError::Connect { path: path.to_path_buf(), reason: error_chain(&e) })
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Wrappers often repeat their cause word for word.
        if !text.ends_with(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// Registers the plugin serving on `endpoint` (a socket file name in the same folder as
/// `kubelet_socket`) for `resource`.
pub async fn register(
    kubelet_socket: &Path,
    endpoint: &str,
    resource: &str,
    options: DevicePluginOptions,
) -> Result<(), RegistrationError> {
    let mut client = RegistrationClient::new(unix_channel(kubelet_socket).await?);
    let request = RegisterRequest {
        version: VERSION.to_string(),
        endpoint: endpoint.to_string(),
        resource_name: resource.to_string(),
        options: Some(options),
    };
    let unreachable =
        |reason: String| RegistrationError::Connect { path: kubelet_socket.to_path_buf(), reason };
    match tokio::time::timeout(REGISTER_TIMEOUT, client.register(request)).await {
        Err(_) => Err(unreachable(format!("no answer within {REGISTER_TIMEOUT:?}"))),
        Ok(Ok(_)) => Ok(()),
        // The kubelet going away mid-call is no refusal: the caller tries again.
        Ok(Err(status)) if matches!(status.code(), Code::Unavailable | Code::Cancelled) => {
            Err(unreachable(status.to_string()))
        }
        Ok(Err(status)) => Err(RegistrationError::Refused { resource: resource.to_string(), status }),
    }
}
