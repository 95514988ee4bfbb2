//! Scopes a backend to a store's `root_path`: keys gain the prefix on the way down and
//! lose it on the way up, so objects outside the root are invisible.

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;

use super::{CompletedPart, Condition, DynStore, ListPage, ObjectMeta, ObjectStore, PartSource, Result, UserMeta};

#[derive(Debug)]
pub struct Prefixed {
    inner: DynStore,
    /// Normalised root path with a trailing `/`.
    prefix: String,
}

impl Prefixed {
    pub fn new(inner: DynStore, root_path: &str) -> Self {
        Self { inner, prefix: format!("{}/", root_path.trim_end_matches('/')) }
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn strip(&self, mut meta: ObjectMeta) -> ObjectMeta {
        meta.key = meta.key[self.prefix.len().min(meta.key.len())..].to_string();
        meta
    }
}

#[async_trait]
impl ObjectStore for Prefixed {
    async fn check(&self) -> Result<()> {
        self.inner.check().await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        self.inner.head(&self.full(key)).await.map(|m| self.strip(m))
    }

    async fn get_range(&self, key: &str, range: Range<u64>, if_match: Option<&str>) -> Result<Bytes> {
        self.inner.get_range(&self.full(key), range, if_match).await
    }

    async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: Option<i32>,
    ) -> Result<ListPage> {
        let mut page = self.inner.list_page(&self.full(prefix), delimiter, token, max_keys).await?;
        page.objects = page.objects.into_iter().map(|m| self.strip(m)).collect();
        let n = self.prefix.len();
        page.prefixes = page.prefixes.into_iter().map(|p| p[n.min(p.len())..].to_string()).collect();
        Ok(page)
    }

    async fn put_if(&self, key: &str, body: Bytes, user: &UserMeta, cond: &Condition) -> Result<ObjectMeta> {
        self.inner.put_if(&self.full(key), body, user, cond).await.map(|m| self.strip(m))
    }

    async fn create_multipart_with(&self, key: &str, user: &UserMeta) -> Result<String> {
        self.inner.create_multipart_with(&self.full(key), user).await
    }

    async fn upload_part(&self, key: &str, id: &str, number: i32, body: Bytes) -> Result<CompletedPart> {
        self.inner.upload_part(&self.full(key), id, number, body).await
    }

    async fn upload_part_copy(&self, key: &str, id: &str, number: i32, src: &PartSource) -> Result<CompletedPart> {
        let src = PartSource { key: self.full(&src.key), ..src.clone() };
        self.inner.upload_part_copy(&self.full(key), id, number, &src).await
    }

    async fn complete_multipart_if(
        &self,
        key: &str,
        id: &str,
        parts: Vec<CompletedPart>,
        cond: &Condition,
    ) -> Result<ObjectMeta> {
        self.inner.complete_multipart_if(&self.full(key), id, parts, cond).await.map(|m| self.strip(m))
    }

    async fn abort_multipart(&self, key: &str, id: &str) -> Result<()> {
        self.inner.abort_multipart(&self.full(key), id).await
    }

    async fn copy(&self, src: &str, dst: &str) -> Result<Option<String>> {
        self.inner.copy(&self.full(src), &self.full(dst)).await
    }

    async fn set_user_meta(&self, key: &str, user: &UserMeta) -> Result<ObjectMeta> {
        self.inner.set_user_meta(&self.full(key), user).await.map(|m| self.strip(m))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(&self.full(key)).await
    }

    async fn rename(&self, src: &str, dst: &str) -> Result<()> {
        self.inner.rename(&self.full(src), &self.full(dst)).await
    }
}
