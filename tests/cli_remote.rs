//! The `geoshard` CLI on a mixed layout file: one site in local directories,
//! two in S3 buckets (SeaweedFS on loopback, started by the test), with
//! credentials read from environment variables the layout names.

mod common;

use assert_cmd::Command;

use common::s3::S3Server;

#[test]
fn cli_serves_a_mixed_layout_with_env_credentials() {
    let server = S3Server::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let run = format!("cli-{}", std::process::id());
    let remote = format!(
        "[sites.remote]\nendpoint = \"{}\"\nregion = \"{}\"\nallow_http = true\n\
         access_key_id_env = \"GS_TEST_KEY_ID\"\nsecret_access_key_env = \"GS_TEST_SECRET\"\n",
        server.endpoint, server.region
    );
    let layout = format!(
        "[code]\ndata_count = 4\nparity_count = 2\n\n\
         [[sites]]\nname = \"home\"\nnodes = [{{ name = \"h1\", path = \"nodes/h1\" }}, {{ name = \"h2\", path = \"nodes/h2\" }}]\n\n\
         [[sites]]\nname = \"seoul\"\nnodes = [{{ name = \"s1\", url = \"s3://geoshard-a/{run}/s1\" }}, {{ name = \"s2\", url = \"s3://geoshard-a/{run}/s2\" }}]\n{remote}\n\
         [[sites]]\nname = \"tokyo\"\nnodes = [{{ name = \"t1\", url = \"s3://geoshard-b/{run}/t1\" }}, {{ name = \"t2\", url = \"s3://geoshard-b/{run}/t2\" }}]\n{remote}"
    );
    let path = dir.path().join("geoshard.toml");
    std::fs::write(&path, layout).expect("write layout");
    let geoshard = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_geoshard"));
        cmd.arg("--layout")
            .arg(&path)
            .args(args)
            .env("GS_TEST_KEY_ID", &server.access_key_id)
            .env("GS_TEST_SECRET", &server.secret_access_key);
        cmd
    };
    geoshard(&["create"]).assert().success();
    geoshard(&["put", "chat/1", "-"])
        .write_stdin("hello across regions")
        .assert()
        .success();
    let out = geoshard(&["get", "chat/1"])
        .assert()
        .success()
        .get_output()
        .clone();
    assert_eq!(out.stdout, b"hello across regions");
    geoshard(&["--json", "health"]).assert().success();

    // Without the variables the layout names, the command fails in one
    // line that names the variable and never shows a secret.
    let out = Command::new(env!("CARGO_BIN_EXE_geoshard"))
        .arg("--layout")
        .arg(&path)
        .args(["get", "chat/1"])
        .env_remove("GS_TEST_KEY_ID")
        .env_remove("GS_TEST_SECRET")
        .assert()
        .failure()
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("GS_TEST_KEY_ID"), "{stderr}");
    assert!(!stderr.contains(&server.secret_access_key), "{stderr}");
}
