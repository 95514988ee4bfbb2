//! Per-handle read-ahead: sequential readers get a window that starts small and doubles
//! up to a cap, split into parts fetched by parallel ranged GETs and consumed in order;
//! random readers get just the range they asked for. With the data cache on, parts
//! are whole cache blocks, read from the cache when it holds them and written to it
//! behind the read otherwise.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use tokio::task::JoinHandle;

use super::{MemoryBudget, Reservation, StoreCache, MIB};
use crate::backend::{get_exact, BackendError, DynStore, Result};

#[derive(Clone, Debug)]
pub struct PrefetchConfig {
    /// First request and the window's starting size.
    pub initial_window: u64,
    pub max_window: u64,
    pub part_size: u64,
    /// Smallest GET for a random read.
    pub min_random_read: u64,
}

impl Default for PrefetchConfig {
    fn default() -> Self {
        Self { initial_window: MIB, max_window: 64 * MIB, part_size: 8 * MIB, min_random_read: 128 * 1024 }
    }
}

enum PartData {
    Pending(JoinHandle<Result<Bytes>>),
    Ready(Bytes),
    Failed(BackendError),
}

struct Part {
    start: u64,
    end: u64,
    data: PartData,
    _reservation: Option<Reservation>,
}

type Fetched = std::result::Result<Result<Bytes>, tokio::task::JoinError>;

impl Part {
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.end > start && self.start < end
    }

    fn settle(&mut self, got: Fetched) {
        let want = self.end - self.start;
        let checked =
            got.map_err(|e| BackendError::Other(format!("fetch task failed: {e}"))).and_then(|r| r).and_then(|b| {
                // A short body would be returned as file data: refuse it.
                if b.len() as u64 == want {
                    Ok(b)
                } else {
                    Err(BackendError::Transient(format!("short read: got {} of {want} bytes", b.len())))
                }
            });
        self.data = match checked {
            Ok(b) => PartData::Ready(b),
            Err(e) => PartData::Failed(e),
        };
    }

    async fn wait(&mut self) {
        if let PartData::Pending(task) = &mut self.data {
            let got = task.await;
            self.settle(got);
        }
    }

    /// Settles a finished fetch without waiting; true once the bytes are here.
    fn ready_now(&mut self) -> bool {
        if let PartData::Pending(task) = &mut self.data {
            if !task.is_finished() {
                return false;
            }
            match futures::FutureExt::now_or_never(task) {
                Some(got) => self.settle(got),
                None => return false,
            }
        }
        matches!(self.data, PartData::Ready(_))
    }

    fn bytes(&self) -> Result<&Bytes> {
        match &self.data {
            PartData::Ready(b) => Ok(b),
            PartData::Failed(e) => Err(e.clone()),
            PartData::Pending(_) => Err(BackendError::Other("part not fetched yet".into())),
        }
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        if let PartData::Pending(task) = &self.data {
            task.abort();
        }
    }
}

pub struct Prefetcher {
    store: DynStore,
    key: String,
    size: u64,
    etag: Option<String>,
    cfg: PrefetchConfig,
    budget: MemoryBudget,
    parts: VecDeque<Part>,
    /// End of the last scheduled part.
    scheduled_to: u64,
    window: u64,
    /// Where the previous read ended, to tell sequential from random access.
    last_end: Option<u64>,
    /// The persistent data cache, for objects with an ETag (the version it is keyed by).
    cache: Option<StoreCache>,
}

impl Prefetcher {
    pub fn new(
        store: DynStore,
        key: String,
        size: u64,
        etag: Option<String>,
        cfg: PrefetchConfig,
        budget: MemoryBudget,
    ) -> Self {
        let window = cfg.initial_window;
        let parts = VecDeque::new();
        Self { store, key, size, etag, cfg, budget, parts, scheduled_to: 0, window, last_end: None, cache: None }
    }

    /// Reads through `cache` (when the object has an ETag to key it by).
    pub fn with_cache(mut self, cache: Option<StoreCache>) -> Self {
        self.cache = cache.filter(|_| self.etag.is_some());
        self
    }

    /// Cache blocks are the unit the cache fills and serves: with it, parts start and
    /// end on block boundaries (or the end of the file).
    fn align_down(&self, offset: u64) -> u64 {
        match self.cache {
            Some(_) => offset / super::cache::BLOCK * super::cache::BLOCK,
            None => offset,
        }
    }

    fn align_up(&self, offset: u64) -> u64 {
        match self.cache {
            Some(_) => offset.div_ceil(super::cache::BLOCK).saturating_mul(super::cache::BLOCK).min(self.size),
            None => offset,
        }
    }

    /// The object version this reader is pinned to: its key and ETag.
    pub fn version(&self) -> (&str, Option<&str>) {
        (&self.key, self.etag.as_deref())
    }

    /// Reads up to `len` bytes at `offset` (short only at end of file).
    pub async fn read(&mut self, offset: u64, len: u64) -> Result<Bytes> {
        let Some(end) = self.prepare(offset, len) else { return Ok(Bytes::new()) };
        for part in self.parts.iter_mut().filter(|p| p.overlaps(offset, end)) {
            part.wait().await;
        }
        self.slice(offset, end)
    }

    /// Serves a read at once, without waiting or a task hop, when every byte of it is
    /// already fetched; `None` sends the caller to `read`.
    pub fn try_read(&mut self, offset: u64, len: u64) -> Option<Result<Bytes>> {
        let Some(end) = self.end_of(offset, len) else { return Some(Ok(Bytes::new())) };
        if !self.covers(offset) || end > self.scheduled_to {
            return None;
        }
        if !self.parts.iter_mut().filter(|p| p.overlaps(offset, end)).all(Part::ready_now) {
            return None;
        }
        self.prepare(offset, len);
        Some(self.slice(offset, end))
    }

    /// Access-pattern bookkeeping and read-ahead for a read; returns its end, or
    /// `None` past the end of the file.
    fn prepare(&mut self, offset: u64, len: u64) -> Option<u64> {
        let end = self.end_of(offset, len)?;
        let sequential = self.last_end.is_none_or(|e| e == offset) || self.covers(offset);
        self.drop_before(offset);
        if !self.covers(offset) {
            self.parts.clear();
            self.scheduled_to = self.align_down(offset);
            if !sequential {
                self.window = self.cfg.initial_window;
            }
        }
        if sequential {
            // Parts grow with the window: a fast first byte, then full-size GETs.
            let part = self.window.min(self.cfg.part_size);
            self.schedule(end, end + self.window, part);
            self.window = (self.window * 2).min(self.cfg.max_window);
        } else {
            let min_end = offset + self.cfg.min_random_read;
            self.schedule(end.max(min_end), 0, 0);
        }
        self.last_end = Some(end);
        Some(end)
    }

    /// Where a read of `len` bytes at `offset` ends; `None` when it reads nothing.
    fn end_of(&self, offset: u64, len: u64) -> Option<u64> {
        (offset < self.size && len > 0).then(|| (offset + len).min(self.size))
    }

    fn covers(&self, offset: u64) -> bool {
        self.parts.front().is_some_and(|p| p.start <= offset) && offset < self.scheduled_to
    }

    /// Drops parts wholly before `offset`, keeping one behind for slightly
    /// out-of-order kernel reads.
    fn drop_before(&mut self, offset: u64) {
        while self.parts.len() > 1 && self.parts[1].end <= offset {
            self.parts.pop_front();
        }
    }

    /// Ensures parts cover up to `need` (waiting on the budget is not allowed here) and
    /// reads ahead towards `want` in parts of `part` bytes while the budget allows.
    /// Read-ahead goes out only in (about) whole parts: topping the window up by each
    /// 128 KiB kernel read would turn a stream into thousands of tiny GETs.
    fn schedule(&mut self, need: u64, want: u64, part: u64) {
        let (need, want) = (need.min(self.size), want.min(self.size));
        while self.scheduled_to < need.max(want) {
            let start = self.scheduled_to;
            let len = if start < need { part.max(need - start) } else { part };
            let len = self.align_up(start + len).min(self.size) - start;
            if start >= need && want - start < len / 2 {
                break;
            }
            let reservation = self.budget.try_reserve(len);
            if reservation.is_none() && start >= need {
                break; // budget spent: stop reading ahead, never block
            }
            self.spawn_part(start, start + len, reservation);
        }
    }

    fn spawn_part(&mut self, start: u64, end: u64, reservation: Option<Reservation>) {
        let (store, key, etag) = (self.store.clone(), self.key.clone(), self.etag.clone());
        let (cache, size) = (self.cache.clone(), self.size);
        let task = tokio::spawn(async move {
            let Some((cache, tag)) = cache.zip(etag.clone()) else {
                return get_exact(&*store, &key, start..end, etag.as_deref()).await;
            };
            let (c, k, t) = (cache.clone(), key.clone(), tag.clone());
            if let Ok(Some(hit)) = tokio::task::spawn_blocking(move || c.read(&k, &t, size, start, end)).await {
                return Ok(hit);
            }
            let got = get_exact(&*store, &key, start..end, Some(&tag)).await?;
            cache.write_behind(key, tag, size, start, got.clone()).await;
            Ok(got)
        });
        self.parts.push_back(Part { start, end, data: PartData::Pending(task), _reservation: reservation });
        self.scheduled_to = end;
    }

    /// The bytes of [offset, end) from settled parts: a zero-copy slice when one part
    /// holds them all.
    fn slice(&self, offset: u64, end: u64) -> Result<Bytes> {
        let mut out = BytesMut::new();
        for part in self.parts.iter().filter(|p| p.overlaps(offset, end)) {
            let bytes = part.bytes()?;
            let from = (offset.max(part.start) - part.start) as usize;
            let to = (end.min(part.end) - part.start) as usize;
            if part.start <= offset && part.end >= end {
                return Ok(bytes.slice(from..to));
            }
            out.extend_from_slice(&bytes[from..to]);
        }
        Ok(out.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{MemoryStore, ObjectStore};
    use std::sync::Arc;

    async fn setup(size: usize) -> (Prefetcher, Vec<u8>, MemoryBudget) {
        let store = Arc::new(MemoryStore::new());
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let meta = store.put("f", Bytes::from(data.clone())).await.unwrap();
        let cfg = PrefetchConfig { initial_window: 1000, max_window: 8000, part_size: 3000, min_random_read: 100 };
        let budget = MemoryBudget::new(64 * 1024);
        (Prefetcher::new(store, "f".into(), size as u64, meta.etag, cfg, budget.clone()), data, budget)
    }

    #[tokio::test]
    async fn sequential_random_and_mixed_reads_return_the_right_bytes() {
        let (mut p, data, _) = setup(50_000).await;
        let mut off = 0;
        while off < data.len() {
            let got = p.read(off as u64, 777).await.unwrap();
            assert_eq!(&got[..], &data[off..(off + 777).min(data.len())]);
            off += 777;
        }
        assert!(p.read(50_000, 10).await.unwrap().is_empty());
        for (o, l) in [(40_000, 5000), (10, 10), (49_990, 100), (20_000, 1), (20_500, 4096), (0, 50_000)] {
            let got = p.read(o as u64, l as u64).await.unwrap();
            assert_eq!(&got[..], &data[o..(o + l).min(data.len())], "read {o}+{l}");
        }
    }

    #[tokio::test]
    async fn window_grows_on_sequential_reads_and_resets_on_seek() {
        let (mut p, _, _) = setup(100_000).await;
        for i in 0..5 {
            p.read(i * 100, 100).await.unwrap();
        }
        assert_eq!(p.window, 8000);
        p.read(90_000, 100).await.unwrap();
        assert_eq!(p.window, 1000);
    }

    #[tokio::test]
    async fn sequential_reads_fetch_whole_parts_not_one_get_per_read() {
        let (mut p, data, _) = setup(200_000).await;
        let mut sizes = Vec::new();
        let mut off = 0;
        while off < data.len() {
            let got = p.read(off as u64, 128).await.unwrap();
            assert_eq!(&got[..], &data[off..(off + 128).min(data.len())]);
            sizes.extend(p.parts.iter().map(|part| part.end - part.start));
            off += 128;
        }
        sizes.sort_unstable();
        sizes.dedup();
        // After the first small GETs every part is full size (the last may be short).
        let small = sizes.iter().filter(|s| **s < 1000).count();
        assert_eq!(small, 0, "no tiny read-ahead GETs: {sizes:?}");
        assert!(sizes.contains(&3000), "{sizes:?}");
    }

    #[tokio::test]
    async fn fetched_bytes_are_served_without_waiting() {
        let (mut p, data, _) = setup(50_000).await;
        assert!(p.try_read(0, 100).is_none(), "nothing fetched yet");
        assert_eq!(&p.read(0, 100).await.unwrap()[..], &data[..100]);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await; // read-ahead lands
        let got = p.try_read(100, 500).expect("already fetched").unwrap();
        assert_eq!(&got[..], &data[100..600]);
        assert!(p.try_read(49_000, 10).is_none(), "far ahead: not fetched");
        assert!(p.try_read(50_000, 10).unwrap().unwrap().is_empty(), "end of file");
    }

    #[tokio::test]
    async fn with_a_data_cache_parts_are_whole_blocks_and_a_second_reader_needs_no_store() {
        use crate::data::{cache::BLOCK, DataCache, DiskBudget};
        let dir = tempfile::tempdir().unwrap();
        let cache = DataCache::open(dir.path(), DiskBudget::new(1 << 30)).unwrap().store("mem");
        let store = Arc::new(MemoryStore::new());
        let size = 5 * BLOCK as usize + 333;
        let data: Vec<u8> = (0..size).map(|i| (i * 13 % 251) as u8).collect();
        let meta = store.put("f", Bytes::from(data.clone())).await.unwrap();
        let cfg = PrefetchConfig::default();
        let reader = |cfg: PrefetchConfig| {
            Prefetcher::new(store.clone(), "f".into(), size as u64, meta.etag.clone(), cfg, MemoryBudget::new(1 << 30))
                .with_cache(Some(cache.clone()))
        };
        // A random read in the middle, then a sequential pass: every part on block bounds.
        let mut p = reader(cfg.clone());
        assert_eq!(&p.read(BLOCK + 10, 100).await.unwrap()[..], &data[BLOCK as usize + 10..][..100]);
        assert!(p
            .parts
            .iter()
            .all(|part| part.start % BLOCK == 0 && (part.end % BLOCK == 0 || part.end == size as u64)));
        let mut off = 0;
        while off < size {
            let got = p.read(off as u64, 128 * 1024).await.unwrap();
            assert_eq!(&got[..], &data[off..(off + 128 * 1024).min(size)]);
            off += 128 * 1024;
        }
        assert!(p.parts.iter().all(|part| part.start % BLOCK == 0));
        // Cache writes run behind the reads: wait for them to land.
        for _ in 0..100 {
            if cache.read("f", meta.etag.as_deref().unwrap(), size as u64, 0, size as u64).is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // The same version gone from the store: a new reader gets it all from the cache.
        store.delete("f").await.unwrap();
        let mut q = reader(cfg);
        let got = q.read(0, size as u64).await.unwrap();
        assert_eq!(&got[..], &data[..]);
    }

    #[tokio::test]
    async fn changed_object_fails_instead_of_mixing_versions() {
        let (mut p, _, _) = setup(50_000).await;
        p.read(0, 10).await.unwrap();
        p.store.put("f", Bytes::from(vec![0u8; 50_000])).await.unwrap();
        let err = p.read(45_000, 10).await.unwrap_err();
        assert_eq!(err, BackendError::PreconditionFailed);
    }

    #[tokio::test]
    async fn read_ahead_stays_inside_the_budget() {
        let (mut p, data, budget) = setup(200_000).await;
        let small = MemoryBudget::new(2 * 1024);
        p.budget = small.clone();
        let mut off = 0;
        while off < 200_000 {
            let got = p.read(off, 4096).await.unwrap();
            assert_eq!(&got[..], &data[off as usize..(off + 4096).min(200_000) as usize]);
            // Fetched beyond this read: at most what the budget holds, plus one demand part
            // that may go out unreserved.
            let ahead = p.scheduled_to.saturating_sub(off + 4096);
            assert!(ahead <= small.total() + p.cfg.part_size, "read ahead {ahead} bytes on a 2 KiB budget");
            off += 4096;
        }
        // With the large budget the same reads run ahead further: the limit is what bound it.
        let (mut q, _, _) = setup(200_000).await;
        q.read(0, 4096).await.unwrap();
        for off in (4096..40_000).step_by(4096) {
            q.read(off, 4096).await.unwrap();
        }
        assert!(q.scheduled_to - 40_960 > small.total() + q.cfg.part_size);
        drop(budget);
    }
}
