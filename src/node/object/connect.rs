//! Builds the `object_store` client for a node's URL and remote settings.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path;

use super::ObjectOptions;
use crate::layout::Remote;
use crate::{Error, Result};

/// The client and the node's prefix inside it, for `url`
/// (`s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`,
/// `file:///directory`).
///
/// # Errors
/// [`Error::InvalidLayout`] for a URL or setting the client refuses, a
/// scheme this build has no feature for, or a credential variable that is
/// not set.
// Built without any backend feature, every scheme is refused before the
// settings are used.
#[cfg_attr(
    not(any(feature = "aws", feature = "gcp", feature = "azure")),
    allow(unused_variables, unreachable_code)
)]
pub(crate) fn connect(
    name: &str,
    url: &str,
    remote: Option<&Remote>,
    options: &ObjectOptions,
) -> Result<(Arc<dyn ObjectStore>, Path)> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        invalid(
            name,
            format!("\"{url}\" is not a URL"),
            "write it as s3://bucket/prefix",
        )
    })?;
    if scheme == "file" {
        if remote.is_some() {
            return Err(invalid(
                name,
                "a file:// node has remote settings".into(),
                "drop its `remote` table",
            ));
        }
        let dir = std::path::Path::new(if rest.starts_with('/') { rest } else { url });
        if !dir.is_absolute() {
            return Err(invalid(
                name,
                format!("\"{url}\" is not an absolute file URL"),
                "write it as file:///absolute/directory",
            ));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating the directory of node {name}"), e))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| invalid(name, e.to_string(), "use a directory that can be created"))?;
        return Ok((Arc::new(store), Path::default()));
    }
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(invalid(
            name,
            format!("\"{url}\" names no bucket"),
            "write it as s3://bucket/prefix",
        ));
    }
    let prefix = Path::parse(prefix.trim_matches('/')).map_err(|e| {
        invalid(
            name,
            format!("bad prefix in \"{url}\": {e}"),
            "use a prefix of plain path segments",
        )
    })?;
    let default = Remote::default();
    let remote = remote.unwrap_or(&default);
    let store: Arc<dyn ObjectStore> = match scheme {
        #[cfg(feature = "aws")]
        "s3" => s3(name, bucket, remote, options)?,
        #[cfg(feature = "gcp")]
        "gs" => gcs(name, bucket, remote, options)?,
        #[cfg(feature = "azure")]
        "az" => azure(name, bucket, remote, options)?,
        other => {
            let feature = match other {
                "s3" => "aws",
                "gs" => "gcp",
                "az" => "azure",
                _ => "",
            };
            let fix = if feature.is_empty() {
                "use s3://, gs://, az:// or file://".to_owned()
            } else {
                format!("build geoshard with the `{feature}` cargo feature")
            };
            return Err(invalid(
                name,
                format!("this build cannot serve {other}:// URLs"),
                &fix,
            ));
        }
    };
    Ok((store, prefix))
}

fn invalid(name: &str, reason: String, fix: &str) -> Error {
    Error::InvalidLayout {
        reason: format!("node {name}: {reason}"),
        fix: fix.into(),
    }
}

#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
fn client_options(remote: &Remote, options: &ObjectOptions) -> object_store::ClientOptions {
    object_store::ClientOptions::new()
        .with_allow_http(remote.allow_http)
        .with_timeout(options.request_timeout)
        .with_connect_timeout(options.connect_timeout)
        .with_pool_max_idle_per_host(options.max_in_flight)
}

#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
fn retry_config(options: &ObjectOptions) -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: std::time::Duration::from_millis(50),
            max_backoff: std::time::Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: options.max_retries,
        retry_timeout: options.retry_timeout,
    }
}

/// Applies `remote.options` through the builder's string keys.
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
fn extra_options<K: std::str::FromStr, B>(
    name: &str,
    mut builder: B,
    remote: &Remote,
    set: impl Fn(B, K, String) -> B,
) -> Result<B> {
    for (key, value) in &remote.options {
        let parsed: K = key.parse().map_err(|_| {
            invalid(
                name,
                format!("unknown object-store option \"{key}\""),
                "see the object_store crate's configuration keys for this provider",
            )
        })?;
        let value = value.resolve(&format!("option {key} of node {name}"))?;
        builder = set(builder, parsed, value);
    }
    Ok(builder)
}

#[cfg(feature = "aws")]
fn s3(
    name: &str,
    bucket: &str,
    remote: &Remote,
    options: &ObjectOptions,
) -> Result<Arc<dyn ObjectStore>> {
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
    // Not `from_env()`: stray AWS_* variables must not change where the
    // columns go. Credentials come from the layout (or the variables it
    // names) only.
    // Unsigned payload: SigV4 still authenticates every request, but the
    // client does not hash every byte it uploads with SHA-256 (a full
    // pass over the data, on the hot path). Bodies are protected in
    // transit by TLS and end to end by geoshard's own CRC32 per record and
    // per blob, checked on every read and by scrub. `options = {
    // aws_unsigned_payload = "false" }` in the layout signs payloads again.
    let mut builder = AmazonS3Builder::new()
        .with_unsigned_payload(true)
        .with_bucket_name(bucket)
        .with_client_options(client_options(remote, options))
        .with_retry(retry_config(options));
    if let Some(endpoint) = &remote.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if let Some(region) = &remote.region {
        builder = builder.with_region(region);
    }
    if let Some(key) = &remote.access_key_id {
        builder = builder.with_access_key_id(key.resolve(&format!("node {name}'s access_key_id"))?);
    }
    if let Some(secret) = &remote.secret_access_key {
        builder = builder
            .with_secret_access_key(secret.resolve(&format!("node {name}'s secret_access_key"))?);
    }
    if let Some(token) = &remote.session_token {
        builder = builder.with_token(token.resolve(&format!("node {name}'s session_token"))?);
    }
    let builder = extra_options(name, builder, remote, |b, k: AmazonS3ConfigKey, v| {
        b.with_config(k, v)
    })?;
    let store = builder
        .build()
        .map_err(|e| invalid(name, e.to_string(), "check the node's remote settings"))?;
    Ok(Arc::new(store))
}

#[cfg(feature = "gcp")]
fn gcs(
    name: &str,
    bucket: &str,
    remote: &Remote,
    options: &ObjectOptions,
) -> Result<Arc<dyn ObjectStore>> {
    use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
    let mut builder = GoogleCloudStorageBuilder::new()
        .with_bucket_name(bucket)
        .with_client_options(client_options(remote, options))
        .with_retry(retry_config(options));
    if let Some(endpoint) = &remote.endpoint {
        builder = builder.with_config(GoogleConfigKey::BaseUrl, endpoint);
    }
    let builder = extra_options(name, builder, remote, |b, k: GoogleConfigKey, v| {
        b.with_config(k, v)
    })?;
    let store = builder
        .build()
        .map_err(|e| invalid(name, e.to_string(), "check the node's remote settings"))?;
    Ok(Arc::new(store))
}

#[cfg(feature = "azure")]
fn azure(
    name: &str,
    container: &str,
    remote: &Remote,
    options: &ObjectOptions,
) -> Result<Arc<dyn ObjectStore>> {
    use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
    let mut builder = MicrosoftAzureBuilder::new()
        .with_container_name(container)
        .with_client_options(client_options(remote, options))
        .with_retry(retry_config(options));
    if let Some(endpoint) = &remote.endpoint {
        builder = builder.with_endpoint(endpoint.clone());
    }
    let builder = extra_options(name, builder, remote, |b, k: AzureConfigKey, v| {
        b.with_config(k, v)
    })?;
    let store = builder
        .build()
        .map_err(|e| invalid(name, e.to_string(), "check the node's remote settings"))?;
    Ok(Arc::new(store))
}
