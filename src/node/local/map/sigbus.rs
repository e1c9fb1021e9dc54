//! The process-wide SIGBUS handler that keeps a truncated or failing
//! segment page from killing the process.
//!
//! A load from a mapped page that lies past the end of its (shortened)
//! file, or whose read from the medium fails, raises SIGBUS. When the
//! faulting address lies in one of the engine's registered mappings, the
//! handler maps an anonymous zero page over the faulting page and returns:
//! the load runs again and reads zeros, so the checksum the reader computes
//! fails and the store reads the column degraded from other nodes. Any
//! other SIGBUS goes to the handler that was installed before ours (Rust's
//! stack-overflow handler, for one), or gets the default action: the
//! process dies as it would have without us.
//!
//! The handler is installed once, when the first mapping is registered,
//! and only does async-signal-safe things: atomic loads and stores, and
//! the `mmap`, `sigaction` and `raise` system calls.

#![allow(
    unsafe_code,
    reason = "installing a signal handler and remapping a page are system calls without safe wrappers"
)]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::registry::Registry;

/// Most segment mappings alive at once. Beyond it, reads copy through
/// `pread` instead of mapping (see `MapCache`). A node keeps one current
/// mapping per segment, plus older ones while `Bytes` still hold them.
pub(super) const MAPPED_RANGES_MAX: usize = 4096;

static RANGES: Registry<MAPPED_RANGES_MAX> = Registry::new();

/// Pages the handler replaced with zeros since the process started.
static PAGES_REPLACED: AtomicU64 = AtomicU64::new(0);

/// The last [`REPLACED_KEPT`] pages replaced: replacement `n` (counted
/// from 0) at `REPLACED[n % REPLACED_KEPT]`, one word written at once
/// (handlers on two threads may write the same slot): the page's number
/// (address / page size) above [`TAG_BITS`] bits of `n + 1`, which say
/// whose the entry is. What lets a reader of mapped bytes that outlive a
/// read (a checkpoint's records, read in place) tell whether zeros
/// replaced any of them.
const REPLACED_KEPT: usize = 64;
static REPLACED: [AtomicU64; REPLACED_KEPT] = [const { AtomicU64::new(0) }; REPLACED_KEPT];
/// Bits of an entry that name its replacement: a page number of a 57-bit
/// address space over 4 KiB pages (45 bits) fits above them.
const TAG_BITS: u32 = 19;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;

/// Replacements begun: counted first, so slot counts read while none is
/// under way hold only replacements below the global count
/// ([`MappedWatch::new`]).
static REPLACING: AtomicU64 = AtomicU64::new(0);

/// The page size, read once at install (`sysconf` is not async-signal-safe).
static PAGE_LEN: AtomicUsize = AtomicUsize::new(0);

/// The SIGBUS disposition before ours, to forward foreign faults to.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

/// Pages of registered mappings that read as zeros because they could no
/// longer be read (file truncated, media error), since the process started.
pub(crate) fn sigbus_pages_replaced() -> u64 {
    PAGES_REPLACED.load(Ordering::Relaxed)
}

/// Pages replaced in each registry slot's mapping since it was
/// registered (counted before the global count, and before the zeros are
/// mapped).
static REPLACED_IN: [AtomicU64; MAPPED_RANGES_MAX] =
    [const { AtomicU64::new(0) }; MAPPED_RANGES_MAX];

/// Whether replacement `n` (counted from 0) is known, and if so whether its
/// page overlaps one of `ranges`: `None` when it is not known any more
/// (more than [`REPLACED_KEPT`] since) or is being recorded.
fn replacement_hits(n: u64, ranges: &[(usize, usize)]) -> Option<bool> {
    let entry = REPLACED[n as usize % REPLACED_KEPT].load(Ordering::SeqCst);
    if entry & TAG_MASK != (n + 1) & TAG_MASK {
        return None;
    }
    let page_len = PAGE_LEN.load(Ordering::Relaxed).max(1);
    let page = usize::try_from(entry >> TAG_BITS)
        .ok()?
        .checked_mul(page_len)?;
    let end = page.saturating_add(page_len);
    Some(
        ranges
            .iter()
            .any(|&(start, stop)| page < stop && start < end),
    )
}

/// The replacements counted when bytes are about to be read
/// ([`mark`]): where a [`MappedWatch`] over them starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ReplacedMark {
    /// The global count.
    count: u64,
    /// Each registry slot's (sequence, count).
    slots: Vec<(usize, u64)>,
}

/// The replacements counted now, globally and per mapping: taken before
/// reading bytes that a [`MappedWatch`] will watch.
pub(crate) fn mark() -> ReplacedMark {
    // The global count first: every replacement from `count` on is looked
    // up in the ring by `MappedWatch::new`; the slot counts, used only
    // when the ring does not reach back that far, may hold some of those.
    let count = PAGES_REPLACED.load(Ordering::SeqCst);
    let slots = (0..MAPPED_RANGES_MAX)
        .map(|slot| {
            (
                RANGES.sequence(slot).unwrap_or(usize::MAX),
                REPLACED_IN[slot].load(Ordering::SeqCst),
            )
        })
        .collect();
    ReplacedMark { count, slots }
}

/// Mapped bytes read and checked once, kept and read again later (a
/// checkpoint's records read in place): whether a page of them has read
/// as zeros since, because the file under it was cut short or its medium
/// failed (the handler's replacement). See [`MappedWatch::intact`].
#[derive(Debug)]
pub(crate) struct MappedWatch {
    /// The bytes' address ranges.
    ranges: Vec<(usize, usize)>,
    /// The registry slots of their mappings: (slot, its registration's
    /// sequence, pages replaced in it when the watch began).
    slots: Vec<(usize, usize, u64)>,
    /// The global count up to which no replacement hit the ranges.
    clean_at: AtomicU64,
    /// Set once one did (or may have: see `intact`).
    lost: AtomicBool,
}

impl MappedWatch {
    /// A watch over `ranges`, whose bytes were read and checked after
    /// `mark` (taken before the reads). `None` when a replacement since
    /// may have hit them already: the check the reader made may have been
    /// of other bytes than those now there. Past the ring, the mappings'
    /// counts since the mark decide (a mapping made after it counts from
    /// 0), so a page lost elsewhere in one of them counts too.
    pub(crate) fn new(mark: &ReplacedMark, ranges: Vec<(usize, usize)>) -> Option<MappedWatch> {
        // The slots' counts and the global count at one moment with no
        // replacement under way (`REPLACING`): every replacement the slot
        // counts hold is then below `now`, so one the watch has not looked
        // at (from `now` on) shows in a slot count later. A handler runs for
        // microseconds; after a few tries the bytes are refused.
        let overlapping = RANGES.overlapping(&ranges);
        let mut taken = None;
        for _ in 0..100 {
            let begun = REPLACING.load(Ordering::SeqCst);
            let slots: Vec<(usize, usize, u64)> = overlapping
                .iter()
                .map(|&(slot, sequence)| (slot, sequence, REPLACED_IN[slot].load(Ordering::SeqCst)))
                .collect();
            let now = PAGES_REPLACED.load(Ordering::SeqCst);
            if now == begun && REPLACING.load(Ordering::SeqCst) == begun {
                taken = Some((slots, now));
                break;
            }
            std::thread::yield_now();
        }
        let (slots, now) = taken?;
        // The replacements since the mark: none may be in the bytes.
        let known = now.saturating_sub(mark.count) <= REPLACED_KEPT as u64
            && (mark.count..now).all(|n| replacement_hits(n, &ranges) == Some(false));
        // Past the ring: none may be in the bytes' mappings (a mapping
        // made since the mark counts from 0).
        if !known
            && slots.iter().any(|&(slot, sequence, count)| {
                let before = mark
                    .slots
                    .get(slot)
                    .filter(|&&(s, _)| s == sequence)
                    .map_or(0, |&(_, c)| c);
                count != before
            })
        {
            return None;
        }
        Some(MappedWatch {
            ranges,
            slots,
            clean_at: AtomicU64::new(now),
            lost: AtomicBool::new(false),
        })
    }

    /// False once a page of the bytes read as zeros since they were
    /// checked, and ever after. Asked after reading them: a replacement is
    /// counted before its zeros are mapped, so a reader that saw zeros
    /// finds it. A fence and three atomic loads while no page was replaced
    /// anywhere since the last ask; else the replacements since are looked up (their
    /// pages, the last [`REPLACED_KEPT`] of them), and beyond those the
    /// bytes' mappings' own counts (a replacement elsewhere in one of them
    /// counts as a loss: a cut short file or a failing medium under the
    /// bytes).
    pub(crate) fn intact(&self) -> bool {
        // Reads of the bytes before this stay before it.
        std::sync::atomic::fence(Ordering::Acquire);
        if self.lost.load(Ordering::Acquire) {
            return false;
        }
        let from = self.clean_at.load(Ordering::Acquire);
        let now = PAGES_REPLACED.load(Ordering::SeqCst);
        if now == from {
            return true;
        }
        let mut known = now.saturating_sub(from) <= REPLACED_KEPT as u64;
        if known {
            for n in from..now {
                match replacement_hits(n, &self.ranges) {
                    Some(false) => {}
                    Some(true) => {
                        self.lost.store(true, Ordering::Release);
                        return false;
                    }
                    None => {
                        known = false;
                        break;
                    }
                }
            }
        }
        // Not all known: every replacement counted in `now` was counted in
        // its slot first.
        if !known
            && self.slots.iter().any(|&(slot, sequence, count)| {
                RANGES.sequence(slot) != Some(sequence)
                    || REPLACED_IN[slot].load(Ordering::SeqCst) != count
            })
        {
            self.lost.store(true, Ordering::Release);
            return false;
        }
        self.clean_at.fetch_max(now, Ordering::AcqRel);
        true
    }
}

/// The page size, once the handler is installed (0 before).
pub(super) fn page_len() -> usize {
    PAGE_LEN.load(Ordering::Relaxed)
}

/// A mapped range the handler repairs until this is dropped.
pub(super) struct Registration {
    slot: usize,
}

impl Drop for Registration {
    fn drop(&mut self) {
        RANGES.unregister(self.slot);
    }
}

/// Registers `start..start + len` (a live mapping of a segment file),
/// installing the handler first if needed. `None` when the handler cannot
/// be installed or every slot is taken: the caller must not hand out
/// bytes of the mapping then.
pub(super) fn register(start: usize, len: usize) -> Option<Registration> {
    if !installed() {
        return None;
    }
    let end = start.checked_add(len)?;
    let slot = RANGES.register(start, end)?;
    // A new mapping has lost nothing (no one read it yet, so no fault of
    // it can be counted after this).
    REPLACED_IN[slot].store(0, Ordering::SeqCst);
    Some(Registration { slot })
}

fn installed() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(|| match install() {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(
                %error,
                "cannot install the SIGBUS handler; local reads copy instead of mapping"
            );
            false
        }
    })
}

fn install() -> std::io::Result<()> {
    // SAFETY: sysconf with a valid name only reads a value.
    let page_len = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page_len = usize::try_from(page_len)
        .ok()
        .filter(|len| len.is_power_of_two())
        .ok_or_else(|| std::io::Error::other("sysconf(_SC_PAGESIZE) failed"))?;
    PAGE_LEN.store(page_len, Ordering::Relaxed);
    // SAFETY: an all-zero `sigaction` is a valid value (SIG_DFL, no flags,
    // empty mask) that the fields below then fill in.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = on_sigbus;
    action.sa_sigaction = handler as libc::sighandler_t;
    action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
    // SAFETY: `sa_mask` is a valid `sigset_t` owned by `action`.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: as above: a zeroed `sigaction` for the kernel to fill in.
    let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
    // Swap in one call, so no handler installed by someone else is lost.
    // SAFETY: both pointers are to valid `sigaction` values that outlive
    // the call; `on_sigbus` has the SA_SIGINFO signature.
    if unsafe { libc::sigaction(libc::SIGBUS, &action, &mut previous) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // A fault in the instant before this is set is forwarded to the
    // default action, which is what it got before we were installed.
    let _ = PREVIOUS.set(previous);
    Ok(())
}

extern "C" fn on_sigbus(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // The interrupted code may be between a failing call and its errno
    // check; the calls below must not change what it sees.
    // SAFETY: `__errno_location` returns this thread's errno, always valid.
    let errno = unsafe { *libc::__errno_location() };
    if !replace_faulting_page(info) {
        forward(signal, info, context);
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Maps a zero page over the faulting page if it lies in a registered
/// mapping; returns whether it did.
fn replace_faulting_page(info: *const libc::siginfo_t) -> bool {
    let Some((code, address)) = fault_of(info) else {
        return false;
    };
    // SI_USER, SI_QUEUE, SI_TKILL... are <= 0: a signal someone sent, not
    // a fault, and its address field means nothing.
    if code <= 0 {
        return false;
    }
    let Some(in_slot) = RANGES.find(address) else {
        return false;
    };
    let page_len = PAGE_LEN.load(Ordering::Relaxed);
    if page_len == 0 {
        return false;
    }
    let page = address & !(page_len - 1);
    // Counted and recorded before the zeros are mapped: a thread that
    // reads them and then asks `MappedWatch::intact` finds this one.
    REPLACING.fetch_add(1, Ordering::SeqCst);
    REPLACED_IN[in_slot].fetch_add(1, Ordering::SeqCst);
    let n = PAGES_REPLACED.fetch_add(1, Ordering::SeqCst);
    let number = (page / page_len) as u64;
    REPLACED[n as usize % REPLACED_KEPT].store(
        (number << TAG_BITS) | ((n + 1) & TAG_MASK),
        Ordering::SeqCst,
    );
    // Why this is sound: `page` is the page-aligned start of a page inside
    // a live, read-only mapping of a segment file that this process made
    // and that stays registered until just before it is unmapped (so
    // nothing else can be mapped at this address). MAP_FIXED replaces
    // exactly that page with a private zero page of the same protection;
    // every holder of the mapping only reads it, and the later munmap of
    // the whole mapping unmaps the replacement too.
    // SAFETY: the conditions above hold.
    let mapped = unsafe {
        libc::mmap(
            page as *mut libc::c_void,
            page_len,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    // A failure is forwarded (the process dies); the count stays.
    mapped != libc::MAP_FAILED
}

fn fault_of(info: *const libc::siginfo_t) -> Option<(libc::c_int, usize)> {
    if info.is_null() {
        return None;
    }
    // SAFETY: with SA_SIGINFO the kernel passes a valid `siginfo_t`; for
    // SIGBUS its union holds the fault address (read as a number only).
    let (code, address) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    Some((code, address))
}

/// Hands a SIGBUS that is not ours to the disposition found at install.
fn forward(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let previous = PREVIOUS.get();
    let handler = previous.map_or(libc::SIG_DFL, |p| p.sa_sigaction);
    let code = fault_of(info).map_or(0, |(code, _)| code);
    if handler == libc::SIG_IGN && code <= 0 {
        return; // an ignored signal someone sent
    }
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // The default action kills the process. Restore it; a fault then
        // repeats when the load runs again, a sent signal is sent again.
        // (An ignored fault is fatal too: the kernel forces SIGBUS.)
        // SAFETY: a zeroed `sigaction` is SIG_DFL with an empty mask.
        let mut default: libc::sigaction = unsafe { std::mem::zeroed() };
        default.sa_sigaction = libc::SIG_DFL;
        // SAFETY: a valid `sigaction` pointer; no old action is asked for.
        unsafe { libc::sigaction(signal, &default, std::ptr::null_mut()) };
        if code <= 0 {
            // SAFETY: raise has no memory preconditions.
            unsafe { libc::raise(signal) };
        }
        return;
    }
    let Some(previous) = previous else { return };
    if previous.sa_flags & libc::SA_SIGINFO != 0 {
        type Handler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);
        // With SA_SIGINFO set, the kernel would have called the previous
        // handler with exactly this signature and these arguments.
        // SAFETY: the handler value is that function's address.
        let handler = unsafe { std::mem::transmute::<libc::sighandler_t, Handler>(handler) };
        handler(signal, info, context);
    } else {
        type Handler = extern "C" fn(libc::c_int);
        // Without SA_SIGINFO the previous handler takes the signal only.
        // SAFETY: the handler value is that function's address.
        let handler = unsafe { std::mem::transmute::<libc::sighandler_t, Handler>(handler) };
        handler(signal);
    }
}
