//! Faults on remote sites, against a real S3 server (SeaweedFS on
//! loopback): the server stopped in the middle of writes, a site that
//! answers slowly, and a second writer taking the lease after a failover.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use geoshard::layout::Layout;
use geoshard::node::{FaultyNode, LocalNode, Node, ObjectNode, ObjectOptions};
use geoshard::{Error, Options, Store};

use common::s3::S3Server;

/// Object-store options that give up quickly, so a stopped server turns
/// into errors in seconds, not minutes.
fn impatient() -> ObjectOptions {
    ObjectOptions {
        request_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_millis(500),
        max_retries: 1,
        retry_timeout: Duration::from_secs(2),
        ..ObjectOptions::default()
    }
}

#[test]
fn server_stopped_mid_write_leaves_nothing_half_visible() {
    let server = S3Server::start(&["faults"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = common::mixed_layout(dir.path(), &server, "faults", &common::unique("stop"));
    // Strict: a put must keep the layout's promise, so with two of three
    // sites dark it is refused (typed), never half written.
    let options = Options {
        object: impatient(),
        write_policy: geoshard::WritePolicy::Strict,
        ..common::options()
    };
    let store = Store::create(layout.clone(), options.clone()).expect("create");
    let mut rng = common::rng(5);
    let mut acked: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut failed: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    for i in 0..60 {
        let key = format!("msg/{i}").into_bytes();
        let value = common::chat_value(&mut rng, 50);
        if i == 30 {
            // Both remote sites go dark at once: 6 of 9 columns.
            server.stop();
        }
        match store.put(&key, value.clone()) {
            Ok(()) => {
                acked.insert(key, value);
            }
            Err(e) => {
                assert!(
                    matches!(
                        e,
                        Error::NotEnoughColumns { .. }
                            | Error::Unavailable { .. }
                            | Error::WriteRefused { .. }
                    ),
                    "a put fails with a typed error, got {e:?}"
                );
                failed.insert(key, value);
            }
        }
    }
    assert!(acked.len() >= 30, "puts before the stop succeed");
    assert!(failed.len() >= 25, "puts during the outage are refused");
    // Reads give the right bytes or a typed error, never wrong bytes.
    for (key, value) in acked.iter().take(5) {
        match store.get(key) {
            Ok(Some(blob)) => assert!(blob.to_bytes() == value[..], "no wrong bytes"),
            Ok(None) => panic!("an acknowledged blob vanished"),
            Err(e) => assert!(
                matches!(
                    e,
                    Error::NotEnoughColumns { .. } | Error::ChecksumMismatch { .. }
                ),
                "typed error, got {e:?}"
            ),
        }
    }
    drop(store); // closes it and releases its nodes

    server.restart();
    // The reopen waits as a client normally would: the server's first
    // writes after a restart can take seconds on a loaded machine (a lease
    // PUT past the impatient 2 s timeout left every remote node down, and
    // the open refused as it must: seen in CI).
    let patient = Options {
        object: ObjectOptions::default(),
        ..options.clone()
    };
    let store = Store::open(layout.clone(), patient).expect("reopen after the outage");
    common::check_all(&store, &acked);
    for (key, value) in &failed {
        if let Some(blob) = store.get(key).expect("get") {
            assert!(
                blob.to_bytes() == value[..],
                "a failed put is either absent or whole"
            );
        }
    }
    store
        .put(b"after", b"the outage".to_vec())
        .expect("writes resume");
}

#[test]
fn a_slow_site_does_not_stall_reads() {
    let server = S3Server::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = common::mixed_layout(dir.path(), server, "faults", &common::unique("slow"));
    server.create_bucket("faults");
    let options = Options {
        read_hedge_after: Duration::from_millis(100),
        ..common::options()
    };
    // Open every node ourselves, with the remote site "seoul" behind a
    // fault-injecting wrapper.
    let mut slow: Vec<Arc<FaultyNode<ObjectNode>>> = Vec::new();
    let mut nodes: Vec<Result<Arc<dyn Node>, String>> = Vec::new();
    for spec in layout.nodes() {
        let node: Arc<dyn Node> = match &spec.location {
            geoshard::layout::Location::Dir(path) => Arc::new(
                LocalNode::open(&spec.name, path, &options.local).expect("open local node"),
            ),
            geoshard::layout::Location::Url(url) => {
                let node = ObjectNode::open(&spec.name, url, spec.remote.as_ref(), &options.object)
                    .expect("open object node");
                if spec.name.starts_with('s') {
                    let faulty = Arc::new(FaultyNode::new(node));
                    slow.push(Arc::clone(&faulty));
                    faulty
                } else {
                    Arc::new(node)
                }
            }
        };
        nodes.push(Ok(node));
    }
    let store = Store::create_with_nodes(layout, options, nodes).expect("create");
    let mut rng = common::rng(9);
    let mut model = HashMap::new();
    for i in 0..60 {
        let key = format!("msg/{i}").into_bytes();
        let value = common::chat_value(&mut rng, 50);
        store.put(&key, value.clone()).expect("put");
        model.insert(key, value);
    }
    // Seoul now takes 3 s per request.
    for node in &slow {
        node.set_latency(Duration::from_secs(3));
    }
    let deadline = Duration::from_millis(1500);
    for (key, value) in &model {
        let started = Instant::now();
        let blob = store.get(key).expect("get").expect("present");
        let took = started.elapsed();
        assert!(blob.to_bytes() == value[..], "right bytes");
        assert!(
            took < deadline,
            "a read took {took:?}, over its {deadline:?} deadline, with one slow site"
        );
    }
    assert!(
        store.stats().hedged_reads > 0,
        "the slow site's reads were hedged"
    );
    for node in &slow {
        node.set_latency(Duration::ZERO);
    }
}

#[test]
fn a_second_writer_takes_the_lease_and_the_first_stops() {
    let server = S3Server::shared();
    let run = common::unique("lease");
    let remote = common::remote(server);
    server.create_bucket("faults");
    let layout = Layout::builder()
        .code(2, 1)
        .site("a", |s| {
            s.remote(remote.clone())
                .node("a1", format!("s3://faults/{run}/a1"))
        })
        .site("b", |s| {
            s.remote(remote.clone())
                .node("b1", format!("s3://faults/{run}/b1"))
        })
        .site("c", |s| {
            s.remote(remote.clone())
                .node("c1", format!("s3://faults/{run}/c1"))
        })
        .build()
        .expect("layout");
    let first = Store::create(layout.clone(), common::options()).expect("first writer");
    first.put(b"before", b"the split".to_vec()).expect("put");

    // Failover: the other region opens the same store.
    let second = Store::open(layout, common::options()).expect("second writer");
    match first.put(b"during", b"the split".to_vec()) {
        Err(Error::Superseded { .. }) => {}
        other => panic!("the first writer must stop with Superseded, got {other:?}"),
    }
    assert!(
        matches!(
            first.put(b"again", b"x".to_vec()),
            Err(Error::Superseded { .. })
        ),
        "and stays stopped"
    );
    assert!(
        first.health().superseded_by.is_some(),
        "health says another writer took over"
    );
    assert!(second.health().superseded_by.is_none());
    assert!(
        second.get(b"before").expect("get").map(|b| b.to_bytes())
            == Some((&b"the split"[..]).into())
    );
    assert!(
        second.get(b"during").expect("get").is_none(),
        "nothing half-visible"
    );
    second
        .put(b"after", b"failover".to_vec())
        .expect("the new writer writes");
}
