//! Every layout refusal: the right error, a message that says what is wrong,
//! and a fix that, applied, is accepted.

use geoshard::Error;
use geoshard::layout::{Layout, LayoutBuilder, Location, Promise};

/// `sizes[i]` nodes in site `s{i}`, named `s{i}n{j}` at `/srv/s{i}n{j}`.
fn grid(data_count: usize, parity_count: usize, sizes: &[usize]) -> LayoutBuilder {
    let mut builder = Layout::builder().code(data_count, parity_count);
    for (site, &size) in sizes.iter().enumerate() {
        builder = builder.site(format!("s{site}"), |mut s| {
            for node in 0..size {
                s = s.node(
                    format!("s{site}n{node}"),
                    format!("/srv/s{site}n{node}").as_str(),
                );
            }
            s
        });
    }
    builder
}

/// The (promise, reason, fix) of a `LayoutCannotSurvive`.
fn cannot_survive(result: geoshard::Result<Layout>) -> (String, String, String) {
    match result {
        Err(Error::LayoutCannotSurvive {
            promise,
            reason,
            fix,
        }) => (promise, reason, fix),
        other => panic!("expected LayoutCannotSurvive, got {other:?}"),
    }
}

/// The (reason, fix) of an `InvalidLayout`.
fn invalid(result: geoshard::Result<Layout>) -> (String, String) {
    match result {
        Err(Error::InvalidLayout { reason, fix }) => (reason, fix),
        other => panic!("expected InvalidLayout, got {other:?}"),
    }
}

fn assert_contains(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "{text:?} does not contain {part:?}");
    }
}

#[test]
fn rs_4_2_over_two_sites_is_refused_with_concrete_fixes() {
    let (promise, reason, fix) = cannot_survive(grid(4, 2, &[3, 3]).build());
    assert_eq!(promise, "the loss of any 1 site");
    assert_contains(
        &reason,
        &[
            "a site would hold at least 3 of the 6 columns",
            "more than the 2 parity columns",
        ],
    );
    assert_contains(
        &fix,
        &[
            "at least 3 sites with 2 nodes each",
            "keep 2 sites and use RS(4,4)",
        ],
    );
    // Both fixes work.
    grid(4, 2, &[2, 2, 2]).build().unwrap();
    let fixed = grid(4, 4, &[4, 4]).build().unwrap();
    assert_eq!(fixed.max_columns_per_site(), 4);
    // The whole message reads as one sentence with its fix.
    let message = grid(4, 2, &[3, 3]).build().unwrap_err().to_string();
    assert!(message.starts_with("layout cannot survive the loss of any 1 site: with 2 sites"));
    assert!(message.contains(". Fix: use at least 3 sites"));
}

#[test]
fn too_few_nodes_in_a_site_says_how_many_are_missing() {
    // 9 nodes for 9 columns, but site s2 can take only 2, pushing 4 onto s0.
    let (_, reason, fix) = cannot_survive(grid(6, 3, &[4, 3, 2]).build());
    assert_contains(
        &reason,
        &[
            "site \"s2\" has 2 nodes but must hold 3 columns of every stripe",
            "two columns of a stripe never share a node",
            "push up to 4 columns onto site \"s0\"",
            "more than the 3 parity columns",
        ],
    );
    assert_eq!(fix, "add 1 node to site \"s2\"");
    grid(6, 3, &[4, 3, 3]).build().unwrap();

    // Two short sites, both named with what they lack.
    let (_, reason, fix) = cannot_survive(grid(8, 4, &[8, 2, 1, 3]).build());
    assert_contains(
        &reason,
        &[
            "site \"s1\" has 2 nodes",
            "site \"s2\" has 1 node but must hold 3",
        ],
    );
    assert_eq!(
        fix,
        "add 1 node to site \"s1\" and add 2 nodes to site \"s2\""
    );
    grid(8, 4, &[8, 3, 3, 3]).build().unwrap();
}

#[test]
fn fewer_nodes_than_columns_is_refused() {
    let (reason, fix) = invalid(grid(6, 3, &[3, 3, 2]).build());
    assert_contains(
        &reason,
        &[
            "RS(6,3) puts the 9 columns of a stripe on 9 different nodes",
            "only 8 nodes",
        ],
    );
    assert_eq!(
        fix,
        "add 1 node or use a code with at most 8 columns in all"
    );
}

#[test]
fn extra_nodes_beyond_parity_are_refused() {
    let builder = grid(6, 3, &[3, 3, 3]).extra_nodes_lost(1);
    let (promise, reason, fix) = cannot_survive(builder.build());
    assert_eq!(promise, "the loss of any 1 site plus any 1 more node");
    assert_contains(
        &reason,
        &[
            "with 1 more node lost that is 4 columns",
            "3 parity columns",
        ],
    );
    assert_contains(
        &fix,
        &["at least 5 sites", "RS(6,5)", "lower extra_nodes_lost to 0"],
    );
    grid(6, 5, &[4, 4, 4]).extra_nodes_lost(1).build().unwrap();
    grid(6, 3, &[2, 2, 2, 2, 1])
        .extra_nodes_lost(1)
        .build()
        .unwrap();
}

#[test]
fn losing_every_site_is_refused() {
    let (promise, reason, fix) = cannot_survive(grid(2, 2, &[2, 2]).sites_lost(2).build());
    assert_eq!(promise, "the loss of any 2 sites");
    assert_eq!(
        reason,
        "the layout has only 2 sites, so losing 2 loses every column"
    );
    assert_eq!(fix, "add sites (at least 3) or lower sites_lost to 1");
    let (_, reason, _) = cannot_survive(grid(1, 1, &[2]).build());
    assert!(reason.contains("only 1 site"));
}

#[test]
fn two_sites_lost_needs_enough_parity() {
    let promise = Promise {
        sites_lost: 2,
        extra_nodes_lost: 0,
    };
    let (_, reason, fix) = cannot_survive(grid(6, 3, &[3, 3, 3, 3]).promise(promise).build());
    assert_contains(
        &reason,
        &["2 sites would hold at least 5 of the 9 columns", "together"],
    );
    assert_contains(
        &fix,
        &[
            "use at least 8 sites with 2 nodes each",
            "keep 4 sites and use RS(6,6)",
            "lower sites_lost to 1",
        ],
    );
    grid(6, 6, &[3, 3, 3, 3]).promise(promise).build().unwrap();
    grid(6, 3, &[2, 2, 1, 1, 1, 1, 1, 1])
        .promise(promise)
        .build()
        .unwrap();
}

#[test]
fn no_loss_promised_needs_only_enough_nodes() {
    let layout = grid(4, 1, &[5]).sites_lost(0).build().unwrap();
    assert!(layout.survives(&[], &[geoshard::layout::NodeId(0)]));
    let (_, reason, fix) =
        cannot_survive(grid(4, 1, &[5]).sites_lost(0).extra_nodes_lost(2).build());
    assert_eq!(
        reason,
        "losing 2 nodes loses 2 columns, more than the 1 parity column"
    );
    assert_contains(&fix, &["keep 1 site and use RS(4,2)"]);
}

#[test]
fn code_out_of_range_is_refused() {
    let (reason, fix) = invalid(grid(0, 3, &[3, 3, 3]).build());
    assert_eq!(reason, "RS(0,3) has no data columns (data_count k is 0)");
    assert_eq!(fix, "set data_count to at least 1, e.g. RS(6,3)");
    let (reason, fix) = invalid(grid(6, 0, &[3, 3, 3]).build());
    assert_contains(
        &reason,
        &[
            "RS(6,0) has no parity columns",
            "losing any node loses data",
        ],
    );
    assert_contains(&fix, &["set parity_count to at least 1"]);
    let (reason, fix) = invalid(grid(200, 100, &[3, 3, 3]).build());
    assert_contains(&reason, &["RS(200,100) has 300 columns, more than the 256"]);
    assert_contains(&fix, &["at most 256 columns"]);
    let (reason, fix) = invalid(Layout::builder().site("a", |s| s.node("a1", "/a1")).build());
    assert_eq!(reason, "no code is given");
    assert_contains(&fix, &[".code(6, 3)"]);
}

#[test]
fn duplicate_names_are_refused() {
    let builder = Layout::builder()
        .code(2, 1)
        .site("a", |s| s.node("a1", "/a1"))
        .site("a", |s| s.node("b1", "/b1"))
        .site("c", |s| s.node("c1", "/c1"));
    let (reason, fix) = invalid(builder.build());
    assert_eq!(reason, "two sites are named \"a\"");
    assert_eq!(fix, "give each site a unique name");

    let builder = Layout::builder()
        .code(2, 1)
        .site("a", |s| s.node("n1", "/a1"))
        .site("b", |s| s.node("n1", "/b1"))
        .site("c", |s| s.node("c1", "/c1"));
    let (reason, fix) = invalid(builder.build());
    assert_eq!(reason, "node name \"n1\" is used in sites \"a\" and \"b\"");
    assert_contains(&fix, &["unique in the whole layout"]);

    let builder = Layout::builder()
        .code(2, 1)
        .site("a", |s| s.node("n1", "/a1").node("n1", "/a2"))
        .site("b", |s| s.node("b1", "/b1"))
        .site("c", |s| s.node("c1", "/c1"));
    let (reason, _) = invalid(builder.build());
    assert_eq!(reason, "node name \"n1\" is used twice in site \"a\"");
}

#[test]
fn duplicate_and_nested_locations_are_refused() {
    let three = |a2: &str| {
        Layout::builder()
            .code(2, 1)
            .site("a", |s| s.node("a1", "/srv/a1").node("a2", a2))
            .site("b", |s| s.node("b1", "/srv/b1"))
            .site("c", |s| s.node("c1", "s3://bucket/c1"))
            .build()
    };
    let (reason, fix) = invalid(three("/srv/a1"));
    assert_eq!(
        reason,
        "nodes \"a1\" and \"a2\" both use the directory /srv/a1"
    );
    assert_eq!(
        fix,
        "give each node its own directory (one directory per disk)"
    );
    // Spelling differences do not hide a duplicate.
    let (reason, _) = invalid(three("/srv//./a1/"));
    assert!(
        reason.contains("both use the directory /srv/a1"),
        "{reason}"
    );
    let (reason, fix) = invalid(three("/srv/a1/inner"));
    assert_eq!(
        reason,
        "the directory of node \"a2\" (/srv/a1/inner) is inside the directory of node \"a1\" (/srv/a1)"
    );
    assert_contains(&fix, &["not one inside another node's"]);
    let (reason, fix) = invalid(three("s3://bucket/c1/"));
    assert_eq!(reason, "nodes \"a2\" and \"c1\" both use s3://bucket/c1");
    assert_contains(&fix, &["own prefix"]);
    let (reason, _) = invalid(three("s3://bucket/c1/x"));
    assert_eq!(
        reason,
        "the URL of node \"a2\" is inside s3://bucket/c1, the URL of node \"c1\""
    );
    // Same prefix under another scheme, and a sibling prefix, are fine.
    three("gs://bucket/c1").unwrap();
    three("s3://bucket/c10").unwrap();
    three("/srv/a10").unwrap();
}

#[test]
fn bad_locations_are_refused() {
    let one = |location: Location| {
        Layout::builder()
            .code(2, 1)
            .site("a", |s| s.node("a1", location))
            .site("b", |s| s.node("b1", "/srv/b1"))
            .site("c", |s| s.node("c1", "/srv/c1"))
            .build()
    };
    let (reason, fix) = invalid(one(Location::parse("http://example.com/a1")));
    assert_eq!(
        reason,
        "node \"a1\" has the URL \"http://example.com/a1\", whose scheme \"http\" geoshard does not serve"
    );
    assert_eq!(
        fix,
        "use a URL starting with s3://, gs://, az://, file:// or a directory path"
    );
    let (reason, fix) = invalid(one(Location::Url("s3://".into())));
    assert_eq!(
        reason,
        "node \"a1\" has the URL \"s3://\", which names no bucket or path"
    );
    assert_eq!(fix, "write it as s3://bucket/prefix");
    let (reason, _) = invalid(one(Location::Dir("".into())));
    assert_eq!(reason, "node \"a1\" has an empty directory path");
    one(Location::parse("file:///srv/a1")).unwrap();
    one(Location::parse("az://container/a1")).unwrap();
}

#[test]
fn empty_sites_and_no_sites_are_refused() {
    let (reason, fix) = invalid(Layout::builder().code(2, 1).build());
    assert_eq!(reason, "the layout has no sites");
    assert_contains(&fix, &["at least 2 sites"]);
    let builder = Layout::builder()
        .code(2, 1)
        .site("a", |s| s.node("a1", "/a1"))
        .site("empty", |s| s)
        .site("c", |s| s.node("c1", "/c1"));
    let (reason, fix) = invalid(builder.build());
    assert_eq!(reason, "site \"empty\" has no nodes");
    assert_eq!(fix, "add nodes to site \"empty\" or remove the site");
}

#[test]
fn zero_weight_is_refused() {
    let builder = Layout::builder()
        .code(2, 1)
        .site("a", |s| s.node_weighted("a1", "/a1", 0))
        .site("b", |s| s.node("b1", "/b1"))
        .site("c", |s| s.node("c1", "/c1"));
    let (reason, fix) = invalid(builder.build());
    assert_eq!(reason, "node \"a1\" in site \"a\" has weight 0");
    assert_contains(&fix, &["weight of at least 1", "or remove the node"]);
}

#[test]
fn bad_names_are_refused() {
    for (name, expected) in [
        ("", "a site has an empty name"),
        (
            "a b",
            "site name \"a b\" has characters other than ASCII letters",
        ),
        ("ü", "site name \"ü\" has characters other than"),
    ] {
        let builder = Layout::builder()
            .code(1, 1)
            .site(name, |s| s.node("x1", "/x1"));
        let (reason, fix) = invalid(builder.build());
        assert!(reason.starts_with(expected), "{reason}");
        assert_contains(&fix, &["1 to 64 ASCII letters"]);
    }
    let long = "n".repeat(65);
    let builder = Layout::builder()
        .code(1, 1)
        .site("a", |s| s.node(long.as_str(), "/x1"));
    let (reason, _) = invalid(builder.build());
    assert_eq!(
        reason,
        format!("node name \"{long}\" is 65 bytes long, over 64")
    );
}

#[test]
fn extreme_numbers_are_refused_not_overflowed() {
    let (reason, _) = invalid(grid(usize::MAX, 1, &[3, 3, 3]).build());
    assert!(reason.contains("more than the 256"), "{reason}");
    let (reason, _) = invalid(grid(1, usize::MAX, &[3, 3, 3]).build());
    assert!(reason.contains("more than the 256"), "{reason}");
    let (_, reason, fix) = cannot_survive(grid(6, 3, &[3, 3, 3]).sites_lost(usize::MAX).build());
    assert!(reason.contains("only 3 sites"), "{reason}");
    assert!(fix.contains("lower sites_lost to 2"), "{fix}");
    let (_, reason, fix) =
        cannot_survive(grid(6, 3, &[3, 3, 3]).extra_nodes_lost(usize::MAX).build());
    assert!(
        reason.contains("more than the 3 parity columns"),
        "{reason}"
    );
    assert!(!fix.is_empty());
    let (_, _, fix) = cannot_survive(
        grid(6, 3, &[3, 3, 3, 3])
            .promise(Promise {
                sites_lost: 2,
                extra_nodes_lost: usize::MAX,
            })
            .build(),
    );
    assert!(!fix.is_empty());
}
