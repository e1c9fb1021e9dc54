//! `geoshard drill` at a small size, through the built binary: the whole
//! fire drill (burn a site while serving, fail over, repair, scrub) must
//! lose nothing and pass every check.

use assert_cmd::Command;
use serde_json::Value;

#[test]
fn small_drill_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_geoshard"))
        .args(["drill", "--messages", "3000", "--photo-per-mille", "5"])
        .args(["--threads", "8", "--seed", "7", "--json", "--dir"])
        .arg(dir.path().join("store"))
        .assert()
        .success()
        .get_output()
        .clone();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["blobs_lost"], 0);
    assert_eq!(report["survives_any_site_loss"], true);
    assert_eq!(report["messages_before_fire"], 3000);
    assert_eq!(report["messages_during_outage"], 300);
    // The failover starts from the checkpoint written during the fire.
    assert_eq!(report["failover_from_checkpoint"], true, "{report:#}");
    let checks = report["checks"].as_array().unwrap();
    assert!(checks.len() >= 10);
    assert!(checks.iter().all(|c| c["ok"] == true), "{checks:#?}");
    let phases = report["phases"].as_array().unwrap();
    let degraded = phases.iter().find(|p| p["name"] == "get degraded").unwrap();
    assert_eq!(degraded["ops"], 3000);
    assert!(
        report["stored_bytes_before_fire"].as_u64().unwrap()
            > report["user_bytes_before_fire"].as_u64().unwrap()
    );
    assert!(report["repair"][0]["columns_rebuilt"].as_u64().unwrap() > 0);
    // JSON only on stdout, nothing on stderr under --json.
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn drill_refuses_a_non_empty_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious"), b"keep me").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_geoshard"))
        .args(["drill", "--messages", "10", "--dir"])
        .arg(dir.path())
        .assert()
        .code(2)
        .get_output()
        .clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("not empty"), "{stderr}");
    assert!(dir.path().join("precious").exists());
}
