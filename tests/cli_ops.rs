//! The operator commands of the `geoshard` binary, run as a process on a
//! 3 sites x 3 nodes RS(6,3) store described by a layout file: every
//! command's round trip, `--json` output, and the documented exit codes and
//! one-line errors on bad input.

use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;

const LAYOUT: &str = r#"
[code]
data_count = 6
parity_count = 3

[[sites]]
name = "fra"
nodes = [
  { name = "fra-1", path = "nodes/fra-1" },
  { name = "fra-2", path = "nodes/fra-2" },
  { name = "fra-3", path = "nodes/fra-3" },
]

[[sites]]
name = "ams"
nodes = [
  { name = "ams-1", path = "nodes/ams-1" },
  { name = "ams-2", path = "nodes/ams-2" },
  { name = "ams-3", path = "nodes/ams-3" },
]

[[sites]]
name = "par"
nodes = [
  { name = "par-1", path = "nodes/par-1" },
  { name = "par-2", path = "nodes/par-2" },
  { name = "par-3", path = "nodes/par-3" },
]
"#;

/// `geoshard --layout <dir>/geoshard.toml ARGS...`.
fn geoshard(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_geoshard"));
    cmd.arg("--layout")
        .arg(dir.join("geoshard.toml"))
        .args(args);
    cmd
}

/// A layout file and a store created over it with `geoshard create`.
fn store_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("geoshard.toml"), LAYOUT).unwrap();
    let out = geoshard(dir.path(), &["create"])
        .assert()
        .success()
        .get_output()
        .clone();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("created a RS(6,3) store over 9 nodes"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    dir
}

/// Every command but `create` refuses a layout whose store was never
/// created (or whose disks are not mounted), and creates nothing; `create`
/// refuses an existing store.
#[test]
fn commands_need_a_created_store_and_create_needs_none() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("geoshard.toml"), LAYOUT).unwrap();
    for args in [
        &["put", "k", "-"][..],
        &["get", "k"],
        &["stat"],
        &["health"],
        &["repair"],
    ] {
        let out = geoshard(d, args)
            .write_stdin("v")
            .assert()
            .code(1)
            .get_output()
            .clone();
        let error = one_line_error(&out);
        assert!(error.contains("geoshard create"), "{args:?}: {error}");
    }
    assert!(!d.join("nodes").exists(), "nothing was created");
    geoshard(d, &["--json", "create"]).assert().success();
    let out = geoshard(d, &["create"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    assert!(one_line_error(&out).contains("already holds a store"));
    geoshard(d, &["put", "k", "-"])
        .write_stdin("v")
        .assert()
        .success();
}

fn json(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// The stderr of a failed command: exactly one line, starting "error: ".
fn one_line_error(output: &std::process::Output) -> String {
    let stderr = String::from_utf8(output.stderr.clone()).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("error: "), "{stderr:?}");
    stderr
}

/// A value that is not all one byte, a few MiB long (cut into parts).
fn photo(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn every_command_round_trips() {
    let dir = store_dir();
    let d = dir.path();

    // put from a file and from stdin.
    let photo = photo(3 << 20);
    std::fs::write(d.join("photo.jpg"), &photo).unwrap();
    let out = geoshard(d, &["put", "chat/room-1/photo", "photo.jpg"])
        .current_dir(d)
        .assert()
        .success()
        .get_output()
        .clone();
    assert!(String::from_utf8_lossy(&out.stdout).contains("stored chat/room-1/photo"));
    geoshard(d, &["put", "chat/room-1/msg-1", "-"])
        .write_stdin("hello from stdin")
        .assert()
        .success();
    let out = geoshard(d, &["--json", "put", "chat/room-2/msg-1"])
        .write_stdin("second room")
        .assert()
        .success()
        .get_output()
        .clone();
    assert_eq!(json(&out)["len"], 11);

    // get to stdout and to a file.
    geoshard(d, &["get", "chat/room-1/msg-1"])
        .assert()
        .success()
        .stdout("hello from stdin");
    geoshard(d, &["get", "chat/room-1/photo", "-o"])
        .arg(d.join("back.jpg"))
        .assert()
        .success()
        .stdout("");
    assert!(std::fs::read(d.join("back.jpg")).unwrap() == photo);

    // ls, human and JSON.
    geoshard(d, &["ls", "chat/room-1/"])
        .assert()
        .success()
        .stdout(format!(
            "16\tchat/room-1/msg-1\n{}\tchat/room-1/photo\n",
            photo.len()
        ));
    let out = geoshard(d, &["ls", "--json"])
        .assert()
        .success()
        .get_output()
        .clone();
    let listing = json(&out);
    let keys: Vec<&str> = listing
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "chat/room-1/msg-1",
            "chat/room-1/photo",
            "chat/room-2/msg-1"
        ]
    );

    // stat
    let out = geoshard(d, &["stat"])
        .assert()
        .success()
        .get_output()
        .clone();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("blobs:   3"), "{text}");
    assert!(text.contains("RS(6,3) over 3 sites and 9 nodes"), "{text}");
    // No checkpoint written yet: the open scanned every record.
    assert!(text.contains("every record scanned"), "{text}");
    let out = geoshard(d, &["stat", "--json"])
        .assert()
        .success()
        .get_output()
        .clone();
    let stat = json(&out);
    assert_eq!(stat["blobs"], 3);
    assert_eq!(stat["layout"]["nodes"], 9);
    assert_eq!(stat["layout"]["storage_overhead"], 1.5);
    assert!(stat["open"]["checkpoint"].is_null(), "{stat}");
    assert!(stat["open"]["checkpoint_base"].is_null(), "{stat}");

    // health: everything up, the what-if answer is yes.
    let out = geoshard(d, &["health", "--json"])
        .assert()
        .success()
        .get_output()
        .clone();
    let health = json(&out);
    assert_eq!(health["survives_any_site_loss"], true);
    assert_eq!(health["nodes"].as_array().unwrap().len(), 9);
    assert!(
        health["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["reachable"] == true)
    );
    let out = geoshard(d, &["health"])
        .assert()
        .success()
        .get_output()
        .clone();
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing is lost"));

    // scrub, repair, compact on a healthy store: nothing to do, all clean.
    let out = geoshard(d, &["scrub", "--json"])
        .assert()
        .success()
        .get_output()
        .clone();
    let scrub = json(&out);
    assert_eq!(scrub["clean"], true);
    assert!(scrub["columns_checked"].as_u64().unwrap() >= 9);
    geoshard(d, &["scrub", "--no-repair"]).assert().success();
    let out = geoshard(d, &["repair", "--json"])
        .assert()
        .success()
        .get_output()
        .clone();
    assert_eq!(json(&out)["stripes_unrepairable"], 0);
    let out = geoshard(d, &["compact", "--json"])
        .assert()
        .success()
        .get_output()
        .clone();
    assert!(json(&out)["blobs_moved"].is_u64());

    // delete, then the key is gone: exit code 3 for get and delete.
    geoshard(d, &["delete", "chat/room-1/msg-1"])
        .assert()
        .success()
        .stdout("deleted chat/room-1/msg-1\n");
    let out = geoshard(d, &["get", "chat/room-1/msg-1"])
        .assert()
        .code(3)
        .stdout("")
        .get_output()
        .clone();
    assert!(one_line_error(&out).contains("geoshard ls"));
    let out = geoshard(d, &["delete", "chat/room-1/msg-1"])
        .assert()
        .code(3)
        .get_output()
        .clone();
    one_line_error(&out);
    geoshard(d, &["get", "chat/room-2/msg-1"])
        .assert()
        .success()
        .stdout("second room");
}

#[test]
fn health_answers_the_what_if_and_repair_restores_it() {
    let dir = store_dir();
    let d = dir.path();
    // A blob of 6 MiB fills every data column of a stripe, so losing a
    // site's 3 columns leaves that stripe no margin (stripes of a few small
    // blobs leave empty data columns out and could lose more).
    std::fs::write(d.join("big"), photo(6 << 20)).unwrap();
    geoshard(d, &["put", "big", "big"])
        .current_dir(d)
        .assert()
        .success();
    for i in 0..20 {
        geoshard(d, &["put", &format!("k{i}")])
            .write_stdin(format!("value {i}").repeat(i + 1))
            .assert()
            .success();
    }
    // The fire: site ams is gone.
    for n in 1..=3 {
        std::fs::remove_dir_all(d.join(format!("nodes/ams-{n}"))).unwrap();
    }
    let out = geoshard(d, &["health", "--json"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let health = json(&out);
    assert_eq!(health["survives_any_site_loss"], false);
    let down: Vec<&str> = health["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["reachable"] == false)
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(down, ["ams-1", "ams-2", "ams-3"]);
    let out = geoshard(d, &["health"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    assert!(String::from_utf8_lossy(&out.stdout).contains("DATA WOULD BE LOST"));
    // Reads go on.
    geoshard(d, &["get", "k3"])
        .assert()
        .success()
        .stdout("value 3".repeat(4));

    let out = geoshard(d, &["repair", "--json"])
        .assert()
        .success()
        .get_output()
        .clone();
    let repair = json(&out);
    assert!(repair["columns_rebuilt"].as_u64().unwrap() > 0, "{repair}");
    geoshard(d, &["repair"]).assert().success();
    let out = geoshard(d, &["health", "--json"])
        .assert()
        .success()
        .get_output()
        .clone();
    assert_eq!(json(&out)["survives_any_site_loss"], true);
    let out = geoshard(d, &["scrub", "--json"])
        .assert()
        .success()
        .get_output()
        .clone();
    assert_eq!(json(&out)["clean"], true);
    geoshard(d, &["get", "k19"])
        .assert()
        .success()
        .stdout("value 19".repeat(20));
    geoshard(d, &["get", "big", "-o", "big.back"])
        .current_dir(d)
        .assert()
        .success();
    assert!(std::fs::read(d.join("big.back")).unwrap() == photo(6 << 20));
}

#[test]
fn bad_input_gets_the_documented_exit_code_and_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // Missing layout file: exit 1, one line that says to pass --layout.
    let out = geoshard(d, &["ls"]).assert().code(1).get_output().clone();
    let line = one_line_error(&out);
    assert!(line.contains("cannot read layout file"), "{line}");
    assert!(line.contains("Pass --layout"), "{line}");

    // Malformed TOML: exit 1, one line that says what to fix.
    std::fs::write(d.join("geoshard.toml"), "[code\ndata_count = 6\n").unwrap();
    let out = geoshard(d, &["stat"]).assert().code(1).get_output().clone();
    let line = one_line_error(&out);
    assert!(line.contains("invalid layout"), "{line}");
    assert!(line.contains("Fix"), "{line}");

    // A layout that cannot keep its promise: exit 1, the fix named.
    std::fs::write(
        d.join("geoshard.toml"),
        LAYOUT.replace("parity_count = 3", "parity_count = 2"),
    )
    .unwrap();
    let out = geoshard(d, &["stat"]).assert().code(1).get_output().clone();
    assert!(one_line_error(&out).contains("Fix"));

    // Unknown key: exit 3.
    std::fs::write(d.join("geoshard.toml"), LAYOUT).unwrap();
    geoshard(d, &["create"]).assert().success();
    let out = geoshard(d, &["get", "no/such/key"])
        .assert()
        .code(3)
        .get_output()
        .clone();
    one_line_error(&out);

    // An unreadable value file: exit 1.
    let out = geoshard(d, &["put", "k", "no-such-file"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    assert!(one_line_error(&out).contains("cannot read no-such-file"));

    // Usage errors: exit 2.
    geoshard(d, &["frobnicate"]).assert().code(2);
    geoshard(d, &["get"]).assert().code(2);
    geoshard(d, &["compact", "--live-ratio-max", "7"])
        .assert()
        .code(2);
    Command::new(env!("CARGO_BIN_EXE_geoshard"))
        .assert()
        .code(2);

    // --help documents the exit codes.
    let out = Command::new(env!("CARGO_BIN_EXE_geoshard"))
        .arg("--help")
        .assert()
        .success()
        .get_output()
        .clone();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Exit codes:"), "{help}");
    assert!(help.contains("3  data not found"), "{help}");
}

#[test]
fn bulk_put_and_get_move_a_tree_in_and_out_with_one_open() {
    let dir = store_dir();
    let d = dir.path();
    // A tree of chat exports: nested directories, an empty file, a photo.
    let tree = d.join("export");
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for room in 0..3 {
        for msg in 0..40 {
            let rel = format!("room-{room}/msg-{msg:04}.txt");
            files.push((rel, format!("message {msg} of room {room}").into_bytes()));
        }
    }
    files.push(("room-0/photos/cat.jpg".into(), photo(300 << 10)));
    files.push(("empty".into(), Vec::new()));
    for (rel, bytes) in &files {
        let path = tree.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
    }
    let out = geoshard(d, &["--json", "put", "--prefix", "chat/", "--dir"])
        .arg(&tree)
        .assert()
        .success()
        .get_output()
        .clone();
    assert_eq!(json(&out)["blobs"], files.len());
    geoshard(d, &["get", "chat/room-2/msg-0007.txt"])
        .assert()
        .success()
        .stdout("message 7 of room 2");

    // A list of paths, relative to where the command runs.
    std::fs::write(
        d.join("list.txt"),
        "export/room-1/msg-0001.txt\n./export/empty\n",
    )
    .unwrap();
    let out = geoshard(d, &["put", "--prefix", "listed/", "--list", "list.txt"])
        .current_dir(d)
        .assert()
        .success()
        .get_output()
        .clone();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("stored 2 blobs"));
    geoshard(d, &["get", "listed/export/room-1/msg-0001.txt"])
        .assert()
        .success()
        .stdout("message 1 of room 1");

    // Out again: every blob under the prefix, byte for byte.
    let back = d.join("back");
    let out = geoshard(d, &["--json", "get", "--prefix", "chat/", "-o"])
        .arg(&back)
        .assert()
        .success()
        .get_output()
        .clone();
    assert_eq!(json(&out)["blobs"], files.len());
    for (rel, bytes) in &files {
        assert_eq!(
            &std::fs::read(back.join("chat").join(rel)).unwrap(),
            bytes,
            "{rel}"
        );
    }

    // A special file as the target of a single get (fsync of /dev/null is
    // EINVAL: it is not synced).
    geoshard(d, &["get", "chat/room-0/photos/cat.jpg", "-o", "/dev/null"])
        .assert()
        .success();

    // Paths that would leave the prefix, and keys that would leave the
    // directory, are refused with one line.
    std::fs::write(d.join("bad.txt"), "../escape\n").unwrap();
    let out = geoshard(d, &["put", "--list", "bad.txt"])
        .current_dir(d)
        .assert()
        .code(1)
        .get_output()
        .clone();
    assert!(one_line_error(&out).contains("no leading `/` or `..`"));
    geoshard(d, &["put", "odd/../key", "-"])
        .write_stdin("x")
        .assert()
        .success();
    let out = geoshard(d, &["get", "--prefix", "odd/", "-o"])
        .arg(d.join("odd"))
        .assert()
        .code(1)
        .get_output()
        .clone();
    assert!(one_line_error(&out).contains("cannot be written as a file"));
}
