//! Counts every object-store request (operation, result, bytes) into the metrics.

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;

use super::{BackendError, CompletedPart, DynStore, ListPage, ObjectMeta, ObjectStore, PartSource, Result, UserMeta};
use crate::metrics;

#[derive(Debug)]
pub struct Metered {
    inner: DynStore,
}

impl Metered {
    pub fn new(inner: DynStore) -> Self {
        Self { inner }
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
        BackendError::Other(_) => "error",
    }
}

/// Records `op` with its outcome and hands the result back.
fn count<T>(op: &'static str, r: Result<T>) -> Result<T> {
    let result = match &r {
        Ok(_) => "ok",
        Err(e) => result_of(e),
    };
    metrics::get().request(op, result);
    r
}

#[async_trait]
impl ObjectStore for Metered {
    async fn check(&self) -> Result<()> {
        count("head_bucket", self.inner.check().await)
    }
    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        count("head", self.inner.head(key).await)
    }
    async fn get_range(&self, key: &str, range: Range<u64>, if_match: Option<&str>) -> Result<Bytes> {
        let r = count("get", self.inner.get_range(key, range, if_match).await);
        if let Ok(b) = &r {
            metrics::get().bytes_read.inc_by(b.len() as u64);
        }
        r
    }
    async fn list_page(&self, p: &str, d: Option<&str>, t: Option<String>, m: Option<i32>) -> Result<ListPage> {
        count("list", self.inner.list_page(p, d, t, m).await)
    }
    async fn put_with(&self, key: &str, body: Bytes, user: &UserMeta) -> Result<ObjectMeta> {
        let len = body.len() as u64;
        let r = count("put", self.inner.put_with(key, body, user).await);
        if r.is_ok() {
            metrics::get().bytes_written.inc_by(len);
        }
        r
    }
    async fn create_multipart_with(&self, key: &str, user: &UserMeta) -> Result<String> {
        count("create_multipart", self.inner.create_multipart_with(key, user).await)
    }
    async fn upload_part(&self, key: &str, id: &str, number: i32, body: Bytes) -> Result<CompletedPart> {
        let (m, len) = (metrics::get(), body.len() as u64);
        m.parts_in_flight.inc();
        let r = count("upload_part", self.inner.upload_part(key, id, number, body).await);
        m.parts_in_flight.dec();
        if r.is_ok() {
            m.bytes_written.inc_by(len);
        }
        r
    }
    async fn upload_part_copy(&self, key: &str, id: &str, number: i32, src: &PartSource) -> Result<CompletedPart> {
        count("upload_part_copy", self.inner.upload_part_copy(key, id, number, src).await)
    }
    async fn complete_multipart(&self, key: &str, id: &str, parts: Vec<CompletedPart>) -> Result<ObjectMeta> {
        count("complete_multipart", self.inner.complete_multipart(key, id, parts).await)
    }
    async fn abort_multipart(&self, key: &str, id: &str) -> Result<()> {
        count("abort_multipart", self.inner.abort_multipart(key, id).await)
    }
    async fn copy(&self, src: &str, dst: &str) -> Result<Option<String>> {
        count("copy", self.inner.copy(src, dst).await)
    }
    async fn set_user_meta(&self, key: &str, user: &UserMeta) -> Result<ObjectMeta> {
        count("set_metadata", self.inner.set_user_meta(key, user).await)
    }
    async fn delete(&self, key: &str) -> Result<()> {
        count("delete", self.inner.delete(key).await)
    }
}
