//! `geoshard`: the fire drill and the operator commands of a geoshard store.
//!
//! `geoshard drill` builds a throw-away 3 sites x 3 nodes RS(6,3) store,
//! burns one site while it serves, fails over, repairs and proves that no
//! blob was lost. The other commands operate a store described by a layout
//! file (`--layout geoshard.toml`).

mod bulk;
mod drill;
mod ops;
mod ui;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes, as documented in `--help` and the README.
const EXIT_FAILURE: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_NOT_FOUND: u8 = 3;

const AFTER_HELP: &str = "\
Exit codes:
  0  ok
  1  failure (an I/O or store error, a drill check that failed, a repair that
     left stripes unrepaired, a scrub that found damage it could not fix,
     `health` when one more site loss would lose data)
  2  usage (bad arguments)
  3  data not found (`get` or `delete` of a key that is not in the store)

Errors are one line on stderr that says what to do. With --json, results are
printed to stdout as one JSON document.";

/// geoshard: blob storage that survives the loss of any one site.
#[derive(Debug, Parser)]
#[command(name = "geoshard", version, about, after_help = AFTER_HELP)]
struct Cli {
    /// The store's layout file (TOML; see README, "Layout file"). Not used
    /// by `drill`.
    #[arg(
        long,
        global = true,
        value_name = "FILE.toml",
        default_value = "geoshard.toml"
    )]
    layout: PathBuf,

    /// Print a machine-readable JSON report on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,

    /// Open the store even when more is lost than the layout promises to
    /// survive (docs/DURABILITY.md): reads that the loss could change fail
    /// until `accept-loss`.
    #[arg(long, global = true)]
    salvage: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fire drill on a throw-away 3 sites x 3 nodes RS(6,3) store: write a
    /// chat workload, burn one site while serving, fail over, repair, scrub,
    /// and check every blob byte for byte at each step.
    Drill(drill::DrillArgs),
    /// Create a new store over the layout: every node must be reachable and
    /// empty. Every other command needs a store created this way.
    Create,
    /// Store a blob under KEY, read from FILE or from stdin (`-`, the
    /// default); or many files at once with --dir or --list, keyed by
    /// their paths (many puts in flight, sharing commits).
    Put {
        /// The key (UTF-8 text, stored as its bytes). Not with --dir or
        /// --list.
        #[arg(required_unless_present_any = ["dir", "list"])]
        key: Option<String>,
        /// File to read the value from; `-` for stdin.
        #[arg(default_value = "-")]
        file: PathBuf,
        /// Store every file under DIR (recursively), each under PREFIX
        /// followed by its path relative to DIR, with `/` between parts.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["key", "list"])]
        dir: Option<PathBuf>,
        /// Store the files named in LIST, one path per line (`-` for
        /// stdin), each under PREFIX followed by the path as written.
        #[arg(long, value_name = "LIST", conflicts_with = "key")]
        list: Option<PathBuf>,
        /// Put before every key taken from a path (with --dir or --list).
        #[arg(long, value_name = "PREFIX", default_value = "")]
        prefix: String,
    },
    /// Write the blob stored under KEY to stdout or to a file (special
    /// files such as /dev/null work). Exit code 3 if there is none. With
    /// --prefix, write every blob whose key starts with PREFIX into the
    /// directory -o DIR, one file per key.
    Get {
        /// The key. Not with --prefix.
        #[arg(required_unless_present = "prefix")]
        key: Option<String>,
        /// Write to this file instead of stdout; with --prefix, the
        /// directory to write into (created if missing).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Every key starting with this; each is written to DIR/KEY, its
        /// `/`-separated parts as subdirectories.
        #[arg(
            long,
            value_name = "PREFIX",
            conflicts_with = "key",
            requires = "output"
        )]
        prefix: Option<String>,
    },
    /// Delete the blob stored under KEY. Exit code 3 if there is none.
    Delete {
        /// The key.
        key: String,
    },
    /// List keys (and blob lengths) that start with PREFIX, in key order.
    Ls {
        /// Only keys starting with this (all keys if omitted).
        #[arg(default_value = "")]
        prefix: String,
    },
    /// Store statistics, what open recovered, and what the layout costs and
    /// survives.
    Stat,
    /// Per node health, stripes by margin, and whether the store would
    /// survive losing one more site now. Exit code 1 if it would not.
    Health,
    /// Read every column (parity included), check checksums and parity, and
    /// repair what is wrong.
    Scrub {
        /// Only report; do not repair.
        #[arg(long)]
        no_repair: bool,
        /// Limit on bytes read plus written, in MB/s.
        #[arg(long, value_name = "MB_PER_SEC")]
        bandwidth: Option<f64>,
    },
    /// Rebuild missing or damaged columns onto their nodes and move columns
    /// written elsewhere during an outage back home.
    Repair {
        /// Limit on bytes read plus written, in MB/s.
        #[arg(long, value_name = "MB_PER_SEC")]
        bandwidth: Option<f64>,
    },
    /// After a loss beyond the promise (open with --salvage): delete the
    /// keys known to be lost and record the lost stripes as gone, so the
    /// store opens normally again. Only when nothing more can be brought
    /// back.
    AcceptLoss,
    /// Rewrite the live blobs of mostly dead generations and free their
    /// space.
    Compact {
        /// Compact generations whose live share is at most this (0..1).
        #[arg(long, value_name = "RATIO")]
        live_ratio_max: Option<f64>,
    },
}

/// A command that did not succeed: the exit code and the one-line message
/// for stderr.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// Exit code 1 with a message.
    pub fn failed(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_FAILURE,
            message: message.into(),
        }
    }

    /// Exit code 2 (bad arguments) with a message.
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    /// Exit code 3 with a message.
    pub fn not_found(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_NOT_FOUND,
            message: message.into(),
        }
    }

    /// Exit code 1 without a message: the report already said why.
    pub fn silent() -> Failure {
        Failure {
            code: EXIT_FAILURE,
            message: String::new(),
        }
    }
}

impl From<geoshard::Error> for Failure {
    fn from(error: geoshard::Error) -> Failure {
        Failure::failed(error.to_string())
    }
}

/// What a command returns.
pub type CliResult = Result<(), Failure>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Drill(args) => drill::run(&args, cli.json),
        command => ops::run(&cli.layout, cli.json, cli.salvage, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if !failure.message.is_empty() {
                eprintln!("error: {}", one_line(&failure.message));
            }
            ExitCode::from(failure.code)
        }
    }
}

/// Collapses a message to one line of single spaces.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
