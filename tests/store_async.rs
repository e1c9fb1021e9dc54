//! The async write API: thousands of puts in flight on one thread share
//! commits and all become durable; a dropped future never leaves a write
//! half applied; a closed store answers `Closed`.
//!
//! The "executor" here is the test thread itself, polling every future
//! with a waker that unparks it: the API needs no runtime of its own.
//! This file holds one test per process concern it measures (threads),
//! so it has few tests: the harness runs them on its own threads.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use geoshard::{Completion, Error, Store};

/// A waker that unparks the polling thread.
struct Unpark {
    thread: std::thread::Thread,
    woken: AtomicBool,
}

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// Polls every future on this thread until all are ready; returns their
/// outputs in order, and the most threads the process had meanwhile.
fn run_all<T>(mut futures: Vec<Completion<T>>) -> (Vec<geoshard::Result<T>>, usize) {
    let unpark = Arc::new(Unpark {
        thread: std::thread::current(),
        woken: AtomicBool::new(false),
    });
    let waker = Waker::from(Arc::clone(&unpark));
    let mut cx = Context::from_waker(&waker);
    let mut out: Vec<Option<geoshard::Result<T>>> = futures.iter().map(|_| None).collect();
    let mut left = futures.len();
    let mut threads_max = threads();
    let deadline = Instant::now() + Duration::from_secs(120);
    while left > 0 {
        unpark.woken.store(false, Ordering::Release);
        for (i, future) in futures.iter_mut().enumerate() {
            if out[i].is_some() {
                continue;
            }
            if let Poll::Ready(result) = Pin::new(future).poll(&mut cx) {
                out[i] = Some(result);
                left -= 1;
            }
        }
        threads_max = threads_max.max(threads());
        assert!(Instant::now() < deadline, "{left} writes never answered");
        if left > 0 && !unpark.woken.load(Ordering::Acquire) {
            std::thread::park_timeout(Duration::from_millis(50));
        }
    }
    (out.into_iter().flatten().collect(), threads_max)
}

/// Threads of this process now.
fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn key(i: usize) -> Vec<u8> {
    format!("room-{:02}/msg-{i:08}", i % 16).into_bytes()
}

#[test]
fn thousands_of_puts_in_flight_on_one_thread_all_become_durable() {
    let dir = common::fast_tempdir();
    let layout = common::layout(dir.path(), 3, 2, 4, 2);
    let store = common::create(layout.clone(), common::options());
    const PUTS: usize = 4096;
    let puts: Vec<Completion<()>> = (0..PUTS)
        .map(|i| store.put_async(&key(i), common::value(i as u64, 100 + i % 1900)))
        .collect();
    let (answers, threads_max) = run_all(puts);
    for (i, answer) in answers.iter().enumerate() {
        assert!(answer.is_ok(), "put {i}: {answer:?}");
    }
    // The test harness, the committer and a commit's node threads: O(1),
    // not one per put in flight.
    assert!(
        threads_max < 32,
        "{threads_max} threads with {PUTS} puts in flight"
    );
    let stats = store.stats();
    eprintln!(
        "{PUTS} puts in flight: {threads_max} threads at most, {} stripes",
        stats.stripes
    );
    assert_eq!(stats.puts, PUTS as u64);
    // One put at a time makes a stripe per put; in flight, they share.
    assert!(
        stats.stripes < PUTS / 4,
        "{} stripes for {PUTS} puts: the puts in flight did not share commits",
        stats.stripes
    );
    // Deletes answer whether the key existed, flush answers after both.
    let deletes = vec![
        store.delete_async(&key(7)),
        store.delete_async(b"never-put"),
    ];
    let flush = store.flush_async();
    let (existed, _) = run_all(deletes);
    assert_eq!(
        existed.into_iter().map(|r| r.ok()).collect::<Vec<_>>(),
        [Some(true), Some(false)]
    );
    assert!(run_all(vec![flush]).0[0].is_ok());
    store.close().expect("close");
    drop(store);
    let store = Store::open(layout, common::options()).expect("reopen");
    for i in 0..PUTS {
        let got = store.get(&key(i)).expect("get");
        if i == 7 {
            assert!(got.is_none(), "deleted key came back");
        } else {
            let got = got.unwrap_or_else(|| panic!("acknowledged put {i} lost"));
            assert_eq!(
                &got.to_bytes()[..],
                &common::value(i as u64, 100 + i % 1900)[..]
            );
        }
    }
}

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
