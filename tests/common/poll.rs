//! Driving the async API without a runtime: the test thread polls every
//! future itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use geoshard::Completion;

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
pub fn run_all<T>(mut futures: Vec<Completion<T>>) -> (Vec<geoshard::Result<T>>, usize) {
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
pub fn threads() -> usize {
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

pub fn key(i: usize) -> Vec<u8> {
    format!("room-{:02}/msg-{i:08}", i % 16).into_bytes()
}

/// Polls a future once: its output if it is ready at once.
pub fn poll_once<T>(future: &mut Completion<T>) -> Option<geoshard::Result<T>> {
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(future).poll(&mut cx) {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}
