//! Fire drill: on 3 sites x 3 nodes with RS(6,3), blobs written from 8
//! threads survive the loss of any one whole site: after its directories are
//! deleted (on a copy, one site at a time) the store reopens from the two
//! surviving sites and every live blob reads back byte-exact; deleted blobs
//! stay deleted.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use geoshard::Store;
use geoshard::layout::SiteId;

/// Key -> value, or `None` once deleted.
type Model = HashMap<Vec<u8>, Option<Vec<u8>>>;

const BLOBS: usize = 20_000;
const THREADS: usize = 8;

#[test]
fn any_one_site_can_burn() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("live");
    let store = Arc::new(common::open(&root));
    let model: Arc<Mutex<Model>> = Arc::default();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let store = Arc::clone(&store);
            let model = Arc::clone(&model);
            s.spawn(move || {
                let mut rng = common::rng(1000 + t as u64);
                for i in 0..BLOBS / THREADS {
                    let key = format!("chat/{t}/{i}").into_bytes();
                    let value = common::chat_value(&mut rng, 3);
                    store.put(&key, value.clone()).unwrap();
                    model.lock().unwrap().insert(key, Some(value));
                    if i % 10 == 9 {
                        let victim = format!("chat/{t}/{}", i - 5).into_bytes();
                        assert!(store.delete(&victim).unwrap());
                        model.lock().unwrap().insert(victim, None);
                    }
                }
            });
        }
    });
    let model = Arc::try_unwrap(model).unwrap().into_inner().unwrap();
    assert!(store.health().survives_any_site_loss);
    Arc::try_unwrap(store).unwrap().close().unwrap();

    let layout = common::layout_3x3(&root);
    for site in 0..layout.sites().len() {
        let copy = dir.path().join(format!("burn{site}"));
        common::copy_tree(&root, &copy);
        let copy_layout = common::layout_3x3(&copy);
        common::burn_site(&copy_layout, SiteId(site as u16));
        let store = Store::open(copy_layout, common::options()).unwrap();
        let health = store.health();
        assert!(!health.survives_any_site_loss, "one site is already gone");
        assert_eq!(health.nodes.iter().filter(|n| !n.reachable).count(), 3);
        let live = model.values().filter(|v| v.is_some()).count();
        assert_eq!(store.len(), live, "site {site}: every live key is indexed");
        for (key, expected) in &model {
            let got = store.get(key).unwrap();
            match expected {
                Some(v) => {
                    let blob = got.unwrap_or_else(|| panic!("site {site}: {key:?} lost"));
                    assert!(
                        blob.to_bytes() == v[..],
                        "site {site}: {:?} differs",
                        String::from_utf8_lossy(key)
                    );
                }
                None => assert!(got.is_none(), "site {site}: deleted {key:?} came back"),
            }
        }
        assert!(store.stats().degraded_reads > 0);
        drop(store);
        std::fs::remove_dir_all(&copy).unwrap();
    }
}
