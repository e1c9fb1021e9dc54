//! The operator commands on a store described by a layout file.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use geoshard::layout::Layout;
use geoshard::{
    CompactOptions, Health, Options, RepairOptions, RepairReport, ScrubOptions, ScrubReport, Store,
};
use serde::Serialize;

use crate::{CliResult, Command, Failure, bulk, ui};

/// Runs one operator command.
pub fn run(layout_path: &Path, json: bool, salvage: bool, command: Command) -> CliResult {
    let options = Options {
        salvage,
        ..Options::default()
    };
    let store = open(layout_path, options, matches!(command, Command::Create))?;
    let result = match command {
        Command::Drill(_) => Err(Failure::failed("drill does not take a store")),
        Command::Create => created(&store, json),
        Command::AcceptLoss => accept_loss(&store, json),
        Command::Put {
            key: Some(key),
            file,
            ..
        } => put(&store, json, &key, &file),
        Command::Put {
            dir: Some(dir),
            prefix,
            ..
        } => bulk::put_dir(&store, json, &dir, &prefix),
        Command::Put {
            list: Some(list),
            prefix,
            ..
        } => bulk::put_list(&store, json, &list, &prefix),
        Command::Put { .. } => Err(Failure::usage(
            "put needs a KEY, or --dir DIR, or --list FILE",
        )),
        Command::Get {
            prefix: Some(prefix),
            output: Some(dir),
            ..
        } => bulk::get_prefix(&store, json, &prefix, &dir),
        Command::Get {
            key: Some(key),
            output,
            ..
        } => get(&store, json, &key, output.as_deref()),
        Command::Get { .. } => Err(Failure::usage(
            "get needs a KEY, or --prefix PREFIX with -o DIR",
        )),
        Command::Delete { key } => delete(&store, json, &key),
        Command::Ls { prefix } => ls(&store, json, &prefix),
        Command::Stat => stat(&store, json),
        Command::Health => health(&store, json),
        Command::Scrub {
            no_repair,
            bandwidth,
        } => scrub(&store, json, !no_repair, ui::bandwidth(bandwidth)),
        Command::Repair { bandwidth } => repair(&store, json, ui::bandwidth(bandwidth)),
        Command::Compact { live_ratio_max } => compact(&store, json, live_ratio_max),
    };
    // A close error matters (it may mean the last writes are not durable)
    // unless the command already failed for a reason of its own.
    let closed = store.close().map_err(Failure::from);
    result.and(closed)
}

/// Loads the layout and opens (or creates) the store, with errors that say
/// what to do.
fn open(layout_path: &Path, options: Options, create: bool) -> Result<Store, Failure> {
    let layout = Layout::load(layout_path).map_err(|error| match error {
        geoshard::Error::Io { source, .. } => Failure::failed(format!(
            "cannot read layout file {}: {source}. Pass --layout with the path of a layout file \
             (see README, \"Layout file\")",
            layout_path.display()
        )),
        other => {
            let message = other.to_string();
            if message.contains("Fix") {
                Failure::failed(message)
            } else {
                Failure::failed(format!(
                    "{message}. Fix the layout file (see README, \"Layout file\")"
                ))
            }
        }
    })?;
    let opened = if create {
        Store::create(layout, options)
    } else {
        Store::open(layout, options)
    };
    opened.map_err(|error| match error {
        geoshard::Error::Locked { path } => Failure::failed(format!(
            "node directory {} is locked by another process: stop the other geoshard process \
             using this store, then retry",
            path.display()
        )),
        other @ geoshard::Error::NoStore { .. } => Failure::failed(format!(
            "{other} (`geoshard create` creates a new store over the layout)"
        )),
        other => Failure::failed(format!(
            "cannot {} the store: {other}",
            if create { "create" } else { "open" }
        )),
    })
}

#[derive(Serialize)]
struct CreatedOutput {
    nodes: usize,
    code: String,
}

fn created(store: &Store, json: bool) -> CliResult {
    let output = CreatedOutput {
        nodes: store.layout().nodes().len(),
        code: store.layout().code().to_string(),
    };
    if json {
        ui::print_json(&output)
    } else {
        println!(
            "created a {} store over {} nodes",
            output.code, output.nodes
        );
        Ok(())
    }
}

#[derive(Serialize)]
struct AcceptLossOutput {
    stripes_lost: usize,
    keys_deleted: usize,
}

fn accept_loss(store: &Store, json: bool) -> CliResult {
    let stripes_lost = store.open_report().stripes_lost;
    let keys_deleted = store.accept_loss()?;
    let output = AcceptLossOutput {
        stripes_lost,
        keys_deleted,
    };
    if json {
        ui::print_json(&output)
    } else {
        println!(
            "loss accepted: {stripes_lost} stripes recorded as gone, {keys_deleted} keys deleted"
        );
        Ok(())
    }
}

/// A key for display: the text if it is UTF-8, else escaped.
fn show_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(text) => text.to_string(),
        Err(_) => key.escape_ascii().to_string(),
    }
}

#[derive(Serialize)]
struct PutOutput<'a> {
    key: &'a str,
    len: u64,
}

fn put(store: &Store, json: bool, key: &str, file: &Path) -> CliResult {
    let mut value = Vec::new();
    let read = if file == Path::new("-") {
        std::io::stdin().lock().read_to_end(&mut value)
    } else {
        std::fs::File::open(file).and_then(|mut f| f.read_to_end(&mut value))
    };
    read.map_err(|e| {
        Failure::failed(format!(
            "cannot read {}: {e}. Pass a readable file, or `-` to read stdin",
            if file == Path::new("-") {
                "stdin".to_string()
            } else {
                file.display().to_string()
            }
        ))
    })?;
    let len = value.len() as u64;
    store.put(key.as_bytes(), value)?;
    if json {
        ui::print_json(&PutOutput { key, len })
    } else {
        println!("stored {key} ({})", ui::bytes(len));
        Ok(())
    }
}

fn not_found(key: &str) -> Failure {
    Failure::not_found(format!(
        "no blob under key {key:?}. List keys with `geoshard ls PREFIX`"
    ))
}

fn get(store: &Store, json: bool, key: &str, output: Option<&Path>) -> CliResult {
    let blob = store.get(key.as_bytes())?.ok_or_else(|| not_found(key))?;
    let write_err = |what: &str, e: std::io::Error| {
        Failure::failed(format!(
            "cannot write {what}: {e}. Check the path and free space, or pick another -o FILE"
        ))
    };
    match output {
        Some(path) => {
            let what = path.display().to_string();
            let mut file = std::fs::File::create(path).map_err(|e| write_err(&what, e))?;
            for chunk in blob.chunks() {
                file.write_all(chunk).map_err(|e| write_err(&what, e))?;
            }
            // Special files (/dev/null, a pipe, a terminal) cannot be
            // synced (EINVAL): only a regular file's bytes need it.
            let regular = file.metadata().map(|m| m.is_file()).unwrap_or(false);
            if regular {
                file.sync_all().map_err(|e| write_err(&what, e))?;
            }
            if json {
                ui::print_json(&PutOutput {
                    key,
                    len: blob.len() as u64,
                })?;
            }
            Ok(())
        }
        None => {
            // The blob itself goes to stdout; --json cannot describe it
            // there too, so it changes nothing here.
            let mut out = std::io::stdout().lock();
            for chunk in blob.chunks() {
                out.write_all(chunk).map_err(|e| write_err("stdout", e))?;
            }
            out.flush().map_err(|e| write_err("stdout", e))
        }
    }
}

#[derive(Serialize)]
struct DeleteOutput<'a> {
    key: &'a str,
    deleted: bool,
}

fn delete(store: &Store, json: bool, key: &str) -> CliResult {
    if !store.delete(key.as_bytes())? {
        return Err(not_found(key));
    }
    if json {
        ui::print_json(&DeleteOutput { key, deleted: true })
    } else {
        println!("deleted {key}");
        Ok(())
    }
}

#[derive(Serialize)]
struct LsEntry {
    key: String,
    len: u64,
}

fn ls(store: &Store, json: bool, prefix: &str) -> CliResult {
    let mut entries = Vec::new();
    for key in store.keys_with_prefix(prefix.as_bytes()) {
        // A key deleted between listing and sizing is simply skipped.
        if let Some(len) = store.len_of(&key)? {
            entries.push(LsEntry {
                key: show_key(&key),
                len,
            });
        }
    }
    if json {
        return ui::print_json(&entries);
    }
    let mut out = std::io::stdout().lock();
    for entry in &entries {
        // A closed pipe (`geoshard ls | head`) just ends the listing.
        if writeln!(out, "{}\t{}", entry.len, entry.key).is_err() {
            break;
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct StatOutput {
    blobs: usize,
    stripes: usize,
    puts: u64,
    gets: u64,
    deletes: u64,
    degraded_reads: u64,
    checksum_failures: u64,
    read_errors: u64,
    write_failures: u64,
    repair_queue: usize,
    open: OpenOutput,
    layout: LayoutOutput,
}

#[derive(Serialize)]
struct OpenOutput {
    stripes_visible: usize,
    session: u64,
    stripes_discarded: usize,
    stripes_lost: usize,
    lost_keys: Vec<String>,
    lost_keys_unknown: bool,
    corrupt_regions: usize,
    tail_bytes_truncated: u64,
    inconsistent_records: usize,
    entry_tables_rebuilt: usize,
    /// The checkpoint open started from (hex generation), if any.
    checkpoint: Option<String>,
    /// When it is a delta, the full checkpoint under it.
    checkpoint_base: Option<String>,
    /// Stripes read past the checkpoint.
    tail_stripes: usize,
}

#[derive(Serialize)]
struct LayoutOutput {
    data_count: usize,
    parity_count: usize,
    sites: usize,
    nodes: usize,
    storage_overhead: f64,
    sites_survived: usize,
    nodes_survived: usize,
    explain: String,
}

fn stat(store: &Store, json: bool) -> CliResult {
    let stats = store.stats();
    let open = store.open_report();
    let explain = store.layout().explain();
    let output = StatOutput {
        blobs: stats.blobs,
        stripes: stats.stripes,
        puts: stats.puts,
        gets: stats.gets,
        deletes: stats.deletes,
        degraded_reads: stats.degraded_reads,
        checksum_failures: stats.checksum_failures,
        read_errors: stats.read_errors,
        write_failures: stats.write_failures,
        repair_queue: stats.repair_queue,
        open: OpenOutput {
            stripes_visible: open.stripes_visible,
            session: open.session,
            stripes_discarded: open.stripes_discarded,
            stripes_lost: open.stripes_lost,
            lost_keys: open.lost_keys.iter().map(|k| show_key(k)).collect(),
            lost_keys_unknown: open.lost_keys_unknown,
            corrupt_regions: open.corrupt_regions,
            tail_bytes_truncated: open.tail_bytes_truncated,
            inconsistent_records: open.inconsistent_records,
            entry_tables_rebuilt: open.entry_tables_rebuilt,
            checkpoint: open.checkpoint.map(|g| format!("{g:016x}")),
            checkpoint_base: open.checkpoint_base.map(|g| format!("{g:016x}")),
            tail_stripes: open.tail_stripes,
        },
        layout: LayoutOutput {
            data_count: explain.code.data_count,
            parity_count: explain.code.parity_count,
            sites: store.layout().sites().len(),
            nodes: explain.node_count,
            storage_overhead: explain.storage_overhead,
            sites_survived: explain.sites_survived,
            nodes_survived: explain.nodes_survived,
            explain: explain.to_string(),
        },
    };
    if json {
        return ui::print_json(&output);
    }
    println!("blobs:   {}", output.blobs);
    println!("stripes: {}", output.stripes);
    println!(
        "open:    {} stripes visible, {} discarded (unacknowledged), {} corrupt regions skipped, \
         {} entry tables rebuilt",
        open.stripes_visible,
        open.stripes_discarded,
        open.corrupt_regions,
        open.entry_tables_rebuilt
    );
    match (&output.open.checkpoint, &output.open.checkpoint_base) {
        (Some(generation), Some(base)) => println!(
            "         from checkpoint {generation} (a delta over {base}) and {} stripes past it",
            open.tail_stripes
        ),
        (Some(generation), None) => println!(
            "         from checkpoint {generation} and {} stripes past it",
            open.tail_stripes
        ),
        (None, _) => println!("         every record scanned (no checkpoint used)"),
    }
    if open.stripes_lost > 0 {
        println!(
            "LOST:    {} stripes beyond the promise; {} keys known lost{}{}",
            open.stripes_lost,
            open.lost_keys.len(),
            if open.lost_keys_unknown {
                ", and lost stripes hold keys that cannot be read"
            } else {
                ""
            },
            if open.loss_accepted {
                " (accepted)"
            } else {
                " (see `accept-loss`)"
            }
        );
        for key in output.open.lost_keys.iter().take(20) {
            println!("  lost: {key}");
        }
    }
    println!(
        "this process: {} degraded reads, {} checksum failures, {} columns queued for repair, \
         {} degraded writes",
        stats.degraded_reads, stats.checksum_failures, stats.repair_queue, stats.degraded_writes
    );
    println!();
    println!("{}", output.layout.explain);
    Ok(())
}

#[derive(Serialize)]
struct HealthOutput {
    survives_any_site_loss: bool,
    stripes: usize,
    /// Margin (columns a stripe can still lose) -> stripe count.
    stripes_by_margin: BTreeMap<i64, usize>,
    columns_missing: usize,
    columns_away: usize,
    nodes: Vec<NodeOutput>,
}

#[derive(Serialize)]
struct NodeOutput {
    name: String,
    site: String,
    reachable: bool,
    writable: bool,
    down_reason: Option<String>,
    columns: usize,
    bytes: u64,
    columns_missing: usize,
    columns_away: usize,
}

fn health_output(health: &Health) -> HealthOutput {
    HealthOutput {
        survives_any_site_loss: health.survives_any_site_loss,
        stripes: health.stripes,
        stripes_by_margin: health.stripes_by_margin.clone(),
        columns_missing: health.columns_missing,
        columns_away: health.columns_away,
        nodes: health
            .nodes
            .iter()
            .map(|n| NodeOutput {
                name: n.name.clone(),
                site: n.site.clone(),
                reachable: n.reachable,
                writable: n.writable,
                down_reason: n.down_reason.clone(),
                columns: n.columns,
                bytes: n.bytes,
                columns_missing: n.columns_missing,
                columns_away: n.columns_away,
            })
            .collect(),
    }
}

fn health(store: &Store, json: bool) -> CliResult {
    let health = store.health();
    let output = health_output(&health);
    if json {
        ui::print_json(&output)?;
    } else {
        println!(
            "{:<16} {:<12} {:<10} {:>9} {:>10} {:>8} {:>6}",
            "node", "site", "state", "columns", "bytes", "missing", "away"
        );
        for n in &output.nodes {
            let state = match (n.reachable, n.writable) {
                (true, true) => "up",
                (true, false) => "read-only",
                (false, _) => "DOWN",
            };
            println!(
                "{:<16} {:<12} {:<10} {:>9} {:>10} {:>8} {:>6}{}",
                n.name,
                n.site,
                state,
                n.columns,
                ui::bytes(n.bytes),
                n.columns_missing,
                n.columns_away,
                n.down_reason
                    .as_deref()
                    .map(|r| format!("  ({r})"))
                    .unwrap_or_default()
            );
        }
        let margins: Vec<String> = output
            .stripes_by_margin
            .iter()
            .map(|(margin, count)| format!("{count} can lose {margin} more"))
            .collect();
        println!(
            "stripes: {} ({}); columns missing {}, away from home {}",
            output.stripes,
            if margins.is_empty() {
                "none".to_string()
            } else {
                margins.join(", ")
            },
            output.columns_missing,
            output.columns_away
        );
        if output.survives_any_site_loss {
            println!("if one more site burns now: nothing is lost");
        } else {
            println!(
                "if one more site burns now: DATA WOULD BE LOST. Run `geoshard repair` (and bring \
                 down nodes back)"
            );
        }
    }
    if output.survives_any_site_loss {
        Ok(())
    } else {
        Err(Failure::silent())
    }
}

/// A repair report for JSON.
#[derive(Debug, Serialize)]
pub struct RepairOutput {
    pub stripes_needing_repair: u64,
    pub stripes_repaired: u64,
    pub columns_rebuilt: u64,
    pub columns_moved_home: u64,
    pub stripes_unrepairable: u64,
    pub nodes_revived: Vec<String>,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub elapsed_secs: f64,
}

impl From<&RepairReport> for RepairOutput {
    fn from(r: &RepairReport) -> RepairOutput {
        RepairOutput {
            stripes_needing_repair: r.stripes_needing_repair,
            stripes_repaired: r.stripes_repaired,
            columns_rebuilt: r.columns_rebuilt,
            columns_moved_home: r.columns_moved_home,
            stripes_unrepairable: r.stripes_unrepairable,
            nodes_revived: r.nodes_revived.clone(),
            bytes_read: r.bytes_read,
            bytes_written: r.bytes_written,
            elapsed_secs: r.elapsed.as_secs_f64(),
        }
    }
}

/// A scrub report for JSON.
#[derive(Debug, Serialize)]
pub struct ScrubOutput {
    pub clean: bool,
    pub stripes_checked: u64,
    pub columns_checked: u64,
    pub columns_corrupt: u64,
    pub columns_missing: u64,
    pub parity_mismatches: u64,
    pub bytes_read: u64,
    pub repair: Option<RepairOutput>,
    pub elapsed_secs: f64,
}

impl From<&ScrubReport> for ScrubOutput {
    fn from(r: &ScrubReport) -> ScrubOutput {
        ScrubOutput {
            clean: r.is_clean(),
            stripes_checked: r.stripes_checked,
            columns_checked: r.columns_checked,
            columns_corrupt: r.columns_corrupt,
            columns_missing: r.columns_missing,
            parity_mismatches: r.parity_mismatches,
            bytes_read: r.bytes_read,
            repair: r.repair.as_ref().map(RepairOutput::from),
            elapsed_secs: r.elapsed.as_secs_f64(),
        }
    }
}

fn print_repair(r: &RepairReport) {
    println!(
        "repair: {} of {} stripes repaired, {} columns rebuilt, {} moved home, {} unrepairable; \
         read {}, wrote {} in {:.2} s ({:.0} MB/s)",
        r.stripes_repaired,
        r.stripes_needing_repair,
        r.columns_rebuilt,
        r.columns_moved_home,
        r.stripes_unrepairable,
        ui::bytes(r.bytes_read),
        ui::bytes(r.bytes_written),
        r.elapsed.as_secs_f64(),
        ui::mb_per_sec(r.bytes_read + r.bytes_written, r.elapsed)
    );
    if !r.nodes_revived.is_empty() {
        println!("nodes recreated: {}", r.nodes_revived.join(", "));
    }
}

fn repair_failure(r: &RepairReport) -> CliResult {
    if r.stripes_unrepairable > 0 {
        Err(Failure::failed(format!(
            "{} stripe(s) could not be repaired (fewer than k columns readable). Bring the down \
             nodes back (see `geoshard health`), then run `geoshard repair` again",
            r.stripes_unrepairable
        )))
    } else {
        Ok(())
    }
}

fn scrub(store: &Store, json: bool, repair: bool, bandwidth: Option<u64>) -> CliResult {
    let bar = ui::bar(json, 1, "scrub", "stripes");
    let options = ScrubOptions {
        repair,
        bandwidth_bytes_per_sec: bandwidth,
        progress: Some(ui::progress_fn(&bar)),
    };
    let report = store.scrub(&options)?;
    bar.finish_and_clear();
    if json {
        ui::print_json(&ScrubOutput::from(&report))?;
    } else {
        println!(
            "scrub: {} stripes, {} columns checked ({}) in {:.2} s: {} corrupt, {} missing, {} \
             parity mismatches{}",
            report.stripes_checked,
            report.columns_checked,
            ui::bytes(report.bytes_read),
            report.elapsed.as_secs_f64(),
            report.columns_corrupt,
            report.columns_missing,
            report.parity_mismatches,
            if report.is_clean() { " (clean)" } else { "" }
        );
        if let Some(r) = &report.repair {
            print_repair(r);
        }
    }
    match &report.repair {
        Some(r) => repair_failure(r),
        None if report.is_clean() => Ok(()),
        None => Err(Failure::failed(
            "scrub found damage and --no-repair was given. Run `geoshard repair` (or `geoshard \
             scrub` without --no-repair) to fix it",
        )),
    }
}

fn repair(store: &Store, json: bool, bandwidth: Option<u64>) -> CliResult {
    let bar = ui::bar(json, 1, "repair", "stripes");
    let options = RepairOptions {
        bandwidth_bytes_per_sec: bandwidth,
        progress: Some(ui::progress_fn(&bar)),
    };
    let report = store.repair(&options)?;
    bar.finish_and_clear();
    if json {
        ui::print_json(&RepairOutput::from(&report))?;
    } else {
        print_repair(&report);
    }
    repair_failure(&report)
}

#[derive(Serialize)]
struct CompactOutput {
    generations_compacted: Vec<u64>,
    blobs_moved: u64,
    bytes_moved: u64,
    tombstones_carried: u64,
    column_bytes_removed: u64,
}

fn compact(store: &Store, json: bool, live_ratio_max: Option<f64>) -> CliResult {
    let mut options = CompactOptions::default();
    if let Some(ratio) = live_ratio_max {
        if !(0.0..=1.0).contains(&ratio) {
            return Err(Failure::usage(format!(
                "--live-ratio-max {ratio} is out of range. Pass a number from 0 to 1"
            )));
        }
        options.live_ratio_max = ratio;
    }
    let report = store.compact(&options)?;
    let output = CompactOutput {
        generations_compacted: report.generations_compacted.clone(),
        blobs_moved: report.blobs_moved,
        bytes_moved: report.bytes_moved,
        tombstones_carried: report.tombstones_carried,
        column_bytes_removed: report.column_bytes_removed,
    };
    if json {
        ui::print_json(&output)
    } else {
        println!(
            "compact: {} generation(s) compacted, {} blobs moved ({}), {} freed",
            output.generations_compacted.len(),
            output.blobs_moved,
            ui::bytes(output.bytes_moved),
            ui::bytes(output.column_bytes_removed)
        );
        Ok(())
    }
}
