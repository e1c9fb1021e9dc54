//! A large value: a put of 1 GiB is cut into column-sized parts across
//! stripes, never needs much more than twice its size in memory, and reads
//! back byte-exact as a chain of zero-copy chunks, also after reopen.
//! `GEOSHARD_LARGE_VALUE_MIB` changes the size (default 1024).

mod common;

use bytes::Bytes;

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

/// Deterministic, incompressible-looking bytes, fast to make.
fn value(len: usize) -> Bytes {
    let mut v = vec![0u8; len];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for chunk in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    v.into()
}

fn check(blob: geoshard::Blob, expected: &Bytes) {
    assert_eq!(blob.len(), expected.len());
    assert!(blob.chunks().len() > 1, "a large value comes back in parts");
    let mut offset = 0;
    for chunk in blob.chunks() {
        assert!(
            chunk[..] == expected[offset..offset + chunk.len()],
            "bytes differ at {offset}"
        );
        offset += chunk.len();
    }
    assert_eq!(offset, expected.len());
}

#[test]
fn a_one_gib_value_round_trips_within_twice_its_size() {
    let mib: usize = std::env::var("GEOSHARD_LARGE_VALUE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let len = mib << 20;
    let dir = tempfile::tempdir().unwrap();
    let baseline_kib = status_kib("VmRSS:");
    let big = value(len);
    {
        let store = common::open(dir.path());
        store.put(b"big", big.clone()).unwrap();
        let peak_kib = status_kib("VmHWM:");
        let used = (peak_kib.saturating_sub(baseline_kib)) << 10;
        assert!(
            used <= len as u64 * 9 / 4,
            "a put of {len} bytes peaked at {used} bytes of memory"
        );
        check(store.get(b"big").unwrap().unwrap(), &big);
    }
    let store = common::open(dir.path());
    check(store.get(b"big").unwrap().unwrap(), &big);
}
