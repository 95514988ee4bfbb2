//! An in-memory object store: unit tests of the fs logic, and `type = "memory"` stores.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use super::{clamp, BackendError, CompletedPart, Condition, ListPage, ObjectMeta, ObjectStore, Result, UserMeta};

#[derive(Clone)]
struct Object {
    body: Bytes,
    meta: ObjectMeta,
}

/// A multipart upload in progress: the object's metadata and the parts so far.
type PendingUpload = (UserMeta, BTreeMap<i32, Bytes>);

#[derive(Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, Object>>,
    uploads: Mutex<HashMap<String, PendingUpload>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryStore")
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of multipart uploads neither completed nor aborted (tests use it).
    pub fn open_uploads(&self) -> usize {
        self.uploads.lock().unwrap().len()
    }

    fn insert(&self, key: &str, body: Bytes, user: UserMeta) -> ObjectMeta {
        self.insert_if(key, body, user, &Condition::Always).expect("an unconditional write always holds")
    }

    /// Stores the object if `cond` holds, checked under the same lock as the write.
    fn insert_if(&self, key: &str, body: Bytes, user: UserMeta, cond: &Condition) -> Result<ObjectMeta> {
        let mut objects = self.objects.lock().unwrap();
        if !cond.holds(objects.get(key).map(|o| &o.meta)) {
            return Err(BackendError::PreconditionFailed);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let meta = ObjectMeta {
            key: key.to_string(),
            size: body.len() as u64,
            last_modified: SystemTime::now(),
            etag: Some(format!("\"m{id}\"")),
            user: Some(user),
        };
        let obj = Object { body, meta: meta.clone() };
        objects.insert(key.to_string(), obj);
        Ok(meta)
    }

    fn get(&self, key: &str) -> Result<Object> {
        let objects = self.objects.lock().unwrap();
        objects.get(key).cloned().ok_or(BackendError::NotFound)
    }
}

/// Delimited listing over sorted keys, shared with the local backend.
pub(crate) fn list_sorted<'a>(
    keys: impl Iterator<Item = (&'a String, ObjectMeta)>,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<&str>,
    max_keys: usize,
) -> ListPage {
    let mut page = ListPage::default();
    let mut count = 0;
    let mut last = None::<String>;
    for (key, meta) in keys {
        if !key.starts_with(prefix) || after.is_some_and(|a| key.as_str() <= a) {
            continue;
        }
        let rest = &key[prefix.len()..];
        let entry = match delimiter.and_then(|d| rest.find(d).map(|i| (i, d.len()))) {
            Some((i, dl)) => {
                let cp = format!("{prefix}{}", &rest[..i + dl]);
                if page.prefixes.last() == Some(&cp) {
                    continue;
                }
                Err(cp)
            }
            None => Ok(meta),
        };
        if count == max_keys {
            page.next_token = last;
            return page;
        }
        count += 1;
        match entry {
            Ok(meta) => {
                last = Some(meta.key.clone());
                page.objects.push(meta);
            }
            Err(cp) => {
                // Skip the whole prefix when resuming after it.
                last = Some(format!("{cp}\u{10FFFF}"));
                page.prefixes.push(cp);
            }
        }
    }
    page
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn check(&self) -> Result<()> {
        Ok(())
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        Ok(self.get(key)?.meta)
    }

    async fn get_range(&self, key: &str, range: Range<u64>, if_match: Option<&str>) -> Result<Bytes> {
        let obj = self.get(key)?;
        if if_match.is_some_and(|e| obj.meta.etag.as_deref() != Some(e)) {
            return Err(BackendError::PreconditionFailed);
        }
        let r = clamp(range, obj.meta.size);
        Ok(obj.body.slice(r.start as usize..r.end as usize))
    }

    async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: Option<i32>,
    ) -> Result<ListPage> {
        let objects = self.objects.lock().unwrap();
        let iter = objects.iter().map(|(k, o)| (k, ObjectMeta { user: None, ..o.meta.clone() }));
        let max = max_keys.unwrap_or(1000).max(1) as usize;
        Ok(list_sorted(iter, prefix, delimiter, token.as_deref(), max))
    }

    async fn put_if(&self, key: &str, body: Bytes, user: &UserMeta, cond: &Condition) -> Result<ObjectMeta> {
        self.insert_if(key, body, user.clone(), cond)
    }

    async fn create_multipart_with(&self, _key: &str, user: &UserMeta) -> Result<String> {
        let id = format!("u{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        self.uploads.lock().unwrap().insert(id.clone(), (user.clone(), BTreeMap::new()));
        Ok(id)
    }

    async fn upload_part(&self, _key: &str, id: &str, number: i32, body: Bytes) -> Result<CompletedPart> {
        let mut uploads = self.uploads.lock().unwrap();
        let (_, parts) = uploads.get_mut(id).ok_or(BackendError::NotFound)?;
        parts.insert(number, body);
        Ok(CompletedPart { number, etag: format!("\"p{number}\"") })
    }

    async fn complete_multipart_if(
        &self,
        key: &str,
        id: &str,
        parts: Vec<CompletedPart>,
        cond: &Condition,
    ) -> Result<ObjectMeta> {
        // As on S3, a failed condition leaves the upload in place (to be aborted).
        if !cond.holds(self.get(key).ok().map(|o| o.meta).as_ref()) {
            return Err(BackendError::PreconditionFailed);
        }
        let (user, stored) = self.uploads.lock().unwrap().remove(id).ok_or(BackendError::NotFound)?;
        let mut body = BytesMut::new();
        for p in &parts {
            let chunk = stored
                .get(&p.number)
                .ok_or_else(|| BackendError::InvalidInput(format!("part {} was never uploaded", p.number)))?;
            body.extend_from_slice(chunk);
        }
        self.insert_if(key, body.freeze(), user, cond)
    }

    async fn abort_multipart(&self, _key: &str, id: &str) -> Result<()> {
        self.uploads.lock().unwrap().remove(id);
        Ok(())
    }

    async fn copy(&self, src: &str, dst: &str) -> Result<Option<String>> {
        let obj = self.get(src)?;
        Ok(self.insert(dst, obj.body, obj.meta.user.unwrap_or_default()).etag)
    }

    async fn set_user_meta(&self, key: &str, user: &UserMeta) -> Result<ObjectMeta> {
        let obj = self.get(key)?;
        Ok(self.insert(key, obj.body, user.clone()))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.objects.lock().unwrap().remove(key);
        Ok(())
    }
}
