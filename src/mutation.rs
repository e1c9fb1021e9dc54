//! Named reverts of durability fixes, for the simulator's mutation tests
//! (docs/TESTING.md, "Mutations"): each switch turns one fix off, so a test
//! can show that the simulator finds the bug it fixed from random seeds.
//! Without the `testing` feature no switch can be turned on and every check
//! is a constant `false` the compiler removes.

/// One fix that can be switched off.
#[cfg_attr(not(feature = "object-store"), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mutation {
    /// Durability issue item 2: a column whose home takes no writes goes to
    /// the writable node holding the fewest columns of the stripe, whatever
    /// its site, and the stripe counts as keeping the promise.
    SiteBlindHandoff,
    /// Item 3: an undecodable stripe of the newest session is discarded
    /// silently instead of failing the open.
    SilentNewestLoss,
    /// Item 4: a delete of a key with no value writes no tombstone, and a
    /// carried tombstone is dropped when the commit holds a user delete of
    /// its key.
    TombstoneRace,
    /// Item 6: open creates missing directories and, finding no manifest
    /// anywhere, makes a new store.
    OpenCreatesWhenEmpty,
    /// Item 7: repair reopens a down node without dropping the handle (and
    /// lock) it holds.
    RepairKeepsHandle,
    /// Simulator finding S1: recovery cuts torn tails off segments at open.
    CutTornTails,
    /// S2: open does not rebuild stripes below the promise's margin.
    NoRebuildAtOpen,
    /// S3: failed commit attempts are not recorded as discarded.
    KeepFailedAttempts,
    /// S4: scrub checks payloads only, not that records are found intact.
    ScrubPayloadsOnly,
    /// S5: with no committed manifest reachable, proposals decide nothing.
    ProposalsDecideNothing,
    /// Item 8: an object-store node's lease check that gets no clear
    /// answer after an append (an error, a timeout) counts as "ours", so a
    /// writer that was taken over can acknowledge.
    LeaseUnknownIsOurs,
    /// Item 9: an object listed at open that is gone when the scan reads it
    /// (deleted by a superseded writer, a listing that lags) fails the
    /// node's scan instead of counting as absent.
    VanishedObjectFailsScan,
    /// Simulator finding S10: an object-store node whose prefix was wiped
    /// (its leases gone) still takes the store's manifest.
    ManifestOnWipedPrefix,
    /// S11: an append that finds its node's prefix wiped leaves its object
    /// there (segments without a manifest: repair never adopts the node).
    KeepOrphanOnWipedPrefix,
    /// S12: an object-store node whose lease reads fail (the node itself
    /// answering) is marked down, reads included, instead of taking no
    /// more writes.
    LeaseDoubtMarksDown,
    /// S13: a failed commit attempt whose discard could not be recorded
    /// when it failed is never recorded later.
    ForgetUnrecordedDiscards,
    /// S15: nodes that came back empty count as whole at open whether or
    /// not repair brought back what they lost.
    AdoptedCountWhole,
    /// S14: repair refuses an object-store prefix whose lease says it was
    /// wiped when appends landed in it afterwards.
    RefuseWipedPrefix,
    /// S16: open weighs each missing record of a commit against a node's
    /// torn tail alone, not all the commit's records planned on the node
    /// together.
    TornEvidencePerRecord,
    /// C8: a delta checkpoint taken by an index opened from a delta names
    /// only the base records the overlay hides, not those the older delta
    /// hid (its record count still right, so open takes it): a key removed
    /// before the older delta comes back with the base's value at the
    /// next open from the new one.
    DeltaForgetsOlderHidden,
}

#[cfg(any(test, feature = "testing"))]
impl Mutation {
    /// Every mutation.
    pub const ALL: [Mutation; 20] = [
        Mutation::SiteBlindHandoff,
        Mutation::SilentNewestLoss,
        Mutation::TombstoneRace,
        Mutation::OpenCreatesWhenEmpty,
        Mutation::RepairKeepsHandle,
        Mutation::CutTornTails,
        Mutation::NoRebuildAtOpen,
        Mutation::KeepFailedAttempts,
        Mutation::ScrubPayloadsOnly,
        Mutation::ProposalsDecideNothing,
        Mutation::LeaseUnknownIsOurs,
        Mutation::VanishedObjectFailsScan,
        Mutation::ManifestOnWipedPrefix,
        Mutation::KeepOrphanOnWipedPrefix,
        Mutation::LeaseDoubtMarksDown,
        Mutation::ForgetUnrecordedDiscards,
        Mutation::AdoptedCountWhole,
        Mutation::RefuseWipedPrefix,
        Mutation::TornEvidencePerRecord,
        Mutation::DeltaForgetsOlderHidden,
    ];

    fn bit(self) -> u64 {
        1 << (self as u32)
    }
}

#[cfg(any(test, feature = "testing"))]
static ACTIVE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Switches exactly `mutations` on, for the whole process (tests that use
/// it run in a process of their own, one mutation at a time).
#[cfg(any(test, feature = "testing"))]
pub fn set(mutations: &[Mutation]) {
    let bits = mutations.iter().fold(0, |bits, m| bits | m.bit());
    ACTIVE.store(bits, std::sync::atomic::Ordering::SeqCst);
}

/// Whether `mutation` is switched on.
#[inline(always)]
pub(crate) fn enabled(mutation: Mutation) -> bool {
    #[cfg(any(test, feature = "testing"))]
    {
        ACTIVE.load(std::sync::atomic::Ordering::Relaxed) & mutation.bit() != 0
    }
    #[cfg(not(any(test, feature = "testing")))]
    {
        let _ = mutation;
        false
    }
}
