//! A fixed-size, lock-free set of address ranges: the segment mappings the
//! SIGBUS handler may repair.
//!
//! The handler runs inside a signal, possibly on a thread that holds any
//! lock, so a lookup must not lock or allocate: it reads plain atomics.
//! Each slot is a small seqlock (sequence, start, end): a writer makes the
//! sequence odd, writes the range, makes it even again; a reader that sees
//! the same even sequence before and after reading the range has read a
//! range that really was registered. Registering and unregistering happen
//! once per mapping (not per read) and may scan the whole table.

use std::sync::atomic::{AtomicUsize, Ordering, fence};

/// How many times a lookup re-reads a slot that a writer is changing
/// before it skips it. A slot being written holds a range that nobody can
/// be reading yet (registration) or any more (unregistration), so skipping
/// it never loses a fault in a live range.
const SLOT_READ_TRIES_MAX: usize = 16;

struct Slot {
    /// Even when stable, odd while a writer changes the range.
    sequence: AtomicUsize,
    /// First address of the range; 0 when the slot is free.
    start: AtomicUsize,
    /// One past the last address of the range.
    end: AtomicUsize,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            sequence: AtomicUsize::new(0),
            start: AtomicUsize::new(0),
            end: AtomicUsize::new(0),
        }
    }

    /// Writes `start..end` while holding the slot (sequence odd), then
    /// publishes it. `sequence` is the odd value the caller set.
    fn write(&self, sequence: usize, start: usize, end: usize) {
        fence(Ordering::Release);
        self.start.store(start, Ordering::Relaxed);
        self.end.store(end, Ordering::Relaxed);
        self.sequence
            .store(sequence.wrapping_add(1), Ordering::Release);
    }

    /// The slot's range as one consistent read, or `None` if it is free or
    /// being written.
    fn read(&self) -> Option<(usize, usize)> {
        for _ in 0..SLOT_READ_TRIES_MAX {
            let before = self.sequence.load(Ordering::Acquire);
            if is_odd(before) {
                std::hint::spin_loop();
                continue;
            }
            let start = self.start.load(Ordering::Relaxed);
            let end = self.end.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if self.sequence.load(Ordering::Relaxed) == before {
                return (start != 0).then_some((start, end));
            }
        }
        None
    }
}

/// A slot's sequence is odd while a writer holds it.
fn is_odd(sequence: usize) -> bool {
    sequence & 1 == 1
}

/// Up to `N` registered ranges.
pub(super) struct Registry<const N: usize> {
    slots: [Slot; N],
    /// Where the next registration starts looking for a free slot.
    hint: AtomicUsize,
}

impl<const N: usize> Registry<N> {
    pub(super) const fn new() -> Self {
        Registry {
            slots: [const { Slot::new() }; N],
            hint: AtomicUsize::new(0),
        }
    }

    /// Registers `start..end` (`start` non-zero, `start < end`); returns
    /// the slot to unregister it with, or `None` when every slot is taken.
    pub(super) fn register(&self, start: usize, end: usize) -> Option<usize> {
        assert!(start != 0 && start < end, "bad range {start:#x}..{end:#x}");
        let first = self.hint.load(Ordering::Relaxed);
        for step in 0..N {
            let index = (first + step) % N;
            let slot = &self.slots[index];
            let sequence = slot.sequence.load(Ordering::Acquire);
            if is_odd(sequence) || slot.start.load(Ordering::Relaxed) != 0 {
                continue;
            }
            // Claim the slot: fails if any writer touched it since the load
            // above (every write moves the sequence), so the slot is still
            // the free one we saw.
            let odd = sequence.wrapping_add(1);
            if slot
                .sequence
                .compare_exchange(sequence, odd, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            slot.write(odd, start, end);
            self.hint.store((index + 1) % N, Ordering::Relaxed);
            return Some(index);
        }
        None
    }

    /// Frees the slot `register` returned. Only its owner calls this, once.
    pub(super) fn unregister(&self, index: usize) {
        let slot = &self.slots[index];
        // The owner is the only writer of a taken slot (registrations skip
        // slots whose start is non-zero), so a plain store claims it.
        let sequence = slot.sequence.load(Ordering::Relaxed);
        debug_assert!(!is_odd(sequence), "slot {index} is being written");
        let odd = sequence.wrapping_add(1);
        slot.sequence.store(odd, Ordering::Relaxed);
        slot.write(odd, 0, 0);
        self.hint.store(index, Ordering::Relaxed);
    }

    /// Whether `address` lies in a registered range. Async-signal-safe:
    /// only atomic loads, no locks, no allocation.
    #[cfg(test)]
    pub(super) fn contains(&self, address: usize) -> bool {
        self.find(address).is_some()
    }

    /// The slot whose registered range holds `address`. Async-signal-safe,
    /// as [`contains`](Self::contains).
    pub(super) fn find(&self, address: usize) -> Option<usize> {
        self.slots.iter().position(|slot| {
            slot.read()
                .is_some_and(|(start, end)| start <= address && address < end)
        })
    }

    /// The slots whose registered range overlaps one of `ranges`, each with
    /// its sequence (a registration's own: every register and unregister
    /// moves it).
    pub(super) fn overlapping(&self, ranges: &[(usize, usize)]) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (index, slot) in self.slots.iter().enumerate() {
            let sequence = slot.sequence.load(Ordering::Acquire);
            if is_odd(sequence) {
                continue;
            }
            let Some((start, end)) = slot.read() else {
                continue;
            };
            // A slot being registered or let go meanwhile holds no live
            // mapping of the caller's bytes.
            if slot.sequence.load(Ordering::Acquire) != sequence {
                continue;
            }
            if ranges.iter().any(|&(s, e)| s < end && start < e) {
                out.push((index, sequence));
            }
        }
        out
    }

    /// Slot `index`'s sequence now (see [`overlapping`](Self::overlapping)).
    pub(super) fn sequence(&self, index: usize) -> Option<usize> {
        self.slots
            .get(index)
            .map(|slot| slot.sequence.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fake ranges in the kernel half of the address space, where no user
    /// mapping can be: the registry only stores numbers.
    fn range(thread: usize, index: usize) -> (usize, usize) {
        let start = 0xffff_8000_0000_0000usize + (thread * 1_000 + index) * 0x10_000;
        (start, start + 0x3000)
    }

    #[test]
    fn lookups_find_exactly_the_registered_ranges_across_threads() {
        const THREADS: usize = 4;
        const PER_THREAD: usize = 24;
        static REGISTRY: Registry<128> = Registry::new();
        std::thread::scope(|scope| {
            for thread in 0..THREADS {
                scope.spawn(move || {
                    for round in 0..50 {
                        let slots: Vec<usize> = (0..PER_THREAD)
                            .map(|i| {
                                let (start, end) = range(thread, i);
                                REGISTRY.register(start, end).expect("a free slot")
                            })
                            .collect();
                        for i in 0..PER_THREAD {
                            let (start, end) = range(thread, i);
                            assert!(REGISTRY.contains(start), "round {round}");
                            assert!(REGISTRY.contains(end - 1));
                            assert!(!REGISTRY.contains(end), "one past the end");
                            assert!(!REGISTRY.contains(start - 1));
                        }
                        // Unregister every other range, check, then the rest.
                        for (i, &slot) in slots.iter().enumerate().step_by(2) {
                            REGISTRY.unregister(slot);
                            assert!(!REGISTRY.contains(range(thread, i).0));
                        }
                        for (i, &slot) in slots.iter().enumerate().skip(1).step_by(2) {
                            assert!(REGISTRY.contains(range(thread, i).0));
                            REGISTRY.unregister(slot);
                            assert!(!REGISTRY.contains(range(thread, i).0));
                        }
                    }
                });
            }
        });
        for thread in 0..THREADS {
            for i in 0..PER_THREAD {
                assert!(!REGISTRY.contains(range(thread, i).0));
            }
        }
    }

    #[test]
    fn a_full_registry_refuses_and_a_freed_slot_is_reused() {
        let registry: Box<Registry<8>> = Box::new(Registry::new());
        let slots: Vec<usize> = (0..8)
            .map(|i| {
                let (start, end) = range(0, i);
                registry.register(start, end).expect("room")
            })
            .collect();
        assert_eq!(registry.register(range(1, 0).0, range(1, 0).1), None);
        registry.unregister(slots[3]);
        assert!(!registry.contains(range(0, 3).0));
        let (start, end) = range(1, 0);
        assert_eq!(registry.register(start, end), Some(slots[3]));
        assert!(registry.contains(start + 5));
        for i in [0, 1, 2, 4, 5, 6, 7] {
            assert!(registry.contains(range(0, i).0));
        }
    }
}
