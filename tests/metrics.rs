//! Metrics: with a recorder installed before the store opens, the
//! counters, histograms and gauges move as the store works (puts, gets, a
//! degraded read after a node's data is gone, repair). Alone in its binary:
//! the recorder is process-wide.

mod common;

use std::collections::HashMap;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::{CompositeKey, MetricKind};

use geoshard::{RepairOptions, Store};

/// Every metric of the snapshot: (kind, name, labels) -> value.
fn snapshot(snapshotter: &Snapshotter) -> HashMap<(MetricKind, String, Vec<String>), DebugValue> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value): (CompositeKey, _, _, DebugValue)| {
            let (kind, key) = key.into_parts();
            let labels = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            ((kind, key.name().to_string(), labels), value)
        })
        .collect()
}

fn counter(all: &HashMap<(MetricKind, String, Vec<String>), DebugValue>, name: &str) -> u64 {
    match all.get(&(MetricKind::Counter, name.to_string(), Vec::new())) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{name}: {other:?}"),
    }
}

fn histogram_len(
    all: &HashMap<(MetricKind, String, Vec<String>), DebugValue>,
    name: &str,
) -> usize {
    match all.get(&(MetricKind::Histogram, name.to_string(), Vec::new())) {
        Some(DebugValue::Histogram(values)) => values.len(),
        other => panic!("{name}: {other:?}"),
    }
}

/// The per-node metric `name` (label `node`), each node's value read by
/// `read`.
fn per_node<T>(
    all: &HashMap<(MetricKind, String, Vec<String>), DebugValue>,
    kind: MetricKind,
    name: &str,
    read: impl Fn(&DebugValue) -> T,
) -> HashMap<String, T> {
    all.iter()
        .filter(|((k, n, _), _)| *k == kind && n == name)
        .filter_map(|((_, _, labels), value)| {
            let node = labels.iter().find_map(|l| l.strip_prefix("node="))?;
            Some((node.to_string(), read(value)))
        })
        .collect()
}

fn gauge(
    all: &HashMap<(MetricKind, String, Vec<String>), DebugValue>,
    name: &str,
    labels: &[&str],
) -> f64 {
    let labels = labels.iter().map(|l| l.to_string()).collect();
    match all.get(&(MetricKind::Gauge, name.to_string(), labels)) {
        Some(DebugValue::Gauge(v)) => v.into_inner(),
        other => panic!("{name}: {other:?}"),
    }
}

/// Every key but the deleted `m/0` reads back.
fn read_back(store: &Store, puts: u64) {
    for i in 1..puts {
        let got = store.get(format!("m/{i}").as_bytes()).expect("get");
        assert_eq!(got.map(|b| b.len()), Some(1500), "m/{i}");
    }
}

#[test]
fn a_recorder_sees_the_counters_histograms_and_gauges_move() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this process");

    let dir = common::fast_tempdir();
    let layout = common::layout_3x3(dir.path());
    let store = common::create(layout.clone(), common::options());
    let puts = 300;
    let completions: Vec<_> = (0..puts)
        .map(|i| store.put_async(format!("m/{i}").as_bytes(), common::value(i, 1500)))
        .collect();
    for answer in common::poll::run_all(completions).0 {
        answer.expect("put");
    }
    assert!(store.delete(b"m/0").expect("delete"));
    // Values split over every data column, one commit each: every node
    // takes an append in each, and one in 16 shared submissions is timed
    // per node.
    let split = 32;
    for i in 0..split {
        store
            .put(format!("big/{i}").as_bytes(), common::value(i, 96 << 10))
            .expect("put");
    }
    read_back(&store, puts);
    let all = snapshot(&snapshotter);
    assert_eq!(counter(&all, "geoshard_puts_total"), puts + split);
    assert_eq!(counter(&all, "geoshard_deletes_total"), 1);
    assert_eq!(counter(&all, "geoshard_gets_total"), puts - 1);
    assert!(counter(&all, "geoshard_bytes_written_total") > puts * 1500);
    // The debugging recorder drains histograms at each snapshot.
    assert_eq!(
        histogram_len(&all, "geoshard_write_seconds"),
        (puts + split) as usize + 1
    );
    assert!(histogram_len(&all, "geoshard_commit_seconds") >= 2);
    assert!(histogram_len(&all, "geoshard_commit_bytes") >= 2);
    assert!(histogram_len(&all, "geoshard_stripe_append_seconds") >= 2);
    // One healthy get in 64 is timed.
    assert!(histogram_len(&all, "geoshard_get_seconds") >= 4);
    // Every node took appends, each timed, and together they took every
    // column byte the commits wrote.
    let times = per_node(
        &all,
        MetricKind::Histogram,
        "geoshard_node_append_seconds",
        |v| match v {
            DebugValue::Histogram(values) => values.iter().map(|v| v.into_inner()).collect(),
            other => panic!("{other:?}"),
        },
    );
    let bytes = per_node(
        &all,
        MetricKind::Counter,
        "geoshard_node_bytes_written_total",
        |v| match v {
            DebugValue::Counter(n) => *n,
            other => panic!("{other:?}"),
        },
    );
    assert_eq!(times.len(), layout.nodes().len(), "{times:?}");
    assert_eq!(bytes.len(), layout.nodes().len(), "{bytes:?}");
    for node in layout.nodes() {
        let values: &Vec<f64> = &times[&node.name];
        assert!(!values.is_empty(), "{}: no append timed", node.name);
        assert!(values.iter().all(|&v| v > 0.0 && v < 60.0), "{values:?}");
    }
    let node_bytes: u64 = bytes.values().sum();
    assert_eq!(node_bytes, counter(&all, "geoshard_bytes_written_total"));

    // A node's data gone under the running store: reads rebuild, repair
    // puts it back.
    store.close().expect("close");
    drop(store);
    let victim = &layout.nodes()[0];
    let geoshard::layout::Location::Dir(path) = &victim.location else {
        unreachable!("a local layout")
    };
    std::fs::remove_dir_all(path).expect("burn a node");
    std::fs::create_dir_all(path).expect("an empty disk");
    let store = Store::open(layout.clone(), common::options()).expect("open without a node");
    read_back(&store, puts);
    // The small values may all sit in stripes where the burned node holds
    // only parity (how the puts were grouped into commits depends on
    // timing); the split values span every data column of 32 stripes, so
    // some of them need the burned node's columns.
    for i in 0..split {
        let got = store.get(format!("big/{i}").as_bytes()).expect("get");
        assert_eq!(got.map(|b| b.len()), Some(96 << 10), "big/{i}");
    }
    let all = snapshot(&snapshotter);
    assert!(counter(&all, "geoshard_degraded_reads_total") > 0);
    let report = store.repair(&RepairOptions::default()).expect("repair");
    assert!(report.columns_rebuilt > 0, "{report:?}");
    let all = snapshot(&snapshotter);
    assert_eq!(
        counter(&all, "geoshard_repair_columns_rebuilt_total"),
        report.columns_rebuilt
    );
    assert!(counter(&all, "geoshard_repair_bytes_written_total") > 0);
    assert_eq!(gauge(&all, "geoshard_repair_progress_ratio", &[]), 1.0);
    // The committer sets the node gauges within a second.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let all = snapshot(&snapshotter);
    let node = format!("node={}", victim.name);
    assert_eq!(gauge(&all, "geoshard_node_up", &[&node]), 1.0);
    assert_eq!(gauge(&all, "geoshard_node_writable", &[&node]), 1.0);
}
