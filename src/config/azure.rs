//! The `azure` backend's options, checked as remote-store 0.33's `AzureBackend.__init__`
//! and `validate_azure_params` check them.

use serde_json::{Map, Value};

use super::{opt_str, Secret};

/// Where and how to reach one Azure Blob Storage container.
#[derive(Clone, Debug, Default)]
pub struct AzureOptions {
    pub container: String,
    /// `hns = true`: the account has a hierarchical namespace (ADLS Gen2). The mount still
    /// speaks the Blob API, which such accounts serve too.
    pub hns: bool,
    pub account_name: Option<String>,
    /// The blob endpoint, e.g. `https://acct.blob.core.windows.net` or Azurite's
    /// `http://127.0.0.1:10000/devstoreaccount1`.
    pub account_url: Option<String>,
    pub account_key: Option<Secret>,
    pub sas_token: Option<Secret>,
    pub connection_string: Option<Secret>,
}

impl AzureOptions {
    /// The endpoint for messages: the URL, or the account's public endpoint (no secrets:
    /// a connection string is not shown).
    pub fn endpoint(&self) -> String {
        match (&self.account_url, &self.account_name, &self.connection_string) {
            (Some(u), _, _) => u.clone(),
            (None, Some(a), _) => format!("https://{a}.blob.core.windows.net"),
            _ => "the connection string's endpoint".into(),
        }
    }
}

/// The keys of the Python SDK's client options that only tune its own transfers (block
/// sizes, single-shot thresholds): this mount's part size and prefetcher decide those, so
/// they are accepted and change nothing.
const SDK_TUNING: [&str; 6] = [
    "max_single_put_size",
    "max_block_size",
    "min_large_block_upload_threshold",
    "max_single_get_size",
    "max_chunk_get_size",
    "max_page_size",
];

/// Parses an `azure` backend's options (at `path`, e.g. `backends.b.options`).
/// Errors name the option, as remote-store's `ValueError`s do.
pub fn parse(o: &Map<String, Value>, path: &str) -> Result<AzureOptions, String> {
    let container = opt_str(o, "container", path)?.unwrap_or_default();
    if container.trim().is_empty() {
        return Err(format!("{path}.container is required (a non-empty string)"));
    }
    let hns = match o.get("hns") {
        Some(Value::Bool(b)) => *b,
        // remote-store refuses None and any non-bool, "false" from ${VAR} included.
        _ => {
            return Err(format!(
                "{path}.hns must be declared as true (ADLS Gen2) or false (flat Blob Storage), a boolean"
            ))
        }
    };
    let nonempty = |k: &str| -> Result<Option<String>, String> { Ok(opt_str(o, k, path)?.filter(|s| !s.is_empty())) };
    let account_name = nonempty("account_name")?;
    let account_url = nonempty("account_url")?.map(|u| u.trim_end_matches('/').to_string());
    let connection_string = nonempty("connection_string")?.map(Secret::new);
    if account_name.is_none() && account_url.is_none() && connection_string.is_none() {
        return Err(format!("{path}: one of account_name, account_url or connection_string is required"));
    }
    if let Some(u) = &account_url {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(format!("{path}.account_url '{u}' must start with http:// or https://"));
        }
    }
    if let Some(v) = o.get("max_concurrency").filter(|v| !v.is_null()) {
        // Our own prefetcher and upload queue set the parallelism; only the check remains.
        if v.as_i64().is_none_or(|n| n < 1) {
            return Err(format!("{path}.max_concurrency must be a whole number >= 1"));
        }
    }
    if o.contains_key("credential") {
        return Err(format!(
            "{path}.credential: a Python credential object cannot come from a config file; \
             leave out account_key and sas_token to use the default Azure credential chain"
        ));
    }
    if let Some(v) = o.get("client_options").filter(|v| !v.is_null()) {
        let t = v.as_object().ok_or_else(|| format!("{path}.client_options must be a table"))?;
        if let Some(k) = t.keys().find(|k| !SDK_TUNING.contains(&k.as_str())) {
            return Err(format!(
                "{path}.client_options.{k}: not supported by rstore-mount (accepted, with no effect: {})",
                SDK_TUNING.join(", ")
            ));
        }
    }
    let secret = |k: &str| -> Result<Option<Secret>, String> { Ok(nonempty(k)?.map(Secret::new)) };
    Ok(AzureOptions {
        container,
        hns,
        account_name,
        account_url,
        account_key: secret("account_key")?,
        sas_token: secret("sas_token")?,
        connection_string,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_json(v: Value) -> Result<AzureOptions, String> {
        parse(v.as_object().unwrap(), "backends.az.options")
    }

    #[test]
    fn options_are_checked_as_remote_store_checks_them() {
        let ok = parse_json(
            json!({"container": "c", "hns": false, "account_url": "http://127.0.0.1:10000/devstoreaccount1/",
            "account_key": "k", "client_options": {"max_block_size": 4}, "max_concurrency": 4}),
        )
        .unwrap();
        assert_eq!(ok.account_url.as_deref(), Some("http://127.0.0.1:10000/devstoreaccount1"));
        assert!(format!("{ok:?}").contains("***") && !format!("{ok:?}").contains("\"k\""), "key redacted");
        for (bad, word) in [
            (json!({"hns": false, "account_name": "a"}), "container is required"),
            (json!({"container": "c", "account_name": "a"}), "hns must be declared"),
            (json!({"container": "c", "hns": "false", "account_name": "a"}), "hns must be declared"),
            (json!({"container": "c", "hns": false}), "one of account_name"),
            (json!({"container": "c", "hns": false, "account_name": "a", "max_concurrency": 0}), "max_concurrency"),
            (json!({"container": "c", "hns": false, "account_url": "acct.blob"}), "http://"),
            (
                json!({"container": "c", "hns": false, "account_name": "a", "client_options": {"proxies": {}}}),
                "client_options.proxies",
            ),
        ] {
            let err = parse_json(bad.clone()).unwrap_err();
            assert!(err.contains(word) && err.starts_with("backends.az.options"), "{bad}: {err}");
        }
    }
}
