//! Counts every object-store request (operation, result, bytes) into the metrics.

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    BackendError, CompletedPart, Condition, DynStore, ListPage, ObjectMeta, ObjectStore, PartSource, Result, UserMeta,
};
use std::sync::Arc;

use crate::metrics::{self, StoreMetrics};

#[derive(Debug)]
pub struct Metered {
    inner: DynStore,
    metrics: Arc<StoreMetrics>,
}

impl Metered {
    /// Counts `inner`'s requests into `metrics` (one store's series).
    pub fn new(inner: DynStore, metrics: Arc<StoreMetrics>) -> Self {
        Self { inner, metrics }
    }

    /// Records `op` with its outcome and hands the result back.
    fn count<T>(&self, op: &'static str, r: Result<T>) -> Result<T> {
        let result = match &r {
            Ok(_) => "ok",
            Err(e) => result_of(e),
        };
        self.metrics.request(op, result);
        r
    }
}

fn result_of(e: &BackendError) -> &'static str {
    match e {
        BackendError::NotFound => "not_found",
        BackendError::NoSuchBucket(_) => "no_such_bucket",
        BackendError::PreconditionFailed => "precondition_failed",
        BackendError::AccessDenied(_) => "access_denied",
        BackendError::Throttled(_) => "throttled",
        BackendError::Transient(_) => "transient",
        BackendError::InvalidInput(_) => "invalid",
        BackendError::Unsupported(_) => "unsupported",
        BackendError::NoSpace => "no_space",
        BackendError::TooLarge(_) => "too_large",
        BackendError::Other(_) => "error",
    }
}

#[async_trait]
impl ObjectStore for Metered {
    async fn check(&self) -> Result<()> {
        self.count("head_bucket", self.inner.check().await)
    }
    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        self.count("head", self.inner.head(key).await)
    }
    async fn get_range(&self, key: &str, range: Range<u64>, if_match: Option<&str>) -> Result<Bytes> {
        let r = self.count("get", self.inner.get_range(key, range, if_match).await);
        if let Ok(b) = &r {
            self.metrics.bytes_read.inc_by(b.len() as u64);
        }
        r
    }
    async fn list_page(&self, p: &str, d: Option<&str>, t: Option<String>, m: Option<i32>) -> Result<ListPage> {
        self.count("list", self.inner.list_page(p, d, t, m).await)
    }
    async fn put_if(&self, key: &str, body: Bytes, user: &UserMeta, cond: &Condition) -> Result<ObjectMeta> {
        let len = body.len() as u64;
        let r = self.count("put", self.inner.put_if(key, body, user, cond).await);
        if r.is_ok() {
            self.metrics.bytes_written.inc_by(len);
        }
        r
    }
    async fn create_multipart_with(&self, key: &str, user: &UserMeta) -> Result<String> {
        self.count("create_multipart", self.inner.create_multipart_with(key, user).await)
    }
    async fn upload_part(&self, key: &str, id: &str, number: i32, body: Bytes) -> Result<CompletedPart> {
        let (m, len) = (metrics::get(), body.len() as u64);
        m.parts_in_flight.inc();
        let r = self.count("upload_part", self.inner.upload_part(key, id, number, body).await);
        m.parts_in_flight.dec();
        if r.is_ok() {
            self.metrics.bytes_written.inc_by(len);
        }
        r
    }
    async fn upload_part_copy(&self, key: &str, id: &str, number: i32, src: &PartSource) -> Result<CompletedPart> {
        self.count("upload_part_copy", self.inner.upload_part_copy(key, id, number, src).await)
    }
    async fn complete_multipart_if(
        &self,
        key: &str,
        id: &str,
        parts: Vec<CompletedPart>,
        cond: &Condition,
    ) -> Result<ObjectMeta> {
        self.count("complete_multipart", self.inner.complete_multipart_if(key, id, parts, cond).await)
    }
    async fn abort_multipart(&self, key: &str, id: &str) -> Result<()> {
        self.count("abort_multipart", self.inner.abort_multipart(key, id).await)
    }
    async fn copy(&self, src: &str, dst: &str) -> Result<Option<String>> {
        self.count("copy", self.inner.copy(src, dst).await)
    }
    async fn set_user_meta(&self, key: &str, user: &UserMeta) -> Result<ObjectMeta> {
        self.count("set_metadata", self.inner.set_user_meta(key, user).await)
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.count("delete", self.inner.delete(key).await)
    }

    async fn rename(&self, src: &str, dst: &str) -> Result<()> {
        match self.inner.rename(src, dst).await {
            // No request was made: nothing to count.
            Err(BackendError::Unsupported(m)) => Err(BackendError::Unsupported(m)),
            r => self.count("rename", r),
        }
    }
}
