//! The public `Store` API round-trips: put/get/delete/contains/prefix
//! listing, split blobs, empty values, reopen, close, and typed errors for
//! bad keys and values.

mod common;

use std::io::Read;

use bytes::{Buf, Bytes};
use geoshard::layout::Layout;
use geoshard::{Error, Store};

#[test]
fn put_get_delete_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    assert!(store.is_empty());
    store.put(b"a/1", &b"one"[..]).unwrap();
    store.put(b"a/2", Bytes::from_static(b"two")).unwrap();
    store.put(b"b/1", Vec::<u8>::new()).unwrap();
    assert_eq!(&store.get(b"a/1").unwrap().unwrap().to_bytes()[..], b"one");
    let empty = store.get(b"b/1").unwrap().unwrap();
    assert!(empty.is_empty());
    assert!(store.contains(b"a/2").unwrap());
    assert_eq!(store.len(), 3);
    let keys: Vec<Vec<u8>> = store.keys_with_prefix(b"a/").collect();
    assert_eq!(keys, vec![b"a/1".to_vec(), b"a/2".to_vec()]);

    store.put(b"a/1", &b"uno"[..]).unwrap();
    assert!(store.delete(b"a/2").unwrap());
    assert!(!store.delete(b"a/2").unwrap());
    assert!(!store.delete(b"never").unwrap());
    assert!(store.get(b"a/2").unwrap().is_none());
    store.close().unwrap();
    assert!(matches!(store.put(b"x", &b"y"[..]), Err(Error::Closed)));
    drop(store);

    let store = common::open(dir.path());
    assert_eq!(&store.get(b"a/1").unwrap().unwrap().to_bytes()[..], b"uno");
    assert!(
        store.get(b"a/2").unwrap().is_none(),
        "tombstone survives reopen"
    );
    assert!(store.get(b"b/1").unwrap().unwrap().is_empty());
    assert_eq!(store.len(), 2);
}

#[test]
fn healthy_get_is_zero_copy_and_blob_reads_like_a_stream() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    let value: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    store.put(b"k", value.clone()).unwrap();
    let blob = store.get(b"k").unwrap().unwrap();
    assert_eq!(blob.chunks().len(), 1);
    // Two gets of the same blob see the same mapped bytes: no copy was made.
    let again = store.get(b"k").unwrap().unwrap();
    assert_eq!(blob.chunks()[0].as_ptr(), again.chunks()[0].as_ptr());
    assert_ne!(blob.chunks()[0].as_ptr(), value.as_ptr());
    let mut read = Vec::new();
    let mut b = blob;
    b.read_to_end(&mut read).unwrap();
    assert_eq!(read, value);
    assert_eq!(b.remaining(), 0);
}

#[test]
fn large_values_are_split_across_columns_and_stripes() {
    let dir = tempfile::tempdir().unwrap();
    let layout = common::layout_3x3(dir.path());
    let options = geoshard::Options {
        column_len_target: 64 << 10,
        ..common::options()
    };
    let store = Store::create(layout.clone(), options.clone()).unwrap();
    let mut rng = common::rng(7);
    let big: Vec<u8> = (0..(64 << 10) * 13 + 17)
        .map(|_| rand::Rng::random(&mut rng))
        .collect();
    store.put(b"big", big.clone()).unwrap();
    store.put(b"small", &b"s"[..]).unwrap();
    let blob = store.get(b"big").unwrap().unwrap();
    assert!(blob.chunks().len() >= 14, "cut into column-sized parts");
    assert_eq!(blob.len(), big.len());
    assert!(blob.to_bytes() == big[..]);
    drop(store);
    let store = Store::open(layout, options).unwrap();
    assert!(store.get(b"big").unwrap().unwrap().to_bytes() == big[..]);
    assert_eq!(store.len_of(b"big").unwrap(), Some(big.len() as u64));
}

#[test]
fn bad_keys_and_second_open_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    assert!(matches!(
        store.put(b"", &b"v"[..]),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(store.get(b""), Err(Error::InvalidArgument { .. })));
    let long = vec![b'k'; 1025];
    assert!(matches!(
        store.put(&long, &b"v"[..]),
        Err(Error::LimitExceeded {
            limit: 1024,
            actual: 1025,
            ..
        })
    ));
    let max = vec![b'k'; 1024];
    store.put(&max, &b"v"[..]).unwrap();
    assert!(store.get(&max).unwrap().is_some());
    // One process owns a store.
    let second = Store::open(common::layout_3x3(dir.path()), common::options());
    assert!(matches!(second, Err(Error::Locked { .. })), "{second:?}");
}

#[test]
fn layout_that_lies_about_the_code_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = common::open(dir.path());
        store.put(b"k", &b"v"[..]).unwrap();
    }
    // Same nodes, but the layout now claims RS(5,4).
    let lying = common::layout(dir.path(), 3, 3, 5, 4);
    let err = Store::open(lying, common::options()).unwrap_err();
    assert!(matches!(err, Error::InvalidLayout { .. }), "{err}");
    assert!(err.to_string().contains("RS(6, 3)"), "{err}");
}

#[test]
fn layout_that_swaps_node_paths_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = common::open(dir.path());
        for i in 0..200 {
            store
                .put(format!("k{i}").as_bytes(), vec![i as u8; 3000])
                .unwrap();
        }
    }
    // The layout names s0n0's directory s1n0 and the other way round.
    let root = dir.path();
    let mut builder = Layout::builder().code(6, 3);
    for s in 0..3 {
        let nodes: Vec<(String, std::path::PathBuf)> = (0..3)
            .map(|n| {
                let (ps, pn) = match (s, n) {
                    (0, 0) => (1, 0),
                    (1, 0) => (0, 0),
                    other => other,
                };
                (format!("s{s}n{n}"), root.join(format!("site{ps}/n{pn}")))
            })
            .collect();
        builder = builder.site(format!("site{s}"), |mut b| {
            for (name, path) in &nodes {
                b = b.node(name, path.as_path());
            }
            b
        });
    }
    let err = Store::open(builder.build().unwrap(), common::options()).unwrap_err();
    assert!(matches!(err, Error::InvalidLayout { .. }), "{err}");
    assert!(err.to_string().contains("names and paths"), "{err}");
}

#[test]
fn store_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
    assert_send_sync::<geoshard::Blob>();
}

/// `close` releases the nodes: the store opens again at once, in the same
/// process, while the closed handle still exists; the closed handle
/// refuses reads and writes.
#[test]
fn close_releases_the_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    store.put(b"k", b"v".to_vec()).unwrap();
    store.close().unwrap();
    assert!(matches!(store.get(b"k"), Err(Error::Closed)));
    assert!(matches!(
        store.put(b"k2", b"v".to_vec()),
        Err(Error::Closed)
    ));
    let again = common::open(dir.path());
    assert_eq!(&again.get(b"k").unwrap().unwrap().to_bytes()[..], b"v");
    drop(store);
}

/// The first listing after open sorts every key (from a copy, outside the
/// store's lock, once the backlog is over 4 MiB of index records: about
/// 150,000 keys here). Two listings at once, with puts and deletes of other
/// keys going on, each see every key of their prefix once, in order.
#[test]
fn the_first_listings_after_open_see_every_key_while_writes_go_on() {
    const KEYS: usize = 160_000;
    let dir = tempfile::tempdir().unwrap();
    let key = |n: usize| format!("room-{:03}/msg-{n:07}", n % 500);
    {
        let store = common::open(dir.path());
        let puts: Vec<_> = (0..KEYS)
            .map(|n| store.put_async(key(n).as_bytes(), &b"m"[..]))
            .collect();
        for put in puts {
            block_on(put).unwrap();
        }
    }
    let store = common::open(dir.path());
    assert_eq!(store.len(), KEYS);
    let mut want: Vec<Vec<u8>> = (0..KEYS)
        .filter(|n| n % 500 < 250)
        .map(|n| key(n).into_bytes())
        .collect();
    want.sort();
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            for n in 0..300 {
                store
                    .put(format!("other/{n}").as_bytes(), &b"x"[..])
                    .unwrap();
                if n % 3 == 0 {
                    store.delete(format!("other/{}", n / 2).as_bytes()).unwrap();
                }
            }
        });
        let listers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    store
                        .keys_with_prefix(b"room-")
                        .filter(|k| k[5..8] < b"250"[..])
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for lister in listers {
            assert!(lister.join().unwrap() == want, "a listing differs");
        }
        writer.join().unwrap();
    });
    let others: Vec<Vec<u8>> = store.keys_with_prefix(b"other/").collect();
    assert!(others.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(others.len(), store.len() - KEYS);
}

/// Polls a future to completion on this thread.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}
