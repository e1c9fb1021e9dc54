//! The async API: refusals at once, dropped futures leave whole writes or
//! none, a closed store answers `Closed`, healthy local reads are answered
//! inline and degraded ones on a pool, and tokio runtimes (current-thread
//! and multi-thread) drive puts and gets from many tasks. The "executor"
//! of the other tests is the test thread itself: the API needs no runtime.

mod common;

use std::sync::Arc;

use common::poll::{key, poll_once, run_all};
use geoshard::{Error, Store};

#[test]
fn dropped_futures_leave_whole_writes_or_none_and_refusals_come_at_once() {
    let dir = common::fast_tempdir();
    let layout = common::layout(dir.path(), 3, 1, 2, 1);
    let store = common::create(layout.clone(), common::options());
    // Refused before they are queued: the future is ready at once.
    let refused = vec![
        store.put_async(b"", &b"x"[..]),
        store.put_async(&[b'k'; 2000], &b"x"[..]),
    ];
    for answer in run_all(refused).0 {
        assert!(
            matches!(
                answer,
                Err(Error::InvalidArgument { .. } | Error::LimitExceeded { .. })
            ),
            "{answer:?}"
        );
    }
    // Dropped while in flight: each may land or not, but whole.
    for i in 0..200 {
        drop(store.put_async(&key(i), common::value(i as u64, 3000)));
    }
    assert!(run_all(vec![store.flush_async()]).0[0].is_ok());
    for i in 0..200 {
        if let Some(got) = store.get(&key(i)).expect("get") {
            assert_eq!(&got.to_bytes()[..], &common::value(i as u64, 3000)[..]);
        }
    }
    // A closed store answers every later write, and the ones it never
    // took, with Closed.
    store.close().expect("close");
    let after = vec![store.put_async(b"late", &b"x"[..])];
    assert!(matches!(run_all(after).0[0], Err(Error::Closed)));
    assert!(matches!(
        run_all(vec![store.flush_async()]).0[0],
        Err(Error::Closed)
    ));
}

#[test]
fn reads_are_answered_at_once_when_healthy_and_on_a_pool_when_degraded() {
    let dir = common::fast_tempdir();
    let layout = common::layout(dir.path(), 3, 2, 4, 2);
    let store = common::create(layout.clone(), common::options());
    let keys = 64;
    let puts = (0..keys)
        .map(|i| store.put_async(&key(i), common::value(i as u64, 50 + 37 * i)))
        .collect();
    assert!(run_all(puts).0.iter().all(Result::is_ok));
    // Healthy and local: ready at the first poll, the same bytes as get.
    for i in 0..keys {
        let mut read = store.get_async(&key(i));
        let got = poll_once(&mut read).expect("a healthy local read is answered at once");
        let got = got.expect("get").expect("present");
        assert_eq!(
            &got.to_bytes()[..],
            &common::value(i as u64, 50 + 37 * i)[..]
        );
    }
    let mut absent = store.get_async(b"room-00/none");
    assert!(matches!(poll_once(&mut absent), Some(Ok(None))));
    let mut bad = store.get_async(b"");
    assert!(matches!(
        poll_once(&mut bad),
        Some(Err(Error::InvalidArgument { .. }))
    ));
    store.close().expect("close");
    drop(store);
    // A site burnt: reads of its columns are rebuilt from the others, on a
    // pooled thread; every one resolves with the right bytes.
    common::burn_site(&layout, geoshard::layout::SiteId(0));
    let store = Store::open(layout, common::options()).expect("open with a site gone");
    let reads = (0..keys).map(|i| store.get_async(&key(i))).collect();
    let (answers, _) = run_all(reads);
    for (i, got) in answers.into_iter().enumerate() {
        let got = got.expect("degraded get").expect("present");
        assert_eq!(
            &got.to_bytes()[..],
            &common::value(i as u64, 50 + 37 * i)[..]
        );
    }
    assert!(store.stats().degraded_reads > 0, "no read was degraded");
}

#[test]
fn tokio_runtimes_drive_puts_and_gets_from_many_tasks() {
    let dir = common::fast_tempdir();
    let layout = common::layout(dir.path(), 3, 1, 2, 1);
    let store = Arc::new(common::create(layout, common::options()));
    let current = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("current-thread runtime");
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("multi-thread runtime");
    for (name, runtime) in [("current", &current), ("multi", &multi)] {
        let tasks: Vec<_> = (0..64)
            .map(|t| {
                let store = Arc::clone(&store);
                runtime.spawn(async move {
                    for i in 0..16 {
                        let key = format!("{name}/task-{t:03}/msg-{i:03}").into_bytes();
                        let value = common::value(t * 100 + i, 200);
                        store.put_async(&key, value.clone()).await?;
                        let got = store.get_async(&key).await?.expect("just put");
                        assert_eq!(&got.to_bytes()[..], &value[..]);
                    }
                    Ok::<(), Error>(())
                })
            })
            .collect();
        runtime.block_on(async {
            for task in tasks {
                task.await.expect("task").expect("puts and gets");
            }
        });
    }
    assert_eq!(store.len(), 2 * 64 * 16);
}

#[test]
fn puts_in_flight_across_a_crash_and_a_site_fire_keep_every_acknowledgement() {
    use std::task::{Context, Poll, Waker};
    let dir = common::fast_tempdir();
    let live = dir.path().join("live");
    let layout = common::layout(&live, 3, 2, 4, 2);
    let store = common::create(layout, common::options());
    const PUTS: usize = 3000;
    // About 90 MB in all: many commits, so the crash finds some
    // acknowledged, some written but unacknowledged, some not yet written.
    let value = |i: usize| common::value(i as u64, 100 + (i * 7919) % 60_000);
    // The first half is submitted and polled until half of it is
    // acknowledged; the second half is submitted just before the disks are
    // copied as a crash would leave them, so the crash always finds puts in
    // flight, however fast the disks (on a warm page cache the first half
    // can be durable before the first poll).
    let first = PUTS / 2;
    let mut puts: Vec<Option<geoshard::Completion<()>>> = (0..first)
        .map(|i| Some(store.put_async(&key(i), value(i))))
        .collect();
    let mut cx = Context::from_waker(Waker::noop());
    let mut acked = vec![false; PUTS];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while acked.iter().filter(|a| **a).count() < first / 2 {
        for (i, slot) in puts.iter_mut().enumerate() {
            if let Some(put) = slot
                && let Poll::Ready(answer) = std::pin::Pin::new(put).poll(&mut cx)
            {
                answer.expect("put");
                acked[i] = true;
                *slot = None;
            }
        }
        assert!(std::time::Instant::now() < deadline, "puts never answered");
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    puts.extend((first..PUTS).map(|i| Some(store.put_async(&key(i), value(i)))));
    let crashed = dir.path().join("crashed");
    common::copy_tree(&live, &crashed);
    let acked_at_crash = acked.iter().filter(|a| **a).count();
    assert!(acked_at_crash < PUTS, "nothing was in flight at the crash");
    let (answers, _) = run_all(puts.into_iter().flatten().collect());
    assert!(answers.iter().all(Result::is_ok));
    drop(store);

    // After the crash: every put acknowledged before it reads back; the
    // others are whole or absent. Then a site burns: the same again.
    let check = |store: &Store, when: &str| {
        for (i, was_acked) in acked.iter().enumerate() {
            match store.get(&key(i)).expect("get within the promise") {
                Some(got) => assert_eq!(&got.to_bytes()[..], &value(i)[..], "{when}: put {i}"),
                None => assert!(!was_acked, "{when}: acknowledged put {i} lost"),
            }
        }
    };
    let layout = common::layout(&crashed, 3, 2, 4, 2);
    let store = Store::open(layout.clone(), common::options()).expect("open after the crash");
    check(&store, "after the crash");
    store.close().expect("close");
    drop(store);
    common::burn_site(&layout, geoshard::layout::SiteId(1));
    let store = Store::open(layout, common::options()).expect("open with a site burnt");
    check(&store, "after the crash and a site fire");
}
