//! Backend options checked as remote-store 0.33's constructors check them: the keys each
//! backend type takes (anything else is remote-store's "Invalid options for backend"),
//! the `retry` table (`RetryPolicy`), and S3's `client_options` as s3fs takes them. An
//! option we cannot honour is an error naming it, never a silent drop.

use serde_json::{Map, Value};

use super::Secret;

/// The option keys each backend type's constructor takes (remote-store 0.33:
/// `S3Backend.__init__`, `S3PyArrowBackend.__init__`, `LocalBackend.__init__`,
/// `MemoryBackend.__init__`, `AzureBackend.__init__`, `ReadOnlyHttpBackend.__init__`, `SQLBlobBackend.__init__`, `SFTPBackend.__init__`). `retry` is a constructor argument too: the local and
/// memory constructors do not take it.
fn known_options(type_name: &str) -> &'static [&'static str] {
    match type_name {
        "s3" | "s3-pyarrow" => &[
            "bucket",
            "endpoint_url",
            "key",
            "secret",
            "region_name",
            "tls_ca_bundle",
            "client_options",
            "reject_write_under_file_ancestor",
        ],
        "local" => &["root"],
        "azure" => &[
            "container",
            "hns",
            "account_name",
            "account_url",
            "account_key",
            "sas_token",
            "connection_string",
            "credential",
            "client_options",
            "max_concurrency",
            "reject_write_under_file_ancestor",
        ],
        "http" => &["base_url", "headers", "timeout", "http_client", "verify_ssl", "max_redirects"],
        "sftp" => &[
            "host",
            "port",
            "username",
            "password",
            "pkey",
            "base_path",
            "host_key_policy",
            "known_host_keys",
            "host_keys_path",
            "config",
            "timeout",
            "io_timeout",
            "connect_kwargs",
        ],
        "sql-blob" => {
            &["url", "engine", "table_name", "create_table", "max_blob_size", "reject_write_under_file_ancestor"]
        }
        _ => &[],
    }
}

/// Refuses option keys the type's constructor does not take, naming the backend and
/// the key, and a `retry` table on a type whose constructor takes none.
pub fn check_known(name: &str, type_name: &str, opts: &Map<String, Value>, has_retry: bool) -> Result<(), String> {
    let known = known_options(type_name);
    if let Some(k) = opts.keys().find(|k| !known.contains(&k.as_str())) {
        let takes = if known.is_empty() { "none".to_string() } else { known.join(", ") };
        return Err(format!(
            "backend '{name}' (type '{type_name}'): unknown option '{k}' (remote-store: invalid options; this type takes: {takes})"
        ));
    }
    if has_retry && !matches!(type_name, "s3" | "s3-pyarrow" | "azure" | "http" | "sftp") {
        return Err(format!(
            "backend '{name}' (type '{type_name}'): remote-store's {type_name} backend takes no retry table"
        ));
    }
    Ok(())
}

/// remote-store's `RetryPolicy`: how often and how patiently a failed request is tried
/// again. Unset fields keep this mount's own defaults (short waits suited to a mount).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RetryConfig {
    /// Attempts in all, the first included (≥ 1); default 3.
    pub max_attempts: u32,
    /// First wait in seconds, doubled each attempt (≥ 0).
    pub backoff_base: Option<f64>,
    /// Longest wait between attempts in seconds (≥ 0).
    pub backoff_max: Option<f64>,
    /// Largest random extra wait in seconds (≥ 0; 0 = none).
    pub jitter: Option<f64>,
    /// Wall-clock limit in seconds for all attempts together (> 0).
    pub timeout: Option<f64>,
}

impl RetryConfig {
    pub fn standard() -> Self {
        Self { max_attempts: 3, ..Self::default() }
    }
}

/// Reads a `retry` table as `RetryPolicy(**table)` does: unknown keys and values of
/// the wrong type or range are errors naming the key.
pub fn parse_retry(v: Option<&Value>, path: &str) -> Result<RetryConfig, String> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(RetryConfig::standard());
    };
    let t = v.as_object().ok_or_else(|| format!("{path} must be a table"))?;
    const KEYS: [&str; 5] = ["max_attempts", "backoff_base", "backoff_max", "jitter", "timeout"];
    if let Some(k) = t.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!("{path}.{k}: unknown retry key (known: {})", KEYS.join(", ")));
    }
    let number = |k: &str| -> Result<Option<f64>, String> {
        match t.get(k) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            // Python's bool is an int: RetryPolicy takes `jitter: off` as 0.
            Some(Value::Bool(b)) => Ok(Some(f64::from(u8::from(*b)))),
            Some(Value::Null) if k == "timeout" => Ok(None),
            Some(_) => Err(format!("{path}.{k} must be a number")),
        }
    };
    let mut retry = RetryConfig::standard();
    if let Some(n) = number("max_attempts")? {
        if n < 1.0 || n.fract() != 0.0 || n > 100.0 {
            return Err(format!("{path}.max_attempts must be a whole number from 1 to 100"));
        }
        retry.max_attempts = n as u32;
    }
    for (k, slot) in [("backoff_base", &mut retry.backoff_base), ("backoff_max", &mut retry.backoff_max)] {
        *slot = number(k)?;
        if slot.is_some_and(|v| v < 0.0) {
            return Err(format!("{path}.{k} must be >= 0"));
        }
    }
    retry.jitter = number("jitter")?;
    if retry.jitter.is_some_and(|v| v < 0.0) {
        return Err(format!("{path}.jitter must be >= 0"));
    }
    retry.timeout = number("timeout")?;
    if retry.timeout.is_some_and(|v| v <= 0.0) {
        return Err(format!("{path}.timeout must be > 0 or null"));
    }
    Ok(retry)
}

/// What an S3 backend's `client_options` ask of the client (s3fs's `S3FileSystem`
/// arguments, as remote-store passes them).
#[derive(Clone, Debug, Default)]
pub struct S3Client {
    /// `profile`: the AWS profile for credentials and region.
    pub profile: Option<String>,
    /// `token` (else `AWS_SESSION_TOKEN` beside a configured key): temporary credentials.
    pub session_token: Option<Secret>,
    /// `anon = true`: unsigned requests (public buckets).
    pub anon: bool,
    /// `requester_pays = true`: every request says the requester pays.
    pub requester_pays: bool,
    /// `s3_additional_kwargs`: sent on every PUT, multipart create and copy.
    pub put_headers: PutHeaders,
    /// `client_kwargs.region_name` / `client_kwargs.endpoint_url` / `client_kwargs.verify`.
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    /// `verify` as a path: the CA bundle to trust.
    pub verify_ca: Option<String>,
    /// `config_kwargs.connect_timeout` / `read_timeout` (seconds).
    pub connect_timeout: Option<f64>,
    pub read_timeout: Option<f64>,
    /// `config_kwargs.s3.addressing_style`: `path`, `virtual` or `auto` (None).
    pub addressing_style: Option<String>,
    /// `config_kwargs.retries.max_attempts`, used when the backend has no retry table.
    pub max_attempts: Option<u32>,
}

/// Object settings from `s3_additional_kwargs` (boto3's parameter names).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutHeaders {
    pub server_side_encryption: Option<String>,
    pub sse_kms_key_id: Option<Secret>,
    pub acl: Option<String>,
    pub storage_class: Option<String>,
}

/// s3fs options that tune s3fs's own caches and instance reuse: this mount has its own
/// caches, so they change nothing here and are accepted as remote-store accepts them.
const S3FS_CACHE_KNOBS: [&str; 7] = [
    "use_listings_cache",
    "listings_expiry_time",
    "max_paths",
    "skip_instance_cache",
    "default_block_size",
    "default_fill_cache",
    "default_cache_type",
];

/// Parses `client_options` (at `path`). Keys this mount cannot honour are errors
/// naming them.
pub fn parse_client_options(v: Option<&Value>, path: &str) -> Result<S3Client, String> {
    let mut c = S3Client::default();
    let Some(v) = v.filter(|v| !v.is_null()) else { return Ok(c) };
    let t = v.as_object().ok_or_else(|| format!("{path} must be a table"))?;
    for (k, v) in t {
        let here = format!("{path}.{k}");
        match k.as_str() {
            "profile" => c.profile = Some(string(v, &here)?),
            "token" => c.session_token = Some(Secret::new(string(v, &here)?)),
            "anon" => c.anon = boolean(v, &here)?,
            "requester_pays" => c.requester_pays = boolean(v, &here)?,
            "s3_additional_kwargs" => c.put_headers = put_headers(v, &here)?,
            "client_kwargs" => client_kwargs(v, &here, &mut c)?,
            "config_kwargs" => config_kwargs(v, &here, &mut c)?,
            k if S3FS_CACHE_KNOBS.contains(&k) => {
                tracing::debug!(option = %here, "s3fs cache option accepted, no effect here")
            }
            _ => return Err(format!("{here}: client option not supported by rstore-mount")),
        }
    }
    Ok(c)
}

fn string(v: &Value, path: &str) -> Result<String, String> {
    v.as_str().map(str::to_string).ok_or_else(|| format!("{path} must be a string"))
}

/// A flag as s3fs takes it: Python truthiness (no type check upstream), so a file that
/// remote-store accepts opens the same way here.
fn boolean(v: &Value, _path: &str) -> Result<bool, String> {
    Ok(truthy(v))
}

/// Python's `bool(v)` for a config value.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn seconds(v: &Value, path: &str) -> Result<f64, String> {
    v.as_f64().filter(|s| *s > 0.0).ok_or_else(|| format!("{path} must be a number of seconds > 0"))
}

fn table<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, String> {
    v.as_object().ok_or_else(|| format!("{path} must be a table"))
}

fn put_headers(v: &Value, path: &str) -> Result<PutHeaders, String> {
    let mut h = PutHeaders::default();
    for (k, v) in table(v, path)? {
        let here = format!("{path}.{k}");
        match k.as_str() {
            "ServerSideEncryption" => h.server_side_encryption = Some(string(v, &here)?),
            "SSEKMSKeyId" => h.sse_kms_key_id = Some(Secret::new(string(v, &here)?)),
            "ACL" => h.acl = Some(string(v, &here)?),
            "StorageClass" => h.storage_class = Some(string(v, &here)?),
            _ => return Err(format!("{here}: not supported by rstore-mount (supported: ServerSideEncryption, SSEKMSKeyId, ACL, StorageClass)")),
        }
    }
    Ok(h)
}

fn client_kwargs(v: &Value, path: &str, c: &mut S3Client) -> Result<(), String> {
    for (k, v) in table(v, path)? {
        let here = format!("{path}.{k}");
        match k.as_str() {
            "region_name" => c.region = Some(string(v, &here)?),
            "endpoint_url" => c.endpoint_url = Some(string(v, &here)?),
            "verify" => match v {
                Value::Bool(true) => {}
                Value::String(p) => c.verify_ca = Some(p.clone()),
                _ => {
                    return Err(format!("{here}: only true or a CA bundle path is supported (TLS is always verified)"))
                }
            },
            // remote-store itself refuses it (s3fs passes its own config=).
            "config" => return Err(format!("{here} is not supported: use client_options.config_kwargs")),
            _ => return Err(format!("{here}: client option not supported by rstore-mount")),
        }
    }
    Ok(())
}

fn config_kwargs(v: &Value, path: &str, c: &mut S3Client) -> Result<(), String> {
    for (k, v) in table(v, path)? {
        let here = format!("{path}.{k}");
        match k.as_str() {
            "connect_timeout" => c.connect_timeout = Some(seconds(v, &here)?),
            "read_timeout" => c.read_timeout = Some(seconds(v, &here)?),
            // Connections are pooled by the HTTP client as needed; no fixed pool to size.
            "max_pool_connections" => {
                v.as_u64().filter(|n| *n > 0).ok_or_else(|| format!("{here} must be a whole number > 0"))?;
            }
            "s3" => {
                for (k, v) in table(v, &here)? {
                    match k.as_str() {
                        "addressing_style" => c.addressing_style = Some(string(v, &format!("{here}.{k}"))?),
                        _ => return Err(format!("{here}.{k}: client option not supported by rstore-mount")),
                    }
                }
            }
            "retries" => {
                for (k, v) in table(v, &here)? {
                    match k.as_str() {
                        "max_attempts" => {
                            let n = v.as_u64().filter(|n| (1..=100).contains(n));
                            c.max_attempts =
                                Some(n.ok_or_else(|| format!("{here}.max_attempts must be 1 to 100"))? as u32);
                        }
                        "mode" => {} // our retry layer has one mode: backoff with jitter
                        _ => return Err(format!("{here}.{k}: client option not supported by rstore-mount")),
                    }
                }
            }
            _ => return Err(format!("{here}: client option not supported by rstore-mount")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn retry_tables_are_checked_as_retry_policy_checks_them() {
        let ok = parse_retry(Some(&json!({"max_attempts": 5, "backoff_base": 0.5, "jitter": 0, "timeout": null})), "r");
        assert_eq!(ok.unwrap().max_attempts, 5);
        let off = parse_retry(Some(&json!({"jitter": false, "max_attempts": true})), "r").unwrap();
        assert_eq!((off.jitter, off.max_attempts), (Some(0.0), 1), "booleans count as 0 and 1, as in Python");
        for (bad, word) in [
            (json!({"max_attempt": 5}), "unknown retry key"),
            (json!({"max_attempts": 0}), "max_attempts"),
            (json!({"max_attempts": "3"}), "must be a number"),
            (json!({"backoff_max": -1}), ">= 0"),
            (json!({"timeout": 0}), "> 0"),
        ] {
            let err = parse_retry(Some(&bad), "backends.b.retry").unwrap_err();
            assert!(err.contains(word) && err.starts_with("backends.b.retry"), "{bad}: {err}");
        }
    }

    #[test]
    fn unknown_options_name_backend_and_key() {
        let opts = json!({"bucket": "b", "regoin_name": "x"});
        let err = check_known("s3main", "s3", opts.as_object().unwrap(), false).unwrap_err();
        assert!(err.contains("'s3main'") && err.contains("'regoin_name'"), "{err}");
        assert!(check_known("m", "memory", &Map::new(), true).unwrap_err().contains("no retry"));
    }

    #[test]
    fn client_options_are_honoured_or_refused_by_name() {
        let v = json!({"anon": true, "profile": "p", "token": "t", "requester_pays": true,
            "s3_additional_kwargs": {"ServerSideEncryption": "AES256", "ACL": "private"},
            "client_kwargs": {"region_name": "eu-west-1"},
            "config_kwargs": {"connect_timeout": 3, "s3": {"addressing_style": "path"}, "retries": {"max_attempts": 7}},
            "use_listings_cache": false});
        let c = parse_client_options(Some(&v), "o.client_options").unwrap();
        assert!(c.anon && c.requester_pays);
        assert_eq!(
            (c.profile.as_deref(), c.region.as_deref(), c.max_attempts),
            (Some("p"), Some("eu-west-1"), Some(7))
        );
        assert_eq!(c.put_headers.server_side_encryption.as_deref(), Some("AES256"));
        let err = parse_client_options(Some(&json!({"fancy": 1})), "o.client_options").unwrap_err();
        assert!(err.contains("o.client_options.fancy"), "{err}");
        let err = parse_client_options(Some(&json!({"client_kwargs": {"verify": false}})), "c").unwrap_err();
        assert!(err.contains("c.client_kwargs.verify"), "{err}");
    }
}
