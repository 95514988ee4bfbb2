//! Streaming upload of a file written sequentially: one PUT if it closes below the part
//! size, else a multipart upload whose parts go out concurrently while the program
//! writes. Any failure aborts the upload, so no partial object ever becomes visible.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::task::JoinSet;

use super::{MemoryBudget, Reservation, MIB};
use crate::backend::{BackendError, BufferPool, CompletedPart, Condition, DynStore, ObjectMeta, Result, UserMeta};

#[derive(Clone, Debug)]
pub struct UploadConfig {
    pub part_size: u64,
    pub max_in_flight: usize,
}

impl Default for UploadConfig {
    fn default() -> Self {
        Self { part_size: 8 * MIB, max_in_flight: 4 }
    }
}

/// S3 allows 10,000 parts: double the part size every 1,000 parts so a file can grow
/// past 1 TiB with the default 8 MiB start.
fn part_size_for(base: u64, number: i32) -> u64 {
    base << ((number - 1) / 1000).min(10)
}

/// Multipart uploads whose abort failed (server unreachable). Retried later so that no
/// orphaned upload keeps parts (and costs) on the server.
#[derive(Clone, Debug, Default)]
pub struct PendingAborts(Arc<Mutex<Vec<(String, String)>>>);

impl PendingAborts {
    pub(crate) fn push(&self, key: String, id: String) {
        self.0.lock().unwrap().push((key, id));
    }

    /// The uploads whose abort is still pending: (key, upload id).
    pub fn pending(&self) -> Vec<(String, String)> {
        self.0.lock().unwrap().clone()
    }

    /// Tries every pending abort once; returns how many are still pending.
    pub async fn retry(&self, store: &DynStore) -> usize {
        let pending = std::mem::take(&mut *self.0.lock().unwrap());
        for (key, id) in pending {
            if let Err(e) = store.abort_multipart(&key, &id).await {
                tracing::warn!(%key, error = %e, "multipart upload still not aborted");
                self.push(key, id);
            }
        }
        self.0.lock().unwrap().len()
    }
}

/// Starts uploads that share one store, configuration, memory budget and abort list.
#[derive(Clone, Debug)]
pub struct Uploader {
    pub store: DynStore,
    pub cfg: UploadConfig,
    pub budget: MemoryBudget,
    pub aborts: PendingAborts,
    /// Part buffers go back here once sent: a fresh 8 MiB buffer per part costs page
    /// faults and zeroing on every write.
    buffers: Arc<BufferPool>,
}

impl Uploader {
    pub fn new(store: DynStore, cfg: UploadConfig, budget: MemoryBudget) -> Self {
        Self { store, cfg, budget, aborts: PendingAborts::default(), buffers: BufferPool::new(2) }
    }

    /// An upload of `key` whose object will carry `user` metadata.
    pub fn start(&self, key: String, user: UserMeta) -> Upload {
        Upload {
            up: self.clone(),
            key,
            user,
            buf: Vec::new(),
            buf_reservation: None,
            next_part: 1,
            mpu: None,
            written: 0,
            failed: None,
            cond: Condition::Always,
            spool: None,
            rejected: None,
        }
    }
}

struct Multipart {
    id: String,
    done: Vec<CompletedPart>,
    in_flight: JoinSet<Result<CompletedPart>>,
}

pub struct Upload {
    up: Uploader,
    key: String,
    user: UserMeta,
    buf: Vec<u8>,
    buf_reservation: Option<Reservation>,
    next_part: i32,
    mpu: Option<Multipart>,
    written: u64,
    failed: Option<BackendError>,
    /// What the object must be for the upload to land (S3 conditional write).
    cond: Condition,
    /// A local copy of every byte written, kept while a condition may refuse the
    /// upload: sent parts cannot be read back from the server, and the data must
    /// survive the refusal.
    spool: Option<super::staging::Spool>,
    /// The body of a single PUT the server refused on its condition.
    rejected: Option<Bytes>,
}

impl Upload {
    /// The object must satisfy `cond` for `finish` to make it visible; else `finish`
    /// fails with `PreconditionFailed` and `save_to` still has the data.
    pub fn set_condition(&mut self, cond: Condition) {
        self.cond = cond;
    }

    /// Keeps a copy of every byte from now on in `spool`, for `save_to` after a
    /// refused condition. Set before the first write.
    pub fn spool_to(&mut self, spool: super::staging::Spool) {
        debug_assert_eq!(self.written, 0);
        self.spool = Some(spool);
    }

    fn spool(&mut self, data: &[u8]) {
        if let Some(f) = &mut self.spool {
            if let Err(e) = f.write(data) {
                // The upload itself goes on; only the copy is lost.
                if !f.is_safety_copy() {
                    tracing::debug!(key = %self.key, error = %e, "no room to keep this upload for the data cache");
                    self.spool = None;
                    return;
                }
                tracing::warn!(key = %self.key, error = %e, "cannot keep a local copy of this upload; a conflicting writer elsewhere would make it fail without a copy");
                self.spool = None;
            }
        }
    }

    /// The local copy of everything written (see `spool_to`), taken out: after a
    /// successful `finish` it feeds the data cache.
    pub fn take_spool(&mut self) -> Option<super::staging::Spool> {
        self.spool.take()
    }

    /// After a refused `finish`: copies everything written into `out`. False when no
    /// copy exists (no spool, and parts had left memory).
    pub fn save_to(&mut self, out: &mut std::fs::File) -> std::io::Result<bool> {
        use std::io::Write;
        if let Some(f) = &mut self.spool {
            f.copy_to(out)?;
        } else if let Some(body) = &self.rejected {
            out.write_all(body)?;
        } else {
            return Ok(false);
        }
        out.sync_all()?;
        Ok(true)
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Bytes `offset..offset + len` if they are still in memory (not yet sent); past
    /// the end, empty. `None` when part of the range already left in a sent part.
    pub fn read_buffered(&self, offset: u64, len: u64) -> Option<Bytes> {
        let start = self.written - self.buf.len() as u64;
        if offset >= self.written {
            return Some(Bytes::new());
        }
        if offset < start {
            return None;
        }
        let end = (offset + len).min(self.written);
        Some(Bytes::copy_from_slice(&self.buf[(offset - start) as usize..(end - start) as usize]))
    }

    /// Whether a part was sent (a multipart upload exists): the bytes written so far
    /// can no longer all be read back from memory.
    pub fn sent_any(&self) -> bool {
        self.mpu.is_some()
    }

    /// The bytes written so far if none has left memory yet (no part sent), so the
    /// writer can move them elsewhere.
    pub fn take_buffered(&mut self) -> Option<bytes::Bytes> {
        if self.mpu.is_some() || self.failed.is_some() {
            return None;
        }
        self.buf_reservation = None;
        Some(self.take_body())
    }

    fn take_body(&mut self) -> Bytes {
        self.up.buffers.freeze(std::mem::take(&mut self.buf))
    }

    /// Replaces the metadata the object will carry; too late once a multipart upload
    /// was created (the caller then updates the metadata after completion).
    pub fn set_user(&mut self, user: UserMeta) {
        self.user = user;
    }

    fn current_part_size(&self) -> u64 {
        part_size_for(self.up.cfg.part_size, self.next_part)
    }

    /// Appends `data` without waiting, when it fits in the part being filled (budget
    /// already held, no part to send); false leaves everything as it was.
    pub fn try_append(&mut self, data: &[u8]) -> bool {
        let fits = self.buf_reservation.is_some() && self.buf.len() + data.len() < self.current_part_size() as usize;
        if self.failed.is_some() || !fits {
            return false;
        }
        self.spool(data);
        self.buf.extend_from_slice(data);
        self.written += data.len() as u64;
        true
    }

    /// Appends `data`; full parts are sent while the caller keeps writing.
    pub async fn write(&mut self, mut data: &[u8]) -> Result<()> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.spool(data);
        while !data.is_empty() {
            let part_size = self.current_part_size();
            if self.buf_reservation.is_none() {
                // Backpressure: wait for budget before buffering another part.
                self.buf_reservation = Some(self.up.budget.reserve(part_size).await);
                if self.buf.capacity() == 0 {
                    self.buf = self.up.buffers.take(part_size as usize);
                }
            }
            let take = data.len().min(part_size as usize - self.buf.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            self.written += take as u64;
            if self.buf.len() as u64 == part_size {
                if let Err(e) = self.send_full_part().await {
                    self.failed = Some(e.clone());
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    async fn send_full_part(&mut self) -> Result<()> {
        if self.mpu.is_none() {
            let id = self.up.store.create_multipart_with(&self.key, &self.user).await?;
            self.mpu = Some(Multipart { id, done: Vec::new(), in_flight: JoinSet::new() });
        }
        let body = self.take_body();
        let reservation = self.buf_reservation.take();
        let number = self.next_part;
        self.next_part += 1;
        let mpu = self.mpu.as_mut().expect("created above");
        while mpu.in_flight.len() >= self.up.cfg.max_in_flight {
            let part = join(mpu.in_flight.join_next().await)?;
            mpu.done.push(part);
        }
        let (store, key, id) = (self.up.store.clone(), self.key.clone(), mpu.id.clone());
        mpu.in_flight.spawn(async move {
            let r = store.upload_part(&key, &id, number, body).await;
            drop(reservation);
            r
        });
        Ok(())
    }

    /// Sends what is buffered and makes the object visible (if the condition holds).
    pub async fn finish(&mut self) -> Result<ObjectMeta> {
        if let Some(e) = self.failed.take() {
            self.abort().await;
            return Err(e);
        }
        let result = self.try_finish().await;
        if result.is_err() {
            self.abort().await;
        }
        result
    }

    async fn try_finish(&mut self) -> Result<ObjectMeta> {
        if self.mpu.is_none() {
            let body = self.take_body();
            self.buf_reservation = None;
            let r = self.up.store.put_if(&self.key, body.clone(), &self.user, &self.cond).await;
            if matches!(r, Err(BackendError::PreconditionFailed)) {
                self.rejected = Some(body);
            }
            return r;
        }
        if !self.buf.is_empty() {
            self.send_full_part().await?;
        }
        let mut mpu = self.mpu.take().expect("checked above");
        let outcome = async {
            while let Some(r) = mpu.in_flight.join_next().await {
                mpu.done.push(join(Some(r))?);
            }
            mpu.done.sort_by_key(|p| p.number);
            let parts = std::mem::take(&mut mpu.done);
            crate::backend::complete_if_unchanged(&*self.up.store, &self.key, &mpu.id, parts, &self.cond).await
        }
        .await;
        if outcome.is_err() {
            self.mpu = Some(mpu); // so abort() can clean it up
        }
        outcome
    }

    /// Cancels the upload; the server keeps no parts.
    pub async fn abort(&mut self) {
        if let Some(mut mpu) = self.mpu.take() {
            mpu.in_flight.abort_all();
            while mpu.in_flight.join_next().await.is_some() {}
            if let Err(e) = self.up.store.abort_multipart(&self.key, &mpu.id).await {
                tracing::warn!(key = %self.key, error = %e, "could not abort multipart upload; will retry");
                self.up.aborts.push(self.key.clone(), mpu.id);
            }
        }
    }
}

fn join(r: Option<std::result::Result<Result<CompletedPart>, tokio::task::JoinError>>) -> Result<CompletedPart> {
    match r {
        Some(Ok(part)) => part,
        Some(Err(e)) => Err(BackendError::Other(format!("upload task failed: {e}"))),
        None => Err(BackendError::Other("no upload task to join".into())),
    }
}

impl Drop for Upload {
    /// An upload dropped unfinished (handle lost, mount torn down) must not leave an
    /// orphaned multipart upload on the server.
    fn drop(&mut self) {
        let Some(mut mpu) = self.mpu.take() else {
            return;
        };
        mpu.in_flight.abort_all();
        let (up, key) = (self.up.clone(), self.key.clone());
        // Named in the log: if the process ends before the abort lands, the parts stay.
        tracing::warn!(%key, upload_id = %mpu.id, "unfinished multipart upload dropped; aborting it");
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if up.store.abort_multipart(&key, &mpu.id).await.is_err() {
                        up.aborts.push(key, mpu.id);
                    }
                });
            }
            Err(_) => self.up.aborts.push(key, mpu.id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{MemoryStore, ObjectStore};
    use std::sync::Arc;

    fn cfg() -> UploadConfig {
        UploadConfig { part_size: 1000, max_in_flight: 2 }
    }

    #[tokio::test]
    async fn small_file_is_one_put_and_large_file_is_multipart() {
        let store = Arc::new(MemoryStore::new());
        let budget = MemoryBudget::new(1 << 20);
        let uploader = Uploader::new(store.clone(), cfg(), budget.clone());
        let mut up = uploader.start("small".into(), UserMeta::new());
        up.write(b"hello").await.unwrap();
        assert!(up.mpu.is_none());
        assert_eq!(up.finish().await.unwrap().size, 5);
        let data: Vec<u8> = (0..10_500u32).map(|i| (i % 253) as u8).collect();
        let mut up = uploader.start("big".into(), UserMeta::new());
        for chunk in data.chunks(333) {
            up.write(chunk).await.unwrap();
        }
        assert!(up.mpu.is_some());
        up.finish().await.unwrap();
        assert_eq!(store.get_range("big", 0..20_000, None).await.unwrap(), data);
        assert_eq!(store.open_uploads(), 0);
        assert_eq!(budget.reserved(), 0, "every buffer returned to the budget");
    }

    #[tokio::test]
    async fn try_append_takes_only_what_needs_no_waiting() {
        let store = Arc::new(MemoryStore::new());
        let uploader = Uploader::new(store.clone(), cfg(), MemoryBudget::new(1 << 20));
        let mut up = uploader.start("f".into(), UserMeta::new());
        assert!(!up.try_append(b"abc"), "the first write must reserve budget");
        up.write(b"abc").await.unwrap();
        assert!(up.try_append(&[1u8; 500]));
        assert!(!up.try_append(&[2u8; 497]), "filling the part means sending it");
        assert_eq!(up.written(), 503);
        up.write(&[2u8; 497]).await.unwrap();
        assert!(up.mpu.is_some(), "the full part went out");
        up.finish().await.unwrap();
        let got = store.get_range("f", 0..2000, None).await.unwrap();
        assert_eq!((got.len(), &got[..3], got[3], got[503]), (1000, &b"abc"[..], 1, 2));
    }

    #[tokio::test]
    async fn dropped_upload_is_aborted() {
        let store = Arc::new(MemoryStore::new());
        let mut up = Uploader::new(store.clone(), cfg(), MemoryBudget::new(1 << 20)).start("x".into(), UserMeta::new());
        up.write(&[1u8; 2500]).await.unwrap();
        assert_eq!(store.open_uploads(), 1);
        drop(up);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(store.open_uploads(), 0);
        assert!(store.head("x").await.is_err(), "no partial object");
    }

    #[test]
    fn part_size_grows_to_reach_a_tebibyte() {
        let total: u64 = (1..=10_000).map(|n| part_size_for(8 * MIB, n)).sum();
        assert!(total >= 1 << 40, "{total}");
        assert_eq!(part_size_for(8 * MIB, 1000), 8 * MIB);
        assert_eq!(part_size_for(8 * MIB, 1001), 16 * MIB);
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;
    use crate::backend::{MemoryStore, ObjectStore};
    use std::sync::Arc;

    #[tokio::test]
    async fn concurrent_writers_wait_for_the_budget_and_never_exceed_it() {
        let store = Arc::new(MemoryStore::new());
        let budget = MemoryBudget::new(3000);
        let uploader = Uploader::new(store.clone(), UploadConfig { part_size: 1000, max_in_flight: 2 }, budget.clone());
        let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut writers = Vec::new();
        for w in 0..4 {
            let (up, budget, peak) = (uploader.clone(), budget.clone(), peak.clone());
            writers.push(tokio::spawn(async move {
                let mut u = up.start(format!("w{w}"), UserMeta::new());
                for _ in 0..20 {
                    u.write(&[w as u8; 333]).await.unwrap();
                    peak.fetch_max(budget.reserved(), std::sync::atomic::Ordering::SeqCst);
                    tokio::task::yield_now().await;
                }
                u.finish().await.unwrap();
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
        // Four writers wanted more buffers than the budget holds: they filled it and waited.
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), budget.total());
        assert_eq!(budget.reserved(), 0);
        for w in 0..4u8 {
            assert_eq!(store.get_range(&format!("w{w}"), 0..10_000, None).await.unwrap(), vec![w; 6660]);
        }
    }
}
