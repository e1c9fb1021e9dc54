//! Object-store layouts and nodes opened over [`FaultyStore`], shared by the
//! takeover tests (`durability_remote`) and the review's reproductions
//! (`durability_review`).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use geoshard::layout::{Layout, Location};
use geoshard::node::{Node, ObjectNode, ObjectOptions};
use geoshard::{Error, Options};

use super::Handle;
use super::faulty_store::FaultyStore;

/// RS(2,1) over three sites `a`, `b`, `c` of one `file://` node each.
pub fn file_layout(root: &std::path::Path) -> Layout {
    let url = |name: &str| format!("file://{}", root.join(name).display());
    Layout::builder()
        .code(2, 1)
        .site("a", |s| s.node("a1", url("a1").as_str()))
        .site("b", |s| s.node("b1", url("b1").as_str()))
        .site("c", |s| s.node("c1", url("c1").as_str()))
        .build()
        .unwrap()
}

/// The test defaults with object requests that give up fast (1.5 s, one
/// retry), so a hung lease read fails within a test's time.
pub fn options() -> Options {
    Options {
        object: ObjectOptions {
            request_timeout: Duration::from_millis(1500),
            max_retries: 1,
            ..ObjectOptions::default()
        },
        ..super::options()
    }
}

/// Node `index` of an object-store `layout`, opened over a fault-injecting
/// wrapper of the store geoshard would use.
///
/// # Errors
/// What connecting or opening the node returns.
pub fn faulty_node(
    layout: &Layout,
    index: usize,
    options: &Options,
) -> Result<(Arc<FaultyStore>, Arc<dyn Node>), Error> {
    let spec = &layout.nodes()[index];
    let Location::Url(url) = &spec.location else {
        panic!("object-store layouts only")
    };
    let (store, prefix) =
        ObjectNode::connect(&spec.name, url, spec.remote.as_ref(), &options.object)?;
    let wrapped = FaultyStore::new(store);
    let node = ObjectNode::open_store(
        &spec.name,
        url,
        Arc::clone(&wrapped) as Arc<dyn object_store::ObjectStore>,
        &prefix,
        &options.object,
    )?;
    Ok((wrapped, Arc::new(node)))
}

/// Every node of `layout`, as [`faulty_node`] opens them.
///
/// # Errors
/// The first node's error.
pub fn faulty_nodes(
    layout: &Layout,
    options: &Options,
) -> Result<(Vec<Arc<FaultyStore>>, Vec<Handle>), Error> {
    let mut faulty = Vec::new();
    let mut handles = Vec::new();
    for index in 0..layout.nodes().len() {
        let (wrapped, node) = faulty_node(layout, index, options)?;
        faulty.push(wrapped);
        handles.push(Ok(node));
    }
    Ok((faulty, handles))
}
