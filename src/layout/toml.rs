//! The layout file: TOML through serde, checked by the builder.
//!
//! The format is documented, with a complete example, in README.md
//! ("Layout file").

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::remote::{RemoteFile, write_remote};
use super::types::{Location, Promise};
use super::validate::invalid;
use super::{LAYOUT_FILE_LEN_MAX, Layout};
use crate::{Error, Result};

const FORMAT_HINT: &str = "see \"Layout file\" in README.md for the format";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LayoutFile {
    code: CodeFile,
    #[serde(default)]
    promise: PromiseFile,
    #[serde(default)]
    sites: Vec<SiteFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeFile {
    data_count: usize,
    parity_count: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromiseFile {
    #[serde(default = "default_sites_lost")]
    sites_lost: usize,
    #[serde(default)]
    extra_nodes_lost: usize,
}

impl Default for PromiseFile {
    fn default() -> Self {
        let promise = Promise::default();
        PromiseFile {
            sites_lost: promise.sites_lost,
            extra_nodes_lost: promise.extra_nodes_lost,
        }
    }
}

fn default_sites_lost() -> usize {
    Promise::default().sites_lost
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteFile {
    name: String,
    #[serde(default)]
    nodes: Vec<NodeFile>,
    remote: Option<RemoteFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    name: String,
    path: Option<PathBuf>,
    url: Option<String>,
    #[serde(default = "default_weight")]
    weight: u32,
    remote: Option<RemoteFile>,
}

fn default_weight() -> u32 {
    1
}

/// The body of [`Layout::from_toml_str`].
pub(crate) fn from_toml_str(text: &str) -> Result<Layout> {
    from_toml_in(text, None)
}

/// The body of [`Layout::load`].
pub(crate) fn load(path: impl AsRef<Path>) -> Result<Layout> {
    let path = path.as_ref();
    let context = || format!("reading layout file {}", path.display());
    let len = std::fs::metadata(path)
        .map_err(|e| Error::io(context(), e))?
        .len();
    if len > LAYOUT_FILE_LEN_MAX {
        return Err(Error::LimitExceeded {
            what: "layout file length",
            limit: LAYOUT_FILE_LEN_MAX,
            actual: len,
        });
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(context(), e))?;
    let base = path.parent().unwrap_or(Path::new(""));
    from_toml_in(&text, Some(base)).map_err(|error| match error {
        Error::InvalidLayout { reason, fix } => Error::InvalidLayout {
            reason: format!("{}: {reason}", path.display()),
            fix,
        },
        other => other,
    })
}

fn from_toml_in(text: &str, base: Option<&Path>) -> Result<Layout> {
    let file: LayoutFile = ::toml::from_str(text).map_err(|error| parse_error(text, &error))?;
    let mut builder = Layout::builder()
        .code(file.code.data_count, file.code.parity_count)
        .promise(Promise {
            sites_lost: file.promise.sites_lost,
            extra_nodes_lost: file.promise.extra_nodes_lost,
        });
    for site in file.sites {
        let site_remote = match site.remote {
            Some(remote) => Some(remote.into_remote(&format!("site \"{}\"", site.name))?),
            None => None,
        };
        let mut nodes = Vec::with_capacity(site.nodes.len());
        for node in site.nodes {
            let location = match (node.path, node.url) {
                (Some(path), None) => Location::Dir(match base {
                    Some(base) if path.is_relative() => base.join(path),
                    _ => path,
                }),
                (None, Some(url)) => Location::Url(url),
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        format!("node \"{}\" has both a path and a url", node.name),
                        "keep one: `path` for a local directory or `url` for an object store",
                    ));
                }
                (None, None) => {
                    return Err(invalid(
                        format!("node \"{}\" has neither a path nor a url", node.name),
                        format!(
                            "add `path = \"/srv/geoshard/{}\"` (a local directory) or `url = \
                             \"s3://bucket/{}\"`",
                            node.name, node.name
                        ),
                    ));
                }
            };
            let remote = match node.remote {
                Some(remote) => Some(remote.into_remote(&format!("node \"{}\"", node.name))?),
                None => None,
            };
            nodes.push((node.name, location, node.weight, remote));
        }
        builder = builder.site(site.name, |mut s| {
            if let Some(remote) = site_remote {
                s = s.remote(remote);
            }
            for (name, location, weight, remote) in nodes {
                s = match remote {
                    Some(remote) => s.node_remote(name, location, weight, remote),
                    None => s.node_weighted(name, location, weight),
                };
            }
            s
        });
    }
    builder.build()
}

/// The body of [`Layout::to_toml_string`].
pub(crate) fn to_toml_string(layout: &Layout) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_toml(layout, &mut out);
    out
}

fn write_toml(layout: &Layout, out: &mut String) -> std::fmt::Result {
    writeln!(out, "[code]")?;
    writeln!(out, "data_count = {}", layout.code.data_count)?;
    writeln!(out, "parity_count = {}", layout.code.parity_count)?;
    writeln!(out)?;
    writeln!(out, "[promise]")?;
    writeln!(out, "sites_lost = {}", layout.promise.sites_lost)?;
    writeln!(
        out,
        "extra_nodes_lost = {}",
        layout.promise.extra_nodes_lost
    )?;
    for site in &layout.sites {
        writeln!(out)?;
        writeln!(out, "[[sites]]")?;
        writeln!(out, "name = {}", quote(&site.name))?;
        for &id in &site.nodes {
            let node = layout.node(id);
            writeln!(out)?;
            writeln!(out, "[[sites.nodes]]")?;
            writeln!(out, "name = {}", quote(&node.name))?;
            match &node.location {
                // Checked to be UTF-8 when the layout was built.
                Location::Dir(path) => writeln!(out, "path = {}", quote(&path.to_string_lossy()))?,
                Location::Url(url) => writeln!(out, "url = {}", quote(url))?,
            }
            writeln!(out, "weight = {}", node.weight)?;
            if let Some(remote) = &node.remote {
                writeln!(out)?;
                writeln!(out, "[sites.nodes.remote]")?;
                write_remote(out, remote)?;
            }
        }
    }
    Ok(())
}

/// A TOML basic string, escaped.
fn quote(text: &str) -> String {
    ::toml::Value::String(text.to_owned()).to_string()
}

fn parse_error(text: &str, error: &::toml::de::Error) -> Error {
    let message = error.message().trim_end();
    let reason = match error.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("layout file is not valid: line {line}, column {column}: {message}")
        }
        None => format!("layout file is not valid: {message}"),
    };
    invalid(reason, format!("correct the file there; {FORMAT_HINT}"))
}
