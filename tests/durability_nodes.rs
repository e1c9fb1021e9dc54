//! Nodes that fail under a running store (docs/DURABILITY.md, D1): a node
//! marked down comes back through repair, a truncated segment is a degraded
//! read and never kills the process, a node directory deleted under load
//! stops taking columns at once, a home node that refuses a rebuilt column
//! gets it on a handoff, and handoff copies are reclaimed once home.

mod common;

use std::time::Duration;

use geoshard::layout::SiteId;
use geoshard::{CompactOptions, Options, RepairOptions, Store};

fn node_dir(root: &std::path::Path, site: usize, node: usize) -> std::path::PathBuf {
    root.join(format!("site{site}")).join(format!("n{node}"))
}

/// Review item 7: a local node marked down while its directory exists
/// kept its old handle (and lock), so repair's reopen got `Locked` forever.
#[test]
fn repair_brings_back_a_node_marked_down_while_its_directory_exists() {
    let dir = tempfile::tempdir().unwrap();
    let layout = common::layout_3x3(dir.path());
    let store = common::create(layout, common::options());
    let model = common::fill(&store, "a", 1, 20, 0);
    let away = dir.path().join("away");
    std::fs::rename(node_dir(dir.path(), 0, 0), &away).unwrap();
    let health = store.health();
    assert!(
        !health.nodes[0].reachable,
        "the missing directory is noticed"
    );
    std::fs::rename(&away, node_dir(dir.path(), 0, 0)).unwrap();
    let report = store.repair(&RepairOptions::default()).unwrap();
    assert!(
        report.nodes_revived.iter().any(|n| n == "s0n0"),
        "repair did not bring s0n0 back: {report:?}"
    );
    let health = store.health();
    assert!(
        health.nodes[0].reachable && health.nodes[0].writable,
        "{:?}",
        health.nodes[0]
    );
    assert!(health.survives_any_site_loss);
    common::check_all(&store, &model);
}

/// Review item 11: a segment truncated under a running store raised SIGBUS
/// inside `get` and killed the process. Run in a child process, so a death
/// is a failed assertion here and not a crashed test runner.
#[test]
fn a_segment_truncated_under_a_running_store_is_read_degraded() {
    const CHILD: &str = "GEOSHARD_TEST_TRUNCATE_CHILD";
    if let Ok(dir) = std::env::var(CHILD) {
        truncate_and_read(std::path::Path::new(&dir));
        return;
    }
    let dir = common::fast_tempdir();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_segment_truncated_under_a_running_store_is_read_degraded",
            "--nocapture",
        ])
        .env(CHILD, dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the child died or failed ({:?}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn truncate_and_read(root: &std::path::Path) {
    let layout = common::layout_3x3(root);
    let store = common::create(layout, common::options());
    let model = common::fill(&store, "t", 3, 40, 0);
    // Map every segment, and keep some blobs obtained before the damage.
    common::check_all(&store, &model);
    let held: Vec<(Vec<u8>, geoshard::Blob)> = model
        .keys()
        .take(20)
        .map(|k| (k.clone(), store.get(k).unwrap().unwrap()))
        .collect();
    for site in 0..3 {
        for file in common::files_under(&node_dir(root, site, 0)) {
            if file.extension().is_some_and(|e| e == "segment") {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&file)
                    .unwrap()
                    .set_len(0)
                    .unwrap();
            }
        }
    }
    // Every blob still reads back: the truncated columns are rebuilt.
    common::check_all(&store, &model);
    assert!(store.stats().degraded_reads > 0);
    // Blobs obtained before the truncation: the documented behaviour is
    // that reading them does not kill the process; their bytes are the
    // original ones or zeros where a page could no longer be read.
    for (key, blob) in held {
        let bytes = blob.to_bytes();
        let original = &model[&key];
        assert!(
            bytes[..] == original[..] || bytes.iter().all(|&b| b == 0),
            "a blob held across the truncation reads neither its bytes nor zeros"
        );
    }
}

/// Review item 15: under steady load a deleted node directory went
/// unnoticed, and columns written into its unlinked files counted toward
/// acknowledgement.
#[test]
fn a_node_directory_deleted_under_load_takes_no_more_columns() {
    let dir = tempfile::tempdir().unwrap();
    let layout = common::layout_3x3(dir.path());
    let store = common::create(layout, common::options());
    for i in 0..30u64 {
        store
            .put(format!("before{i}").as_bytes(), common::value(i, 2000))
            .unwrap();
    }
    let before = store.health();
    assert!(before.nodes[0].reachable);
    let held = before.nodes[0].columns;
    std::fs::remove_dir_all(node_dir(dir.path(), 0, 0)).unwrap();
    // Steady load: no idle moment for a watchdog.
    for i in 0..60u64 {
        store
            .put(format!("after{i}").as_bytes(), common::value(100 + i, 2000))
            .unwrap();
    }
    let health = store.health();
    assert!(!health.nodes[0].reachable);
    assert_eq!(
        health.columns_missing, held,
        "columns written after the directory was deleted count as stored there"
    );
    assert!(health.nodes[0].columns_missing >= held);
}

/// Review item 19: when the home node refuses a rebuilt column (here its
/// segment path is taken by a directory), repair must put the column on a
/// site-safe handoff, not give up on the stripe.
#[test]
fn repair_writes_a_column_the_home_node_refuses_to_a_handoff() {
    let dir = tempfile::tempdir().unwrap();
    let layout = common::layout_3x3(dir.path());
    let store = common::create(layout, common::options());
    let model = common::fill(&store, "r", 4, 20, 50);
    let home = node_dir(dir.path(), 1, 1);
    let segments: Vec<std::path::PathBuf> = common::files_under(&home)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "segment"))
        .collect();
    assert!(!segments.is_empty());
    std::fs::remove_dir_all(&home).unwrap();
    assert!(!store.health().nodes[4].reachable);
    std::fs::create_dir_all(&home).unwrap();
    for segment in &segments {
        std::fs::create_dir(segment).unwrap();
    }
    let report = store.repair(&RepairOptions::default()).unwrap();
    assert_eq!(report.stripes_unrepairable, 0, "{report:?}");
    assert!(report.columns_rebuilt > 0);
    let health = store.health();
    assert!(health.survives_any_site_loss, "{health:?}");
    common::check_all(&store, &model);
}

/// Review item 20: repair moved handoff columns home but never reclaimed
/// the handoff copies. Compaction must free them.
#[test]
fn handoff_copies_are_reclaimed_once_their_columns_are_home() {
    let dir = common::fast_tempdir();
    let layout = common::layout_3x3(dir.path());
    let options = Options {
        segment_len_target: 16 << 10,
        column_len_target: 64 << 10,
        ..common::options()
    };
    drop(common::create(layout.clone(), options.clone()));
    let (faulty, handles) = common::faulty_nodes(&layout);
    let store = Store::open_with_nodes(layout.clone(), options, handles).unwrap();
    faulty[0].fail_next_appends(u32::MAX, libc::ENOSPC);
    let model = common::fill(&store, "h", 5, 40, 0);
    // A fresh generation after the outage, so the outage's ones can be compacted.
    faulty[0].heal();
    let disk = |root: &std::path::Path| -> u64 {
        common::files_under(root)
            .iter()
            .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum()
    };
    for _ in 0..2 {
        store.repair(&RepairOptions::default()).unwrap();
    }
    let health = store.health();
    assert_eq!(health.columns_away, 0, "{health:?}");
    let filler = common::value(77, 300 << 10);
    store.put(b"filler", filler).unwrap();
    let before = disk(dir.path());
    // One stale column in nine: compact what is at most 95% useful.
    store
        .compact(&CompactOptions {
            live_ratio_max: 0.95,
            ..CompactOptions::default()
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(10));
    let after = disk(dir.path());
    assert!(
        after < before,
        "compaction did not reclaim the handoff copies: {before} -> {after} bytes"
    );
    common::check_all(&store, &model);
}

/// Sites 0 and 1 burn under a running store (beyond the promise: the
/// stripe keeps three of its nine columns), repair adopts their empty
/// nodes and cannot rebuild it, then site 2 burns too. No record of the
/// put is left anywhere; the adopted nodes' manifests say their history
/// was never brought back, so open refuses loudly instead of opening an
/// empty store that answers `None` (simulator seed 3,024).
#[test]
fn a_loss_whose_every_record_burned_after_repair_adopted_the_nodes_stays_loud() {
    let dir = tempfile::tempdir().unwrap();
    let layout = common::layout_3x3(dir.path());
    let store = common::create(layout.clone(), common::options());
    let model = common::fill(&store, "a", 1, 20, 0);
    common::burn_site(&layout, SiteId(0));
    common::burn_site(&layout, SiteId(1));
    let report = store.repair(&RepairOptions::default()).unwrap();
    assert!(report.stripes_unrepairable > 0, "{report:?}");
    assert_eq!(report.nodes_revived.len(), 6, "{report:?}");
    // Stripes whose data columns are all stored keep three of nine.
    let lost = model
        .keys()
        .find(|key| store.get(key).is_err())
        .expect("a key the loss is loud about while the store runs")
        .clone();
    common::burn_site(&layout, SiteId(2));
    drop(store);
    match Store::open(layout.clone(), common::options()) {
        Err(geoshard::Error::TooManyNodesDown { nodes, reason }) => {
            assert_eq!(nodes.len(), 9, "{nodes:?}");
            assert!(reason.contains("never brought back"), "{reason}");
        }
        Err(e) => panic!("refused with the wrong error: {e}"),
        Ok(store) => panic!(
            "opened after losing every record of acknowledged puts; get: {:?}",
            store.get(&lost).map(|v| v.map(|v| v.len()))
        ),
    }
    // A salvage open says the key may be lost, and so is any other miss,
    // until the loss is accepted.
    let salvage = Options {
        salvage: true,
        ..common::options()
    };
    let store = Store::open(layout.clone(), salvage).unwrap();
    assert!(store.open_report().lost_keys_unknown);
    for key in [&lost[..], b"never-put"] {
        match store.get(key) {
            Err(geoshard::Error::PossiblyLost { .. }) => {}
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(key)),
        }
    }
    store.accept_loss().unwrap();
    assert!(store.get(&lost).unwrap().is_none());
    // The nodes that came back empty count whole again once every stripe
    // left keeps the promise: repair brings site 2 back and rebuilds.
    store.repair(&RepairOptions::default()).unwrap();
    assert!(store.health().survives_any_site_loss);
    store.close().unwrap();
    let store = Store::open(layout, common::options()).unwrap();
    assert!(store.get(&lost).unwrap().is_none());
}

/// The other side of the rule above: a site burns, repair adopts its
/// nodes and brings every column back, and a second site burns later
/// (within the promise: one site at a time, repaired between). Open must
/// take the first site's nodes for whole again, not refuse.
#[test]
fn nodes_repair_brought_back_whole_count_again_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let layout = common::layout_3x3(dir.path());
    let store = common::create(layout.clone(), common::options());
    let model = common::fill(&store, "a", 1, 20, 0);
    common::burn_site(&layout, SiteId(0));
    let report = store.repair(&RepairOptions::default()).unwrap();
    assert_eq!(report.stripes_unrepairable, 0, "{report:?}");
    assert!(store.health().survives_any_site_loss);
    store.close().unwrap();
    common::burn_site(&layout, SiteId(1));
    let store = Store::open(layout.clone(), common::options()).unwrap();
    common::check_all(&store, &model);
    store.repair(&RepairOptions::default()).unwrap();
    store.close().unwrap();
    let store = Store::open(layout, common::options()).unwrap();
    common::check_all(&store, &model);
}

/// One site of six nodes, RS(4,2), "any 2 nodes": no stripe survives the
/// loss of its site, so whether a node that came back empty is whole again
/// is judged against the layout's own promise. Two disks replaced one at a
/// time, each repaired, then a third down at open: within the promise.
#[test]
fn nodes_brought_back_whole_count_again_in_a_one_site_layout() {
    let dir = tempfile::tempdir().unwrap();
    let mut builder = geoshard::layout::Layout::builder().code(4, 2);
    builder = builder.site("only", |mut s| {
        for n in 0..6 {
            s = s.node(format!("n{n}"), dir.path().join(format!("n{n}")));
        }
        s
    });
    let layout = builder
        .promise(geoshard::layout::Promise {
            sites_lost: 0,
            extra_nodes_lost: 2,
        })
        .build()
        .unwrap();
    let store = common::create(layout.clone(), common::options());
    let model = common::fill(&store, "a", 1, 10, 0);
    for n in 0..2 {
        std::fs::remove_dir_all(dir.path().join(format!("n{n}"))).unwrap();
        let report = store.repair(&RepairOptions::default()).unwrap();
        assert_eq!(report.stripes_unrepairable, 0, "{report:?}");
        common::check_all(&store, &model);
    }
    store.close().unwrap();
    std::fs::remove_dir_all(dir.path().join("n2")).unwrap();
    let store = Store::open(layout, common::options()).unwrap();
    common::check_all(&store, &model);
}
