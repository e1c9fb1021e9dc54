//! The layout file: the README example is valid and says what the code does,
//! TOML round-trips, `load` resolves relative paths, and parse errors name
//! the line.

use std::path::PathBuf;

use geoshard::Error;
use geoshard::layout::{Code, Layout, Location, Promise};

/// The body of the first fenced block of `language` after `heading`.
fn readme_block(heading: &str, language: &str) -> String {
    let readme = include_str!("../README.md");
    let section = &readme[readme.find(heading).expect("README section")..];
    let fence = format!("```{language}\n");
    let start = section.find(&fence).expect("README block") + fence.len();
    let len = section[start..].find("```").expect("block end");
    section[start..start + len].to_owned()
}

fn readme_builder_layout() -> Layout {
    Layout::builder()
        .code(6, 3)
        .site("fra", |s| {
            s.node("fra-1", "/srv/geoshard/fra-1")
                .node("fra-2", "/srv/geoshard/fra-2")
                .node_weighted("fra-3", "/srv/geoshard/fra-3", 2)
        })
        .site("ams", |s| {
            s.node("ams-1", "/srv/geoshard/ams-1")
                .node("ams-2", "/srv/geoshard/ams-2")
                .node("ams-3", "/srv/geoshard/ams-3")
        })
        .site("par", |s| {
            s.node("par-1", "s3://geoshard-par/node-1")
                .node("par-2", "s3://geoshard-par/node-2")
                .node("par-3", "s3://geoshard-par/node-3")
        })
        .promise(Promise {
            sites_lost: 1,
            extra_nodes_lost: 0,
        })
        .build()
        .unwrap()
}

#[test]
fn readme_example_is_valid_and_matches_the_builder() {
    let layout = Layout::from_toml_str(&readme_block("## Layout file", "toml")).unwrap();
    assert_eq!(layout, readme_builder_layout());
    assert_eq!(
        layout.code(),
        Code {
            data_count: 6,
            parity_count: 3
        }
    );
    assert_eq!(layout.promise(), Promise::default());
    assert_eq!(layout.sites().len(), 3);
    assert_eq!(layout.nodes().len(), 9);
    let fra3 = layout.node(layout.node_by_name("fra-3").unwrap());
    assert_eq!(fra3.weight, 2);
    assert_eq!(
        fra3.location,
        Location::Dir(PathBuf::from("/srv/geoshard/fra-3"))
    );
    assert_eq!(fra3.site, layout.site_by_name("fra").unwrap());
    let par1 = layout.node(layout.node_by_name("par-1").unwrap());
    assert_eq!(
        par1.location,
        Location::Url("s3://geoshard-par/node-1".into())
    );
    assert_eq!(layout.node_by_name("nope"), None);
    // The explanation printed in the README is what the code prints.
    assert_eq!(
        layout.explain().to_string(),
        readme_block("## Layout file", "text").trim_end()
    );
}

#[test]
fn toml_round_trips() {
    let layout = readme_builder_layout();
    let text = layout.to_toml_string();
    let again = Layout::from_toml_str(&text).unwrap();
    assert_eq!(again, layout);
    assert_eq!(again.to_toml_string(), text);
    for stripe_id in [0, 1, 77, u64::MAX] {
        assert_eq!(again.placement(stripe_id), layout.placement(stripe_id));
    }
    // Odd but valid characters in paths survive quoting.
    let odd = Layout::builder()
        .code(1, 1)
        .promise(Promise {
            sites_lost: 0,
            extra_nodes_lost: 1,
        })
        .site("only", |s| {
            s.node("a", "/srv/with \"quotes\" and \\ back")
                .node("b", "relative/dir")
        })
        .build()
        .unwrap();
    assert_eq!(Layout::from_toml_str(&odd.to_toml_string()).unwrap(), odd);
}

#[test]
fn load_reads_a_file_and_resolves_relative_paths() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("layout.toml");
    let text = r#"
        [code]
        data_count = 2
        parity_count = 1

        [[sites]]
        name = "a"
        nodes = [{ name = "a1", path = "disks/a1" }]
        [[sites]]
        name = "b"
        nodes = [{ name = "b1", path = "/abs/b1" }]
        [[sites]]
        name = "c"
        nodes = [{ name = "c1", url = "file:///srv/c1", weight = 3 }]
    "#;
    std::fs::write(&file, text).unwrap();
    let layout = Layout::load(&file).unwrap();
    let a1 = layout.node(layout.node_by_name("a1").unwrap());
    assert_eq!(a1.location, Location::Dir(dir.path().join("disks/a1")));
    let b1 = layout.node(layout.node_by_name("b1").unwrap());
    assert_eq!(b1.location, Location::Dir(PathBuf::from("/abs/b1")));
    assert_eq!(layout.promise(), Promise::default());
    // from_toml_str keeps relative paths as written.
    let plain = Layout::from_toml_str(text).unwrap();
    assert_eq!(
        plain.node(plain.node_by_name("a1").unwrap()).location,
        Location::Dir(PathBuf::from("disks/a1"))
    );

    match Layout::load(dir.path().join("missing.toml")) {
        Err(Error::Io { context, .. }) => assert!(context.contains("missing.toml"), "{context}"),
        other => panic!("expected Io, got {other:?}"),
    }
    // Refusals from a file name the file.
    std::fs::write(&file, text.replace("parity_count = 1", "parity_count = 0")).unwrap();
    match Layout::load(&file) {
        Err(Error::InvalidLayout { reason, .. }) => {
            assert!(
                reason.starts_with(&format!("{}: RS(2,0)", file.display())),
                "{reason}"
            )
        }
        other => panic!("expected InvalidLayout, got {other:?}"),
    }
}

fn invalid(text: &str) -> (String, String) {
    match Layout::from_toml_str(text) {
        Err(Error::InvalidLayout { reason, fix }) => (reason, fix),
        other => panic!("expected InvalidLayout, got {other:?}"),
    }
}

#[test]
fn parse_errors_name_the_line() {
    let (reason, fix) = invalid("[code]\ndata_count = 6\nparity_count = \"three\"\n");
    assert_eq!(
        reason,
        "layout file is not valid: line 3, column 16: invalid type: string \"three\", expected usize"
    );
    assert!(fix.contains("\"Layout file\" in README.md"), "{fix}");

    let (reason, _) = invalid(
        "[code]\ndata_count = 6\nparity_count = 3\n\n[[sites]]\nname = \"a\"\nnodez = []\n",
    );
    assert!(
        reason.starts_with("layout file is not valid: line 7, column 1: unknown field `nodez`"),
        "{reason}"
    );

    let (reason, _) = invalid("[code]\ndata_count = 6\n");
    assert!(reason.contains("missing field `parity_count`"), "{reason}");

    let (reason, _) = invalid("[code\n");
    assert!(
        reason.starts_with("layout file is not valid: line 1, column"),
        "{reason}"
    );

    let (reason, _) = invalid("[promise]\nsites_lost = 1\n");
    assert!(reason.contains("missing field `code`"), "{reason}");

    let (reason, _) = invalid("[code]\ndata_count = -1\nparity_count = 3\n");
    assert!(
        reason.starts_with("layout file is not valid: line 2"),
        "{reason}"
    );
}

#[test]
fn a_node_needs_exactly_one_location() {
    let base = "[code]\ndata_count = 1\nparity_count = 1\n[promise]\nsites_lost = 0\n[[sites]]\nname = \"a\"\n";
    let (reason, fix) = invalid(&format!(
        "{base}nodes = [{{ name = \"a1\", path = \"/a1\", url = \"s3://b/a1\" }}]\n"
    ));
    assert_eq!(reason, "node \"a1\" has both a path and a url");
    assert!(fix.starts_with("keep one"), "{fix}");
    let (reason, fix) = invalid(&format!("{base}nodes = [{{ name = \"a1\" }}]\n"));
    assert_eq!(reason, "node \"a1\" has neither a path nor a url");
    assert_eq!(
        fix,
        "add `path = \"/srv/geoshard/a1\"` (a local directory) or `url = \"s3://bucket/a1\"`"
    );
    // A zero weight in the file is refused like in the builder.
    let (reason, _) = invalid(&format!(
        "{base}nodes = [{{ name = \"a1\", path = \"/a1\", weight = 0 }}, {{ name = \"a2\", path = \"/a2\" }}]\n"
    ));
    assert_eq!(reason, "node \"a1\" in site \"a\" has weight 0");
}

#[test]
fn mangled_files_are_refused_without_panicking() {
    use rand::{Rng, SeedableRng};
    let base = readme_block("## Layout file", "toml");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x70_6d1);
    let numbers = [
        "0",
        "1",
        "255",
        "256",
        "65535",
        "4294967296",
        "18446744073709551615",
        "-1",
    ];
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..1500 {
        let mut text = base.clone().into_bytes();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..text.len());
            match rng.random_range(0..4) {
                0 => {
                    text.remove(at);
                }
                1 => {
                    let bytes = b"=[]{}\",.#\n x1";
                    text.insert(at, bytes[rng.random_range(0..bytes.len())]);
                }
                2 => text.truncate(at),
                _ => {
                    // Swap a number for an extreme one.
                    let source = String::from_utf8_lossy(&text).into_owned();
                    let digits: Vec<usize> =
                        source.match_indices(" = ").map(|(i, _)| i + 3).collect();
                    let Some(&start) = digits.get(rng.random_range(0..digits.len().max(1))) else {
                        continue;
                    };
                    let end = source[start..]
                        .find('\n')
                        .map_or(source.len(), |e| start + e);
                    if source[start..end]
                        .trim_start()
                        .starts_with(|c: char| c.is_ascii_digit())
                    {
                        let number = numbers[rng.random_range(0..numbers.len())];
                        text =
                            format!("{}{number}{}", &source[..start], &source[end..]).into_bytes();
                    }
                }
            }
            if text.is_empty() {
                break;
            }
        }
        let text = String::from_utf8_lossy(&text);
        match Layout::from_toml_str(&text) {
            Ok(layout) => {
                accepted += 1;
                let _ = layout.placement(1);
                let _ = layout.explain().to_string();
            }
            Err(Error::InvalidLayout { .. } | Error::LayoutCannotSurvive { .. }) => refused += 1,
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert!(
        accepted > 50 && refused > 500,
        "{accepted} accepted, {refused} refused"
    );
}
