//! Shared by the store and repair benchmarks.

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
