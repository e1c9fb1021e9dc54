//! Progress bars and number formatting shared by the commands.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use geoshard::{Progress, ProgressFn};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar on stderr, hidden under `--json` or when stderr is not a
/// terminal (so logs and pipes stay clean).
pub fn bar(json: bool, len: u64, message: &str, unit: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if json || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let template = format!(
        "{{msg:>22}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit}, {{elapsed}} (eta {{eta}})"
    );
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// A repair/scrub progress callback that drives `bar` (in stripes).
pub fn progress_fn(bar: &ProgressBar) -> ProgressFn {
    let bar = bar.clone();
    Arc::new(move |p: &Progress| {
        bar.set_length(p.stripes_total.max(1));
        bar.set_position(p.stripes_done);
    })
}

/// Bytes in a human unit (binary prefixes).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Megabytes (10^6 bytes) per second.
pub fn mb_per_sec(bytes: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        bytes as f64 / 1e6 / secs
    } else {
        0.0
    }
}

/// Operations per second.
pub fn per_sec(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// MB/s on the command line to bytes per second for the library.
pub fn bandwidth(mb_per_sec: Option<f64>) -> Option<u64> {
    mb_per_sec.map(|mb| (mb * 1e6).max(1.0) as u64)
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<(), crate::Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| crate::Failure::failed(format!("cannot encode the JSON report: {e}")))?;
    println!("{text}");
    Ok(())
}
