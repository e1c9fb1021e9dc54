//! The async write API under load: 4,096 puts in flight on one thread
//! share commits, all become durable, and the process keeps O(1) threads.
//! Alone in its test binary, so no other test's threads are counted.

mod common;

use common::poll::{key, run_all};
use geoshard::{Completion, Store};

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
