//! Remote sites on a real S3 server (SeaweedFS on loopback, started by the
//! tests themselves; see src/testing/s3.rs). A mixed layout keeps one site
//! in local directories and two in S3 buckets: a remote site burns (its
//! prefixes are wiped) while the store runs, reads go on, and repair
//! rebuilds it, after which the store survives losing another site.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use geoshard::layout::{Layout, Location, SiteId};
use geoshard::{Options, RepairOptions, Store};
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStore, ObjectStoreExt};

use common::s3::S3Server;

/// Deletes every object under the site's node prefixes: the fire.
fn wipe_remote_site(server: &S3Server, layout: &Layout, site: SiteId) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for &id in &layout.sites()[usize::from(site.0)].nodes {
        let Location::Url(url) = &layout.node(id).location else {
            panic!("site {site:?} is not remote");
        };
        let rest = url.strip_prefix("s3://").expect("s3 url");
        let (bucket, prefix) = rest.split_once('/').expect("bucket/prefix");
        let store = AmazonS3Builder::new()
            .with_endpoint(&server.endpoint)
            .with_allow_http(true)
            .with_region(&server.region)
            .with_access_key_id(&server.access_key_id)
            .with_secret_access_key(&server.secret_access_key)
            .with_bucket_name(bucket)
            .build()
            .expect("client");
        runtime.block_on(async {
            use futures_util::StreamExt;
            let prefix = object_store::path::Path::from(prefix);
            let objects: Vec<_> = store
                .list(Some(&prefix))
                .map(|meta| meta.expect("list").location)
                .collect()
                .await;
            assert!(!objects.is_empty(), "the node held objects before the fire");
            for location in objects {
                store.delete(&location).await.expect("delete");
            }
        });
    }
}

fn options() -> Options {
    Options {
        read_hedge_after: std::time::Duration::from_millis(100),
        ..common::options()
    }
}

fn fill(store: &Store, blobs: usize, seed: u64) -> HashMap<Vec<u8>, Vec<u8>> {
    let mut rng = common::rng(seed);
    let mut model = HashMap::new();
    let chunks: Vec<Vec<(Vec<u8>, Vec<u8>)>> = (0..8)
        .map(|t| {
            (0..blobs / 8)
                .map(|i| {
                    let value = if i % 25 == 0 {
                        // Photos: split over the data columns.
                        let mut photo = vec![0u8; 300_000 + i * 7];
                        rand::RngCore::fill_bytes(&mut rng, &mut photo);
                        photo
                    } else {
                        common::chat_value(&mut rng, 0)
                    };
                    (format!("chat/{t}/{i}").into_bytes(), value)
                })
                .collect()
        })
        .collect();
    std::thread::scope(|scope| {
        for chunk in &chunks {
            scope.spawn(move || {
                for (key, value) in chunk {
                    store.put(key, value.clone()).expect("put");
                }
            });
        }
    });
    for (key, value) in chunks.into_iter().flatten() {
        model.insert(key, value);
    }
    model
}

#[test]
fn mixed_layout_loses_a_remote_site_reads_on_and_repairs_it() {
    let server = S3Server::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let run = common::unique("mixed");
    let layout = common::mixed_layout(dir.path(), server, "geoshard-test", &run);
    let store = Arc::new(Store::create(layout.clone(), options()).expect("create mixed store"));
    let model = fill(&store, 400, 7);
    assert!(store.health().survives_any_site_loss);

    // The fire: every object of site "seoul" is gone while the store runs.
    wipe_remote_site(server, &layout, SiteId(1));
    common::check_all(&store, &model);
    assert!(
        store.stats().degraded_reads > 0,
        "reads were rebuilt from the other sites"
    );

    // Repair reopens the wiped nodes (empty) and rebuilds their columns.
    let report = store.repair(&RepairOptions::default()).expect("repair");
    assert!(report.columns_rebuilt > 0, "{report:?}");
    assert!(store.health().survives_any_site_loss);
    // Dropping the only handle closes the store and releases its nodes.
    drop(store);

    // Now the local site burns too: the repaired remote site carries it.
    for n in 0..3 {
        std::fs::remove_dir_all(dir.path().join(format!("l{n}"))).expect("burn local site");
    }
    let store = Store::open(layout, options()).expect("reopen without the local site");
    common::check_all(&store, &model);
    let scrub = store
        .scrub(&geoshard::ScrubOptions::default())
        .expect("scrub");
    assert_eq!(scrub.columns_corrupt, 0, "{scrub:?}");
}

#[test]
fn all_remote_store_reopens_from_the_buckets_alone() {
    let server = S3Server::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let run = common::unique("reopen");
    let remote = common::remote(server);
    let layout = Layout::builder()
        .code(4, 2)
        .site("a", |s| {
            s.remote(remote.clone())
                .node("a1", format!("s3://geoshard-a/{run}/a1"))
                .node("a2", format!("s3://geoshard-a/{run}/a2"))
        })
        .site("b", |s| {
            s.remote(remote.clone())
                .node("b1", format!("s3://geoshard-b/{run}/b1"))
                .node("b2", format!("s3://geoshard-b/{run}/b2"))
        })
        .site("c", |s| {
            s.remote(remote.clone())
                .node("c1", format!("s3://geoshard-c/{run}/c1"))
                .node("c2", format!("s3://geoshard-c/{run}/c2"))
        })
        .build()
        .expect("layout");
    // The layout file round-trips with its remote settings.
    let text = layout.to_toml_string();
    assert_eq!(Layout::from_toml_str(&text).expect("parse"), layout);
    let path = dir.path().join("layout.toml");
    std::fs::write(&path, &text).expect("write layout");

    let store = Store::create(layout.clone(), options()).expect("create");
    let model = fill(&store, 160, 11);
    assert!(store.delete(b"chat/0/1").expect("delete"));
    store.close().expect("close");

    let store = Store::open(Layout::load(&path).expect("load"), options()).expect("reopen");
    assert_eq!(store.get(b"chat/0/1").expect("get"), None);
    let mut model = model;
    model.remove(&b"chat/0/1"[..]);
    common::check_all(&store, &model);
}

/// The 3-region example in README.md is a valid layout file.
#[test]
fn readme_three_region_layout_parses() {
    let readme = include_str!("../README.md");
    let section = &readme[readme
        .find("## Remote sites")
        .expect("README has the remote section")..];
    let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = start + section[start..].find("```").expect("block end");
    let layout = Layout::from_toml_str(&section[start..end]).expect("README layout parses");
    assert_eq!(layout.sites().len(), 3);
    assert!(
        layout
            .nodes()
            .iter()
            .all(|n| matches!(n.location, Location::Url(_)) && n.remote.is_some())
    );
}
