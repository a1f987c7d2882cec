//! The storage module against a real S3-compatible server (moto).

mod fixtures;

use fixtures::{MotoServer, sha256};
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use pictor_render_worker::storage::{MULTIPART_THRESHOLD, StorageObject, StorageSettings};

#[tokio::test]
async fn big_files_go_up_to_s3_in_parts_with_their_digest() {
    let Some(moto) = MotoServer::start() else { return };
    moto.create_bucket("frames");
    let settings = StorageSettings::from_pairs(moto.environment()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("frame.exr");
    // Two full parts and a short one.
    let content: Vec<u8> =
        (0..2 * MULTIPART_THRESHOLD as usize + 4321).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(&source, &content).unwrap();

    let object = StorageObject::open("s3://frames/job/frame_000001.exr", &settings).unwrap();
    let stored = object.upload(&source).await.unwrap();
    assert_eq!(stored.url, "s3://frames/job/frame_000001.exr");
    assert_eq!(stored.sha256, sha256(&content));

    let read_back = moto.bucket("frames").get(&ObjectPath::from("job/frame_000001.exr")).await.unwrap();
    let read_back = read_back.bytes().await.unwrap();
    assert_eq!(read_back.len(), content.len());
    assert_eq!(sha256(&read_back), stored.sha256);

    let copy = dir.path().join("copy.exr");
    assert_eq!(object.download(&copy).await.unwrap(), stored.sha256);
}

#[tokio::test]
async fn a_missing_bucket_is_named_in_the_error() {
    let Some(moto) = MotoServer::start() else { return };
    let settings = StorageSettings::from_pairs(moto.environment()).unwrap();
    let object = StorageObject::open("s3://no-such-bucket/scene.blend", &settings).unwrap();
    let error = object.read().await.unwrap_err().to_string();
    assert!(error.contains("s3://no-such-bucket/scene.blend"), "{error}");
}
