//! Staged writes: a file that is modified in place (append, overwrite, O_RDWR,
//! truncate to a non-zero size) lives in a local temp file, filled lazily from the
//! object block by block, and is uploaded on close/fsync as a multipart upload whose
//! untouched blocks are copied server-side (UploadPartCopy).

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::{DiskBudget, Uploader, MIB};
use crate::backend::{get_exact, BackendError, CompletedPart, Condition, ObjectMeta, PartSource, Result, UserMeta};

/// S3's smallest part (all but the last) and its part-count limit.
const MIN_PART: u64 = 5 * MIB;
const MAX_PARTS: u64 = 10_000;

/// Where staged files live and how much space they may take together.
#[derive(Clone, Debug)]
pub struct StagingArea {
    dir: PathBuf,
    /// Shared with the data cache (`--cache`), whose blocks give way to staged files.
    disk: DiskBudget,
}

/// Where staged files go (`--cache-dir`) and their combined size limit (`--max-cache-size`).
#[derive(Clone, Debug)]
pub struct StagingConfig {
    pub dir: PathBuf,
    pub max_bytes: u64,
}

impl Default for StagingConfig {
    fn default() -> Self {
        Self { dir: std::env::temp_dir().join("rstore-mount"), max_bytes: 4 << 30 }
    }
}

impl StagingArea {
    pub fn new(cfg: &StagingConfig) -> Self {
        Self { dir: cfg.dir.clone(), disk: DiskBudget::new(cfg.max_bytes) }
    }

    /// The disk limit staged files are charged against, to share with the data cache.
    pub fn disk(&self) -> &DiskBudget {
        &self.disk
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes charged against `--max-cache-size` now (staged and cached together).
    pub fn used(&self) -> u64 {
        self.disk.used()
    }

    /// Charges `bytes`, evicting cached data first; `NoSpace` when they cannot fit.
    fn charge(&self, bytes: u64) -> Result<()> {
        match self.disk.charge(bytes) {
            true => Ok(()),
            false => Err(BackendError::NoSpace),
        }
    }

    fn release(&self, bytes: u64) {
        self.disk.release(bytes);
    }

    /// A local copy of a streamed upload (see `Spool`), in an unnamed file of the
    /// staging directory (a crash leaves nothing). `safety`: the copy keeps data a write
    /// condition may refuse, and takes space from cached data; otherwise it only feeds
    /// the data cache, and stops (`NoSpace`) rather than evict anything.
    pub fn spool(&self, safety: bool) -> Result<Spool> {
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let file = tempfile::tempfile_in(&self.dir).map_err(io)?;
        Ok(Spool { area: self.clone(), file, charged: 0, safety })
    }

    /// A new file under `conflicts/<store>/` in the staging directory, named after
    /// `key` and the time, for data a commit could not upload without overwriting
    /// another writer's version: the user finds it there (the log names it).
    pub fn conflict_file(&self, store: &str, key: &str) -> std::io::Result<(PathBuf, File)> {
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        let store = if store.is_empty() { "store" } else { store };
        let base = self.dir.join("conflicts").join(store).join(key.trim_end_matches('/'));
        // Private, like the file may have been: only the mounting user reads these.
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        if let Some(parent) = base.parent() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent)?;
        }
        for n in 0.. {
            let name = match n {
                0 => format!("{}.conflict-{stamp}", base.display()),
                n => format!("{}.conflict-{stamp}-{n}", base.display()),
            };
            match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&name) {
                Ok(f) => return Ok((PathBuf::from(name), f)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        unreachable!("the loop returns")
    }

    /// Stages the object `source` (or an empty file). Nothing is fetched yet.
    pub fn stage(&self, uploader: &Uploader, source: Option<ObjectMeta>) -> Result<Staged> {
        // An unnamed temp file: a crash leaves nothing behind to clean up.
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let file = tempfile::tempfile_in(&self.dir).map_err(io)?;
        let base_len = source.as_ref().map_or(0, |s| s.size);
        file.set_len(base_len).map_err(io)?;
        let block = block_size(uploader.cfg.part_size, base_len);
        let blocks = base_len.div_ceil(block) as usize;
        Ok(Staged {
            area: self.clone(),
            up: uploader.clone(),
            file,
            source_key: source.as_ref().map(|s| s.key.clone()).unwrap_or_default(),
            etag: source.and_then(|s| s.etag),
            source_size: base_len,
            base_len,
            size: base_len,
            block,
            filled: vec![false; blocks],
            dirty: vec![false; blocks],
            modified: false,
            charged: 0,
            cache: None,
        })
    }
}

/// Every byte of a streamed upload, written to local disk as it streams, while a write
/// condition may refuse the upload at its end: sent parts cannot be read back from the
/// server. Its bytes count against `--max-cache-size` with the staged files; past the
/// limit `write` fails and the caller goes on without the copy.
pub struct Spool {
    area: StagingArea,
    file: File,
    charged: u64,
    safety: bool,
}

impl Spool {
    /// Appends `data` (errors: `NoSpace` past the staging limit, or the disk's).
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        use std::io::Write;
        match self.safety {
            true => self.area.charge(data.len() as u64)?,
            false if !self.area.disk.try_charge(data.len() as u64) => return Err(BackendError::NoSpace),
            false => {}
        }
        self.charged += data.len() as u64;
        self.file.write_all(data).map_err(io)
    }

    /// Whether this copy keeps data a write condition may refuse (else it only feeds
    /// the data cache).
    pub fn is_safety_copy(&self) -> bool {
        self.safety
    }

    /// The spooled bytes, from offset 0.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Copies everything spooled into `out`.
    pub fn copy_to(&mut self, out: &mut File) -> std::io::Result<()> {
        use std::io::Seek;
        self.file.rewind()?;
        std::io::copy(&mut self.file, out)?;
        Ok(())
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.area.release(self.charged);
    }
}

/// Blocks are whole upload parts: at least S3's minimum part, and large enough that
/// the file fits in 10,000 parts with room to grow.
fn block_size(part_size: u64, len: u64) -> u64 {
    let need = len.div_ceil(MAX_PARTS / 2);
    part_size.max(MIN_PART).max(need).div_ceil(MIB) * MIB
}

fn io(e: std::io::Error) -> BackendError {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        return BackendError::NoSpace;
    }
    BackendError::Other(format!("staging file: {e}"))
}

pub struct Staged {
    area: StagingArea,
    up: Uploader,
    file: File,
    /// The object unfilled blocks come from, pinned by its ETag.
    source_key: String,
    etag: Option<String>,
    /// The source object's size (the data cache's key with the ETag).
    source_size: u64,
    /// Bytes below this offset that are not filled still live only in the object.
    base_len: u64,
    size: u64,
    block: u64,
    /// The temp file holds the truth for this block.
    filled: Vec<bool>,
    /// The block differs from the object: its part must be sent, not copied.
    dirty: Vec<bool>,
    /// Changed since the last upload.
    modified: bool,
    charged: u64,
    /// The data cache, read before the object and filled by what is fetched from it.
    cache: Option<super::StoreCache>,
}

impl Staged {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Fills blocks from `cache` where it holds them, and leaves what is fetched there.
    pub fn with_cache(mut self, cache: Option<super::StoreCache>) -> Self {
        self.cache = cache.filter(|_| self.etag.is_some());
        self
    }

    /// Bytes `from` of the source object: from the data cache when it holds them, else
    /// fetched (and cached behind).
    async fn fetch(&self, from: Range<u64>) -> Result<Bytes> {
        let (Some(cache), Some(etag)) = (self.cache.clone(), self.etag.clone()) else {
            return get_exact(&*self.up.store, &self.source_key, from, self.etag.as_deref()).await;
        };
        let (c, key, tag, size) = (cache.clone(), self.source_key.clone(), etag.clone(), self.source_size);
        let r = from.clone();
        if let Ok(Some(hit)) = tokio::task::spawn_blocking(move || c.read(&key, &tag, size, r.start, r.end)).await {
            return Ok(hit);
        }
        let body = get_exact(&*self.up.store, &self.source_key, from.clone(), Some(&etag)).await?;
        cache.write_behind(self.source_key.clone(), etag, self.source_size, from.start, body.clone()).await;
        Ok(body)
    }

    pub fn modified(&self) -> bool {
        self.modified
    }

    fn blocks(&self, r: &Range<u64>) -> Range<usize> {
        if r.start >= r.end {
            return 0..0;
        }
        (r.start / self.block) as usize..r.end.div_ceil(self.block) as usize
    }

    fn grow_to(&mut self, len: u64) {
        let n = len.div_ceil(self.block) as usize;
        if n > self.filled.len() {
            self.filled.resize(n, false);
            self.dirty.resize(n, false);
        }
    }

    fn take_space(&mut self, b: usize) -> Result<()> {
        if !self.filled[b] {
            self.area.charge(self.block)?;
            self.charged += self.block;
        }
        Ok(())
    }

    /// Gives back the space of a block that could not be filled after all.
    fn return_space(&mut self) {
        self.area.release(self.block);
        self.charged -= self.block;
    }

    /// Makes sure the temp file holds the truth for every block overlapping `r`.
    async fn fill(&mut self, r: Range<u64>) -> Result<()> {
        for b in self.blocks(&r) {
            if self.filled[b] {
                continue;
            }
            self.take_space(b)?;
            let from = b as u64 * self.block..((b as u64 + 1) * self.block).min(self.base_len);
            if from.start < from.end {
                let got = self.fetch(from.clone()).await;
                let stored = match got {
                    Ok(body) => self.file.write_all_at(&body, from.start).map_err(io),
                    Err(e) => Err(e),
                };
                if let Err(e) = stored {
                    tracing::debug!(key = %self.source_key, etag = ?self.etag, error = %e, "cannot stage the object");
                    self.return_space();
                    return Err(e);
                }
            }
            self.filled[b] = true;
        }
        Ok(())
    }

    pub async fn read(&mut self, offset: u64, len: u64) -> Result<Bytes> {
        let r = offset.min(self.size)..(offset + len).min(self.size);
        self.fill(r.clone()).await?;
        let mut buf = vec![0; (r.end - r.start) as usize];
        self.file.read_exact_at(&mut buf, r.start).map_err(io)?;
        Ok(Bytes::from(buf))
    }

    pub async fn write(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        let r = offset..offset + data.len() as u64;
        self.grow_to(r.end);
        // Blocks only partly overwritten need their old bytes first; blocks written
        // whole are marked filled only once nothing else can fail.
        let whole = |b: usize| b as u64 * self.block >= r.start && (b as u64 + 1) * self.block <= r.end;
        let (whole, partial): (Vec<usize>, Vec<usize>) = self.blocks(&r).partition(|b| whole(*b));
        for b in partial {
            self.fill(b as u64 * self.block..b as u64 * self.block + 1).await?;
        }
        let fresh: Vec<usize> = whole.iter().copied().filter(|b| !self.filled[*b]).collect();
        for (n, &b) in fresh.iter().enumerate() {
            if let Err(e) = self.take_space(b) {
                (0..n).for_each(|_| self.return_space());
                return Err(e);
            }
        }
        if let Err(e) = self.file.write_all_at(data, offset).map_err(io) {
            fresh.iter().for_each(|_| self.return_space());
            return Err(e);
        }
        for b in whole {
            self.filled[b] = true;
        }
        for b in self.blocks(&r) {
            self.dirty[b] = true;
        }
        self.size = self.size.max(r.end);
        self.modified = true;
        Ok(())
    }

    pub fn truncate(&mut self, len: u64) -> Result<()> {
        // S3 has no sparse objects: every byte up to `len` is uploaded, so a size the
        // staging area could never hold is refused now rather than failing at close.
        if len > self.size && len > self.area.disk.max() {
            return Err(BackendError::NoSpace);
        }
        self.file.set_len(len).map_err(io)?;
        // Bytes past `len` are zeros from now on, even if the file grows again.
        self.base_len = self.base_len.min(len);
        self.grow_to(len);
        if len < self.size {
            let tail = (len / self.block) as usize;
            if len % self.block != 0 {
                self.dirty[tail] = true;
            }
        }
        self.size = len;
        self.modified = true;
        Ok(())
    }

    /// The object `key` got a new ETag without a change of content (its metadata was
    /// replaced): keep filling from it.
    pub fn retag(&mut self, key: &str, etag: Option<String>) {
        if self.source_key == key {
            self.etag = etag;
        }
    }

    /// Fetches every block still in the object, so the staged file no longer depends
    /// on it (the object is about to move); every part is then sent, none copied.
    pub async fn detach(&mut self) -> Result<()> {
        self.fill(0..self.size).await?;
        self.etag = None;
        Ok(())
    }

    /// Copies the staged content into `out`: the bytes written here and those fetched
    /// from the object so far. Returns the ranges never fetched (zeros in the copy):
    /// they were not changed here, and came from a version that may be gone.
    pub fn save_to(&self, out: &mut File) -> std::io::Result<Vec<Range<u64>>> {
        use std::io::Write;
        let mut buf = vec![0u8; MIB as usize];
        let mut at = 0;
        while at < self.size {
            let n = (self.size - at).min(buf.len() as u64) as usize;
            self.file.read_exact_at(&mut buf[..n], at)?;
            out.write_all(&buf[..n])?;
            at += n as u64;
        }
        out.sync_all()?;
        let end = self.base_len.min(self.size);
        Ok((0..self.filled.len())
            .filter(|b| !self.filled[*b])
            .map(|b| b as u64 * self.block..((b as u64 + 1) * self.block).min(end))
            .filter(|r| r.start < r.end)
            .collect())
    }

    /// The staged file (a descriptor of its own) and the ranges it holds the truth for
    /// (written here or fetched): what the data cache may take after an upload.
    pub fn filled_copy(&self) -> Option<(File, Vec<Range<u64>>)> {
        let ranges = (0..self.filled.len())
            .filter(|b| self.filled[*b])
            .map(|b| b as u64 * self.block..((b as u64 + 1) * self.block).min(self.size))
            .filter(|r| r.start < r.end)
            .collect();
        Some((self.file.try_clone().ok()?, ranges))
    }

    /// Uploads the staged file as `key` if `cond` holds. Blocks not changed since
    /// staging are copied on the server; the handle stays usable and now tracks the
    /// new object.
    pub async fn upload(&mut self, key: &str, user: &UserMeta, cond: &Condition) -> Result<ObjectMeta> {
        let meta = if self.size <= self.block.max(self.up.cfg.part_size) {
            let body = self.read(0, self.size).await?;
            self.up.store.put_if(key, body, user, cond).await?
        } else {
            self.upload_multipart(key, user, cond).await?
        };
        self.source_key = key.to_string();
        (self.etag, self.base_len, self.source_size, self.modified) = (meta.etag.clone(), self.size, self.size, false);
        self.dirty.iter_mut().for_each(|d| *d = false);
        Ok(meta)
    }

    /// The ranges of the parts, each tagged with whether the server can copy it.
    fn plan(&self) -> Vec<(Range<u64>, bool)> {
        let blocks_per_part = (self.filled.len() as u64).div_ceil(MAX_PARTS).max(1);
        let part = self.block * blocks_per_part;
        (0..self.size.div_ceil(part))
            .map(|i| {
                let r = i * part..((i + 1) * part).min(self.size);
                let clean = !self.dirty[self.blocks(&r)].iter().any(|d| *d);
                let copyable = clean && r.end <= self.base_len && self.etag.is_some();
                (r, copyable)
            })
            .collect()
    }

    async fn upload_multipart(&mut self, key: &str, user: &UserMeta, cond: &Condition) -> Result<ObjectMeta> {
        let plan = self.plan();
        // Some servers (moto, s3s-fs) ignore x-amz-copy-source-if-match: check the source
        // is still the staged version before copying parts from it.
        if plan.iter().any(|(_, copyable)| *copyable) {
            let now = self.up.store.head(&self.source_key).await?.etag;
            if now != self.etag {
                return Err(BackendError::PreconditionFailed);
            }
        }
        // Parts to send are filled first, so the sends below only read the temp file.
        for (r, copyable) in &plan {
            if !copyable {
                self.fill(r.clone()).await?;
            }
        }
        let store = self.up.store.clone();
        let id = store.create_multipart_with(key, user).await?;
        let (this, id) = (&*self, id.as_str());
        let parts: Result<Vec<CompletedPart>> = futures::stream::iter(plan.into_iter().enumerate())
            .map(|(i, (r, copyable))| async move { this.send_part(key, id, i as i32 + 1, r, copyable).await })
            .buffered(self.up.cfg.max_in_flight.max(1))
            .try_collect()
            .await;
        let done = match parts {
            Ok(parts) => crate::backend::complete_if_unchanged(&*store, key, id, parts, cond).await,
            Err(e) => Err(e),
        };
        if done.is_err() && store.abort_multipart(key, id).await.is_err() {
            self.up.aborts.push(key.to_string(), id.to_string());
        }
        done
    }

    async fn send_part(
        &self,
        key: &str,
        id: &str,
        number: i32,
        r: Range<u64>,
        copyable: bool,
    ) -> Result<CompletedPart> {
        let store = &self.up.store;
        if copyable {
            let src = PartSource { key: self.source_key.clone(), range: r, if_match: self.etag.clone() };
            return store.upload_part_copy(key, id, number, &src).await;
        }
        let _reservation = self.up.budget.reserve(r.end - r.start).await;
        let mut buf = vec![0; (r.end - r.start) as usize];
        self.file.read_exact_at(&mut buf, r.start).map_err(io)?;
        store.upload_part(key, id, number, Bytes::from(buf)).await
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        self.area.release(self.charged);
    }
}

#[cfg(test)]
mod tests;
