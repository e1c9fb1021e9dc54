//! Pipelined commits (docs/DURABILITY.md, "Pipelined commits"): writes in
//! flight land in the order they were queued, across failed appends (a
//! retry re-seals the commits behind it) and a reopen; a put to an idle
//! store does not wait for `commit_interval`; `commit_delay` gathers the
//! puts that come within it into one commit.

mod common;

use std::time::{Duration, Instant};

use common::poll::run_all;
use geoshard::{Options, Store};

/// The value of write `i` to key `k`; `None` for a delete.
fn write(i: usize) -> (Vec<u8>, Option<Vec<u8>>) {
    let key = format!("room/{:02}", i % 23).into_bytes();
    if i % 11 == 5 {
        (key, None)
    } else {
        let mut value = common::value(i as u64, 200 + (i * 37) % 3000);
        value[..8].copy_from_slice(&(i as u64).to_le_bytes());
        (key, Some(value))
    }
}

#[test]
fn writes_in_flight_land_in_queue_order_across_failed_appends_and_a_reopen() {
    let dir = common::fast_tempdir();
    let layout = common::layout_3x3(dir.path());
    common::create(layout.clone(), common::options())
        .close()
        .expect("close");
    let (nodes, handles) = common::faulty_nodes(&layout);
    let store = Store::open_with_nodes(layout.clone(), common::options(), handles).expect("open");
    let total = 3000;
    let mut last: std::collections::HashMap<Vec<u8>, Option<Vec<u8>>> = Default::default();
    let mut completions = Vec::new();
    let mut deletes = Vec::new();
    for i in 0..total {
        // Appends fail on three nodes of different sites while hundreds of
        // writes are in flight: their commits are sealed again, and so are
        // the ones sealed behind them.
        if i % 1000 == 400 {
            nodes[i / 1000 * 3].fail_next_appends(2, libc::EIO);
        }
        let (key, value) = write(i);
        // Deletes answer whether the key existed: only whether they
        // succeeded matters here.
        completions.push(match &value {
            Some(value) => store.put_async(&key, value.clone()),
            None => {
                let delete = store.delete_async(&key);
                deletes.push(delete);
                store.flush_async()
            }
        });
        last.insert(key, value);
    }
    let (answers, _) = run_all(completions);
    for (i, answer) in answers.iter().enumerate() {
        assert!(answer.is_ok(), "write {i}: {answer:?}");
    }
    for answer in run_all(deletes).0 {
        assert!(answer.is_ok(), "{answer:?}");
    }
    assert!(
        store.stats().commit_retries >= 1,
        "no append failed: the test did not test retries"
    );
    let check = |store: &Store, when: &str| {
        for (key, value) in &last {
            let got = store.get(key).expect("get").map(|b| b.to_bytes().to_vec());
            assert_eq!(
                got.as_ref().map(|v| &v[..8]),
                value.as_ref().map(|v| &v[..8]),
                "{when}: {} holds another write than the last one queued",
                String::from_utf8_lossy(key)
            );
            assert_eq!(&got, value, "{when}: {}", String::from_utf8_lossy(key));
        }
    };
    check(&store, "running");
    store.close().expect("close");
    drop(store);
    drop(nodes);
    let store = Store::open(layout, common::options()).expect("reopen");
    check(&store, "after reopen");
}

#[test]
fn a_put_to_an_idle_store_does_not_wait_for_the_commit_interval() {
    let dir = common::fast_tempdir();
    let layout = common::layout(dir.path(), 3, 1, 2, 1);
    let options = Options {
        // Waited only behind a commit being written: one caller's puts
        // never are.
        commit_interval: Duration::from_secs(30),
        ..common::options()
    };
    let store = common::create(layout, options);
    let started = Instant::now();
    for i in 0..5u64 {
        store
            .put(format!("k{i}").as_bytes(), common::value(i, 100))
            .expect("put");
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "five puts took {:?}: a commit waited for commit_interval with nothing being written",
        started.elapsed()
    );
    assert_eq!(store.stats().stripes, 5);
}

#[test]
fn commit_delay_gathers_a_burst_into_one_commit() {
    let dir = common::fast_tempdir();
    let layout = common::layout(dir.path(), 3, 1, 2, 1);
    let stripes_of_a_burst = |options: Options| {
        let store = common::create(layout.clone(), options);
        // One put, and the rest well after it: without a delay the first
        // is sealed (and durable) before they come.
        let mut burst = vec![store.put_async(b"k", common::value(99, 100))];
        std::thread::sleep(Duration::from_millis(200));
        burst.extend(
            (0..11u64).map(|i| store.put_async(format!("k{i}").as_bytes(), common::value(i, 100))),
        );
        assert!(run_all(burst).0.iter().all(|a| a.is_ok()));
        let stripes = store.stats().stripes;
        store.close().expect("close");
        drop(store);
        for entry in std::fs::read_dir(dir.path()).expect("dir") {
            std::fs::remove_dir_all(entry.expect("entry").path()).expect("clean");
        }
        stripes
    };
    let delayed = stripes_of_a_burst(Options {
        commit_delay: Duration::from_secs(5),
        ..common::options()
    });
    assert_eq!(delayed, 1, "twelve puts within the delay share one commit");
    let at_once = stripes_of_a_burst(common::options());
    assert!(at_once >= 2, "{at_once} stripes");
}

/// A local node whose appends panic once armed: a bug in a node (or the
/// writer) that kills the store's writer thread.
#[derive(Debug)]
struct PanickingNode {
    inner: geoshard::node::LocalNode,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl geoshard::node::Node for PanickingNode {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn append(
        &self,
        generation: u64,
        records: &[geoshard::node::RecordRef<'_>],
    ) -> geoshard::Result<Vec<geoshard::node::RecordLocation>> {
        assert!(
            !self.armed.load(std::sync::atomic::Ordering::Acquire),
            "injected panic in an append (expected by the test)"
        );
        self.inner.append(generation, records)
    }

    fn read(&self, generation: u64, offset: u64, len: u32) -> geoshard::Result<bytes::Bytes> {
        self.inner.read(generation, offset, len)
    }

    fn scan(&self, generation: u64) -> geoshard::Result<geoshard::node::Scan> {
        self.inner.scan(generation)
    }

    fn generations(&self) -> geoshard::Result<Vec<u64>> {
        self.inner.generations()
    }

    fn remove_generation(&self, generation: u64) -> geoshard::Result<()> {
        self.inner.remove_generation(generation)
    }

    fn capacity(&self) -> geoshard::Result<geoshard::node::Capacity> {
        self.inner.capacity()
    }

    fn read_manifest(&self) -> geoshard::Result<Option<bytes::Bytes>> {
        self.inner.read_manifest()
    }

    fn write_manifest(&self, manifest: &[u8]) -> geoshard::Result<()> {
        self.inner.write_manifest(manifest)
    }

    fn is_fenced(&self) -> bool {
        self.inner.is_fenced()
    }
}

/// D4 when the writer thread dies: every write waiting on it fails (none
/// hangs), later writes fail at once, close returns, and a reopen finds
/// every acknowledged write and each failed one whole or absent.
#[test]
fn a_writer_thread_that_dies_fails_every_waiting_write_and_loses_nothing_acknowledged() {
    use geoshard::node::Node;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let dir = common::fast_tempdir();
    let layout = common::layout_3x3(dir.path());
    common::create(layout.clone(), common::options())
        .close()
        .expect("close");
    let armed = Arc::new(AtomicBool::new(false));
    let handles: Vec<common::Handle> = common::local_nodes(&layout)
        .into_iter()
        .map(|inner| {
            let node = PanickingNode {
                inner,
                armed: Arc::clone(&armed),
            };
            Ok(Arc::new(node) as Arc<dyn Node>)
        })
        .collect();
    let store = Store::open_with_nodes(layout.clone(), common::options(), handles).expect("open");
    let acked: Vec<(Vec<u8>, Vec<u8>)> = (0..50)
        .map(|i| (format!("acked/{i:03}").into_bytes(), common::value(i, 700)))
        .collect();
    for (key, value) in &acked {
        store.put(key, value.clone()).expect("put before the panic");
    }

    armed.store(true, Ordering::Release);
    let failed: Vec<(Vec<u8>, Vec<u8>)> = (0..500)
        .map(|i| {
            (
                format!("failed/{i:03}").into_bytes(),
                common::value(1000 + i, 900),
            )
        })
        .collect();
    let completions = failed
        .iter()
        .map(|(key, value)| store.put_async(key, value.clone()))
        .collect();
    // `run_all` fails the test if any write is never answered.
    let (answers, _) = run_all(completions);
    for (answer, (key, _)) in answers.iter().zip(&failed) {
        assert!(
            matches!(answer, Err(geoshard::Error::WriteRefused { .. })),
            "{}: {answer:?}",
            String::from_utf8_lossy(key)
        );
    }
    let later = store.put(b"later", b"x".to_vec());
    assert!(later.is_err(), "a put after the writer died: {later:?}");
    let _ = store.close();
    drop(store);

    let store = Store::open(layout, common::options()).expect("reopen");
    for (key, value) in &acked {
        let got = store.get(key).expect("get");
        assert_eq!(
            got.map(|b| b.to_bytes()),
            Some(bytes::Bytes::from(value.clone())),
            "{}",
            String::from_utf8_lossy(key)
        );
    }
    for (key, value) in &failed {
        if let Some(got) = store.get(key).expect("get") {
            assert_eq!(
                got.to_bytes(),
                bytes::Bytes::from(value.clone()),
                "half a write"
            );
        }
    }
}
