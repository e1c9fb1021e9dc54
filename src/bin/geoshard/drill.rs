//! `geoshard drill`: the fire drill on an embedded 3 sites x 3 nodes RS(6,3)
//! store.
//!
//! Values are never kept in memory: message `i`'s length and bytes are a
//! pure function of `(seed, i)`, so every verification regenerates them and
//! compares byte for byte.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use geoshard::layout::{Layout, Location};
use geoshard::{Options, RepairOptions, RepairReport, ScrubOptions, Store};
use indicatif::ProgressBar;
use serde::Serialize;

use crate::ops::{RepairOutput, ScrubOutput};
use crate::{CliResult, Failure, ui};

/// Sites of the embedded layout, each with three nodes.
const SITES: [&str; 3] = ["fra", "ams", "par"];
const NODES_PER_SITE: usize = 3;
const DATA_COUNT: usize = 6;
const PARITY_COUNT: usize = 3;

/// Message sizes: most are chat text, a few are photos.
const MESSAGE_LEN_MIN: usize = 20;
const MESSAGE_LEN_MAX: usize = 2 << 10;
const PHOTO_LEN_MIN: usize = 50 << 10;
const PHOTO_LEN_MAX: usize = 3 << 20;

/// Problems quoted in the report, per phase.
const SAMPLES_MAX: usize = 5;

/// Arguments of `geoshard drill`.
#[derive(Debug, clap::Args)]
pub struct DrillArgs {
    /// Messages written before the fire.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    messages: u64,
    /// Photos (50 KiB to 3 MiB) per thousand messages; the rest are 20 B to
    /// 2 KiB.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=1000))]
    photo_per_mille: u32,
    /// Seed of the workload (sizes and bytes of every message).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Messages written during the outage, in percent of --messages.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=1000))]
    outage_percent: u64,
    /// Threads that put and get concurrently.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: u16,
    /// The site that burns: fra, ams or par.
    #[arg(long, default_value = "fra", value_parser = ["fra", "ams", "par"])]
    burn: String,
    /// Directory for the store (must be empty or absent; kept afterwards).
    /// Default: a temporary directory, removed afterwards.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// The chat-like workload: message `i` is a pure function of `(seed, i)`.
#[derive(Clone, Copy)]
struct Workload {
    seed: u64,
    photo_per_mille: u32,
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Workload {
    fn key(i: u64) -> String {
        format!("chat/room-{:03}/msg-{i:09}", i % 997)
    }

    fn state(&self, i: u64) -> u64 {
        let mut state = self.seed ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03);
        splitmix64(&mut state);
        state
    }

    /// Length of message `i`.
    fn len(&self, i: u64) -> usize {
        let mut state = self.state(i);
        let pick = splitmix64(&mut state);
        let size = splitmix64(&mut state);
        let (min, max) = if pick % 1000 < u64::from(self.photo_per_mille) {
            (PHOTO_LEN_MIN, PHOTO_LEN_MAX)
        } else {
            (MESSAGE_LEN_MIN, MESSAGE_LEN_MAX)
        };
        min + (size % (max - min + 1) as u64) as usize
    }

    /// Writes message `i` into `buf` (replacing its contents).
    fn fill(&self, i: u64, buf: &mut Vec<u8>) {
        let len = self.len(i);
        buf.clear();
        buf.resize(len, 0);
        // xorshift64* keyed by the message: fast enough that regenerating
        // a value costs less than reading it.
        let mut x = self.state(i) | 1;
        let mut words = buf.chunks_exact_mut(8);
        for word in &mut words {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            word.copy_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let tail = words.into_remainder();
        let last = x
            .wrapping_mul(0x2545_F491_4F6C_DD1D)
            .rotate_left(17)
            .to_le_bytes();
        let tail_len = tail.len();
        tail.copy_from_slice(&last[..tail_len]);
    }
}

/// Counts of one phase over many threads.
#[derive(Debug, Default, Serialize)]
struct Tally {
    ops: u64,
    bytes: u64,
    /// Keys that read back as absent.
    missing: u64,
    /// Keys that read back with other bytes.
    corrupt: u64,
    /// Calls that returned an error.
    errors: u64,
    /// The first few problems, in words.
    samples: Vec<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.ops += other.ops;
        self.bytes += other.bytes;
        self.missing += other.missing;
        self.corrupt += other.corrupt;
        self.errors += other.errors;
        for sample in other.samples {
            if self.samples.len() < SAMPLES_MAX {
                self.samples.push(sample);
            }
        }
    }

    fn note(&mut self, sample: String) {
        if self.samples.len() < SAMPLES_MAX {
            self.samples.push(sample);
        }
    }
}

/// One timed phase of the drill, for the report.
#[derive(Debug, Serialize)]
struct Phase {
    name: &'static str,
    ops: u64,
    bytes: u64,
    secs: f64,
    mb_per_sec: f64,
    ops_per_sec: f64,
    missing: u64,
    corrupt: u64,
    errors: u64,
    samples: Vec<String>,
}

impl Phase {
    fn new(name: &'static str, tally: Tally, elapsed: Duration) -> Phase {
        Phase {
            name,
            ops: tally.ops,
            bytes: tally.bytes,
            secs: elapsed.as_secs_f64(),
            mb_per_sec: ui::mb_per_sec(tally.bytes, elapsed),
            ops_per_sec: ui::per_sec(tally.ops, elapsed),
            missing: tally.missing,
            corrupt: tally.corrupt,
            errors: tally.errors,
            samples: tally.samples,
        }
    }

    fn problems(&self) -> u64 {
        self.missing + self.corrupt + self.errors
    }
}

#[derive(Debug, Serialize)]
struct Check {
    name: String,
    ok: bool,
    detail: String,
}

/// The machine-readable report of `geoshard drill --json`.
#[derive(Debug, Serialize)]
struct DrillReport {
    ok: bool,
    code: String,
    sites: usize,
    nodes: usize,
    seed: u64,
    threads: u16,
    burned_site: String,
    messages_before_fire: u64,
    messages_during_outage: u64,
    photos: u64,
    user_bytes: u64,
    /// Segment file bytes on all nodes after the first writes (before the
    /// fire), against the user bytes written by then.
    stored_bytes_before_fire: u64,
    user_bytes_before_fire: u64,
    storage_overhead: f64,
    /// Segment file bytes at the end (repaired columns included; copies
    /// written elsewhere during the outage stay until compaction).
    stored_bytes_end: u64,
    phases: Vec<Phase>,
    failover_secs: f64,
    /// The failover open started from the checkpoint written during the
    /// fire (without the burned site's columns).
    failover_from_checkpoint: bool,
    repair: Vec<RepairOutput>,
    repair_secs: f64,
    repair_mb_per_sec: f64,
    scrub: Option<ScrubOutput>,
    survives_any_site_loss: bool,
    blobs_lost: u64,
    checks: Vec<Check>,
    total_secs: f64,
}

/// The store directory: a temporary one is removed on drop.
struct Root {
    path: PathBuf,
    remove: bool,
}

impl Drop for Root {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn prepare_root(dir: Option<&Path>) -> Result<Root, Failure> {
    match dir {
        Some(path) => {
            let empty = match std::fs::read_dir(path) {
                Ok(mut entries) => entries.next().is_none(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
                Err(e) => {
                    return Err(Failure::failed(format!(
                        "cannot read --dir {}: {e}. Pass an empty or new directory",
                        path.display()
                    )));
                }
            };
            if !empty {
                return Err(Failure::usage(format!(
                    "--dir {} is not empty. Pass an empty or new directory (the drill deletes a \
                     site's directories in it)",
                    path.display()
                )));
            }
            std::fs::create_dir_all(path).map_err(|e| {
                Failure::failed(format!(
                    "cannot create --dir {}: {e}. Pass a writable directory",
                    path.display()
                ))
            })?;
            Ok(Root {
                path: path.to_path_buf(),
                remove: false,
            })
        }
        None => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let path = std::env::temp_dir()
                .join(format!("geoshard-drill-{}-{nanos:09}", std::process::id()));
            std::fs::create_dir_all(&path).map_err(|e| {
                Failure::failed(format!(
                    "cannot create a temporary directory {}: {e}. Pass --dir with a writable \
                     directory",
                    path.display()
                ))
            })?;
            Ok(Root { path, remove: true })
        }
    }
}

fn layout(root: &Path) -> Result<Layout, Failure> {
    let mut builder = Layout::builder().code(DATA_COUNT, PARITY_COUNT);
    for site in SITES {
        let nodes: Vec<(String, PathBuf)> = (1..=NODES_PER_SITE)
            .map(|n| {
                let name = format!("{site}-{n}");
                let path = root.join(site).join(&name);
                (name, path)
            })
            .collect();
        builder = builder.site(site, |mut s| {
            for (name, path) in &nodes {
                s = s.node(name, path.as_path());
            }
            s
        });
    }
    Ok(builder.build()?)
}

/// Sum of the segment file sizes under `root`.
fn segment_bytes(root: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let path = entry.path();
            if meta.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "segment") {
                total += meta.len();
            }
        }
    }
    total
}

/// Runs `work` on every index of `range` from `threads` threads.
fn parallel<F>(threads: u16, range: Range<u64>, bar: &ProgressBar, work: F) -> (Tally, Duration)
where
    F: Fn(u64, &mut Vec<u8>, &mut Tally) + Sync,
{
    let next = AtomicU64::new(range.start);
    let total = Mutex::new(Tally::default());
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut tally = Tally::default();
                let mut buf = Vec::new();
                let mut since_tick = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= range.end {
                        break;
                    }
                    work(i, &mut buf, &mut tally);
                    since_tick += 1;
                    if since_tick == 64 {
                        bar.inc(since_tick);
                        since_tick = 0;
                    }
                }
                bar.inc(since_tick);
                if let Ok(mut total) = total.lock() {
                    total.merge(tally);
                }
            });
        }
    });
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    (total.into_inner().unwrap_or_default(), elapsed)
}

struct Drill<'a> {
    args: &'a DrillArgs,
    json: bool,
    workload: Workload,
    phases: Vec<Phase>,
    checks: Vec<Check>,
}

impl Drill<'_> {
    fn say(&self, line: &str) {
        if !self.json {
            eprintln!("{line}");
        }
    }

    fn check(&mut self, name: impl Into<String>, ok: bool, detail: impl Into<String>) {
        let check = Check {
            name: name.into(),
            ok,
            detail: detail.into(),
        };
        if !ok {
            self.say(&format!("CHECK FAILED: {}: {}", check.name, check.detail));
        }
        self.checks.push(check);
    }

    fn write(&mut self, store: &Store, name: &'static str, range: Range<u64>) {
        let bar = ui::bar(self.json, range.end - range.start, name, "msgs");
        let workload = self.workload;
        let (tally, elapsed) = parallel(self.args.threads, range, &bar, |i, _, tally| {
            let mut value = Vec::new();
            workload.fill(i, &mut value);
            let len = value.len() as u64;
            match store.put(Workload::key(i).as_bytes(), value) {
                Ok(()) => {
                    tally.ops += 1;
                    tally.bytes += len;
                }
                Err(e) => {
                    tally.errors += 1;
                    tally.note(format!("put {}: {e}", Workload::key(i)));
                }
            }
        });
        let flushed = store.flush();
        let phase = Phase::new(name, tally, elapsed);
        let ok = phase.problems() == 0 && flushed.is_ok();
        let detail = match &flushed {
            Err(e) => format!("flush failed: {e}"),
            Ok(()) => format!("{} puts, {} failed", phase.ops, phase.errors),
        };
        self.check(name, ok, detail);
        self.phases.push(phase);
    }

    fn verify(&mut self, store: &Store, name: &'static str, count: u64) -> u64 {
        let bar = ui::bar(self.json, count, name, "msgs");
        let workload = self.workload;
        let (tally, elapsed) = parallel(self.args.threads, 0..count, &bar, |i, buf, tally| {
            let key = Workload::key(i);
            match store.get(key.as_bytes()) {
                Ok(Some(blob)) => {
                    workload.fill(i, buf);
                    let mut same = blob.len() == buf.len();
                    let mut at = 0;
                    for chunk in blob.chunks() {
                        if !same {
                            break;
                        }
                        same = buf.get(at..at + chunk.len()) == Some(&chunk[..]);
                        at += chunk.len();
                    }
                    tally.ops += 1;
                    tally.bytes += blob.len() as u64;
                    if !same {
                        tally.corrupt += 1;
                        tally.note(format!("{key}: bytes differ"));
                    }
                }
                Ok(None) => {
                    tally.ops += 1;
                    tally.missing += 1;
                    tally.note(format!("{key}: missing"));
                }
                Err(e) => {
                    tally.errors += 1;
                    tally.note(format!("get {key}: {e}"));
                }
            }
        });
        let phase = Phase::new(name, tally, elapsed);
        let lost = phase.missing + phase.corrupt;
        self.check(
            name,
            phase.problems() == 0,
            format!(
                "{} of {count} blobs byte-exact; {} missing, {} differ, {} errors{}",
                count - phase.problems().min(count),
                phase.missing,
                phase.corrupt,
                phase.errors,
                phase
                    .samples
                    .first()
                    .map(|s| format!(" (e.g. {s})"))
                    .unwrap_or_default()
            ),
        );
        self.phases.push(phase);
        lost
    }

    fn repair(&mut self, store: &Store, pass: u32) -> Result<RepairReport, Failure> {
        let bar = ui::bar(self.json, 1, &format!("repair pass {pass}"), "stripes");
        let options = RepairOptions {
            progress: Some(ui::progress_fn(&bar)),
            ..RepairOptions::default()
        };
        let report = store.repair(&options);
        bar.finish_and_clear();
        let report = report.map_err(|e| Failure::failed(format!("repair pass {pass}: {e}")))?;
        self.check(
            format!("repair pass {pass}"),
            report.stripes_unrepairable == 0,
            format!(
                "{} stripes needed repair, {} repaired, {} unrepairable",
                report.stripes_needing_repair, report.stripes_repaired, report.stripes_unrepairable
            ),
        );
        Ok(report)
    }
}

/// Runs the drill.
pub fn run(args: &DrillArgs, json: bool) -> CliResult {
    let started = Instant::now();
    let root = prepare_root(args.dir.as_deref())?;
    let layout = layout(&root.path)?;
    let options = Options::default();
    let workload = Workload {
        seed: args.seed,
        photo_per_mille: args.photo_per_mille,
    };
    let mut drill = Drill {
        args,
        json,
        workload,
        phases: Vec::new(),
        checks: Vec::new(),
    };
    let before = args.messages;
    let during = before * args.outage_percent / 100;
    let total = before + during;
    let photos = (0..total)
        .filter(|&i| workload.len(i) >= PHOTO_LEN_MIN)
        .count() as u64;
    drill.say(&format!(
        "fire drill: RS({DATA_COUNT},{PARITY_COUNT}) on {} sites x {NODES_PER_SITE} nodes in {}",
        SITES.len(),
        root.path.display()
    ));

    let store = Store::create(layout.clone(), options.clone())
        .map_err(|e| Failure::failed(format!("cannot create the drill store: {e}")))?;
    drill.say(&format!(
        "writing {before} messages from {} threads",
        args.threads
    ));
    drill.write(&store, "put healthy", 0..before);
    let user_bytes_before_fire: u64 = (0..before).map(|i| workload.len(i) as u64).sum();
    let stored_bytes_before_fire = segment_bytes(&root.path);
    drill.verify(&store, "get healthy", before);

    // The fire: the site's node directories vanish under the open store.
    drill.say(&format!("burning site {}", args.burn));
    let site_id = layout
        .sites()
        .iter()
        .position(|s| s.name == args.burn)
        .ok_or_else(|| Failure::usage(format!("no site {:?} in the drill layout", args.burn)))?;
    let burned: Vec<&str> = layout.sites()[site_id]
        .nodes
        .iter()
        .map(|&id| layout.node(id).name.as_str())
        .collect();
    for &id in &layout.sites()[site_id].nodes {
        if let Location::Dir(path) = &layout.node(id).location {
            std::fs::remove_dir_all(path)
                .map_err(|e| Failure::failed(format!("cannot delete {}: {e}", path.display())))?;
        }
    }
    let health = store.health();
    let down: Vec<&str> = health
        .nodes
        .iter()
        .filter(|n| !n.reachable)
        .map(|n| n.name.as_str())
        .collect();
    drill.check(
        "fire noticed",
        down == burned && !health.survives_any_site_loss,
        format!(
            "nodes down: {down:?}; survives another site loss: {}",
            health.survives_any_site_loss
        ),
    );
    let degraded_before = store.stats().degraded_reads;
    drill.verify(&store, "get degraded", before);
    let degraded_reads = store.stats().degraded_reads - degraded_before;
    drill.check(
        "reads rebuilt during the fire",
        degraded_reads > 0,
        format!("{degraded_reads} degraded reads"),
    );
    drill.say(&format!("writing {during} messages during the outage"));
    drill.write(&store, "put degraded", before..total);
    // A checkpoint during the fire, without the burned site's columns:
    // the failover below starts from it instead of scanning every record.
    drill.say("checkpointing during the outage");
    let checkpoint = store.checkpoint();
    drill.check(
        "checkpoint during the fire",
        checkpoint
            .as_ref()
            .is_ok_and(|r| r.nodes_skipped == burned && r.blobs == total),
        match &checkpoint {
            Ok(r) => format!(
                "generation {:016x}, {} blobs, without the columns of {:?}",
                r.generation, r.blobs, r.nodes_skipped
            ),
            Err(e) => e.to_string(),
        },
    );
    let fire_checkpoint = checkpoint.ok().map(|r| r.generation);
    let closed = store.close();
    drill.check(
        "close during the outage",
        closed.is_ok(),
        closed.err().map(|e| e.to_string()).unwrap_or_default(),
    );
    drop(store);

    // Failover: a fresh process opens the store from the surviving sites.
    drill.say("reopening from the surviving sites (failover)");
    let reopen_started = Instant::now();
    let store = Store::open(layout.clone(), options.clone())
        .map_err(|e| Failure::failed(format!("failover open: {e}")))?;
    let failover = reopen_started.elapsed();
    let failover_checkpoint = store.open_report().checkpoint;
    drill.check(
        "failover opens from the fire's checkpoint",
        fire_checkpoint.is_some() && failover_checkpoint == fire_checkpoint,
        format!("opened from {failover_checkpoint:x?}, the fire's {fire_checkpoint:x?}"),
    );
    drill.check(
        "failover open sees every blob",
        store.len() as u64 == total,
        format!("{} of {total} blobs indexed", store.len()),
    );
    drill.verify(&store, "get after failover", total);

    drill.say("repairing onto the rebuilt site");
    let before_repair = store.stats();
    let repair1 = drill.repair(&store, 1)?;
    let repair2 = drill.repair(&store, 2)?;
    let repair_elapsed = repair1.elapsed + repair2.elapsed;
    let repair_bytes =
        repair1.bytes_read + repair1.bytes_written + repair2.bytes_read + repair2.bytes_written;

    drill.say("scrubbing");
    let bar = ui::bar(json, 1, "scrub", "stripes");
    let scrub_options = ScrubOptions {
        progress: Some(ui::progress_fn(&bar)),
        ..ScrubOptions::default()
    };
    let scrub = store.scrub(&scrub_options);
    bar.finish_and_clear();
    let scrub = scrub.map_err(|e| Failure::failed(format!("scrub: {e}")))?;
    drill.check(
        "scrub clean",
        scrub.is_clean(),
        format!(
            "{} columns checked: {} corrupt, {} missing, {} parity mismatches",
            scrub.columns_checked,
            scrub.columns_corrupt,
            scrub.columns_missing,
            scrub.parity_mismatches
        ),
    );
    let health = store.health();
    drill.check(
        "survives any site loss again",
        health.survives_any_site_loss && health.columns_missing == 0 && health.columns_away == 0,
        format!(
            "survives_any_site_loss {}, {} columns missing, {} away from home, {} nodes down",
            health.survives_any_site_loss,
            health.columns_missing,
            health.columns_away,
            health.nodes.iter().filter(|n| !n.reachable).count()
        ),
    );
    let blobs_lost = drill.verify(&store, "get repaired", total);
    let closed = store.close();
    drill.check(
        "close after repair",
        closed.is_ok(),
        closed.err().map(|e| e.to_string()).unwrap_or_default(),
    );
    // The fire's checkpoint lacks the rebuilt site's columns: the repair
    // started a whole one (close waited for it), so that a second fire
    // opens from it.
    let after = store.stats();
    drill.check(
        "whole checkpoint after the repair",
        after.checkpoints > before_repair.checkpoints
            && after.checkpoints_degraded == before_repair.checkpoints_degraded
            && after.checkpoint_failures == before_repair.checkpoint_failures,
        format!(
            "{} checkpoints written since the repair started, {} without some columns, {} failed",
            after.checkpoints - before_repair.checkpoints,
            after.checkpoints_degraded - before_repair.checkpoints_degraded,
            after.checkpoint_failures - before_repair.checkpoint_failures
        ),
    );
    drop(store);
    let lost_anywhere = drill
        .phases
        .iter()
        .map(|p| p.missing + p.corrupt)
        .max()
        .unwrap_or(0);

    let user_bytes: u64 =
        user_bytes_before_fire + (before..total).map(|i| workload.len(i) as u64).sum::<u64>();
    let report = DrillReport {
        ok: drill.checks.iter().all(|c| c.ok),
        code: format!("RS({DATA_COUNT},{PARITY_COUNT})"),
        sites: SITES.len(),
        nodes: SITES.len() * NODES_PER_SITE,
        seed: args.seed,
        threads: args.threads,
        burned_site: args.burn.clone(),
        messages_before_fire: before,
        messages_during_outage: during,
        photos,
        user_bytes,
        stored_bytes_before_fire,
        user_bytes_before_fire,
        storage_overhead: if user_bytes_before_fire > 0 {
            stored_bytes_before_fire as f64 / user_bytes_before_fire as f64
        } else {
            0.0
        },
        stored_bytes_end: segment_bytes(&root.path),
        phases: std::mem::take(&mut drill.phases),
        failover_secs: failover.as_secs_f64(),
        failover_from_checkpoint: fire_checkpoint.is_some()
            && failover_checkpoint == fire_checkpoint,
        repair: vec![RepairOutput::from(&repair1), RepairOutput::from(&repair2)],
        repair_secs: repair_elapsed.as_secs_f64(),
        repair_mb_per_sec: ui::mb_per_sec(repair_bytes, repair_elapsed),
        scrub: Some(ScrubOutput::from(&scrub)),
        survives_any_site_loss: health.survives_any_site_loss,
        blobs_lost: blobs_lost.max(lost_anywhere),
        checks: std::mem::take(&mut drill.checks),
        total_secs: started.elapsed().as_secs_f64(),
    };
    if json {
        ui::print_json(&report)?;
    } else {
        print_report(&report, &repair1, &repair2);
    }
    if report.ok {
        Ok(())
    } else {
        if !root.remove {
            return Err(Failure::failed(format!(
                "the drill failed (see the checks above); the store is left in {} for inspection",
                root.path.display()
            )));
        }
        Err(Failure::failed("the drill failed (see the checks above)"))
    }
}

fn print_report(r: &DrillReport, repair1: &RepairReport, repair2: &RepairReport) {
    println!(
        "geoshard fire drill: {} on {} sites x {NODES_PER_SITE} nodes, {} threads, seed {}",
        r.code, r.sites, r.threads, r.seed
    );
    println!(
        "  workload            {} messages + {} during the outage ({} photos), {} of user bytes",
        r.messages_before_fire,
        r.messages_during_outage,
        r.photos,
        ui::bytes(r.user_bytes)
    );
    println!(
        "  stored vs written   {} in segment files for {} written before the fire: overhead \
         {:.2}x (RS ideal {:.2}x)",
        ui::bytes(r.stored_bytes_before_fire),
        ui::bytes(r.user_bytes_before_fire),
        r.storage_overhead,
        (DATA_COUNT + PARITY_COUNT) as f64 / DATA_COUNT as f64
    );
    for phase in &r.phases {
        println!(
            "  {:<19} {:>7.1} MB/s {:>9.0} ops/s  ({} blobs, {} in {:.2} s){}",
            phase.name,
            phase.mb_per_sec,
            phase.ops_per_sec,
            phase.ops,
            ui::bytes(phase.bytes),
            phase.secs,
            if phase.problems() > 0 {
                format!("  {} PROBLEMS", phase.problems())
            } else {
                String::new()
            }
        );
    }
    println!(
        "  site {} burned      reads rebuilt from the other sites, writes went to handoff nodes",
        r.burned_site
    );
    println!(
        "  failover            reopened from the 2 surviving sites in {:.3} s{}",
        r.failover_secs,
        if r.failover_from_checkpoint {
            ", from the checkpoint written during the fire"
        } else {
            ""
        }
    );
    println!(
        "  repair              {:.2} s, {:.0} MB/s read+written: {} columns rebuilt, {} moved \
         home, {} read, {} written",
        r.repair_secs,
        r.repair_mb_per_sec,
        repair1.columns_rebuilt + repair2.columns_rebuilt,
        repair1.columns_moved_home + repair2.columns_moved_home,
        ui::bytes(repair1.bytes_read + repair2.bytes_read),
        ui::bytes(repair1.bytes_written + repair2.bytes_written)
    );
    if let Some(scrub) = &r.scrub {
        println!(
            "  scrub               {} in {:.2} s, {}",
            ui::bytes(scrub.bytes_read),
            scrub.elapsed_secs,
            if scrub.clean { "clean" } else { "NOT CLEAN" }
        );
    }
    println!(
        "  survives any site loss again: {}",
        if r.survives_any_site_loss {
            "yes"
        } else {
            "NO"
        }
    );
    println!("  blobs lost          {}", r.blobs_lost);
    let passed = r.checks.iter().filter(|c| c.ok).count();
    println!(
        "  checks              {passed} of {} passed in {:.1} s: {}",
        r.checks.len(),
        r.total_secs,
        if r.ok { "OK" } else { "FAILED" }
    );
    for check in r.checks.iter().filter(|c| !c.ok) {
        println!("    FAILED {}: {}", check.name, check.detail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_a_pure_function_of_seed_and_index() {
        let workload = Workload {
            seed: 7,
            photo_per_mille: 5,
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for i in [0, 1, 2, 999, 123_456] {
            workload.fill(i, &mut a);
            workload.fill(i, &mut b);
            assert_eq!(a, b);
            assert_eq!(a.len(), workload.len(i));
        }
        let other = Workload {
            seed: 8,
            ..workload
        };
        workload.fill(3, &mut a);
        other.fill(3, &mut b);
        assert_ne!(a, b, "another seed, other bytes");
        workload.fill(4, &mut b);
        assert_ne!(a, b, "another message, other bytes");
    }

    #[test]
    fn sizes_follow_the_chat_mix() {
        let workload = Workload {
            seed: 1,
            photo_per_mille: 5,
        };
        let lens: Vec<usize> = (0..100_000).map(|i| workload.len(i)).collect();
        let photos = lens.iter().filter(|&&l| l >= PHOTO_LEN_MIN).count();
        assert!((350..=650).contains(&photos), "{photos} photos");
        assert!(lens.iter().all(|&l| {
            (MESSAGE_LEN_MIN..=MESSAGE_LEN_MAX).contains(&l)
                || (PHOTO_LEN_MIN..=PHOTO_LEN_MAX).contains(&l)
        }));
        let none = Workload {
            photo_per_mille: 0,
            ..workload
        };
        assert!((0..10_000).all(|i| none.len(i) <= MESSAGE_LEN_MAX));
        // Every tail length (len % 8) is produced and filled.
        let mut buf = Vec::new();
        for i in 0..64 {
            none.fill(i, &mut buf);
            assert_eq!(buf.len(), none.len(i));
        }
    }

    #[test]
    fn segment_bytes_counts_only_segment_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/b/1.segment"), [0u8; 100]).unwrap();
        std::fs::write(dir.join("a/2.segment"), [0u8; 20]).unwrap();
        std::fs::write(dir.join("a/lock"), [0u8; 7]).unwrap();
        assert_eq!(segment_bytes(dir), 120);
    }
}
