//! A store opened with `Options::salvage` after a loss beyond the promise:
//! every answer the loss could change is an error until the operator
//! accepts the loss (docs/DURABILITY.md, D2).

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use super::commit::Request;
use super::stripes::StripeInfo;
use super::submit::Pending;
use super::{Inner, State, Store};
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

/// How many lost keys the open report lists.
pub(crate) const LOST_KEYS_LISTED: usize = 10_000;

impl Inner {
    /// What is known of the keys of `lost` stripes, given the index built
    /// from the visible ones.
    pub(crate) fn loss_state(&self, lost: &[StripeInfo], state: &State) -> LossState {
        let k = self.layout.code().data_count;
        let mut out = LossState::default();
        for info in lost {
            out.stripes.push(info.stripe_id);
            for c in 0..k {
                let table_len = info.entry_table_len(c);
                if table_len == 0 {
                    continue;
                }
                let entries = self
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

    /// Fails a read whose answer a pending loss could change: a key known
    /// lost, a miss while lost stripes with unknown keys exist, or a value
    /// older than such a stripe. `hit` is the stripe id of the key's value.
    pub(crate) fn check_loss(&self, key: &[u8], hit: Option<u64>) -> Result<()> {
        if !self.loss_pending.load(Ordering::Acquire) {
            return Ok(());
        }
        let loss = self.loss.read().unwrap_or_else(|p| p.into_inner());
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

impl Store {
    /// Accepts the loss a salvage open found: deletes the keys known to
    /// have lost their newest value (so no older value of theirs shows
    /// again), records the lost stripes as discarded so later opens do not
    /// fail on them, and ends the errors reads gave meanwhile. Returns how
    /// many keys were deleted. Does nothing if no loss is pending.
    ///
    /// # Errors
    /// A delete or the manifest write failing; the loss stays pending and
    /// the call can be repeated. [`Error::WriteRefused`] on a read-only
    /// salvage open (its manifest reached too few nodes): repair, then
    /// open again.
    pub fn accept_loss(&self) -> Result<usize> {
        if self.inner.read_only.load(Ordering::Acquire) {
            return Err(Error::WriteRefused {
                reason: super::commit::READ_ONLY.into(),
            });
        }
        let (stripes, keys) = {
            let loss = self.inner.loss.read().unwrap_or_else(|p| p.into_inner());
            match loss.as_ref() {
                Some(loss) => (
                    loss.stripes.clone(),
                    loss.known.iter().cloned().collect::<Vec<_>>(),
                ),
                None => return Ok(0),
            }
        };
        let mut waiting = Vec::with_capacity(keys.len());
        for key in &keys {
            let (ack, rx) = Pending::channel();
            self.submit(Request::Delete {
                key: key.clone(),
                ack,
            })?;
            waiting.push(rx);
        }
        for rx in waiting {
            self.wait(&rx, "accept_loss", None)??;
        }
        self.inner.update_manifest(|m| {
            for &id in &stripes {
                add_range(&mut m.shared.discarded, id, id);
            }
            m.shared.version += 1;
        })?;
        *self.inner.loss.write().unwrap_or_else(|p| p.into_inner()) = None;
        self.inner.loss_pending.store(false, Ordering::Release);
        if let Ok(mut report) = self.inner.open_report.lock() {
            report.loss_accepted = true;
        }
        tracing::warn!(stripes = stripes.len(), keys = keys.len(), "loss accepted");
        Ok(keys.len())
    }
}
