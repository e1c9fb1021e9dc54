//! A store opened with `Options::salvage` after a loss beyond the promise:
//! every answer the loss could change is an error until the operator
//! accepts the loss (docs/DURABILITY.md, D2).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, RwLock};

use super::commit::Request;
use super::read::Reads;
use super::stripes::StripeInfo;
use super::submit::Pending;
use super::{State, Store};
use crate::format::{EntryFlags, add_range};
use crate::{Error, Result};

/// The stripes lost at open and what is known of their keys.
#[derive(Debug, Default)]
pub(crate) struct LossState {
    /// Ids of the lost stripes.
    pub stripes: Vec<u64>,
    /// Keys whose newest value or delete was in a lost stripe.
    pub known: HashSet<Box<[u8]>>,
    /// The newest lost stripe with a data column whose keys cannot be read:
    /// any key may have had a newer value there.
    pub unknown_newest: Option<u64>,
}

/// A key whose newest value or delete was in a lost stripe.
type LostKey = Box<[u8]>;

/// How many lost keys the open report lists.
pub(crate) const LOST_KEYS_LISTED: usize = 10_000;

/// What is known of the keys of `lost` stripes, given the index built from
/// the visible ones; their entry tables are read through `reads`.
pub(crate) fn loss_state(reads: &Reads<'_>, lost: &[StripeInfo], state: &State) -> LossState {
    let k = reads.layout.code().data_count;
    let mut out = LossState::default();
    for info in lost {
        out.stripes.push(info.stripe_id);
        for c in 0..k {
            let table_len = info.entry_table_len(c);
            if table_len == 0 {
                continue;
            }
            let entries = reads
                .read_column_range(info, c, 0, table_len)
                .and_then(|bytes| crate::format::decode_entry_table(&bytes).ok());
            let Some(entries) = entries else {
                out.unknown_newest = out.unknown_newest.max(Some(info.stripe_id));
                continue;
            };
            for e in entries {
                if e.flags.contains(EntryFlags::RETIRE) {
                    continue;
                }
                // A newer visible value is not affected by the loss.
                let newer = state
                    .index
                    .get(&e.key)
                    .and_then(|loc| state.stripes.get(loc.parts()[0].slot))
                    .is_some_and(|s| s.stripe_id > info.stripe_id);
                if !newer {
                    out.known.insert(e.key.into_boxed_slice());
                }
            }
        }
    }
    out
}

/// A loss beyond the promise that a salvage open found, until the
/// operator accepts it: reads whose answer it could change fail.
#[derive(Debug, Default)]
pub(crate) struct PendingLoss {
    loss: RwLock<Option<LossState>>,
    /// Whether `loss` holds a loss (checked without the lock).
    pending: AtomicBool,
}

impl PendingLoss {
    /// Holds `loss` until it is accepted.
    pub(crate) fn set(&self, loss: LossState) {
        *self.loss.write().unwrap_or_else(PoisonError::into_inner) = Some(loss);
        self.pending.store(true, Ordering::Release);
    }

    pub(crate) fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// The lost stripes and the keys known lost, if a loss is pending.
    fn lost(&self) -> Option<(Vec<u64>, Vec<LostKey>)> {
        let loss = self.loss.read().unwrap_or_else(PoisonError::into_inner);
        loss.as_ref()
            .map(|loss| (loss.stripes.clone(), loss.known.iter().cloned().collect()))
    }

    fn clear(&self) {
        *self.loss.write().unwrap_or_else(PoisonError::into_inner) = None;
        self.pending.store(false, Ordering::Release);
    }

    /// Fails a read whose answer a pending loss could change: a key known
    /// lost, a miss while lost stripes with unknown keys exist, or a value
    /// older than such a stripe. `hit` is the stripe id of the key's value.
    pub(crate) fn check(&self, key: &[u8], hit: Option<u64>) -> Result<()> {
        if !self.is_pending() {
            return Ok(());
        }
        let loss = self.loss.read().unwrap_or_else(PoisonError::into_inner);
        let Some(loss) = loss.as_ref() else {
            return Ok(());
        };
        let possibly_lost = |reason: &str| Error::PossiblyLost {
            key: String::from_utf8_lossy(key).into_owned(),
            reason: format!(
                "{reason}; {} stripe(s) were lost beyond the promise (see Store::open_report); \
                 call Store::accept_loss once nothing more can be brought back",
                loss.stripes.len()
            ),
        };
        if loss.known.contains(key) {
            return Err(possibly_lost("its newest value was in a lost stripe"));
        }
        match (loss.unknown_newest, hit) {
            (Some(_), None) => Err(possibly_lost(
                "it is not in the store, but lost stripes hold keys that cannot be read",
            )),
            (Some(newest), Some(stripe)) if stripe < newest => Err(possibly_lost(
                "a lost stripe newer than its value holds keys that cannot be read",
            )),
            _ => Ok(()),
        }
    }
}

/// The body of [`Store::accept_loss`].
pub(crate) fn accept_loss(store: &Store) -> Result<usize> {
    if store.inner.read_only.load(Ordering::Acquire) {
        return Err(Error::WriteRefused {
            reason: super::commit::READ_ONLY.into(),
        });
    }
    let Some((stripes, keys)) = store.inner.loss.lost() else {
        return Ok(0);
    };
    let mut waiting = Vec::with_capacity(keys.len());
    for key in &keys {
        let (ack, rx) = Pending::channel();
        store.submit(Request::Delete {
            key: key.clone(),
            ack,
        })?;
        waiting.push(rx);
    }
    for rx in waiting {
        store.wait(&rx, "accept_loss", None)??;
    }
    store.inner.update_manifest(|m| {
        for &id in &stripes {
            add_range(&mut m.shared.discarded, id, id);
        }
        m.shared.version += 1;
    })?;
    store.inner.loss.clear();
    // Nodes that came back empty count whole again once every stripe left
    // keeps the promise (at once if it already does; else after repair).
    {
        let _one_at_a_time = store
            .inner
            .maintenance
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        store.inner.note_history_restored();
    }
    if let Ok(mut report) = store.inner.open_report.lock() {
        report.loss_accepted = true;
    }
    tracing::warn!(stripes = stripes.len(), keys = keys.len(), "loss accepted");
    Ok(keys.len())
}
