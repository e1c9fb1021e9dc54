//! Concurrency: 8 threads mixing put, get and delete on overlapping keys
//! against a model; every get sees a value some put wrote (never torn), and
//! the final state, also after reopen, matches the model.

mod common;

use std::sync::Mutex;

use rand::Rng;

const KEYS: usize = 200;

/// Values carry their key and a version, so a read can be checked alone.
fn value(key: usize, version: u64, len: usize) -> Vec<u8> {
    let mut v = format!("{key}:{version}:").into_bytes();
    v.resize(len.max(v.len()), (key as u8) ^ (version as u8));
    v
}

fn parse(v: &[u8]) -> (usize, u64) {
    let mut parts = v.splitn(3, |&b| b == b':');
    let mut number = || -> u64 {
        let field = parts.next().expect("value has key:version:");
        std::str::from_utf8(field).unwrap().parse().unwrap()
    };
    let key = number() as usize;
    (key, number())
}

#[test]
fn mixed_operations_match_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    // Per-key model and lock: a thread holds the key's lock across its write
    // so the model's order is the store's order for that key; reads and
    // writes of different keys run concurrently and share group commits.
    let model: Vec<Mutex<Option<Vec<u8>>>> = (0..KEYS).map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let (store, model) = (&store, &model);
            s.spawn(move || {
                let mut rng = common::rng(77 + t);
                for i in 0..400u64 {
                    let key = rng.random_range(0..KEYS);
                    let name = format!("key/{key}").into_bytes();
                    match rng.random_range(0..10) {
                        0..=3 => {
                            let version = t * 1_000_000 + i;
                            let v = value(key, version, rng.random_range(1..3000));
                            let mut slot = model[key].lock().unwrap();
                            store.put(&name, v.clone()).unwrap();
                            *slot = Some(v);
                        }
                        4..=5 => {
                            let mut slot = model[key].lock().unwrap();
                            let existed = store.delete(&name).unwrap();
                            assert_eq!(existed, slot.is_some());
                            *slot = None;
                        }
                        _ => {
                            if let Some(blob) = store.get(&name).unwrap() {
                                let bytes = blob.to_bytes();
                                let (k, version) = parse(&bytes);
                                assert_eq!(k, key, "a get returned another key's value");
                                let expect = value(key, version, bytes.len());
                                assert_eq!(&bytes[..], &expect[..], "torn value");
                            }
                        }
                    }
                }
            });
        }
    });
    let check = |store: &geoshard::Store| {
        for (key, slot) in model.iter().enumerate() {
            let got = store.get(format!("key/{key}").as_bytes()).unwrap();
            let expected = slot.lock().unwrap().clone();
            assert_eq!(got.map(|b| b.to_bytes().to_vec()), expected, "key {key}");
        }
    };
    check(&store);
    drop(store);
    check(&common::open(dir.path()));
}
