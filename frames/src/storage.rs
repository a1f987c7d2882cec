//! Object storage by URL: scenes are read from it, frames and manifests are written to it.
//!
//! A location is a URL that `object_store` understands (`file://`, `s3://`, `gs://`, `az://`,
//! `http(s)://`) or a plain local path. Credentials come from environment variables or from the
//! files of a folder (a mounted Kubernetes Secret: one file per key), never from the URL.

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{
    ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutPayload, WriteMultipart, aws::AmazonS3ConfigKey,
    azure::AzureConfigKey, gcp::GoogleConfigKey, parse_url_opts,
};
use pictor_crds::v1alpha1::OutputObject;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;

/// Files at least this big are uploaded in parts, so a frame or manifest of any size never has
/// to fit in one request (S3 wants parts of at least 5 MiB).
pub const MULTIPART_THRESHOLD: u64 = 8 * 1024 * 1024;
/// Size of one part of a multipart upload.
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts in flight at once during a multipart upload.
const PARTS_IN_FLIGHT: usize = 4;

/// What can go wrong reaching object storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(
        "{location:?} is not a storage URL ({reason}); use file:///path, s3://bucket/key, gs://bucket/key, az://container/key, https://host/path or a local path"
    )]
    InvalidUrl { location: String, reason: String },
    #[error(
        "cannot open storage at {url}: {source}; check the URL and its credentials (environment variables or --credentials-dir)"
    )]
    Open { url: String, source: object_store::Error },
    #[error(
        "{url}: the endpoint {endpoint} is plain http; set AWS_ALLOW_HTTP=true (environment or credentials file) to allow it"
    )]
    PlainHttpEndpoint { url: String, endpoint: String },
    #[error("cannot read credentials folder {dir}: {source}")]
    CredentialsDir { dir: PathBuf, source: std::io::Error },
    #[error(
        "credentials file {file} is not a storage setting this worker accepts; expected one of: {expected}"
    )]
    UnknownCredential { file: PathBuf, expected: String },
    #[error("{url} does not exist; check the URL (and that the bucket or folder is the right one)")]
    NotFound { url: String },
    #[error("reading {url} failed: {source}")]
    Read { url: String, source: object_store::Error },
    #[error("writing {url} failed: {source}")]
    Write { url: String, source: object_store::Error },
    #[error("local file {path}: {source}")]
    LocalFile { path: PathBuf, source: std::io::Error },
}

/// Settings for the remote stores, keyed by their environment-variable name in lower case
/// (`aws_access_key_id`, `google_service_account`, `azure_storage_account_name`, …), which is
/// also an `object_store` configuration key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StorageSettings {
    values: BTreeMap<String, String>,
}

/// The settings a remote store takes, by the prefix of their names.
const SETTING_PREFIXES: [&str; 3] = ["aws_", "google_", "azure_"];

/// Settings read from the environment: the documented ones for each store.
const ENVIRONMENT_SETTINGS: [&str; 14] = [
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ALLOW_HTTP",
    "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
    "GOOGLE_SERVICE_ACCOUNT",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
];

impl StorageSettings {
    /// Settings from an explicit list of `(name, value)` pairs, validated like credential files.
    pub fn from_pairs<K: AsRef<str>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, String> {
        let mut settings = Self::default();
        for (name, value) in pairs {
            let key = name.as_ref().to_ascii_lowercase();
            if !is_known_setting(&key) {
                return Err(name.as_ref().to_string());
            }
            settings.values.insert(key, value.into());
        }
        Ok(settings)
    }

    /// The documented environment variables that are set (`AWS_ENDPOINT_URL`, `AWS_REGION`, …).
    pub fn from_environment() -> Self {
        let pairs = ENVIRONMENT_SETTINGS
            .iter()
            .filter_map(|name| std::env::var(name).ok().map(|value| (name.to_ascii_lowercase(), value)));
        Self { values: pairs.collect() }
    }

    /// Adds the files of `dir`, one setting per file named like its environment variable
    /// (`AWS_ACCESS_KEY_ID`, …), as a Kubernetes Secret mounted as a volume gives them. They win
    /// over the environment. A file that is no known setting is an error: a misspelt key would
    /// otherwise be ignored and the store would run without it.
    pub fn with_credentials_dir(mut self, dir: &Path) -> Result<Self, StorageError> {
        let entries = std::fs::read_dir(dir)
            .map_err(|source| StorageError::CredentialsDir { dir: dir.into(), source })?;
        for entry in entries {
            let entry = entry.map_err(|source| StorageError::CredentialsDir { dir: dir.into(), source })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // A mounted Secret keeps its data in hidden `..data` folders behind symlinks.
            if name.starts_with('.') || entry.path().is_dir() {
                continue;
            }
            let key = name.to_ascii_lowercase();
            if !is_known_setting(&key) {
                return Err(StorageError::UnknownCredential {
                    file: entry.path(),
                    expected: ENVIRONMENT_SETTINGS.join(", ")
                        + " or another object_store key with its prefix",
                });
            }
            let value = std::fs::read_to_string(entry.path())
                .map_err(|source| StorageError::LocalFile { path: entry.path(), source })?;
            // Secrets written with `echo` end in a newline that is no part of the key.
            self.values.insert(key, value.trim_end_matches(['\n', '\r']).to_string());
        }
        Ok(self)
    }

    /// The settings that the store for `scheme` takes, as `object_store` options.
    fn options_for(&self, scheme: &ObjectStoreScheme) -> Vec<(String, String)> {
        let prefix = match scheme {
            ObjectStoreScheme::AmazonS3 => "aws_",
            ObjectStoreScheme::GoogleCloudStorage => "google_",
            ObjectStoreScheme::MicrosoftAzure => "azure_",
            _ => return Vec::new(),
        };
        self.values
            .iter()
            .filter(|(key, _)| key.starts_with(prefix))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }

    fn value(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }
}

/// Whether `key` (lower case) is a setting of one of the remote stores, by `object_store`'s own
/// parsers: they are what `parse_url_opts` would otherwise silently skip.
fn is_known_setting(key: &str) -> bool {
    match SETTING_PREFIXES.iter().find(|prefix| key.starts_with(*prefix)) {
        Some(&"aws_") => key.parse::<AmazonS3ConfigKey>().is_ok(),
        Some(&"google_") => key.parse::<GoogleConfigKey>().is_ok(),
        Some(&"azure_") => key.parse::<AzureConfigKey>().is_ok(),
        _ => false,
    }
}

/// An object in a store, addressed by the URL the user gave.
#[derive(Debug)]
pub struct StorageObject {
    url: String,
    store: Box<dyn ObjectStore>,
    path: ObjectPath,
}

/// The URL of `location`: a URL as given, or a local path made absolute as a `file://` URL.
pub fn location_url(location: &str) -> Result<Url, StorageError> {
    let invalid = |reason: String| StorageError::InvalidUrl { location: location.into(), reason };
    match Url::parse(location) {
        // One letter before the colon is a Windows drive, not a scheme; fall through to a path.
        Ok(url) if url.scheme().len() > 1 => Ok(url),
        Ok(_) | Err(url::ParseError::RelativeUrlWithoutBase) => {
            let path = std::path::absolute(location).map_err(|e| invalid(e.to_string()))?;
            Url::from_file_path(&path).map_err(|()| invalid("not an absolute path".into()))
        }
        Err(e) => Err(invalid(e.to_string())),
    }
}

/// `folder` (a URL or local path of a folder) joined with a file name, as a URL string.
pub fn child_url(folder: &str, name: &str) -> Result<String, StorageError> {
    let url = location_url(folder)?;
    let mut text = url.to_string();
    if !text.ends_with('/') {
        text.push('/');
    }
    text.push_str(name);
    Ok(text)
}

impl StorageObject {
    /// Opens the object at `location` with `settings`. Nothing is contacted yet.
    pub fn open(location: &str, settings: &StorageSettings) -> Result<Self, StorageError> {
        let url = location_url(location)?;
        let (scheme, _) = ObjectStoreScheme::parse(&url)
            .map_err(|e| StorageError::InvalidUrl { location: location.into(), reason: e.to_string() })?;
        // Every remote store's HTTPS client needs a process-wide TLS crypto provider; ring is
        // the one Pictor's other clients use. Installing it again is a harmless no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut options = settings.options_for(&scheme);
        match scheme {
            // The user wrote http:// themselves: that is consent to plain http.
            ObjectStoreScheme::Http if url.scheme() == "http" => {
                options.push(("allow_http".into(), "true".into()))
            }
            ObjectStoreScheme::AmazonS3 => check_s3_endpoint(&url, settings)?,
            _ => {}
        }
        let (store, path) = parse_url_opts(&url, options)
            .map_err(|source| StorageError::Open { url: url.to_string(), source })?;
        Ok(Self { url: url.to_string(), store, path })
    }

    /// The object's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Reads the whole object.
    pub async fn read(&self) -> Result<Bytes, StorageError> {
        let result = self.store.get(&self.path).await.map_err(|e| self.read_error(e))?;
        result.bytes().await.map_err(|e| self.read_error(e))
    }

    /// Copies the object into the local file `dest`, returning the SHA-256 of its bytes.
    pub async fn download(&self, dest: &Path) -> Result<String, StorageError> {
        let local = |source| StorageError::LocalFile { path: dest.into(), source };
        let result = self.store.get(&self.path).await.map_err(|e| self.read_error(e))?;
        let mut stream = result.into_stream();
        let mut file = tokio::fs::File::create(dest).await.map_err(local)?;
        let mut digest = Sha256::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.read_error(e))?;
            digest.update(&chunk);
            file.write_all(&chunk).await.map_err(local)?;
        }
        file.flush().await.map_err(local)?;
        Ok(hex::encode(digest.finalize()))
    }

    /// Writes `bytes` as the object.
    pub async fn write(&self, bytes: Bytes) -> Result<OutputObject, StorageError> {
        let sha256 = hex::encode(Sha256::digest(&bytes));
        self.store
            .put(&self.path, PutPayload::from_bytes(bytes))
            .await
            .map_err(|source| StorageError::Write { url: self.url.clone(), source })?;
        Ok(OutputObject { url: self.url.clone(), sha256 })
    }

    /// Uploads the local file `source` as the object, hashing it on the way; big files go in
    /// parts, and a failed multipart upload is aborted so that no orphan parts stay behind.
    pub async fn upload(&self, source: &Path) -> Result<OutputObject, StorageError> {
        let local = |e| StorageError::LocalFile { path: source.into(), source: e };
        let size = tokio::fs::metadata(source).await.map_err(local)?.len();
        if size < MULTIPART_THRESHOLD {
            let bytes = tokio::fs::read(source).await.map_err(local)?;
            return self.write(Bytes::from(bytes)).await;
        }
        let upload = self
            .store
            .put_multipart(&self.path)
            .await
            .map_err(|source| StorageError::Write { url: self.url.clone(), source })?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut digest = Sha256::new();
        let written = async {
            let mut file = tokio::fs::File::open(source).await.map_err(local)?;
            let mut buffer = vec![0u8; PART_SIZE];
            loop {
                let read = file.read(&mut buffer).await.map_err(local)?;
                if read == 0 {
                    return Ok(());
                }
                writer
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(|source| StorageError::Write { url: self.url.clone(), source })?;
                digest.update(&buffer[..read]);
                writer.write(&buffer[..read]);
            }
        }
        .await;
        if let Err(e) = written {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(url = %self.url, error = %abort, "aborting the multipart upload failed; its parts may remain");
            }
            return Err(e);
        }
        // `finish` aborts the upload itself when completing it fails.
        writer.finish().await.map_err(|source| StorageError::Write { url: self.url.clone(), source })?;
        Ok(OutputObject { url: self.url.clone(), sha256: hex::encode(digest.finalize()) })
    }

    fn read_error(&self, source: object_store::Error) -> StorageError {
        match source {
            object_store::Error::NotFound { .. } => StorageError::NotFound { url: self.url.clone() },
            source => StorageError::Read { url: self.url.clone(), source },
        }
    }
}

/// An S3 endpoint over plain http is refused by `object_store` only at the first request, with
/// a message that does not say which setting allows it; say it up front.
fn check_s3_endpoint(url: &Url, settings: &StorageSettings) -> Result<(), StorageError> {
    let endpoint = ["aws_endpoint_url", "aws_endpoint"].iter().find_map(|key| settings.value(key));
    let allowed = settings.value("aws_allow_http").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    match endpoint {
        Some(endpoint) if endpoint.starts_with("http://") && !allowed => {
            Err(StorageError::PlainHttpEndpoint { url: url.to_string(), endpoint: endpoint.to_string() })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_environment_setting_is_an_object_store_key() {
        for name in ENVIRONMENT_SETTINGS {
            assert!(is_known_setting(&name.to_ascii_lowercase()), "{name} is not known to object_store");
        }
        assert!(!is_known_setting("aws_acces_key_id"));
        assert!(!is_known_setting("endpoint"));
    }

    #[test]
    fn a_plain_path_is_a_file_url() {
        let url = location_url("/tmp/frames out").unwrap();
        assert_eq!(url.as_str(), "file:///tmp/frames%20out");
        assert_eq!(child_url("/tmp/out/", "frame_000001.png").unwrap(), "file:///tmp/out/frame_000001.png");
        assert_eq!(
            child_url("s3://bucket/job-1", "frame_000001.png").unwrap(),
            "s3://bucket/job-1/frame_000001.png"
        );
    }

    #[test]
    fn credential_files_are_read_and_validated() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("AWS_ACCESS_KEY_ID"), "key\n").unwrap();
        std::fs::create_dir(dir.path().join("..2026_data")).unwrap();
        let settings = StorageSettings::default().with_credentials_dir(dir.path()).unwrap();
        assert_eq!(settings.value("aws_access_key_id"), Some("key"));
        assert_eq!(settings.options_for(&ObjectStoreScheme::AmazonS3).len(), 1);
        assert!(settings.options_for(&ObjectStoreScheme::GoogleCloudStorage).is_empty());

        std::fs::write(dir.path().join("AWS_SECRET_KEY"), "typo").unwrap();
        let error = StorageSettings::default().with_credentials_dir(dir.path()).unwrap_err();
        assert!(matches!(error, StorageError::UnknownCredential { .. }), "{error}");
        assert!(error.to_string().contains("AWS_SECRET_KEY"), "{error}");
    }

    #[test]
    fn a_plain_http_s3_endpoint_needs_allow_http() {
        let settings = StorageSettings::from_pairs([("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")]).unwrap();
        let error = StorageObject::open("s3://bucket/scene.blend", &settings).unwrap_err();
        assert!(error.to_string().contains("AWS_ALLOW_HTTP=true"), "{error}");
        let settings = StorageSettings::from_pairs([
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("AWS_ALLOW_HTTP", "true"),
        ])
        .unwrap();
        StorageObject::open("s3://bucket/scene.blend", &settings).unwrap();
    }

    #[test]
    fn stores_are_built_from_their_own_settings_only() {
        let error =
            StorageObject::open("az://frames/job/frame_000001.png", &StorageSettings::default()).unwrap_err();
        assert!(matches!(error, StorageError::Open { .. }), "{error}");
        assert!(error.to_string().contains("az://frames/job/frame_000001.png"), "{error}");
        let settings = StorageSettings::from_pairs([
            ("AZURE_STORAGE_ACCOUNT_NAME", "pictor"),
            ("AZURE_STORAGE_ACCOUNT_KEY", "a2V5"),
            ("AWS_ENDPOINT_URL", "http://not-for-azure"),
        ])
        .unwrap();
        let object = StorageObject::open("az://frames/job/frame_000001.png", &settings).unwrap();
        assert_eq!(object.url(), "az://frames/job/frame_000001.png");
        StorageObject::open("https://cdn.example.net/scenes/a.blend", &settings).unwrap();
        StorageObject::open("gs://scenes/a.blend", &settings).unwrap();
    }

    #[test]
    fn unknown_setting_names_are_refused() {
        assert_eq!(
            StorageSettings::from_pairs([("AWS_ENDPOINT", "x"), ("S3_KEY", "y")]),
            Err("S3_KEY".into())
        );
    }

    #[tokio::test]
    async fn local_files_round_trip_with_their_digest() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source.bin");
        // Over the multipart threshold, so that path runs too (the local store supports it).
        let content: Vec<u8> = (0..MULTIPART_THRESHOLD as usize + 12345).map(|i| (i % 251) as u8).collect();
        std::fs::write(&source, &content).unwrap();
        let expected = hex::encode(Sha256::digest(&content));

        let target = dir.path().join("nested/out/big.bin");
        let object = StorageObject::open(target.to_str().unwrap(), &StorageSettings::default()).unwrap();
        let written = object.upload(&source).await.unwrap();
        assert_eq!(written.sha256, expected);
        assert_eq!(std::fs::read(&target).unwrap(), content);

        let copy = dir.path().join("copy.bin");
        assert_eq!(object.download(&copy).await.unwrap(), expected);

        let missing =
            StorageObject::open(dir.path().join("nope").to_str().unwrap(), &StorageSettings::default())
                .unwrap();
        let error = missing.read().await.unwrap_err();
        assert!(matches!(error, StorageError::NotFound { .. }), "{error}");
        assert!(error.to_string().contains("nope"), "{error}");
    }
}
