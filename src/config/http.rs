//! The `http` backend's options, checked as remote-store 0.33's
//! `ReadOnlyHttpBackend.__init__` checks them.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{opt_str, Secret};

/// A read-only HTTP(S) file tree under one base URL.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Always ends with `/`, as remote-store makes it.
    pub base_url: String,
    /// Sent with every request (API keys, bearer tokens): values are secrets.
    pub headers: BTreeMap<String, Secret>,
    /// Per-request timeout, seconds (remote-store's default: 30).
    pub timeout: f64,
    pub verify_ssl: bool,
    /// Redirects followed per request (remote-store's default: 5).
    pub max_redirects: usize,
}

/// Parses an `http` backend's options (at `path`).
pub fn parse(o: &Map<String, Value>, path: &str) -> Result<HttpOptions, String> {
    let base = opt_str(o, "base_url", path)?.unwrap_or_default();
    if base.is_empty() {
        return Err(format!("{path}.base_url must not be empty"));
    }
    let scheme = base.split_once("://").map(|(s, _)| s.to_ascii_lowercase()).unwrap_or_default();
    if scheme != "http" && scheme != "https" {
        return Err(format!("{path}.base_url must use the http or https scheme, got '{scheme}'"));
    }
    let base_url = if base.ends_with('/') { base } else { format!("{base}/") };
    let mut headers = BTreeMap::new();
    if let Some(v) = o.get("headers").filter(|v| !v.is_null()) {
        let t = v.as_object().ok_or_else(|| format!("{path}.headers must be a table of strings"))?;
        for (k, v) in t {
            let v = v.as_str().ok_or_else(|| format!("{path}.headers.{k} must be a string"))?;
            headers.insert(k.clone(), Secret::new(v));
        }
    }
    let timeout = match o.get("timeout") {
        None | Some(Value::Null) => 30.0,
        Some(v) => {
            v.as_f64().filter(|t| *t > 0.0).ok_or_else(|| format!("{path}.timeout must be a number of seconds > 0"))?
        }
    };
    let verify_ssl = match o.get("verify_ssl") {
        None | Some(Value::Null) => true,
        Some(v) => super::options::truthy(v),
    };
    let max_redirects = match o.get("max_redirects") {
        None | Some(Value::Null) => 5,
        Some(v) => v.as_u64().ok_or_else(|| format!("{path}.max_redirects must be a whole number >= 0"))? as usize,
    };
    // remote-store picks its Python transport with this; ours is one HTTP client.
    match opt_str(o, "http_client", path)?.as_deref() {
        None | Some("urllib" | "requests" | "httpx") => {}
        Some(other) => {
            return Err(format!("{path}.http_client '{other}' is unknown: choose urllib, requests or httpx"))
        }
    }
    Ok(HttpOptions { base_url, headers, timeout, verify_ssl, max_redirects })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn options_are_checked_as_remote_store_checks_them() {
        let o = json!({"base_url": "http://127.0.0.1:8080/files", "headers": {"Authorization": "Bearer t0k"}, "timeout": 5});
        let ok = parse(o.as_object().unwrap(), "p").unwrap();
        assert_eq!((ok.base_url.as_str(), ok.timeout, ok.max_redirects), ("http://127.0.0.1:8080/files/", 5.0, 5));
        assert!(!format!("{ok:?}").contains("t0k"), "header values are redacted");
        for (bad, word) in [
            (json!({}), "must not be empty"),
            (json!({"base_url": "ftp://x/"}), "http or https"),
            (json!({"base_url": "http://x/", "timeout": 0}), "timeout"),
            (json!({"base_url": "http://x/", "http_client": "curl"}), "http_client"),
            (json!({"base_url": "http://x/", "headers": {"a": 1}}), "headers.a"),
        ] {
            let err = parse(bad.as_object().unwrap(), "p").unwrap_err();
            assert!(err.contains(word), "{bad}: {err}");
        }
    }
}
