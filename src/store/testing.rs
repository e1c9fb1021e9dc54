//! What the simulator (`crate::sim`, feature `testing`) needs of a store:
//! a start with a stepped committer and a chosen identity, a crash, and
//! descriptions of where keys and stripes are for its failure reports.

use super::Store;
use super::submit::{Scheduling, Start};
use crate::Result;

/// The body of [`Store::start_simulated`].
pub(crate) fn start_simulated(
    layout: crate::layout::Layout,
    options: crate::Options,
    factory: std::sync::Arc<dyn crate::node::NodeFactory>,
    clock: std::sync::Arc<dyn super::clock::Clock>,
    store_id: Option<[u8; 16]>,
) -> Result<Store> {
    let mode = match store_id {
        Some(_) => super::open::Mode::Create,
        None => super::open::Mode::Open,
    };
    let start = Start {
        scheduling: Scheduling::Stepped,
        store_id,
        clock: Some(clock),
    };
    Store::start(layout, options, factory, mode, start)
}

/// The body of [`Store::open_simulated`].
pub(crate) fn open_simulated(
    layout: crate::layout::Layout,
    options: crate::Options,
    factory: std::sync::Arc<dyn crate::node::NodeFactory>,
    clock: std::sync::Arc<dyn super::clock::Clock>,
) -> Result<Store> {
    start_simulated(layout, options, factory, clock, None)
}

/// The body of [`Store::crash`].
pub(crate) fn crash(store: Store) {
    store.stop_committer(false);
    store
        .inner
        .closed
        .store(true, std::sync::atomic::Ordering::Release);
    store.inner.nodes.close_all();
}

/// The body of [`Store::describe_key`].
pub(crate) fn describe_key(store: &Store, key: &[u8]) -> String {
    let state = store.inner.read_state();
    let Some(loc) = state.index.get(key) else {
        return "not in the index".into();
    };
    let mut out = Vec::new();
    for part in loc.parts() {
        match state.stripes.get(part.slot) {
            Some(stripe) => out.push(describe(store, stripe)),
            None => out.push(format!("slot {} missing", part.slot)),
        }
    }
    out.join(" | ")
}

/// The body of [`Store::describe_stripe`].
pub(crate) fn describe_stripe(store: &Store, stripe_id: u64) -> String {
    let state = store.inner.read_state();
    state
        .stripes
        .values()
        .find(|s| s.stripe_id == stripe_id)
        .map_or_else(|| "not visible".into(), |s| describe(store, s))
}

fn describe(store: &Store, stripe: &super::stripes::StripeInfo) -> String {
    let columns: Vec<String> = stripe
        .columns
        .iter()
        .enumerate()
        .map(|(c, col)| {
            let home = col.home.map(|h| store.inner.layout.node(h).name.clone());
            let at = col.stored.map(|(n, l)| {
                format!(
                    "{}@{:#x}:{}",
                    store.inner.layout.node(n).name,
                    l.generation,
                    l.offset
                )
            });
            format!("{c}:len {} home {:?} at {:?}", col.len, home, at)
        })
        .collect();
    format!(
        "stripe {:#x} (session {}) gen {:#x} handoffs {:?}: {}",
        stripe.stripe_id,
        super::open::session_of(stripe.stripe_id),
        stripe.generation,
        stripe.header.handoffs,
        columns.join(", ")
    )
}

/// The body of [`crate::testing::segment_views`].
pub(crate) fn segment_views(store: &Store) -> Vec<(String, u64, Option<usize>)> {
    let state = store.inner.read_state();
    let mut out: Vec<_> = state
        .stripes
        .views()
        .into_iter()
        .map(|(node, generation, mapped)| {
            (
                store.inner.nodes.slot(node).name.clone(),
                generation,
                mapped,
            )
        })
        .collect();
    out.sort();
    out
}

/// The body of [`crate::testing::index_shape`].
pub(crate) fn index_shape(store: &Store) -> (usize, usize) {
    store.inner.read_state().index.shape()
}

/// The body of [`crate::testing::forge_checkpoint`].
pub(crate) fn forge_checkpoint(store: &Store, xor: u8) -> Result<u64> {
    super::checkpoint::write_forged_newest(&store.inner, xor)
}
