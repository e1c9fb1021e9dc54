//! Storage overhead: a chat-like mix of small messages and photos, written
//! from many threads (so commits are small and sealed by the commit
//! interval), costs close to RS(6,3)'s ideal 1.5x: a photo is spread over
//! the data columns, so one big part never sits next to near-empty columns
//! (parity is as long as the longest data column).

mod common;

#[test]
fn a_chat_mix_stores_at_close_to_the_code_overhead() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    let user_bytes: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16u64)
            .map(|t| {
                let store = &store;
                s.spawn(move || {
                    let mut rng = common::rng(900 + t);
                    let mut bytes = 0u64;
                    for i in 0..250 {
                        let value = common::chat_value(&mut rng, 10);
                        bytes += value.len() as u64;
                        store.put(format!("m/{t}/{i}").as_bytes(), value).unwrap();
                    }
                    bytes
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let column_bytes: u64 = store.health().nodes.iter().map(|n| n.bytes).sum();
    let segment_bytes: u64 = common::files_under(dir.path())
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "segment"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let payload_overhead = column_bytes as f64 / user_bytes as f64;
    let disk_overhead = segment_bytes as f64 / user_bytes as f64;
    eprintln!(
        "user {user_bytes} B, columns {payload_overhead:.2}x, segment files {disk_overhead:.2}x"
    );
    assert!(
        payload_overhead < 1.75,
        "column bytes are {payload_overhead:.2}x the user bytes"
    );
    assert!(
        disk_overhead < 1.85,
        "segment files are {disk_overhead:.2}x the user bytes"
    );
}
