//! Open files: create/open/read/write/flush/fsync/release and truncate.

use std::time::{Instant, SystemTime};

use bytes::Bytes;

use super::handle::{Handle, Writer};
use super::inode::{Found, Inode};
use super::{Attr, Fs, FsError, FsResult, Kind};
use crate::backend::ObjectMeta;
use crate::data::Prefetcher;

/// An open file handle, and whether the kernel may keep the pages it cached for this
/// file (same ETag as at the previous open: the object did not change).
#[derive(Clone, Copy, Debug)]
pub struct Opened {
    pub fh: u64,
    pub keep_cache: bool,
}

/// How a file is opened, decoded from open(2) flags by the adapter.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenMode {
    pub write: bool,
    pub read: bool,
    pub truncate: bool,
    pub append: bool,
}

impl OpenMode {
    pub fn from_flags(flags: i32) -> Self {
        let acc = flags & libc::O_ACCMODE;
        Self {
            write: acc == libc::O_WRONLY || acc == libc::O_RDWR,
            read: acc == libc::O_RDONLY || acc == libc::O_RDWR,
            truncate: flags & libc::O_TRUNC != 0,
            append: flags & libc::O_APPEND != 0,
        }
    }
}

impl Fs {
    pub async fn create(&self, parent: u64, name: &str, pid: u32) -> FsResult<(Attr, u64)> {
        self.check_writable()?;
        Self::check_name(name)?;
        self.dir(parent)?;
        if let Some(existing) = self.cached_child(parent, name) {
            if existing.kind == Kind::Dir {
                return Err(FsError::IsDir);
            }
            if existing.writing {
                return Err(FsError::Busy("the file is already open for writing"));
            }
        }
        self.negative.remove(parent, name);
        let found = Found { kind: Kind::File, size: 0, mtime: SystemTime::now(), etag: None };
        self.listings.upsert(parent, name, found.clone());
        let ino = {
            let mut table = self.inodes.lock().unwrap();
            let ino = table.upsert(parent, name, found);
            let i = table.get_mut(ino).expect("just inserted");
            (i.size, i.writing) = (0, true);
            i.lookups += 1;
            ino
        };
        let key = self.inode(ino)?.key();
        let writer =
            Writer { key, base_size: 0, truncated: true, created: true, upload: None, done: false, opener_pid: pid };
        let fh = self.add_handle(ino, Handle::Write(Box::new(writer)));
        self.writers.lock().unwrap().insert(ino, fh);
        Ok((self.attr_of(&self.inode(ino)?), fh))
    }

    pub async fn open(&self, ino: u64, mode: OpenMode, pid: u32) -> FsResult<Opened> {
        let i = self.inode(ino)?;
        if i.kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        if mode.write {
            if let Some(cur) = self.inodes.lock().unwrap().get_mut(ino) {
                cur.cached_etag = None;
            }
            return self.open_write(i, mode, pid).map(|fh| Opened { fh, keep_cache: false });
        }
        // A file created or truncated here and not yet written reads as empty
        // (`touch f; cat f` before the empty object lands at release).
        let size = match (i.writing, i.size) {
            (true, 0) => 0,
            (true, _) => return Err(FsError::Busy("the file is being written and not yet uploaded")),
            // Revalidate so the reader sees the current object, and pin its ETag.
            (false, _) => self.getattr(ino).await?.size,
        };
        let (key, etag, keep_cache) = {
            let mut table = self.inodes.lock().unwrap();
            let i = table.get_mut(ino).ok_or(FsError::NotFound)?;
            let keep = i.etag.is_some() && i.etag == i.cached_etag;
            i.cached_etag = i.etag.clone();
            (i.key(), i.etag.clone(), keep)
        };
        let reader =
            Prefetcher::new(self.store.clone(), key, size, etag, self.opts.prefetch.clone(), self.budget.clone());
        let fh = self.add_handle(ino, Handle::Read(Box::new(reader)));
        Ok(Opened { fh, keep_cache })
    }

    fn open_write(&self, i: Inode, mode: OpenMode, pid: u32) -> FsResult<u64> {
        self.check_writable()?;
        if i.writing || self.writers.lock().unwrap().contains_key(&i.ino) {
            return Err(FsError::Busy("the file is already open for writing"));
        }
        let writer = Writer {
            key: i.key(),
            base_size: i.size,
            truncated: mode.truncate,
            created: false,
            upload: None,
            done: false,
            opener_pid: pid,
        };
        if mode.truncate {
            let mut table = self.inodes.lock().unwrap();
            if let Some(cur) = table.get_mut(i.ino) {
                (cur.size, cur.writing) = (0, true);
            }
        }
        let fh = self.add_handle(i.ino, Handle::Write(Box::new(writer)));
        self.writers.lock().unwrap().insert(i.ino, fh);
        Ok(fh)
    }

    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        let h = self.handle(fh)?;
        let mut h = h.lock().await;
        match &mut h.handle {
            Handle::Read(p) => Ok(p.read(offset, size as u64).await?),
            Handle::Write(_) => Err(FsError::Unsupported("reading a file while it is being written")),
            Handle::Dir(_) => Err(FsError::IsDir),
        }
    }

    /// A read served on the calling thread when its bytes are already fetched (no task
    /// hop, no waiting); `None` when it must go through `read`.
    pub fn try_read_now(&self, fh: u64, offset: u64, size: u32) -> Option<FsResult<Bytes>> {
        let h = self.handle(fh).ok()?;
        let mut h = h.try_lock().ok()?;
        let Handle::Read(p) = &mut h.handle else { return None };
        p.try_read(offset, size as u64).map(|r| r.map_err(FsError::from))
    }

    pub async fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        let h = self.handle(fh)?;
        let mut h = h.lock().await;
        let ino = h.ino;
        let Handle::Write(w) = &mut h.handle else {
            return Err(FsError::BadHandle);
        };
        if w.done {
            return Err(FsError::Unsupported("writing after the file was flushed (close of a dup or fsync)"));
        }
        if w.upload.is_none() {
            if w.base_size > 0 && !w.truncated {
                return Err(FsError::Unsupported("modifying an existing file without O_TRUNC"));
            }
            w.upload = Some(self.uploader.start(w.key.clone()));
            self.writers.lock().unwrap().insert(ino, fh);
            self.mark_writing(ino, 0);
        }
        let up = w.upload.as_mut().expect("set above");
        if offset != up.written() {
            return Err(FsError::Unsupported("non-sequential write"));
        }
        if let Err(e) = up.write(data).await {
            return Err(FsError::UploadFailed(e));
        }
        self.mark_writing(ino, up.written());
        Ok(data.len() as u32)
    }

    fn mark_writing(&self, ino: u64, size: u64) {
        if let Some(i) = self.inodes.lock().unwrap().get_mut(ino) {
            (i.size, i.mtime, i.writing) = (size, SystemTime::now(), true);
        }
    }

    /// close(2) by the opening process: data written so far becomes the object now,
    /// and a failure is returned here (EIO) rather than lost. Closes that carry no data
    /// (shells dup2 then close before writing) change nothing.
    pub async fn flush(&self, fh: u64, pid: u32) -> FsResult<()> {
        let h = self.handle(fh)?;
        let h = h.lock().await;
        match &h.handle {
            Handle::Write(w) if w.upload.is_some() && w.opener_pid == pid => {}
            _ => return Ok(()),
        }
        drop(h);
        self.commit(fh).await
    }

    /// fsync(2): commit now.
    pub async fn fsync(&self, fh: u64) -> FsResult<()> {
        self.commit(fh).await
    }

    /// Last close: commit whatever is pending.
    pub async fn release(&self, fh: u64) -> FsResult<()> {
        let result = self.commit(fh).await;
        self.remove_handle(fh);
        result
    }

    /// Makes the writer's data the object. Nothing written: only a created or truncated
    /// file needs an (empty) object, and later writes may still start afresh.
    async fn commit(&self, fh: u64) -> FsResult<()> {
        let h = self.handle(fh)?;
        let mut h = h.lock().await;
        let ino = h.ino;
        let Handle::Write(w) = &mut h.handle else {
            return Ok(());
        };
        if w.done {
            return Ok(());
        }
        let result = match w.upload.take() {
            Some(up) => {
                w.done = true;
                up.finish().await.map(Some)
            }
            None if w.must_put() => {
                w.base_size = 0; // the object is now empty: writing from 0 may follow
                self.store.put(&w.key, Bytes::new()).await.map(Some)
            }
            None => Ok(None),
        };
        (w.created, w.truncated) = (false, false);
        self.writers.lock().unwrap().remove(&ino);
        match result {
            Ok(meta) => {
                self.committed(ino, meta);
                Ok(())
            }
            Err(e) => {
                tracing::error!(key = %w.key, error = %e, "upload failed; the object was not changed");
                self.upload_failed(ino, w.created);
                Err(FsError::UploadFailed(e))
            }
        }
    }

    fn committed(&self, ino: u64, meta: Option<ObjectMeta>) {
        let mut table = self.inodes.lock().unwrap();
        let Some(i) = table.get_mut(ino) else { return };
        i.writing = false;
        if let Some(m) = meta {
            (i.size, i.mtime, i.etag, i.validated) = (m.size, m.last_modified, m.etag, Instant::now());
            let found = Found { kind: Kind::File, size: i.size, mtime: i.mtime, etag: i.etag.clone() };
            self.listings.upsert(i.parent, &i.name, found);
        }
    }

    /// The store still holds the old object (or none): forget what we showed locally.
    fn upload_failed(&self, ino: u64, created: bool) {
        let mut table = self.inodes.lock().unwrap();
        let Some(i) = table.get_mut(ino) else { return };
        i.writing = false;
        // Stale at once, so the next stat asks the store (shortly after boot, within the TTL).
        i.validated = Instant::now().checked_sub(std::time::Duration::from_secs(3600)).unwrap_or(i.validated);
        if created {
            let (parent, name) = (i.parent, i.name.clone());
            drop(table);
            self.forget_name(parent, &name);
        }
    }

    pub(super) async fn truncate(&self, i: &Inode, size: u64) -> FsResult<()> {
        if i.kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        let writer = self.writers.lock().unwrap().get(&i.ino).copied();
        if let Some(fh) = writer {
            let h = self.handle(fh)?;
            let mut h = h.lock().await;
            if let Handle::Write(w) = &mut h.handle {
                let written = w.upload.as_ref().map_or(0, |u| u.written());
                if size == written && (size > 0 || w.upload.is_some() || w.truncated) {
                    return Ok(());
                }
                if size == 0 && w.upload.is_none() {
                    w.truncated = true;
                    self.mark_writing(i.ino, 0);
                    return Ok(());
                }
            }
            return Err(FsError::Unsupported("truncating a file being written to a new size"));
        }
        if size == i.size {
            return Ok(());
        }
        if size != 0 {
            return Err(FsError::Unsupported("truncate to a non-zero size"));
        }
        let meta = self.store.put(&i.key(), Bytes::new()).await?;
        self.committed(i.ino, Some(meta));
        Ok(())
    }

    /// Finishes every open upload and retries failed aborts (SIGTERM, unmount).
    /// Returns how many uploads failed.
    pub async fn drain(&self) -> usize {
        let fhs: Vec<u64> = self.writers.lock().unwrap().values().copied().collect();
        let mut failed = 0;
        for fh in fhs {
            if self.commit(fh).await.is_err() {
                failed += 1;
            }
        }
        let orphans = self.uploader.aborts.retry(&self.store).await;
        if orphans > 0 {
            tracing::error!(orphans, "multipart uploads could not be aborted; the server keeps their parts");
        }
        failed
    }
}
