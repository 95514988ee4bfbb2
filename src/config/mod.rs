//! The remote-store registry config: `[backends.*]` and `[stores.*]`, read unchanged
//! from TOML, YAML or `pyproject.toml`, with `${VAR}` interpolation.

mod azure;
mod http;
mod interpolate;
mod options;
mod secret;
mod sftp;
mod source;
mod sql;
mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

pub use azure::AzureOptions;
pub use http::HttpOptions;
pub use interpolate::{expand, interpolate, Lookup};
pub use options::{PutHeaders, RetryConfig};
pub use secret::Secret;
pub use sftp::{HostKeyPolicy, SftpOptions};
pub use source::{locate, read_tree};
pub use sql::SqlOptions;

pub const SUPPORTED_TYPES: &str = "s3, s3-pyarrow, local, memory, azure, http, sql-blob, sftp";
const TOP_LEVEL_KEYS: &[&str] = &["backends", "stores"];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AddressingStyle {
    #[default]
    Path,
    Virtual,
}

/// An S3 backend's options, resolved as remote-store (and s3fs under it) resolves them.
#[derive(Clone, Debug, Default)]
pub struct S3Options {
    pub bucket: String,
    pub endpoint_url: Option<String>,
    pub key: Option<Secret>,
    pub secret: Option<Secret>,
    /// `None`: the AWS default region chain (AWS_REGION, the profile), else us-east-1.
    pub region: Option<String>,
    pub tls_ca_bundle: Option<PathBuf>,
    pub addressing_style: AddressingStyle,
    /// `client_options.profile`: the AWS profile for credentials and region.
    pub profile: Option<String>,
    /// `client_options.token`, else `AWS_SESSION_TOKEN` beside a configured key.
    pub session_token: Option<Secret>,
    /// `client_options.anon`: unsigned requests (public buckets).
    pub anon: bool,
    /// `client_options.requester_pays`: requests carry `x-amz-request-payer: requester`.
    pub requester_pays: bool,
    /// `client_options.s3_additional_kwargs`: on every PUT, multipart create and copy.
    pub put_headers: PutHeaders,
    /// `client_options.config_kwargs.connect_timeout` / `read_timeout`, in seconds.
    pub connect_timeout: Option<f64>,
    pub read_timeout: Option<f64>,
}

#[derive(Clone, Debug)]
pub enum BackendKind {
    S3(Box<S3Options>),
    Local {
        root: PathBuf,
    },
    Memory,
    /// Azure Blob Storage (remote-store's `azure`).
    Azure(Box<AzureOptions>),
    /// A read-only file tree over HTTP(S) (remote-store's `http`).
    Http(Box<HttpOptions>),
    /// Rows of a SQLite or PostgreSQL table (remote-store's `sql-blob`).
    Sql(Box<SqlOptions>),
    /// A directory on an SSH server (remote-store's `sftp`).
    Sftp(Box<SftpOptions>),
}

impl BackendKind {
    /// Whether the type can only be read (http): its mounts are read-only (EROFS).
    pub fn is_read_only(&self) -> bool {
        matches!(self, BackendKind::Http(_))
    }

    /// Why the type's ETag may stay the same across a change of content, if it may:
    /// the data cache keys bytes by ETag, so it is off for such a store. SFTP's is the
    /// size and mtime in whole seconds; an HTTP server's is whatever the server makes
    /// (often the same pair). S3 and Azure change it with every write, a local file with
    /// its inode or nanosecond mtime, a SQL row with its fractional `modified_at`.
    pub fn weak_etag(&self) -> Option<&'static str> {
        match self {
            BackendKind::Sftp(_) => Some("its version tag is the size and mtime in whole seconds"),
            BackendKind::Http(_) => Some("an HTTP server's ETag need not change with the content"),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct BackendConfig {
    pub name: String,
    pub type_name: String,
    pub kind: BackendKind,
    pub retry: RetryConfig,
}

#[derive(Clone, Debug)]
pub struct StoreProfile {
    pub backend: String,
    pub root_path: String,
}

/// A parsed registry. Backends are validated lazily (only the mounted store's must be
/// usable), as remote-store does when a store is first opened.
#[derive(Clone)]
pub struct Registry {
    pub path: PathBuf,
    pub backends: BTreeMap<String, Value>,
    pub stores: BTreeMap<String, StoreProfile>,
    pub warnings: Vec<String>,
}

// Raw backend tables hold secrets: show only their names.
impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("path", &self.path)
            .field("backends", &self.backends.keys().collect::<Vec<_>>())
            .field("stores", &self.stores)
            .finish()
    }
}

/// Everything needed to open one store.
#[derive(Clone, Debug)]
pub struct ResolvedStore {
    pub name: String,
    pub backend: BackendConfig,
    pub root_path: String,
}

impl ResolvedStore {
    /// The store in one readable line (for errors and `--list`): its name, backend and
    /// where the data is. No secrets.
    pub fn describe(&self) -> String {
        match &self.backend.kind {
            BackendKind::S3(o) => format!(
                "store '{}' (backend '{}', bucket '{}' at {})",
                self.name,
                self.backend.name,
                o.bucket,
                o.endpoint_url.as_deref().unwrap_or("AWS")
            ),
            BackendKind::Local { root } => format!("store '{}' (local {})", self.name, root.display()),
            BackendKind::Memory => format!("store '{}' (memory)", self.name),
            BackendKind::Azure(o) => format!(
                "store '{}' (backend '{}', container '{}' at {})",
                self.name,
                self.backend.name,
                o.container,
                o.endpoint()
            ),
            BackendKind::Http(o) => format!("store '{}' (backend '{}', {})", self.name, self.backend.name, o.base_url),
            BackendKind::Sftp(o) => format!(
                "store '{}' (backend '{}', sftp://{}:{}{})",
                self.name, self.backend.name, o.host, o.port, o.base_path
            ),
            BackendKind::Sql(o) => format!(
                "store '{}' (backend '{}', table '{}' of {})",
                self.name,
                self.backend.name,
                o.table_name,
                o.shown_url()
            ),
        }
    }

    /// What the store's data is, to tell whether a file of remembered metadata
    /// describes it: the backend location, endpoint and root path (no secrets).
    /// `None` for a memory store, whose objects do not outlive the process.
    pub fn identity(&self) -> Option<String> {
        let at = match &self.backend.kind {
            BackendKind::S3(o) => format!("s3://{} at {}", o.bucket, o.endpoint_url.as_deref().unwrap_or("AWS")),
            BackendKind::Local { root } => format!("local {}", root.display()),
            BackendKind::Memory => return None,
            BackendKind::Azure(o) => format!("azure container {} at {}", o.container, o.endpoint()),
            BackendKind::Http(o) => format!("http {}", o.base_url),
            BackendKind::Sql(o) => format!("sql table {} of {}", o.table_name, o.shown_url()),
            BackendKind::Sftp(o) => format!("sftp://{}:{}{}", o.host, o.port, o.base_path),
        };
        Some(format!("{at}, root '{}'", self.root_path))
    }

    /// Where the backend keeps data: `s3://bucket`, a local directory, or `memory`.
    pub fn location(&self) -> String {
        match &self.backend.kind {
            BackendKind::S3(o) => format!("s3://{}", o.bucket),
            BackendKind::Local { root } => root.display().to_string(),
            BackendKind::Memory => "memory".into(),
            BackendKind::Azure(o) => format!("azure://{}", o.container),
            BackendKind::Http(o) => o.base_url.clone(),
            BackendKind::Sql(o) => format!("{}#{}", o.shown_url(), o.table_name),
            BackendKind::Sftp(o) => format!("sftp://{}:{}{}", o.host, o.port, o.base_path),
        }
    }
}

impl Registry {
    /// Reads and interpolates the config at `path` using the process environment.
    pub fn load(path: &Path) -> Result<Self, String> {
        let env = |k: &str| std::env::var(k).ok();
        Self::from_tree(path, read_tree(path)?, &env)
    }

    pub fn from_tree(path: &Path, mut tree: Value, env: Lookup) -> Result<Self, String> {
        let shown = path.display();
        let prefix = |e: String| format!("{shown}: {e}");
        interpolate(&mut tree, "", env).map_err(prefix)?;
        let top = as_table(&tree, "the top level").map_err(prefix)?;
        let warnings = top
            .keys()
            .filter(|k| !TOP_LEVEL_KEYS.contains(&k.as_str()))
            .map(|k| format!("{shown}: unknown top-level key '{k}' ignored"))
            .collect();
        let backends = table_of(top, "backends").map_err(prefix)?;
        // What remote-store checks when it loads a config (RegistryConfig and
        // Registry()), for every backend and store, used or not.
        for (name, v) in &backends {
            check_backend_table(name, v).map_err(prefix)?;
        }
        let mut stores = BTreeMap::new();
        for (name, v) in table_of(top, "stores").map_err(prefix)? {
            let store = parse_store(&name, &v).map_err(prefix)?;
            if !backends.contains_key(&store.backend) {
                let known: Vec<&str> = backends.keys().map(String::as_str).collect();
                return Err(prefix(format!(
                    "stores.{name}.backend names backend '{}', which is not defined under [backends] (defined: {})",
                    store.backend,
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                )));
            }
            stores.insert(name.clone(), store);
        }
        Ok(Self { path: path.to_path_buf(), backends, stores, warnings })
    }

    pub fn store_names(&self) -> Vec<&str> {
        self.stores.keys().map(String::as_str).collect()
    }

    /// The store `name` with its backend validated.
    pub fn resolve(&self, name: &str) -> Result<ResolvedStore, String> {
        let shown = self.path.display();
        let store = self.stores.get(name).ok_or_else(|| {
            let known = self.store_names().join(", ");
            let known = if known.is_empty() { "none".to_string() } else { known };
            format!("unknown store '{name}' in {shown} (known stores: {known})")
        })?;
        let raw = self.backends.get(&store.backend).ok_or_else(|| {
            format!(
                "{shown}: stores.{name}.backend names backend '{}', which is not defined under [backends]",
                store.backend
            )
        })?;
        let backend = parse_backend(&store.backend, raw).map_err(|e| format!("{shown}: {e}"))?;
        Ok(ResolvedStore { name: name.to_string(), backend, root_path: store.root_path.clone() })
    }
}

fn as_table<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, String> {
    v.as_object().ok_or_else(|| format!("{what} must be a table"))
}

fn table_of(top: &Map<String, Value>, key: &str) -> Result<BTreeMap<String, Value>, String> {
    match top.get(key) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(v) => Ok(as_table(v, key)?.clone().into_iter().collect()),
    }
}

/// An optional string option; numbers and booleans are accepted as their text.
fn opt_str(t: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>, String> {
    match t.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(v.to_string())),
        Some(_) => Err(format!("{path}.{key} must be a string")),
    }
}

fn parse_store(name: &str, v: &Value) -> Result<StoreProfile, String> {
    let path = format!("stores.{name}");
    let t = as_table(v, &path)?;
    let backend = match t.get("backend") {
        Some(Value::String(b)) => b.clone(),
        None => return Err(format!("{path}.backend is required")),
        Some(_) => return Err(format!("{path}.backend must be a string")),
    };
    let root = match t.get("root_path") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(r)) => r.clone(),
        Some(_) => return Err(format!("{path}.root_path must be a string")),
    };
    let root_path = normalize_root(&root).map_err(|e| format!("{path}.root_path: {e}"))?;
    Ok(StoreProfile { backend, root_path })
}

/// remote-store's normalisation: `\` → `/`, empty and `.` segments dropped, no leading `/`.
pub fn normalize_root(raw: &str) -> Result<String, String> {
    if raw.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    let unified = raw.replace('\\', "/");
    let segs: Vec<&str> = unified.split('/').filter(|s| !s.is_empty() && *s != ".").collect();
    if segs.contains(&"..") {
        return Err(format!("'{raw}' contains '..'"));
    }
    Ok(segs.join("/"))
}

/// The checks remote-store makes of every backend table when it loads a config: a
/// table, with a string `type`, a table of `options`, and a valid `retry` table.
fn check_backend_table(name: &str, v: &Value) -> Result<(), String> {
    let path = format!("backends.{name}");
    let t = as_table(v, &path)?;
    match t.get("type") {
        Some(Value::String(_)) => {}
        None => return Err(format!("{path}.type is required")),
        Some(_) => return Err(format!("{path}.type must be a string")),
    }
    if let Some(o) = t.get("options").filter(|o| !o.is_null()) {
        as_table(o, &format!("{path}.options"))?;
    }
    options::parse_retry(t.get("retry"), &format!("{path}.retry")).map(drop)
}

fn parse_backend(name: &str, v: &Value) -> Result<BackendConfig, String> {
    let path = format!("backends.{name}");
    let t = as_table(v, &path)?;
    let type_name = opt_str(t, "type", &path)?.ok_or_else(|| format!("{path}.type is required"))?;
    let empty = Map::new();
    let opts = match t.get("options") {
        None | Some(Value::Null) => &empty,
        Some(o) => as_table(o, &format!("{path}.options"))?,
    };
    let opath = format!("{path}.options");
    let has_retry = t.get("retry").is_some_and(|r| !r.is_null());
    if matches!(type_name.as_str(), "s3" | "s3-pyarrow" | "local" | "memory" | "azure" | "http" | "sql-blob" | "sftp") {
        options::check_known(name, &type_name, opts, has_retry)?;
    }
    let mut retry = options::parse_retry(t.get("retry"), &format!("{path}.retry"))?;
    let kind = match type_name.as_str() {
        "s3" | "s3-pyarrow" => {
            let (o, attempts) = parse_s3(opts, &opath)?;
            if let (false, Some(n)) = (has_retry, attempts) {
                retry.max_attempts = n; // config_kwargs.retries, when no retry table says otherwise
            }
            BackendKind::S3(Box::new(o))
        }
        "local" => {
            let root = opt_str(opts, "root", &opath)?.ok_or_else(|| format!("{opath}.root is required"))?;
            BackendKind::Local { root: PathBuf::from(root) }
        }
        "memory" => BackendKind::Memory,
        "azure" => BackendKind::Azure(Box::new(azure::parse(opts, &opath)?)),
        "http" => BackendKind::Http(Box::new(http::parse(opts, &opath)?)),
        "sql-blob" => BackendKind::Sql(Box::new(sql::parse(opts, &opath)?)),
        "sftp" => BackendKind::Sftp(Box::new(sftp::parse(opts, &opath)?)),
        "sql-query" => {
            return Err(format!(
                "backend '{name}' has type 'sql-query': a query materialiser, not a file store, so it cannot be mounted"
            ))
        }
        other => {
            return Err(format!(
            "backend '{name}' has type '{other}', which rstore-mount does not support (supported: {SUPPORTED_TYPES})"
        ))
        }
    };
    Ok(BackendConfig { name: name.to_string(), type_name, kind, retry })
}

/// An S3 backend's options, and `client_options.config_kwargs.retries.max_attempts`.
fn parse_s3(o: &Map<String, Value>, path: &str) -> Result<(S3Options, Option<u32>), String> {
    let bucket = opt_str(o, "bucket", path)?
        .filter(|b| !b.trim().is_empty())
        .ok_or_else(|| format!("{path}.bucket is required (a non-empty string)"))?;
    let client = options::parse_client_options(o.get("client_options"), &format!("{path}.client_options"))?;
    // remote-store strips the endpoint and adds https:// to a bare host[:port]; s3fs's
    // client_kwargs.endpoint_url is the same setting one level down.
    let endpoint = opt_str(o, "endpoint_url", path)?.or(client.endpoint_url.clone());
    let endpoint_url = endpoint.map(|e| e.trim().to_string()).filter(|e| !e.is_empty()).map(|e| {
        let scheme = e.get(..8).unwrap_or(&e).to_ascii_lowercase();
        if scheme.starts_with("http://") || scheme.starts_with("https://") {
            e
        } else {
            format!("https://{e}")
        }
    });
    let addressing_style = match client.addressing_style.as_deref() {
        None | Some("auto") if endpoint_url.is_some() => AddressingStyle::Path,
        None | Some("auto") => AddressingStyle::Virtual,
        Some("path") => AddressingStyle::Path,
        Some("virtual") => AddressingStyle::Virtual,
        Some(other) => {
            return Err(format!(
                "{path}.client_options.config_kwargs.s3.addressing_style is '{other}'; expected path, virtual or auto"
            ))
        }
    };
    // An explicit tls_ca_bundle (even "") must be a file; else the first set variable.
    let tls_ca_bundle = match opt_str(o, "tls_ca_bundle", path)?.or(client.verify_ca.clone()) {
        Some(p) => Some(p),
        None => ["AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty())),
    };
    if let Some(p) = &tls_ca_bundle {
        if !std::path::Path::new(p).is_file() {
            return Err(format!("{path}.tls_ca_bundle '{p}' does not exist or is not a file"));
        }
    }
    let secret_opt = |k: &str| -> Result<Option<Secret>, String> {
        Ok(opt_str(o, k, path)?.filter(|s| !s.is_empty()).map(Secret::new))
    };
    let (key, secret) = (secret_opt("key")?, secret_opt("secret")?);
    // reject_write_under_file_ancestor needs nothing: through a mount, a/b can only be
    // made inside a directory a, so writes under a file are always refused (ENOTDIR).
    let session_token = client
        .session_token
        .clone()
        .or_else(|| key.as_ref().and(std::env::var("AWS_SESSION_TOKEN").ok()).map(Secret::new));
    let region = opt_str(o, "region_name", path)?.filter(|s| !s.is_empty()).or(client.region.clone());
    let opts = S3Options {
        bucket,
        endpoint_url,
        key,
        secret,
        region,
        tls_ca_bundle: tls_ca_bundle.map(PathBuf::from),
        addressing_style,
        profile: client.profile,
        session_token,
        anon: client.anon,
        requester_pays: client.requester_pays,
        put_headers: client.put_headers,
        connect_timeout: client.connect_timeout,
        read_timeout: client.read_timeout,
    };
    Ok((opts, client.max_attempts))
}

#[cfg(test)]
mod tests;
