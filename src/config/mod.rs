//! The remote-store registry config: `[backends.*]` and `[stores.*]`, read unchanged
//! from TOML, YAML or `pyproject.toml`, with `${VAR}` interpolation.

mod interpolate;
mod secret;
mod source;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

pub use interpolate::{expand, interpolate, Lookup};
pub use secret::Secret;
pub use source::{locate, read_tree};

pub const SUPPORTED_TYPES: &str = "s3, s3-pyarrow, local, memory";
const TOP_LEVEL_KEYS: &[&str] = &["backends", "stores"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressingStyle {
    Path,
    Virtual,
}

#[derive(Clone, Debug)]
pub struct S3Options {
    pub bucket: String,
    pub endpoint_url: Option<String>,
    pub key: Option<Secret>,
    pub secret: Option<Secret>,
    pub region: Option<String>,
    pub tls_ca_bundle: Option<PathBuf>,
    pub addressing_style: AddressingStyle,
}

#[derive(Clone, Debug)]
pub enum BackendKind {
    S3(S3Options),
    Local { root: PathBuf },
    Memory,
}

#[derive(Clone, Debug)]
pub struct RetryConfig {
    pub max_attempts: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self { max_attempts: 3 }
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
        }
    }

    /// Where the backend keeps data: `s3://bucket`, a local directory, or `memory`.
    pub fn location(&self) -> String {
        match &self.backend.kind {
            BackendKind::S3(o) => format!("s3://{}", o.bucket),
            BackendKind::Local { root } => root.display().to_string(),
            BackendKind::Memory => "memory".into(),
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
        let mut stores = BTreeMap::new();
        for (name, v) in table_of(top, "stores").map_err(prefix)? {
            stores.insert(name.clone(), parse_store(&name, &v).map_err(prefix)?);
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
    let backend = opt_str(t, "backend", &path)?.ok_or_else(|| format!("{path}.backend is required"))?;
    let root = opt_str(t, "root_path", &path)?.unwrap_or_default();
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
    let kind = match type_name.as_str() {
        "s3" | "s3-pyarrow" => BackendKind::S3(parse_s3(opts, &opath)?),
        "local" => {
            let root = opt_str(opts, "root", &opath)?.ok_or_else(|| format!("{opath}.root is required"))?;
            BackendKind::Local { root: PathBuf::from(root) }
        }
        "memory" => BackendKind::Memory,
        other => {
            return Err(format!(
            "backend '{name}' has type '{other}', which rstore-mount does not support (supported: {SUPPORTED_TYPES})"
        ))
        }
    };
    let retry = parse_retry(t.get("retry"), &format!("{path}.retry"))?;
    Ok(BackendConfig { name: name.to_string(), type_name, kind, retry })
}

fn parse_retry(v: Option<&Value>, path: &str) -> Result<RetryConfig, String> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(RetryConfig::default());
    };
    let t = as_table(v, path)?;
    let mut retry = RetryConfig::default();
    if let Some(n) = t.get("max_attempts") {
        let n = n
            .as_u64()
            .or_else(|| n.as_str().and_then(|s| s.trim().parse().ok()))
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| format!("{path}.max_attempts must be a whole number from 1 to 100"))?;
        retry.max_attempts = n as u32;
    }
    Ok(retry)
}

fn parse_s3(o: &Map<String, Value>, path: &str) -> Result<S3Options, String> {
    let bucket =
        opt_str(o, "bucket", path)?.filter(|b| !b.is_empty()).ok_or_else(|| format!("{path}.bucket is required"))?;
    let endpoint_url = opt_str(o, "endpoint_url", path)?.filter(|s| !s.is_empty()).map(|e| {
        if e.contains("://") {
            e
        } else {
            format!("https://{e}")
        }
    });
    let style = addressing_style(o.get("client_options"), path)?;
    let addressing_style =
        style.unwrap_or(if endpoint_url.is_some() { AddressingStyle::Path } else { AddressingStyle::Virtual });
    let tls_ca_bundle = opt_str(o, "tls_ca_bundle", path)?
        .filter(|s| !s.is_empty())
        .or_else(|| {
            ["AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"]
                .iter()
                .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        })
        .map(PathBuf::from);
    let secret_opt = |k: &str| -> Result<Option<Secret>, String> {
        Ok(opt_str(o, k, path)?.filter(|s| !s.is_empty()).map(Secret::new))
    };
    let (key, secret) = (secret_opt("key")?, secret_opt("secret")?);
    Ok(S3Options {
        bucket,
        endpoint_url,
        key,
        secret,
        region: opt_str(o, "region_name", path)?.filter(|s| !s.is_empty()),
        tls_ca_bundle,
        addressing_style,
    })
}

/// `client_options.config_kwargs.s3.addressing_style`, as botocore spells it.
fn addressing_style(client_options: Option<&Value>, path: &str) -> Result<Option<AddressingStyle>, String> {
    let style = client_options
        .and_then(|c| c.get("config_kwargs"))
        .and_then(|c| c.get("s3"))
        .and_then(|c| c.get("addressing_style"));
    match style.and_then(Value::as_str) {
        None | Some("auto") => Ok(None),
        Some("path") => Ok(Some(AddressingStyle::Path)),
        Some("virtual") => Ok(Some(AddressingStyle::Virtual)),
        Some(other) => Err(format!(
            "{path}.client_options.config_kwargs.s3.addressing_style is '{other}'; expected path, virtual or auto"
        )),
    }
}

#[cfg(test)]
mod tests;
