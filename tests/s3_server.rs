//! The test S3 server (SeaweedFS, `common::s3`) does what the object-store
//! node relies on: put/get/list/delete, conditional puts, data kept across a
//! restart.
#![cfg(feature = "aws")]

mod common;

use common::s3::S3Server;
use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload, RetryConfig, UpdateVersion};

fn client(server: &S3Server, bucket: &str) -> AmazonS3 {
    builder(server, bucket)
        .build()
        .expect("build the S3 client")
}

fn builder(server: &S3Server, bucket: &str) -> AmazonS3Builder {
    // `new()`, not `from_env()`: no stray AWS_* variables; static credentials
    // so the client never probes a cloud metadata address.
    AmazonS3Builder::new()
        .with_endpoint(&server.endpoint)
        .with_allow_http(true)
        .with_region(&server.region)
        .with_access_key_id(&server.access_key_id)
        .with_secret_access_key(&server.secret_access_key)
        .with_bucket_name(bucket)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn read(server: &S3Server, store: &AmazonS3, path: &Path) -> Vec<u8> {
    let got = match store.get(path).await {
        Ok(got) => got,
        Err(e) => panic!("get {path}: {e}{}", server.log_tail()),
    };
    got.bytes().await.expect("get body").to_vec()
}

#[test]
fn roundtrip_conditional_put_and_restart() {
    let server = S3Server::start(&["first"]);
    server.create_bucket("second");
    let rt = runtime();
    let store = client(&server, "second");

    rt.block_on(async {
        // put / get / list / delete
        let a = Path::from("dir/a");
        let b = Path::from("dir/b");
        store
            .put(&a, PutPayload::from_static(b"alpha"))
            .await
            .expect("put a");
        store
            .put(&b, PutPayload::from_static(b"beta"))
            .await
            .expect("put b");
        assert_eq!(read(&server, &store, &a).await, b"alpha");
        let mut listed: Vec<String> = store
            .list(Some(&Path::from("dir")))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .expect("list");
        listed.sort();
        assert_eq!(listed, ["dir/a", "dir/b"]);
        store.delete(&b).await.expect("delete b");
        let err = store.get(&b).await.expect_err("b is deleted");
        assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");

        // Conditional puts.
        let c = Path::from("c");
        let created = store
            .put_opts(&c, PutPayload::from_static(b"v1"), PutMode::Create.into())
            .await
            .expect("create c");
        let err = store
            .put_opts(
                &c,
                PutPayload::from_static(b"v1 again"),
                PutMode::Create.into(),
            )
            .await
            .expect_err("c exists");
        assert!(
            matches!(err, object_store::Error::AlreadyExists { .. }),
            "{err}"
        );
        let stale = UpdateVersion::from(created.clone());
        let updated = store
            .put_opts(
                &c,
                PutPayload::from_static(b"v2"),
                PutMode::Update(created.into()).into(),
            )
            .await
            .expect("update c with its etag");
        assert_ne!(updated.e_tag, stale.e_tag, "a new etag");
        let err = store
            .put_opts(
                &c,
                PutPayload::from_static(b"v3"),
                PutMode::Update(stale).into(),
            )
            .await
            .expect_err("stale etag");
        assert!(
            matches!(err, object_store::Error::Precondition { .. }),
            "{err}"
        );
        assert_eq!(read(&server, &store, &c).await, b"v2");
    });

    // Stopped: requests fail. Restarted: the data is still there.
    server.stop();
    assert!(!server.is_running());
    let no_retry = builder(&server, "second")
        .with_retry(RetryConfig {
            max_retries: 0,
            ..RetryConfig::default()
        })
        .build()
        .expect("build the S3 client");
    rt.block_on(async {
        let got = no_retry.get(&Path::from("c")).await;
        assert!(got.is_err(), "get from a stopped server must fail");
    });
    server.restart();
    assert!(server.is_running());
    rt.block_on(async {
        assert_eq!(read(&server, &store, &Path::from("dir/a")).await, b"alpha");
        assert_eq!(read(&server, &store, &Path::from("c")).await, b"v2");
    });
    let first = client(&server, "first");
    rt.block_on(async {
        let listed: Vec<_> = first.list(None).try_collect().await.expect("list first");
        assert!(listed.is_empty(), "first is empty: {listed:?}");
    });
}

#[test]
fn shared_server_has_its_buckets() {
    let server = S3Server::shared();
    assert!(std::ptr::eq(server, S3Server::shared()), "one per process");
    let rt = runtime();
    for bucket in common::s3::SHARED_BUCKETS {
        let store = client(server, bucket);
        let path = Path::from(format!("shared_server_has_its_buckets/{bucket}"));
        rt.block_on(async {
            store
                .put(&path, PutPayload::from(bucket.as_bytes().to_vec()))
                .await
                .expect("put");
            assert_eq!(read(server, &store, &path).await, bucket.as_bytes());
            store.delete(&path).await.expect("delete");
        });
    }
}
