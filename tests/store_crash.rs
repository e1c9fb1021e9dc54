//! Crash: the disk after a crash holds what was synced plus any prefix of
//! what was not. Cutting the records of the last, unacknowledged commit at
//! random lengths on random nodes must leave every acknowledged put readable
//! after reopen, and each unacknowledged put either absent or whole.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use geoshard::{Options, Store};
use rand::Rng;

fn sizes(root: &std::path::Path) -> HashMap<PathBuf, u64> {
    common::files_under(root)
        .into_iter()
        .map(|p| {
            let len = std::fs::metadata(&p).unwrap().len();
            (p, len)
        })
        .collect()
}

fn describe(v: Option<&[u8]>) -> String {
    match v {
        None => "absent".into(),
        Some(v) => format!("{} bytes, crc {:08x}", v.len(), crc32fast::hash(v)),
    }
}

#[test]
fn acknowledged_puts_survive_a_crash_mid_commit() {
    for seed in 0..6u64 {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let layout = common::layout_3x3(root);
        let mut rng = common::rng(seed);
        let mut acked: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();

        // Acknowledged work, over two process lifetimes.
        for round in 0..2 {
            let store = if round == 0 {
                Store::create(layout.clone(), common::options()).unwrap()
            } else {
                Store::open(layout.clone(), common::options()).unwrap()
            };
            for i in 0..40 {
                let key = format!("k{}", rng.random_range(0..60)).into_bytes();
                let value = common::chat_value(&mut rng, 20);
                store.put(&key, value.clone()).unwrap();
                acked.insert(key, value);
                if i % 7 == 0 {
                    let victim = format!("k{}", rng.random_range(0..60)).into_bytes();
                    store.delete(&victim).unwrap();
                    acked.remove(&victim);
                }
            }
            store.flush().unwrap();
            if round == 1 {
                // The last commit: many puts gathered into one group commit,
                // which the "crash" will cut short.
                let checkpoint = sizes(root);
                let slow = Options {
                    commit_delay: Duration::from_millis(300),
                    ..common::options()
                };
                drop(store);
                let store = Store::open(layout.clone(), slow).unwrap();
                let checkpoint_after_open = sizes(root);
                let in_flight: Vec<(Vec<u8>, Vec<u8>)> = (0..12)
                    .map(|i| {
                        let key = format!("k{}", (i * 5) % 60).into_bytes();
                        (key, common::chat_value(&mut rng, 0))
                    })
                    .collect();
                std::thread::scope(|s| {
                    for (key, value) in &in_flight {
                        let store = &store;
                        s.spawn(move || store.put(key, value.clone()).unwrap());
                    }
                });
                drop(store);
                assert_eq!(checkpoint.len(), checkpoint_after_open.len());
                // Crash: each file keeps a random prefix of what the last
                // commit appended.
                for (path, len) in sizes(root) {
                    let synced = checkpoint.get(&path).copied().unwrap_or(0);
                    if len > synced {
                        let keep = rng.random_range(synced..=len);
                        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                        f.set_len(keep).unwrap();
                    }
                }
                let store = Store::open(layout.clone(), common::options()).unwrap();
                let new_values: HashMap<&[u8], &[u8]> =
                    in_flight.iter().map(|(k, v)| (&k[..], &v[..])).collect();
                // Acknowledged values are intact unless the in-flight commit
                // replaced them whole.
                for (key, value) in &acked {
                    let got = store.get(key).unwrap().map(|b| b.to_bytes().to_vec());
                    let replaced = new_values
                        .get(&key[..])
                        .is_some_and(|n| got.as_deref() == Some(*n));
                    if !replaced {
                        assert!(
                            got.as_deref() == Some(&value[..]),
                            "seed {seed}: acknowledged {:?} is {}",
                            String::from_utf8_lossy(key),
                            describe(got.as_deref())
                        );
                    }
                }
                // The in-flight commit is one stripe: all of it or none of it.
                let mut applied = 0;
                for (key, new) in &new_values {
                    let got = store.get(key).unwrap().map(|b| b.to_bytes().to_vec());
                    if got.as_deref() == Some(*new) {
                        applied += 1;
                    } else if !acked.contains_key(*key) {
                        assert!(got.is_none(), "seed {seed}: {key:?} half-appeared");
                    }
                }
                assert!(
                    applied == 0 || applied == new_values.len(),
                    "seed {seed}: {applied} of {} in-flight puts appeared",
                    new_values.len()
                );
            }
        }
    }
}
