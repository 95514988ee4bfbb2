//! Open files: create/open/read/write/flush/fsync/release and truncate.

use std::time::SystemTime;

use bytes::Bytes;

use super::handle::{Handle, Writer};
use super::inode::{Found, Inode};
use super::{Attr, Fs, FsError, FsResult, Kind};
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
    pub async fn create(&self, parent: u64, name: &str, mode: u32, pid: u32) -> FsResult<(Attr, u64)> {
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
        let found =
            Found { posix: Some(self.initial_posix(Kind::File, mode)), ..Found::file(0, SystemTime::now(), None) };
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
        let writer = Writer {
            key,
            base: None,
            truncated: true,
            created: true,
            upload: None,
            staged: None,
            unlinked: false,
            broken: false,
            opener_pid: pid,
        };
        let fh = self.add_handle(ino, Handle::Write(Box::new(writer)));
        self.writers.add(ino, fh);
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
            return self.open_write(i, mode, pid).await.map(|fh| Opened { fh, keep_cache: false });
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

    async fn open_write(&self, i: Inode, mode: OpenMode, pid: u32) -> FsResult<u64> {
        self.check_writable()?;
        // What other handles wrote lands first, so this one builds on it (and a shell's
        // `>>` right after a close whose release is still in flight sees the data).
        for other in self.writers.of(i.ino) {
            match self.commit(other).await {
                Ok(()) | Err(FsError::BadHandle) => {} // released meanwhile
                Err(e) => return Err(e),
            }
        }
        // The object as it is now, with its metadata: an append or an overwrite keeps
        // the mode, owner and other x-amz-meta headers, and stages the right version.
        let current = match self.store.head(&i.key()).await {
            Ok(m) => Some(m),
            Err(crate::backend::BackendError::NotFound) => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(m) = &current {
            self.learn(m);
            if let Some(cur) = self.inodes.lock().unwrap().get_mut(i.ino) {
                cur.posix = m.user.as_ref().map(crate::fs::Posix::from_user).unwrap_or_default();
                (cur.size, cur.etag, cur.mtime) = (m.size, m.etag.clone(), m.last_modified);
            }
        }
        let i = self.inode(i.ino)?;
        let base = if mode.truncate { None } else { current };
        let writer = Writer {
            key: i.key(),
            base,
            truncated: mode.truncate,
            created: false,
            upload: None,
            staged: None,
            unlinked: false,
            broken: false,
            opener_pid: pid,
        };
        if mode.truncate {
            let mut table = self.inodes.lock().unwrap();
            if let Some(cur) = table.get_mut(i.ino) {
                (cur.size, cur.writing) = (0, true);
            }
        }
        let fh = self.add_handle(i.ino, Handle::Write(Box::new(writer)));
        self.writers.add(i.ino, fh);
        Ok(fh)
    }

    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        let h = self.handle(fh)?;
        let mut h = h.lock().await;
        let ino = h.ino;
        match &mut h.handle {
            Handle::Read(p) => Ok(p.read(offset, size as u64).await?),
            // O_RDWR: reading back what this handle wrote needs the staged copy.
            Handle::Write(w) => Ok(self.staged(ino, w).await?.read(offset, size as u64).await?),
            Handle::Dir(_) => Err(FsError::IsDir),
        }
    }

    /// A read served on the calling thread when its bytes are already fetched (no task
    /// hop, no waiting); `None` when it must go through `read`.
    pub fn try_read_now(&self, fh: u64, offset: u64, size: u32) -> Option<FsResult<Bytes>> {
        let h = self.handle(fh).ok()?;
        let mut h = h.try_lock().ok()?;
        let Handle::Read(p) = &mut h.handle else { return None };
        let r = p.try_read(offset, size as u64).map(|r| r.map_err(FsError::from));
        crate::metrics::get().prefetch(r.is_some());
        r
    }

    /// close(2) by the opening process: data written so far becomes the object now,
    /// and a failure is returned here (EIO) rather than lost. Closes that carry no data
    /// (shells dup2 then close before writing) change nothing.
    pub async fn flush(&self, fh: u64, pid: u32) -> FsResult<()> {
        let h = self.handle(fh)?;
        let h = h.lock().await;
        match &h.handle {
            Handle::Write(w) if w.has_data() && w.opener_pid == pid => {}
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
        if let Ok(h) = self.handle(fh) {
            let ino = h.lock().await.ino;
            self.writers.remove(ino, fh);
            if result.is_err() {
                // The last chance is gone: the store keeps the old object (or none).
                tracing::error!(ino, "data of a closed file could not be uploaded and is dropped");
                self.upload_failed(ino, false);
            }
        }
        self.remove_handle(fh);
        result
    }
}
