//! Writes during an outage: with one site gone, puts keep succeeding under
//! `WritePolicy::Available` (columns go to handoff nodes in the surviving
//! sites, readable at once and after reopen) and fail with a typed error
//! under `WritePolicy::Strict`.

mod common;

use geoshard::layout::SiteId;
use geoshard::{Error, Options, Store, WritePolicy};

#[test]
fn available_keeps_writing_strict_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let layout = common::layout_3x3(dir.path());
    {
        let store = Store::create(layout.clone(), common::options()).unwrap();
        store.put(b"before", &b"fire"[..]).unwrap();
    }
    common::burn_site(&layout, SiteId(1));

    let store = Store::open(layout.clone(), common::options()).unwrap();
    let written: Vec<(Vec<u8>, Vec<u8>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8u64)
            .map(|t| {
                let store = &store;
                s.spawn(move || {
                    let mut rng = common::rng(50 + t);
                    let mut out = Vec::new();
                    for i in 0..625 {
                        let key = format!("during/{t}/{i}").into_bytes();
                        let value = common::chat_value(&mut rng, 0);
                        store.put(&key, value.clone()).unwrap();
                        out.push((key, value));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(written.len(), 5_000);
    for (key, value) in &written {
        assert!(
            store
                .get(key)
                .unwrap()
                .expect("written during the outage")
                .to_bytes()
                == value[..]
        );
    }
    let health = store.health();
    assert!(
        health.columns_away > 0,
        "handoff columns are recorded as away"
    );
    assert!(
        !health.survives_any_site_loss,
        "9 columns on 2 sites: losing either leaves fewer than 6"
    );
    assert_eq!(health.nodes.iter().filter(|n| !n.reachable).count(), 3);
    drop(store);

    // Reopen with the site still gone: everything written during the
    // outage is found on the handoff nodes.
    let store = Store::open(layout.clone(), common::options()).unwrap();
    assert_eq!(
        &store.get(b"before").unwrap().unwrap().to_bytes()[..],
        b"fire"
    );
    for (key, value) in &written {
        assert!(
            store
                .get(key)
                .unwrap()
                .expect("written during the outage")
                .to_bytes()
                == value[..]
        );
    }
    drop(store);

    let strict = Options {
        write_policy: WritePolicy::Strict,
        ..common::options()
    };
    let store = Store::open(layout, strict).unwrap();
    let err = store.put(b"strict", &b"no"[..]).unwrap_err();
    assert!(matches!(err, Error::WriteRefused { .. }), "{err}");
    assert!(err.to_string().contains("WritePolicy::Available"), "{err}");
    assert!(store.get(b"strict").unwrap().is_none());
    assert_eq!(
        &store.get(b"before").unwrap().unwrap().to_bytes()[..],
        b"fire"
    );
}
