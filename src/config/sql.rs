//! The `sql-blob` backend's options, checked as remote-store 0.33's
//! `SQLBlobBackend.__init__` checks them.

use serde_json::{Map, Value};

use super::{opt_str, Secret};

/// Objects as rows of one table of a SQLite or PostgreSQL database, in remote-store's
/// schema (key, data, size, modified_at, content_type, digest, extra, user_metadata).
#[derive(Clone, Debug)]
pub struct SqlOptions {
    /// The SQLAlchemy URL as written (it may hold a password).
    pub url: Secret,
    pub table_name: String,
    /// Create the table when it is missing (remote-store's default: true).
    pub create_table: bool,
    /// Largest object in bytes; a bigger file fails with EFBIG.
    pub max_blob_size: Option<u64>,
}

impl SqlOptions {
    /// The URL with any password replaced by `***`, for messages.
    pub fn shown_url(&self) -> String {
        let url = self.url.expose();
        match (url.find("://"), url.rfind('@')) {
            (Some(s), Some(at)) if at > s => {
                let auth = &url[s + 3..at];
                match auth.split_once(':') {
                    Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                    None => url.to_string(),
                }
            }
            _ => url.to_string(),
        }
    }
}

/// Parses a `sql-blob` backend's options (at `path`).
pub fn parse(o: &Map<String, Value>, path: &str) -> Result<SqlOptions, String> {
    if o.contains_key("engine") {
        return Err(format!("{path}.engine: a Python engine object cannot come from a config file; give url"));
    }
    let url = opt_str(o, "url", path)?.filter(|u| !u.is_empty()).ok_or_else(|| format!("{path}.url is required"))?;
    let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or_default();
    let dialect = scheme.split('+').next().unwrap_or_default();
    if !matches!(dialect, "sqlite" | "postgresql" | "postgres") {
        return Err(format!(
            "{path}.url: the database '{scheme}' is not supported by rstore-mount (supported: sqlite:///PATH, postgresql://...)"
        ));
    }
    let table_name = match o.get("table_name") {
        None | Some(Value::Null) => "remote_store_objects".to_string(),
        Some(Value::String(t)) if !t.is_empty() => t.clone(),
        Some(_) => return Err(format!("{path}.table_name must be a non-empty string")),
    };
    let create_table = match o.get("create_table") {
        None | Some(Value::Null) => true,
        Some(v) => super::options::truthy(v),
    };
    let max_blob_size = match o.get("max_blob_size") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64().filter(|n| *n > 0).ok_or_else(|| format!("{path}.max_blob_size must be a positive integer"))?,
        ),
    };
    Ok(SqlOptions { url: Secret::new(url), table_name, create_table, max_blob_size })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn options_are_checked_as_remote_store_checks_them() {
        let ok =
            parse(json!({"url": "postgresql+psycopg://u:pw@127.0.0.1:5432/db"}).as_object().unwrap(), "p").unwrap();
        assert_eq!((ok.table_name.as_str(), ok.create_table, ok.max_blob_size), ("remote_store_objects", true, None));
        assert_eq!(ok.shown_url(), "postgresql+psycopg://u:***@127.0.0.1:5432/db");
        assert!(!format!("{ok:?}").contains("pw"));
        for (bad, word) in [
            (json!({}), "url is required"),
            (json!({"url": "mysql://x/y"}), "not supported"),
            (json!({"url": "sqlite:///x.db", "table_name": ""}), "table_name"),
            (json!({"url": "sqlite:///x.db", "max_blob_size": 0}), "max_blob_size"),
            (json!({"url": "sqlite:///x.db", "engine": "e"}), "engine"),
        ] {
            let err = parse(bad.as_object().unwrap(), "p").unwrap_err();
            assert!(err.contains(word), "{bad}: {err}");
        }
    }
}
