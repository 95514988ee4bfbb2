//! A memory store that counts requests and bytes and can fail uploads (unit tests).

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    BackendError, CompletedPart, Condition, ListPage, MemoryStore, ObjectMeta, ObjectStore, PartSource, Result,
    UserMeta,
};

#[derive(Debug, Default)]
pub struct Probe {
    pub inner: MemoryStore,
    pub heads: AtomicUsize,
    pub lists: AtomicUsize,
    pub gets: AtomicUsize,
    pub copies: AtomicUsize,
    /// Bytes sent in PUT and UploadPart bodies.
    pub sent: AtomicU64,
    /// Parts copied on the server (UploadPartCopy).
    pub part_copies: AtomicUsize,
    pub meta_updates: AtomicUsize,
    pub fail_parts: AtomicBool,
    /// The next HEADs fail with this error, as many times as the count says.
    pub fail_heads: std::sync::Mutex<(usize, Option<BackendError>)>,
    /// Milliseconds a DELETE's answer takes after the object is gone (a slow reply
    /// opens the window for requests racing it).
    pub delete_reply_ms: AtomicU64,
    /// HEAD and LIST show Last-Modified in whole seconds, and writes return the
    /// client's clock (what the S3 backend reports for a PUT, which returns none), as
    /// against S3.
    pub s3_times: AtomicBool,
}

/// `t` cut to whole seconds, as S3 shows Last-Modified.
fn whole_seconds(t: std::time::SystemTime) -> std::time::SystemTime {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(d.as_secs())
}

impl Probe {
    pub fn count(n: &AtomicUsize) -> usize {
        n.load(Ordering::SeqCst)
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl ObjectStore for Probe {
    async fn check(&self) -> Result<()> {
        Ok(())
    }
    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        self.heads.fetch_add(1, Ordering::SeqCst);
        {
            let mut fail = self.fail_heads.lock().unwrap();
            if fail.0 > 0 {
                fail.0 -= 1;
                return Err(fail.1.clone().expect("an error to fail with"));
            }
        }
        let mut m = self.inner.head(key).await?;
        if self.s3_times.load(Ordering::SeqCst) {
            m.last_modified = whole_seconds(m.last_modified);
        }
        Ok(m)
    }
    async fn get_range(&self, key: &str, r: Range<u64>, m: Option<&str>) -> Result<Bytes> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get_range(key, r, m).await
    }
    async fn list_page(&self, p: &str, d: Option<&str>, t: Option<String>, m: Option<i32>) -> Result<ListPage> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        let mut page = self.inner.list_page(p, d, t, m).await?;
        if self.s3_times.load(Ordering::SeqCst) {
            page.objects.iter_mut().for_each(|o| o.last_modified = whole_seconds(o.last_modified));
        }
        Ok(page)
    }
    async fn put_if(&self, key: &str, body: Bytes, user: &UserMeta, cond: &Condition) -> Result<ObjectMeta> {
        self.sent.fetch_add(body.len() as u64, Ordering::SeqCst);
        self.inner.put_if(key, body, user, cond).await
    }
    async fn create_multipart_with(&self, key: &str, user: &UserMeta) -> Result<String> {
        self.inner.create_multipart_with(key, user).await
    }
    async fn upload_part(&self, key: &str, id: &str, n: i32, body: Bytes) -> Result<CompletedPart> {
        if self.fail_parts.load(Ordering::SeqCst) {
            return Err(BackendError::Transient("injected failure".into()));
        }
        self.sent.fetch_add(body.len() as u64, Ordering::SeqCst);
        self.inner.upload_part(key, id, n, body).await
    }
    async fn upload_part_copy(&self, key: &str, id: &str, n: i32, src: &PartSource) -> Result<CompletedPart> {
        self.part_copies.fetch_add(1, Ordering::SeqCst);
        // The memory store has no server side: copy through it without counting bytes sent.
        let body = self.inner.get_range(&src.key, src.range.clone(), src.if_match.as_deref()).await?;
        self.inner.upload_part(key, id, n, body).await
    }
    async fn complete_multipart_if(
        &self,
        key: &str,
        id: &str,
        parts: Vec<CompletedPart>,
        cond: &Condition,
    ) -> Result<ObjectMeta> {
        self.inner.complete_multipart_if(key, id, parts, cond).await
    }
    async fn abort_multipart(&self, key: &str, id: &str) -> Result<()> {
        self.inner.abort_multipart(key, id).await
    }
    async fn copy(&self, src: &str, dst: &str) -> Result<Option<String>> {
        self.copies.fetch_add(1, Ordering::SeqCst);
        self.inner.copy(src, dst).await
    }
    async fn set_user_meta(&self, key: &str, user: &UserMeta) -> Result<ObjectMeta> {
        self.meta_updates.fetch_add(1, Ordering::SeqCst);
        self.inner.set_user_meta(key, user).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(key).await?;
        let ms = self.delete_reply_ms.load(Ordering::SeqCst);
        if ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        Ok(())
    }

    async fn rename(&self, src: &str, dst: &str) -> Result<()> {
        self.inner.rename(src, dst).await
    }
}
