//! One object-store trait and its implementations.
//!
//! Keys are `/`-separated strings relative to the store root; the fs layer never sees
//! bucket names or SDK types.

mod azure;
mod buffers;
pub use buffers::BufferPool;
#[cfg(feature = "fault-injection")]
pub mod faults;
mod http;
mod local;
mod memory;
mod metered;
mod prefixed;
#[cfg(test)]
pub mod probe;
mod redact;
mod retry;
mod s3;
mod sftp;
mod sql;
pub use s3::quickack_http_client;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

pub use azure::AzureStore;
pub use http::HttpStore;
pub use local::LocalStore;
pub use memory::MemoryStore;
pub use metered::Metered;
pub use prefixed::Prefixed;
pub use retry::Retrying;
pub use s3::S3Store;
pub use sftp::SftpStore;
pub use sql::SqlStore;

use crate::config::{BackendKind, ResolvedStore};

/// User metadata (`x-amz-meta-<name>`), names lower-case without the prefix.
pub type UserMeta = BTreeMap<String, String>;

/// What a HEAD or a listing tells about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    pub last_modified: SystemTime,
    pub etag: Option<String>,
    /// Known from HEAD and our own writes; `None` from listings (S3 lists no metadata).
    pub user: Option<UserMeta>,
}

impl ObjectMeta {
    /// A directory marker `key` (ending with `/`) that no object holds: what a store
    /// without marker objects (sql-blob, a flat Azure account, http) answers for a
    /// directory. No ETag; `user` is what the caller meant to store, if anything.
    pub fn unstored_marker(key: &str, last_modified: SystemTime, user: Option<UserMeta>) -> Self {
        Self { key: key.into(), size: 0, last_modified, etag: None, user }
    }
}

/// The marker of directory `prefix` (`dir/`) on a store that keeps none: it exists
/// while an object lies under it (one LIST of one key), else `NotFound`.
pub(crate) async fn implied_dir(store: &dyn ObjectStore, prefix: &str) -> Result<ObjectMeta> {
    match store.list_page(prefix, None, None, Some(1)).await?.objects.is_empty() {
        true => Err(BackendError::NotFound),
        false => Ok(ObjectMeta::unstored_marker(prefix, SystemTime::UNIX_EPOCH, None)),
    }
}

/// `bytes` random bytes as lower-case hex (upload IDs, temporary names), from the OS.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).expect("no randomness from the OS");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One page of a delimited listing.
#[derive(Clone, Debug, Default)]
pub struct ListPage {
    pub objects: Vec<ObjectMeta>,
    /// Common prefixes, each ending with the delimiter.
    pub prefixes: Vec<String>,
    pub next_token: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletedPart {
    pub number: i32,
    pub etag: String,
}

/// A byte range of an existing object, as the source of a copied part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartSource {
    pub key: String,
    pub range: Range<u64>,
    /// The copy fails if the source changed since it was staged.
    pub if_match: Option<String>,
}

/// What the object at a key must be for a write to take effect: S3 conditional writes
/// (`If-Match` / `If-None-Match: *` on PutObject and CompleteMultipartUpload, AWS since
/// 2024-11; https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html).
/// A write whose condition does not hold fails with `PreconditionFailed` and changes
/// nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Condition {
    /// Unconditional: the last write wins.
    #[default]
    Always,
    /// The object must still have this ETag (the version the writer started from).
    IfMatch(String),
    /// No object may exist at the key (a file created with O_EXCL).
    IfAbsent,
}

impl Condition {
    /// Whether the condition holds when `current` is the object at the key now (for
    /// stores that check it themselves: local, memory).
    pub fn holds(&self, current: Option<&ObjectMeta>) -> bool {
        match self {
            Condition::Always => true,
            Condition::IfMatch(etag) => current.and_then(|m| m.etag.as_deref()) == Some(etag.as_str()),
            Condition::IfAbsent => current.is_none(),
        }
    }

    /// The ETag an `IfMatch` names (for logs).
    pub fn etag(&self) -> Option<&str> {
        match self {
            Condition::IfMatch(e) => Some(e),
            _ => None,
        }
    }
}

/// Backend failures, already classified; `fs::error` maps them to errno.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("not found")]
    NotFound,
    #[error("bucket not found: {0}")]
    NoSuchBucket(String),
    #[error("precondition failed (object changed)")]
    PreconditionFailed,
    #[error("access denied: {0}")]
    AccessDenied(String),
    #[error("throttled by the server: {0}")]
    Throttled(String),
    #[error("transient error: {0}")]
    Transient(String),
    #[error("invalid request: {0}")]
    InvalidInput(String),
    #[error("not supported: {0}")]
    Unsupported(String),
    #[error("no space left in the staging area")]
    NoSpace,
    /// Bigger than the store takes (sql-blob's `max_blob_size`): EFBIG.
    #[error("too large: {0}")]
    TooLarge(String),
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, BackendError>;

/// The object-store operations the filesystem needs.
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// Fails fast when the store cannot be used (missing bucket, bad credentials).
    async fn check(&self) -> Result<()>;
    async fn head(&self, key: &str) -> Result<ObjectMeta>;
    /// Bytes in `range` (clamped to the object's end). `if_match` guards against
    /// mixing two versions of an object in one read.
    async fn get_range(&self, key: &str, range: Range<u64>, if_match: Option<&str>) -> Result<Bytes>;
    async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: Option<i32>,
    ) -> Result<ListPage>;
    async fn put(&self, key: &str, body: Bytes) -> Result<ObjectMeta> {
        self.put_with(key, body, &UserMeta::new()).await
    }
    /// PUT carrying user metadata.
    async fn put_with(&self, key: &str, body: Bytes, user: &UserMeta) -> Result<ObjectMeta> {
        self.put_if(key, body, user, &Condition::Always).await
    }
    /// PUT carrying user metadata, taking effect only if `cond` holds (else
    /// `PreconditionFailed`). Every store must honour the condition or refuse it: a
    /// wrapper forwards it.
    async fn put_if(&self, key: &str, body: Bytes, user: &UserMeta, cond: &Condition) -> Result<ObjectMeta>;
    async fn create_multipart(&self, key: &str) -> Result<String> {
        self.create_multipart_with(key, &UserMeta::new()).await
    }
    /// A multipart upload whose object will carry `user` metadata.
    async fn create_multipart_with(&self, key: &str, user: &UserMeta) -> Result<String>;
    async fn upload_part(&self, key: &str, upload_id: &str, number: i32, body: Bytes) -> Result<CompletedPart>;
    /// A part copied server-side from `range` of object `src` (UploadPartCopy), so
    /// unchanged ranges of a modified file are never sent again. Stores without a
    /// server-side copy read and send the bytes.
    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        src: &PartSource,
    ) -> Result<CompletedPart> {
        let body = self.get_range(&src.key, src.range.clone(), src.if_match.as_deref()).await?;
        if body.len() as u64 != src.range.end - src.range.start {
            return Err(BackendError::PreconditionFailed);
        }
        self.upload_part(key, upload_id, number, body).await
    }
    async fn complete_multipart(&self, key: &str, upload_id: &str, parts: Vec<CompletedPart>) -> Result<ObjectMeta> {
        self.complete_multipart_if(key, upload_id, parts, &Condition::Always).await
    }
    /// Completes a multipart upload only if `cond` holds (else `PreconditionFailed`;
    /// the upload then still exists and must be aborted).
    async fn complete_multipart_if(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
        cond: &Condition,
    ) -> Result<ObjectMeta>;
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()>;
    /// Server-side copy; the user metadata goes with the object. Returns the copy's
    /// ETag when the server tells it.
    async fn copy(&self, src: &str, dst: &str) -> Result<Option<String>>;
    /// Replaces an object's user metadata, keeping its body (CopyObject onto itself).
    async fn set_user_meta(&self, key: &str, user: &UserMeta) -> Result<ObjectMeta>;
    async fn delete(&self, key: &str) -> Result<()>;
    /// The store's own rename of an object, or of a directory `dir/` with everything
    /// under it, replacing what is at `dst`; stores that have one (SFTP) do it
    /// atomically. `Unsupported` (the default): the caller copies and deletes.
    async fn rename(&self, src: &str, dst: &str) -> Result<()> {
        let _ = (src, dst);
        Err(BackendError::Unsupported("no native rename".into()))
    }
}

pub type DynStore = Arc<dyn ObjectStore>;

/// Builds the backend a store names, scoped to the store's `root_path`, with retries
/// (`retry.max_attempts`, each attempt bounded by `request_timeout`) and metrics.
pub async fn open(store: &ResolvedStore, request_timeout: Duration) -> std::result::Result<DynStore, String> {
    let inner: DynStore = match &store.backend.kind {
        BackendKind::Memory => Arc::new(MemoryStore::new()),
        BackendKind::Local { root } => Arc::new(LocalStore::new(root)?),
        BackendKind::S3(opts) => Arc::new(S3Store::new(opts).await?),
        BackendKind::Azure(opts) => Arc::new(AzureStore::new(opts)?),
        BackendKind::Http(opts) => Arc::new(HttpStore::new(opts)?),
        BackendKind::Sql(opts) => Arc::new(SqlStore::new(opts)?),
        BackendKind::Sftp(opts) => Arc::new(SftpStore::new(opts)?),
    };
    let scoped = if store.root_path.is_empty() { inner } else { Arc::new(Prefixed::new(inner, &store.root_path)) };
    #[cfg(feature = "fault-injection")]
    let scoped = faults::Faults::from_env(scoped)?;
    // Metrics count every attempt (a retried 503 shows as throttled, then ok).
    let metered = Arc::new(Metered::new(scoped, crate::metrics::for_store(&store.name)));
    Ok(Arc::new(Retrying::with_policy(metered, store.backend.retry.clone(), request_timeout)))
}

/// Reads a whole listing under `prefix` (all pages).
/// Whether `store` enforces conditional writes: a PUT with `If-None-Match: *` or a
/// wrong `If-Match` onto an existing object must each fail with 412. Some servers accept
/// the headers and ignore them (Garage 2.5: the PUT succeeds), so only a refusal proves
/// support; a server that rejects the headers (501, 400) lacks it. Writes a scratch
/// object `.rstore-mount-probe-<pid>-<nanos>` under the store root and deletes it (4
/// requests). CompleteMultipartUpload is not probed: `complete_if_unchanged` checks
/// before it, since some servers that enforce conditions on PUT ignore `If-Match` there
/// (moto 5.2). Errors: whatever the first, unconditional PUT fails with (e.g. access
/// denied).
pub async fn enforces_conditions(store: &dyn ObjectStore) -> Result<bool> {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let key = format!(".rstore-mount-probe-{}-{nanos}", std::process::id());
    // Empty: the probe adds requests to the store's metrics, but no bytes.
    let body = Bytes::new;
    let none = UserMeta::new();
    let wrong = Condition::IfMatch("\"rstore-mount-no-such-etag\"".into());
    let refused = |r: &Result<ObjectMeta>| matches!(r, Err(BackendError::PreconditionFailed));
    store.put_if(&key, body(), &none, &Condition::Always).await?;
    let enforced = refused(&store.put_if(&key, body(), &none, &Condition::IfAbsent).await)
        && refused(&store.put_if(&key, body(), &none, &wrong).await);
    let _ = store.delete(&key).await;
    Ok(enforced)
}

/// CompleteMultipartUpload under `cond`: checked by a HEAD just before, then sent with
/// the condition's header. A server that enforces the header closes the window between
/// the two; one that ignores it on completion (moto 5.2 ignores `If-Match` there) still
/// refuses a change made before the HEAD. `PreconditionFailed` leaves the upload to be
/// aborted by the caller.
pub async fn complete_if_unchanged(
    store: &dyn ObjectStore,
    key: &str,
    upload_id: &str,
    parts: Vec<CompletedPart>,
    cond: &Condition,
) -> Result<ObjectMeta> {
    if *cond != Condition::Always {
        let now = match store.head(key).await {
            Ok(m) => Some(m),
            Err(BackendError::NotFound) => None,
            Err(e) => return Err(e),
        };
        if !cond.holds(now.as_ref()) {
            return Err(BackendError::PreconditionFailed);
        }
    }
    store.complete_multipart_if(key, upload_id, parts, cond).await
}

pub async fn list_all(store: &dyn ObjectStore, prefix: &str, delimiter: Option<&str>) -> Result<ListPage> {
    let mut all = ListPage::default();
    let mut token = None;
    loop {
        let page = store.list_page(prefix, delimiter, token, None).await?;
        all.objects.extend(page.objects);
        all.prefixes.extend(page.prefixes);
        match page.next_token {
            Some(t) => token = Some(t),
            None => return Ok(all),
        }
    }
}

/// How often a range that came back short is asked for again.
const SHORT_BODY_ATTEMPTS: usize = 6;

/// Reads `range`, which lies within the object: a body shorter than asked (a
/// connection cut mid-body, a proxy truncating) is fetched again, and after
/// `SHORT_BODY_ATTEMPTS` reported as an error — never returned as file data.
pub async fn get_exact(store: &dyn ObjectStore, key: &str, range: Range<u64>, if_match: Option<&str>) -> Result<Bytes> {
    let want = range.end - range.start;
    for attempt in 1..=SHORT_BODY_ATTEMPTS {
        let body = store.get_range(key, range.clone(), if_match).await?;
        if body.len() as u64 == want {
            return Ok(body);
        }
        tracing::warn!(key, got = body.len(), want, attempt, "short GET body; asking again");
    }
    Err(BackendError::Transient(format!("GET of {key} kept returning short bodies")))
}

/// Clamps `range` to an object of `size` bytes.
pub(crate) fn clamp(range: Range<u64>, size: u64) -> Range<u64> {
    range.start.min(size)..range.end.min(size)
}
