//! A read-only file tree served over HTTP(S) (remote-store's `http` type), on reqwest.
//! Only this file imports it.
//!
//! As in remote-store's `ReadOnlyHttpBackend`: a file is found by HEAD of
//! `base_url + key` (falling back to a one-byte ranged GET where HEAD is refused with
//! 401/403), read with ranged GETs, and nothing can be listed or written. HTTP has no
//! listing: a directory is a path `dir/` the server answers with 2xx (an index page),
//! it lists as empty, and the files under it open by name (`cat mnt/a/b.csv` works;
//! `ls mnt/a` shows nothing). A server that answers 404 for directories hides what is
//! under them: mount that directory itself as `base_url`.
//! Every write is refused: the mount of an http store is read-only (EROFS).

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Response, StatusCode};

use super::{BackendError, CompletedPart, Condition, ListPage, ObjectMeta, ObjectStore, Result, UserMeta};
use crate::config::HttpOptions;

pub struct HttpStore {
    client: Client,
    base: String,
    /// Set once a HEAD was refused with 401/403 and a ranged GET was not: HEADs are then
    /// skipped (CDNs that block HEAD), as remote-store does.
    head_blocked: AtomicBool,
}

impl std::fmt::Debug for HttpStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Headers may carry keys: only the URL is shown.
        f.debug_struct("HttpStore").field("base_url", &self.base).finish()
    }
}

impl HttpStore {
    /// A client sending the configured headers, with the configured timeout (seconds),
    /// redirect limit and TLS verification. Errors: a header name or value HTTP cannot
    /// carry (named, value not shown).
    pub fn new(o: &HttpOptions) -> std::result::Result<Self, String> {
        let mut headers = HeaderMap::new();
        for (k, v) in &o.headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("header name '{k}' is not valid"))?;
            let mut value =
                HeaderValue::from_str(v.expose()).map_err(|_| format!("header '{k}' has a value HTTP cannot carry"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let client = Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_secs_f64(o.timeout))
            .redirect(reqwest::redirect::Policy::limited(o.max_redirects))
            .danger_accept_invalid_certs(!o.verify_ssl)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self { client, base: o.base_url.clone(), head_blocked: AtomicBool::new(false) })
    }

    fn url(&self, key: &str) -> String {
        // Percent-encode what a URL path cannot hold; `/` keeps separating segments.
        let mut url = self.base.clone();
        for b in key.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => url.push(b as char),
                _ => url.push_str(&format!("%{b:02X}")),
            }
        }
        url
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Response> {
        req.send().await.map_err(|e| {
            let what = if e.is_timeout() { "request timed out" } else { "request failed" };
            BackendError::Transient(format!(
                "{what}: {}",
                std::error::Error::source(&e).map_or(e.to_string(), |s| s.to_string())
            ))
        })
    }

    /// HEAD of `key`, or the first byte where HEAD is refused.
    async fn head_response(&self, key: &str) -> Result<Response> {
        let ranged = || self.client.get(self.url(key)).header("Range", "bytes=0-0");
        if self.head_blocked.load(Ordering::Relaxed) {
            return self.send(ranged()).await;
        }
        let r = self.send(self.client.head(self.url(key))).await?;
        if !matches!(r.status().as_u16(), 401 | 403) {
            return Ok(r);
        }
        let fallback = self.send(ranged()).await?;
        if fallback.status().is_success() || fallback.status() == StatusCode::NOT_FOUND {
            self.head_blocked.store(true, Ordering::Relaxed);
            return Ok(fallback);
        }
        Ok(r)
    }
}

/// A status that is not success, as a `BackendError`.
fn status_error(s: StatusCode, url: &str) -> BackendError {
    match s.as_u16() {
        404 | 410 => BackendError::NotFound,
        401 | 403 => BackendError::AccessDenied(format!("HTTP {s} for {url}")),
        412 => BackendError::PreconditionFailed,
        429 => BackendError::Throttled(format!("HTTP {s}")),
        408 | 500..=599 => BackendError::Transient(format!("HTTP {s}")),
        _ => BackendError::Other(format!("HTTP {s} for {url}")),
    }
}

fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

fn read_only() -> BackendError {
    BackendError::Unsupported("an http store is read-only".into())
}

#[async_trait]
impl ObjectStore for HttpStore {
    /// HEAD of the base URL, as remote-store's `check_health`: a 404 there means a wrong
    /// base URL (reported as a missing bucket), 401/403 wrong credentials.
    async fn check(&self) -> Result<()> {
        let r = self.head_response("").await?;
        match r.status() {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(BackendError::NoSuchBucket(format!("{} answers 404 Not Found", self.base))),
            s => Err(status_error(s, &self.base)),
        }
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        // A directory's marker, once its index page answered (see `list_page`).
        if key.is_empty() || key.ends_with('/') {
            return Ok(ObjectMeta::unstored_marker(key, SystemTime::UNIX_EPOCH, None));
        }
        let r = self.head_response(key).await?;
        if !r.status().is_success() {
            return Err(status_error(r.status(), r.url().as_str()));
        }
        // A redirect to `key/` (python -m http.server, nginx) is a directory's index page.
        if r.url().path().ends_with('/') {
            return Err(BackendError::NotFound);
        }
        // The size: Content-Range's total for a ranged GET, else Content-Length.
        let total = header(&r, "content-range").and_then(|v| v.rsplit_once('/')).and_then(|(_, t)| t.parse().ok());
        let size = total.or_else(|| header(&r, "content-length").and_then(|v| v.parse().ok())).unwrap_or(0);
        let last_modified = header(&r, "last-modified")
            .and_then(|v| time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok())
            .map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t.unix_timestamp()).unwrap_or(0)))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        // Only strong ETags guard a range read; a weak one (W/) may name other bytes.
        let etag = header(&r, "etag").filter(|e| !e.starts_with("W/")).map(str::to_string);
        Ok(ObjectMeta { key: key.into(), size, last_modified, etag, user: Some(UserMeta::new()) })
    }

    async fn get_range(&self, key: &str, range: Range<u64>, if_match: Option<&str>) -> Result<Bytes> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let url = self.url(key);
        let mut req = self.client.get(&url).header("Range", format!("bytes={}-{}", range.start, range.end - 1));
        if let Some(e) = if_match {
            req = req.header("If-Match", e);
        }
        let r = self.send(req).await?;
        let full = match r.status() {
            StatusCode::PARTIAL_CONTENT => false,
            // A server without ranges sends the whole file: take the part asked for.
            StatusCode::OK => true,
            StatusCode::RANGE_NOT_SATISFIABLE => return Ok(Bytes::new()),
            s => return Err(status_error(s, &url)),
        };
        let body = r.bytes().await.map_err(|e| BackendError::Transient(format!("body of {url}: {e}")))?;
        if !full {
            return Ok(body);
        }
        let start = (range.start as usize).min(body.len());
        let end = (range.end as usize).min(body.len());
        Ok(body.slice(start..end))
    }

    /// HTTP lists nothing. A prefix `dir/` that the server answers (an index page, as
    /// nginx, Apache, `python -m http.server` and http-server serve) lists its own
    /// marker, so the directory exists and the files under it open by name.
    async fn list_page(
        &self,
        prefix: &str,
        _delimiter: Option<&str>,
        token: Option<String>,
        _max_keys: Option<i32>,
    ) -> Result<ListPage> {
        let Some(name) = prefix.strip_suffix('/').filter(|n| !n.is_empty() && token.is_none()) else {
            return Ok(ListPage::default());
        };
        // Some servers answer `file/` with the file itself: a file is never a directory.
        match self.head(name).await {
            Ok(_) => return Ok(ListPage::default()),
            Err(BackendError::NotFound) => {}
            Err(e) => return Err(e),
        }
        let r = self.head_response(prefix).await?;
        match r.status() {
            s if s.is_success() => Ok(ListPage { objects: vec![self.head(prefix).await?], ..ListPage::default() }),
            StatusCode::NOT_FOUND | StatusCode::GONE => Ok(ListPage::default()),
            s => Err(status_error(s, r.url().as_str())),
        }
    }

    async fn put_if(&self, _: &str, _: Bytes, _: &UserMeta, _: &Condition) -> Result<ObjectMeta> {
        Err(read_only())
    }

    async fn create_multipart_with(&self, _: &str, _: &UserMeta) -> Result<String> {
        Err(read_only())
    }

    async fn upload_part(&self, _: &str, _: &str, _: i32, _: Bytes) -> Result<CompletedPart> {
        Err(read_only())
    }

    async fn complete_multipart_if(
        &self,
        _: &str,
        _: &str,
        _: Vec<CompletedPart>,
        _: &Condition,
    ) -> Result<ObjectMeta> {
        Err(read_only())
    }

    async fn abort_multipart(&self, _: &str, _: &str) -> Result<()> {
        Ok(())
    }

    async fn copy(&self, _: &str, _: &str) -> Result<Option<String>> {
        Err(read_only())
    }

    async fn set_user_meta(&self, _: &str, _: &UserMeta) -> Result<ObjectMeta> {
        Err(read_only())
    }

    async fn delete(&self, _: &str) -> Result<()> {
        Err(read_only())
    }
}
