//! Shared by the store, repair and remote benchmarks.
#![allow(dead_code, reason = "each benchmark uses a part of this module")]

use std::path::{Path, PathBuf};

use geoshard::layout::Layout;

/// RS(6,3) over 3 sites of 3 local node directories under `root`.
pub fn layout(root: &Path) -> Layout {
    let mut b = Layout::builder().code(6, 3);
    for s in 0..3 {
        let dirs: Vec<(String, PathBuf)> = (0..3)
            .map(|n| (format!("s{s}n{n}"), root.join(format!("site{s}/n{n}"))))
            .collect();
        b = b.site(format!("site{s}"), |mut site| {
            for (name, dir) in &dirs {
                site = site.node(name, dir.as_path());
            }
            site
        });
    }
    b.build().expect("bench layout")
}

/// `len` deterministic pseudo-random bytes for `seed`.
pub fn value(len: usize, seed: u64) -> bytes::Bytes {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}
