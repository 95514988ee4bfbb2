//! The `sftp` backend's options, checked as remote-store 0.33's `SFTPBackend.__init__`
//! checks them.

use std::path::PathBuf;

use serde_json::{Map, Value};

use super::{opt_str, Secret};

/// What to do with a server host key that is not known (remote-store's `HostKeyPolicy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Refuse an unknown key (the default).
    Strict,
    /// Accept and record a key on first use; refuse a changed one later.
    Tofu,
    /// Accept any key (testing only).
    Auto,
}

/// An SSH server and the directory under which the store lives.
#[derive(Clone, Debug)]
pub struct SftpOptions {
    pub host: String,
    pub port: u16,
    /// `None`: the local user's name, as paramiko does.
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// The store's root on the server (no trailing `/`; `/` itself for the root).
    pub base_path: String,
    pub host_key_policy: HostKeyPolicy,
    /// Host keys in known_hosts format, from `known_host_keys`, `config.known_host_keys`
    /// or `$SFTP_KNOWN_HOST_KEYS` (in that order, as remote-store resolves them).
    pub known_host_keys: Option<String>,
    /// The known_hosts file (default `~/.ssh/known_hosts`).
    pub host_keys_path: Option<PathBuf>,
    /// Seconds to connect and authenticate (default 10).
    pub timeout: f64,
    /// Seconds one SFTP request may take (default 120; `None`: no limit).
    pub io_timeout: Option<f64>,
    /// Private key files to try (`connect_kwargs.key_filename`), before `~/.ssh`'s.
    pub key_files: Vec<PathBuf>,
    /// `connect_kwargs.allow_agent` / `look_for_keys` (paramiko's defaults: true).
    pub allow_agent: bool,
    pub look_for_keys: bool,
}

fn policy(v: &str) -> Option<HostKeyPolicy> {
    match v {
        "strict" => Some(HostKeyPolicy::Strict),
        "tofu" => Some(HostKeyPolicy::Tofu),
        "auto" => Some(HostKeyPolicy::Auto),
        // remote-store also takes the enum names, case-insensitively.
        _ => match v.to_ascii_lowercase().as_str() {
            "strict" => Some(HostKeyPolicy::Strict),
            "trust_on_first_use" => Some(HostKeyPolicy::Tofu),
            "auto_add" => Some(HostKeyPolicy::Auto),
            _ => None,
        },
    }
}

/// Parses an `sftp` backend's options (at `path`).
pub fn parse(o: &Map<String, Value>, path: &str) -> Result<SftpOptions, String> {
    let host = opt_str(o, "host", path)?.unwrap_or_default();
    if host.trim().is_empty() {
        return Err(format!("{path}.host must be a non-empty string"));
    }
    if o.contains_key("pkey") {
        return Err(format!(
            "{path}.pkey: a Python key object cannot come from a config file; rstore-mount takes keys from \
             ssh-agent, connect_kwargs.key_filename and ~/.ssh (id_ed25519, id_ecdsa, id_rsa)"
        ));
    }
    let port = match o.get("port") {
        None | Some(Value::Null) => 22,
        Some(v) => v
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{path}.port must be a port number"))?,
    };
    let seconds = |k: &str, default: Option<f64>| -> Result<Option<f64>, String> {
        match o.get(k) {
            None => Ok(default),
            Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|s| *s > 0.0)
                .map(Some)
                .ok_or_else(|| format!("{path}.{k} must be a positive number of seconds, or null")),
        }
    };
    let host_key_policy = match opt_str(o, "host_key_policy", path)? {
        None => HostKeyPolicy::Strict,
        Some(p) => {
            policy(&p).ok_or_else(|| format!("{path}.host_key_policy '{p}' is not one of strict, tofu, auto"))?
        }
    };
    let config = match o.get("config") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(format!("{path}.config must be a table")),
    };
    let known_host_keys = opt_str(o, "known_host_keys", path)?
        .filter(|k| !k.is_empty())
        .or_else(|| config.get("known_host_keys").and_then(Value::as_str).filter(|k| !k.is_empty()).map(str::to_string))
        .or_else(|| std::env::var("SFTP_KNOWN_HOST_KEYS").ok().filter(|k| !k.is_empty()));
    let mut key_files = Vec::new();
    let (mut allow_agent, mut look_for_keys) = (true, true);
    if let Some(v) = o.get("connect_kwargs").filter(|v| !v.is_null()) {
        let t = v.as_object().ok_or_else(|| format!("{path}.connect_kwargs must be a table"))?;
        for (k, v) in t {
            let here = format!("{path}.connect_kwargs.{k}");
            match k.as_str() {
                "key_filename" => match v {
                    Value::String(s) => key_files.push(PathBuf::from(s)),
                    Value::Array(a) => {
                        for f in a {
                            key_files.push(PathBuf::from(f.as_str().ok_or_else(|| format!("{here} must hold paths"))?));
                        }
                    }
                    _ => return Err(format!("{here} must be a path or a list of paths")),
                },
                "allow_agent" => allow_agent = super::options::truthy(v),
                "look_for_keys" => look_for_keys = super::options::truthy(v),
                // Tuning of paramiko's own transport: ours has its own.
                "compress" | "banner_timeout" | "auth_timeout" | "channel_timeout" => {}
                _ => {
                    return Err(format!(
                        "{here}: not supported by rstore-mount (supported: key_filename, allow_agent, look_for_keys)"
                    ))
                }
            }
        }
    }
    let base = opt_str(o, "base_path", path)?.unwrap_or_else(|| "/".into());
    let base_path = match base.trim_end_matches('/') {
        "" => "/".to_string(),
        b => b.to_string(),
    };
    Ok(SftpOptions {
        host,
        port,
        username: opt_str(o, "username", path)?.filter(|u| !u.is_empty()),
        password: opt_str(o, "password", path)?.filter(|p| !p.is_empty()).map(Secret::new),
        base_path,
        host_key_policy,
        known_host_keys,
        host_keys_path: opt_str(o, "host_keys_path", path)?.map(PathBuf::from),
        timeout: seconds("timeout", Some(10.0))?.unwrap_or(10.0),
        io_timeout: seconds("io_timeout", Some(120.0))?,
        key_files,
        allow_agent,
        look_for_keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn options_are_checked_as_remote_store_checks_them() {
        let o = json!({"host": "h", "port": 2222, "password": "pw", "base_path": "/srv/data/", "host_key_policy": "AUTO_ADD",
            "config": {"known_host_keys": "[h]:2222 ssh-ed25519 AAAA"}, "connect_kwargs": {"key_filename": "/k"}});
        let ok = parse(o.as_object().unwrap(), "p").unwrap();
        assert_eq!((ok.port, ok.base_path.as_str(), ok.host_key_policy), (2222, "/srv/data", HostKeyPolicy::Auto));
        assert_eq!(ok.known_host_keys.as_deref(), Some("[h]:2222 ssh-ed25519 AAAA"));
        assert!(!format!("{ok:?}").contains("pw"));
        for (bad, word) in [
            (json!({}), "host must be"),
            (json!({"host": "h", "pkey": "x"}), "pkey"),
            (json!({"host": "h", "host_key_policy": "yolo"}), "host_key_policy"),
            (json!({"host": "h", "io_timeout": 0}), "io_timeout"),
            (json!({"host": "h", "connect_kwargs": {"sock": 1}}), "connect_kwargs.sock"),
        ] {
            let err = parse(bad.as_object().unwrap(), "p").unwrap_err();
            assert!(err.contains(word), "{bad}: {err}");
        }
    }
}
