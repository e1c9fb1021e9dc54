//! Shared helpers for the store integration tests.
#![allow(dead_code)]

pub use geoshard::testing::s3;

pub mod poll;
pub mod torn;

use std::path::{Path, PathBuf};
use std::time::Duration;

use geoshard::layout::{Layout, SiteId};
use std::collections::HashMap;

use geoshard::{Options, Store};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `sites` sites of `nodes_per_site` nodes under `root`, RS(k, m), "any 1 site".
pub fn layout(root: &Path, sites: usize, nodes_per_site: usize, k: usize, m: usize) -> Layout {
    let mut builder = Layout::builder().code(k, m);
    for s in 0..sites {
        let site = format!("site{s}");
        let nodes: Vec<(String, PathBuf)> = (0..nodes_per_site)
            .map(|n| {
                (
                    format!("s{s}n{n}"),
                    root.join(format!("site{s}")).join(format!("n{n}")),
                )
            })
            .collect();
        builder = builder.site(&site, |mut b| {
            for (name, path) in &nodes {
                b = b.node(name, path.as_path());
            }
            b
        });
    }
    builder.build().expect("valid test layout")
}

/// The 3 sites x 3 nodes RS(6,3) layout of the fire drill.
pub fn layout_3x3(root: &Path) -> Layout {
    layout(root, 3, 3, 6, 3)
}

/// Options with a short commit interval so tests run fast.
pub fn options() -> Options {
    Options {
        commit_interval: Duration::from_millis(1),
        ..Options::default()
    }
}

/// The 3x3 store under `root`: created when `root` does not exist yet,
/// else opened.
pub fn open(root: &Path) -> Store {
    if root.join("site0").exists() {
        Store::open(layout_3x3(root), options()).expect("open store")
    } else {
        Store::create(layout_3x3(root), options()).expect("create store")
    }
}

/// Directory of every node of a site.
pub fn site_dirs(layout: &Layout, site: SiteId) -> Vec<PathBuf> {
    layout.sites()[usize::from(site.0)]
        .nodes
        .iter()
        .filter_map(|id| match &layout.node(*id).location {
            geoshard::layout::Location::Dir(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

/// Deletes every directory of a site: the fire.
pub fn burn_site(layout: &Layout, site: SiteId) {
    for dir in site_dirs(layout, site) {
        std::fs::remove_dir_all(&dir).expect("burn site dir");
    }
}

/// Copies a directory tree.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A chat-like value: mostly 20 B to 2 KiB, `photo_per_mille` of 50 KiB to 3 MiB.
pub fn chat_value(rng: &mut ChaCha8Rng, photo_per_mille: u32) -> Vec<u8> {
    let len = if rng.random_range(0..1000) < photo_per_mille {
        rng.random_range(50 << 10..=3 << 20)
    } else {
        rng.random_range(20..=2048)
    };
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// All regular files below `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in rd.flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Puts `per_thread` chat-like values from 8 threads under
/// `{prefix}/{thread}/{i}`; returns what was written.
pub fn fill(
    store: &Store,
    prefix: &str,
    seed: u64,
    per_thread: usize,
    photo_per_mille: u32,
) -> HashMap<Vec<u8>, Vec<u8>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8u64)
            .map(|t| {
                s.spawn(move || {
                    let mut rng = rng(seed * 100 + t);
                    (0..per_thread)
                        .map(|i| {
                            let key = format!("{prefix}/{t}/{i}").into_bytes();
                            let value = chat_value(&mut rng, photo_per_mille);
                            store.put(&key, value.clone()).unwrap();
                            (key, value)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// Every blob of `model` reads back byte-exact.
pub fn check_all(store: &Store, model: &HashMap<Vec<u8>, Vec<u8>>) {
    for (key, value) in model {
        let got = store.get(key).unwrap().expect("acknowledged blob readable");
        assert!(
            got.to_bytes() == value[..],
            "{:?} differs",
            String::from_utf8_lossy(key)
        );
    }
}

// Remote-site helpers (tests on the S3 test server).

/// Connection settings for `server`, as a layout file would give them.
pub fn remote(server: &s3::S3Server) -> geoshard::layout::Remote {
    geoshard::layout::Remote {
        endpoint: Some(server.endpoint.clone()),
        region: Some(server.region.clone()),
        allow_http: true,
        access_key_id: Some(geoshard::layout::Secret::Value(
            server.access_key_id.clone(),
        )),
        secret_access_key: Some(geoshard::layout::Secret::Value(
            server.secret_access_key.clone(),
        )),
        ..geoshard::layout::Remote::default()
    }
}

/// A prefix no other test (or earlier run) uses.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{name}-{}-{nanos}", std::process::id())
}

/// RS(6,3) over 3 sites x 3 nodes: site 0 local directories under `root`,
/// sites 1 and 2 prefixes under `s3://<bucket>/<run>/`.
pub fn mixed_layout(
    root: &Path,
    server: &s3::S3Server,
    bucket: &str,
    run: &str,
) -> geoshard::layout::Layout {
    let remote = remote(server);
    geoshard::layout::Layout::builder()
        .code(6, 3)
        .site("local", |mut s| {
            for n in 0..3 {
                s = s.node(format!("l{n}"), root.join(format!("l{n}")).as_path());
            }
            s
        })
        .site("seoul", |mut s| {
            s = s.remote(remote.clone());
            for n in 0..3 {
                s = s.node(format!("s{n}"), format!("s3://{bucket}/{run}/seoul/s{n}"));
            }
            s
        })
        .site("tokyo", |mut s| {
            s = s.remote(remote.clone());
            for n in 0..3 {
                s = s.node(format!("t{n}"), format!("s3://{bucket}/{run}/tokyo/t{n}"));
            }
            s
        })
        .build()
        .expect("valid mixed layout")
}

/// Creates a store over `layout` (every node empty) and opens it.
pub fn create(layout: Layout, options: Options) -> Store {
    Store::create(layout, options).expect("create store")
}

/// A temporary directory on a memory file system when there is one: the
/// durability tests run thousands of commits, and what they check does not
/// depend on what `fdatasync` costs.
pub fn fast_tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().expect("tempdir")
}

/// A local node inside a fault-injecting wrapper.
pub type FaultyLocal = std::sync::Arc<geoshard::node::FaultyNode<geoshard::node::LocalNode>>;

/// A node handle as `Store::open_with_nodes` takes it.
pub type Handle = std::result::Result<std::sync::Arc<dyn geoshard::node::Node>, String>;

/// Every node of `layout` (a layout of local directories) opened as a
/// local node, in layout order.
pub fn local_nodes(layout: &Layout) -> Vec<geoshard::node::LocalNode> {
    use geoshard::node::{LocalNode, LocalOptions};
    layout
        .nodes()
        .iter()
        .map(|spec| {
            let geoshard::layout::Location::Dir(path) = &spec.location else {
                panic!("local layouts only")
            };
            LocalNode::open(spec.name.clone(), path, &LocalOptions::default()).expect("open node")
        })
        .collect()
}

/// Every node of `layout` opened as a local node inside a fault-injecting
/// wrapper, and the handles `Store::open_with_nodes` takes.
pub fn faulty_nodes(layout: &Layout) -> (Vec<FaultyLocal>, Vec<Handle>) {
    use geoshard::node::{FaultyNode, Node};
    let faulty: Vec<FaultyLocal> = local_nodes(layout)
        .into_iter()
        .map(|node| std::sync::Arc::new(FaultyNode::new(node)))
        .collect();
    let handles = faulty
        .iter()
        .map(|n| Ok(std::sync::Arc::clone(n) as std::sync::Arc<dyn Node>))
        .collect();
    (faulty, handles)
}

/// A value of `len` bytes from `seed`.
pub fn value(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng(seed).fill_bytes(&mut v);
    v
}

pub mod faulty_store;
pub mod object_nodes;
