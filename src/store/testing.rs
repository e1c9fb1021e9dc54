//! What the simulator (`crate::sim`, feature `testing`) needs of a store:
//! a start with a stepped committer and a chosen identity, a crash, and
//! descriptions of where keys and stripes are for its failure reports.

use super::Store;
use super::submit::{Scheduling, Start};
use crate::Result;

impl Store {
    /// Creates (`store_id` given) or opens a store whose committer the
    /// caller steps and whose time is `clock`: the simulator's store.
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

    /// Opens a store with a stepped committer and `clock`.
    pub(crate) fn open_simulated(
        layout: crate::layout::Layout,
        options: crate::Options,
        factory: std::sync::Arc<dyn crate::node::NodeFactory>,
        clock: std::sync::Arc<dyn super::clock::Clock>,
    ) -> Result<Store> {
        Store::start_simulated(layout, options, factory, clock, None)
    }

    /// The process dies: what is queued is dropped unanswered and the
    /// nodes are let go, with nothing flushed.
    pub(crate) fn crash(self) {
        self.stop_committer(false);
        self.inner
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.inner.nodes.close_all();
    }
}

impl Store {
    /// Where `key`'s parts are: per part, its stripe and where every column
    /// of that stripe is (the simulator's failure reports).
    pub(crate) fn describe_key(&self, key: &[u8]) -> String {
        let state = self.inner.read_state();
        let Some(loc) = state.index.get(key) else {
            return "not in the index".into();
        };
        let mut out = Vec::new();
        for part in loc.parts() {
            match state.stripes.get(part.slot) {
                Some(stripe) => out.push(self.describe(stripe)),
                None => out.push(format!("slot {} missing", part.slot)),
            }
        }
        out.join(" | ")
    }

    /// Where the store thinks the columns of `stripe_id` are.
    pub(crate) fn describe_stripe(&self, stripe_id: u64) -> String {
        let state = self.inner.read_state();
        state
            .stripes
            .values()
            .find(|s| s.stripe_id == stripe_id)
            .map_or_else(|| "not visible".into(), |s| self.describe(s))
    }

    fn describe(&self, stripe: &super::stripes::StripeInfo) -> String {
        let columns: Vec<String> = stripe
            .columns
            .iter()
            .enumerate()
            .map(|(c, col)| {
                let home = col.home.map(|h| self.inner.layout.node(h).name.clone());
                let at = col.stored.map(|(n, l)| {
                    format!(
                        "{}@{:#x}:{}",
                        self.inner.layout.node(n).name,
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
}
