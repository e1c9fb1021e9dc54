//! How to reach the object store behind a node's URL: endpoint, region,
//! credentials. Part of the layout because it differs per site (each region
//! has its own endpoint and keys), and it round-trips through the layout
//! file like everything else.

use std::collections::BTreeMap;
use std::fmt;

use crate::{Error, Result};

/// A credential: written in the layout, or the name of an environment
/// variable to read it from when the store opens.
///
/// `Debug` never shows a value, only that one is set (or the variable's
/// name), so layouts and errors can be logged.
///
/// ```
/// use geoshard::layout::Secret;
/// let key = Secret::Value("wJalrXUtnFEMI".into());
/// assert_eq!(format!("{key:?}"), "Secret(<redacted>)");
/// assert_eq!(format!("{:?}", Secret::Env("SEOUL_KEY".into())), "Secret(env SEOUL_KEY)");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// The value itself.
    Value(String),
    /// The name of the environment variable that holds the value.
    Env(String),
}

impl Secret {
    /// The value: as written, or read from the environment now.
    ///
    /// # Errors
    /// [`Error::InvalidLayout`] when the variable is not set (or not
    /// UTF-8); the message names the variable, never a value.
    pub fn resolve(&self, what: &str) -> Result<String> {
        match self {
            Secret::Value(value) => Ok(value.clone()),
            Secret::Env(name) => std::env::var(name).map_err(|_| Error::InvalidLayout {
                reason: format!("{what} names the environment variable {name}, which is not set"),
                fix: format!("export {name} before opening the store, or write the value itself"),
            }),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Value(_) => f.write_str("Secret(<redacted>)"),
            Secret::Env(name) => write!(f, "Secret(env {name})"),
        }
    }
}

/// Connection settings for a node on an object store (`s3://`, `gs://`,
/// `az://`). In the layout file they are a site's `[sites.remote]` table
/// (every URL node of the site uses it) or a node's own `remote` table.
///
/// `options` passes any further `object_store` configuration key through
/// (for example `aws_checksum_algorithm`, `google_service_account`,
/// `azure_storage_account_name`). Its values may be credentials, so
/// `Debug` shows only their keys.
///
/// ```
/// use geoshard::layout::{Remote, Secret};
/// let remote = Remote {
///     endpoint: Some("http://127.0.0.1:8333".into()),
///     region: Some("us-east-1".into()),
///     allow_http: true,
///     access_key_id: Some(Secret::Env("SEOUL_KEY_ID".into())),
///     secret_access_key: Some(Secret::Value("wJalrXUtnFEMI/K7MDENG".into())),
///     ..Remote::default()
/// };
/// let shown = format!("{remote:?}");
/// assert!(shown.contains("SEOUL_KEY_ID"), "variable names are shown");
/// assert!(!shown.contains("wJalrXUtnFEMI"), "values never are");
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Remote {
    /// The service endpoint (`https://s3.eu-west-1.amazonaws.com`, a MinIO
    /// or SeaweedFS address). `None`: the provider's default.
    pub endpoint: Option<String>,
    /// The region (S3: signs requests; any value for most S3-compatible
    /// servers).
    pub region: Option<String>,
    /// Allow plain `http://` endpoints (tests, a private network).
    pub allow_http: bool,
    /// Access key id (S3 and compatible).
    pub access_key_id: Option<Secret>,
    /// Secret access key (S3 and compatible).
    pub secret_access_key: Option<Secret>,
    /// Session token for temporary credentials (S3).
    pub session_token: Option<Secret>,
    /// Further `object_store` configuration keys and values.
    pub options: BTreeMap<String, Secret>,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key)
            .field("session_token", &self.session_token)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The TOML form of [`Remote`]: each secret is `key = "value"` or
/// `key_env = "VARIABLE"`.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RemoteFile {
    endpoint: Option<String>,
    region: Option<String>,
    #[serde(default)]
    allow_http: bool,
    access_key_id: Option<String>,
    access_key_id_env: Option<String>,
    secret_access_key: Option<String>,
    secret_access_key_env: Option<String>,
    session_token: Option<String>,
    session_token_env: Option<String>,
    #[serde(default)]
    options: BTreeMap<String, String>,
    #[serde(default)]
    options_env: BTreeMap<String, String>,
}

impl RemoteFile {
    pub(crate) fn into_remote(self, owner: &str) -> Result<Remote> {
        let secret = |value: Option<String>, env: Option<String>, key: &str| match (value, env) {
            (Some(value), None) => Ok(Some(Secret::Value(value))),
            (None, Some(env)) => Ok(Some(Secret::Env(env))),
            (None, None) => Ok(None),
            (Some(_), Some(_)) => Err(Error::InvalidLayout {
                reason: format!("the remote settings of {owner} have both {key} and {key}_env"),
                fix: format!("keep one: {key} (the value) or {key}_env (a variable to read)"),
            }),
        };
        let mut options: BTreeMap<String, Secret> = self
            .options
            .into_iter()
            .map(|(k, v)| (k, Secret::Value(v)))
            .collect();
        for (key, env) in self.options_env {
            if options.insert(key.clone(), Secret::Env(env)).is_some() {
                return Err(Error::InvalidLayout {
                    reason: format!(
                        "the remote settings of {owner} set option {key} in both options and \
                         options_env"
                    ),
                    fix: "keep one of them".into(),
                });
            }
        }
        Ok(Remote {
            endpoint: self.endpoint,
            region: self.region,
            allow_http: self.allow_http,
            access_key_id: secret(self.access_key_id, self.access_key_id_env, "access_key_id")?,
            secret_access_key: secret(
                self.secret_access_key,
                self.secret_access_key_env,
                "secret_access_key",
            )?,
            session_token: secret(self.session_token, self.session_token_env, "session_token")?,
            options,
        })
    }
}

/// Writes `remote` as the body of a TOML table (one `key = value` per line).
pub(crate) fn write_remote(out: &mut String, remote: &Remote) -> fmt::Result {
    use fmt::Write as _;
    let quote = |text: &str| ::toml::Value::String(text.to_owned()).to_string();
    if let Some(endpoint) = &remote.endpoint {
        writeln!(out, "endpoint = {}", quote(endpoint))?;
    }
    if let Some(region) = &remote.region {
        writeln!(out, "region = {}", quote(region))?;
    }
    writeln!(out, "allow_http = {}", remote.allow_http)?;
    for (key, secret) in [
        ("access_key_id", &remote.access_key_id),
        ("secret_access_key", &remote.secret_access_key),
        ("session_token", &remote.session_token),
    ] {
        match secret {
            Some(Secret::Value(value)) => writeln!(out, "{key} = {}", quote(value))?,
            Some(Secret::Env(name)) => writeln!(out, "{key}_env = {}", quote(name))?,
            None => {}
        }
    }
    let (values, envs): (Vec<_>, Vec<_>) = remote
        .options
        .iter()
        .partition(|(_, secret)| matches!(secret, Secret::Value(_)));
    for (table, entries) in [("options", values), ("options_env", envs)] {
        if entries.is_empty() {
            continue;
        }
        let body: Vec<String> = entries
            .iter()
            .map(|(key, secret)| {
                let (Secret::Value(v) | Secret::Env(v)) = secret;
                format!("{} = {}", quote(key), quote(v))
            })
            .collect();
        writeln!(out, "{table} = {{ {} }}", body.join(", "))?;
    }
    Ok(())
}
