//! Open files: create/open/read/flush/fsync/release. Every handle of one inode goes
//! through the inode's shared [`OpenFile`]: what one fd wrote, every fd reads.

use std::time::SystemTime;

use bytes::Bytes;

use super::handle::{FileHandle, Handle};
use super::inode::{Found, Inode};
use super::open_file::{FileRef, OpenFile};
use super::{Attr, Fs, FsError, FsResult, Kind};
use crate::backend::{BackendError, ObjectMeta};
use crate::data::Prefetcher;
use std::sync::Arc;

/// How much of a cached file (bytes from its start) the kernel is asked to read into its
/// page cache when a passthrough handle opens it: programs that open a cached file
/// mostly read it whole (datasets, media), and one readahead stream is slower than the
/// disk (see `Pinned::read_ahead`). Bounded, so that opening a huge file to read its
/// header costs at most this much local disk reading.
const PASSTHROUGH_READ_AHEAD: u64 = 1 << 30;

/// How long an open that conflicts with passthrough handles waits for them to be
/// released before it fails with ETXTBSY: long enough for the release of a handle just
/// closed (a task away), short enough not to stall a program beside a real reader.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// An object version: key, ETag, size.
type Version = (String, Option<String>, u64);

/// An open file handle and how the kernel should treat it.
#[derive(Clone, Copy, Debug)]
pub struct Opened {
    pub fh: u64,
    /// The kernel may keep the pages it cached for this file (same ETag as at the
    /// previous open: the object did not change).
    pub keep_cache: bool,
    /// Reads and writes bypass the kernel's page cache (FOPEN_DIRECT_IO).
    pub direct_io: bool,
    /// The kernel should read this handle from the cached file itself (FUSE
    /// passthrough): the adapter gets it from `passthrough_file`.
    pub passthrough: bool,
}

/// How a file is opened, decoded from open(2) flags by the adapter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenMode {
    pub write: bool,
    pub read: bool,
    pub truncate: bool,
    pub append: bool,
    /// O_EXCL: creating a name that exists fails with EEXIST.
    pub exclusive: bool,
}

impl OpenMode {
    pub fn from_flags(flags: i32) -> Self {
        let acc = flags & libc::O_ACCMODE;
        Self {
            write: acc == libc::O_WRONLY || acc == libc::O_RDWR,
            read: acc == libc::O_RDONLY || acc == libc::O_RDWR,
            truncate: flags & libc::O_TRUNC != 0,
            append: flags & libc::O_APPEND != 0,
            exclusive: flags & libc::O_EXCL != 0,
        }
    }

    /// Write-only handles bypass the page cache: the kernel then hands each write over
    /// without first copying it into cache pages nobody reads through this handle. (A
    /// shared writable mmap needs a readable fd, so it never meets this mode.) Other
    /// handles' cached pages are dropped when such a write lands (`Fs::write`).
    fn direct_io(&self) -> bool {
        self.write && !self.read
    }
}

impl Fs {
    /// creat(2): a new empty file open for writing only.
    pub async fn create(&self, parent: u64, name: &str, mode: u32, pid: u32) -> FsResult<(Attr, u64)> {
        let how = OpenMode { write: true, truncate: true, ..OpenMode::default() };
        self.create_with(parent, name, mode, how, pid).await.map(|(a, o)| (a, o.fh))
    }

    /// open(2) with O_CREAT of a name the kernel believes free. A file this mount
    /// knows under that name (being written here, or fresh in its cache) is opened as
    /// it is, as open(2) does with an existing file; with O_EXCL that is EEXIST. The
    /// returned entry counts as a lookup.
    pub async fn create_with(
        &self,
        parent: u64,
        name: &str,
        mode: u32,
        how: OpenMode,
        pid: u32,
    ) -> FsResult<(Attr, Opened)> {
        self.check_writable()?;
        Self::check_name(name)?;
        self.dir(parent)?;
        let found =
            Found { posix: Some(self.initial_posix(Kind::File, mode)), ..Found::file(0, SystemTime::now(), None) };
        // Decided under the inode table's lock: of two creates of one name at once, one
        // makes the file and the other opens it (never truncating what the first wrote).
        let made = {
            let mut table = self.inodes.lock().unwrap();
            let fresh = |c: &Inode| c.writing || c.kind == Kind::Dir || self.opts.meta.fresh(c.validated);
            match table.child(parent, name).filter(|c| fresh(c)) {
                Some(c) if c.kind == Kind::Dir => return Err(FsError::IsDir),
                Some(_) if how.exclusive => return Err(FsError::Exists),
                Some(c) if c.kind == Kind::File => Err(c.ino),
                _ => {
                    let ino = table.upsert(parent, name, found.clone());
                    let i = table.get_mut(ino).expect("just inserted");
                    (i.size, i.writing) = (0, true);
                    i.lookups += 1;
                    // A new state is born created: an open of the name that comes next
                    // shares it and finds nothing to truncate.
                    let key = i.key();
                    let fresh_state =
                        || OpenFile { created: true, truncated: true, exclusive: how.exclusive, ..OpenFile::new(key) };
                    Ok((ino, self.files.get_or_make(ino, fresh_state)))
                }
            }
        };
        let (ino, (file, made_now)) = match made {
            Ok(made) => made,
            Err(existing) => {
                // Never passthrough: the kernel answers a create as a cached-mode open.
                let opened = self.open_with(existing, how, pid, false).await?;
                self.inodes.lock().unwrap().add_lookup(existing);
                return Ok((self.attr_of(&self.inode(existing)?), opened));
            }
        };
        self.negative.remove(parent, name);
        self.listings.upsert(parent, name, found);
        self.touch_dir(parent);
        let i = self.inode(ino)?;
        if !made_now {
            // The name's inode had open handles: they now see the new, empty file.
            let mut s = file.lock().await;
            s.check_passthrough(true)?;
            self.truncate_state(ino, &mut s, 0).await?;
            (s.created, s.unlinked, s.broken, s.exclusive) = (true, false, false, how.exclusive);
        }
        let opened = self.attach(&i, file, how, pid, false).await?;
        Ok((self.attr_of(&self.inode(ino)?), opened))
    }

    /// open(2) of an existing file.
    pub async fn open(&self, ino: u64, how: OpenMode, pid: u32) -> FsResult<Opened> {
        self.open_with(ino, how, pid, true).await
    }

    /// `open`; `passthrough`: the answer may hand the kernel a cached file to read. An
    /// open the kernel could not serve beside passthrough handles (ETXTBSY) is tried
    /// again once they are released: the kernel tells us of a close only after
    /// close(2) has returned, so a program that closes a file and opens it for writing
    /// at once would otherwise meet its own reader.
    async fn open_with(&self, ino: u64, how: OpenMode, pid: u32, passthrough: bool) -> FsResult<Opened> {
        match self.open_once(ino, how, pid, passthrough).await {
            Err(FsError::TextBusy) if self.passthrough_released(ino).await => {
                self.open_once(ino, how, pid, passthrough).await
            }
            r => r,
        }
    }

    /// Waits up to [`RELEASE_WAIT`] for the passthrough handles of `ino` to be released;
    /// true when they were.
    async fn passthrough_released(&self, ino: u64) -> bool {
        let deadline = std::time::Instant::now() + RELEASE_WAIT;
        loop {
            let open = match self.files.get(ino) {
                Some(f) => f.lock().await.passthrough.is_some(),
                None => false,
            };
            if !open {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    async fn open_once(&self, ino: u64, how: OpenMode, pid: u32, passthrough: bool) -> FsResult<Opened> {
        let i = self.inode(ino)?;
        if i.kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        if how.write {
            self.check_writable()?;
        }
        let file = self.files.get_or_create(ino, || OpenFile::new(i.key()));
        {
            let mut s = file.lock().await;
            s.check_passthrough(how.write)?;
            // Nothing of this file is open for writing or pending here: the store holds
            // the truth, and this open sees its current version (close-to-open).
            if s.writers == 0 && !s.pending() {
                let current = self.current_version(&i, how.write).await?;
                s.rebase(current);
            }
            if how.truncate && how.write {
                self.truncate_state(ino, &mut s, 0).await?;
            }
        }
        self.attach(&i, file, how, pid, passthrough).await
    }

    /// What the store holds for `i` now. A writer HEADs (it needs the object's
    /// metadata, to keep mode, owner and other headers on an append or overwrite); a
    /// reader revalidates through the attribute cache.
    async fn current_version(&self, i: &Inode, write: bool) -> FsResult<Option<ObjectMeta>> {
        if write {
            return match self.store.head(&i.key()).await {
                Ok(m) => {
                    self.learn(&m);
                    if let Some(cur) = self.inodes.lock().unwrap().get_mut(i.ino) {
                        cur.posix = m.user.as_ref().map(crate::fs::Posix::from_user).unwrap_or_default();
                        (cur.size, cur.etag, cur.mtime) = (m.size, m.etag.clone(), m.last_modified);
                    }
                    Ok(Some(m))
                }
                Err(BackendError::NotFound) => Ok(None),
                Err(e) => Err(e.into()),
            };
        }
        self.getattr(i.ino).await?;
        let i = self.inode(i.ino)?;
        Ok(Some(ObjectMeta { key: i.key(), size: i.size, last_modified: i.mtime, etag: i.etag.clone(), user: None }))
    }

    /// Registers a new handle of `i` on its shared state.
    async fn attach(&self, i: &Inode, file: FileRef, how: OpenMode, pid: u32, may_pass: bool) -> FsResult<Opened> {
        let direct_io = how.direct_io();
        let pinned = match may_pass {
            true => self.pin_cached(&file, how).await,
            false => None,
        };
        let (epoch, local, reader, passthrough) = {
            let mut s = file.lock().await;
            // Still the version pinned, and still no other kind of handle open.
            let version = s.base.as_ref().map(|b| (b.key.clone(), b.etag.clone(), b.size));
            let passthrough = pinned
                .filter(|(v, p)| {
                    Some(v) == version.as_ref()
                        && !s.is_local()
                        && s.plain_handles == 0
                        && s.passthrough.as_ref().is_none_or(|(q, _)| q.id() == p.id())
                })
                .map(|(_, p)| p);
            if passthrough.is_none() {
                // The kernel would refuse this open beside the passthrough handles.
                s.check_passthrough(true)?;
            }
            s.add_handle(passthrough.as_ref());
            if how.write {
                s.writers += 1;
            }
            if !direct_io {
                s.cached_handles += 1;
            }
            let reader = match (&s.base, how.read) {
                (Some(b), true) => Some(self.reader_of(b)),
                _ => None,
            };
            (s.epoch, s.is_local(), reader, passthrough)
        };
        if self.opts.data_cache.is_some() && how.read && !how.write {
            let m = &crate::metrics::get().data_cache;
            match &passthrough {
                Some(_) => tracing::debug!(ino = i.ino, "open: passthrough from the data cache"),
                None => {
                    m.daemon_opens.inc();
                    tracing::debug!(ino = i.ino, "open: reads served by the daemon");
                }
            }
        }
        // The kernel keeps its cached pages only for an unchanged object read as it is.
        // A passthrough handle's reads fill no page of the FUSE inode, and the kernel
        // fails such an open with EIO when FOPEN_KEEP_CACHE comes with passthrough
        // (seen on Linux 6.18: tests/data_cache.rs).
        let keep_cache = {
            let mut table = self.inodes.lock().unwrap();
            let cur = table.get_mut(i.ino).ok_or(FsError::NotFound)?;
            let plain = !how.write && !local && passthrough.is_none();
            let keep = plain && cur.etag.is_some() && cur.etag == cur.cached_etag;
            cur.cached_etag = if plain { cur.etag.clone() } else { None };
            keep
        };
        let is_passthrough = passthrough.is_some();
        let handle =
            FileHandle { file, mode: how, direct_io, opener_pid: pid, wrote: false, epoch, reader, passthrough };
        let fh = self.add_handle(i.ino, Handle::File(Box::new(handle)));
        Ok(Opened { fh, keep_cache, direct_io, passthrough: is_passthrough })
    }

    /// The cached file the kernel may read for this open itself (FUSE passthrough),
    /// pinned, with the version it holds: a read-only open of an object every block of
    /// which is cached, while the inode has no handle served by this process (the
    /// kernel allows no mix) and passthrough was negotiated at mount.
    async fn pin_cached(&self, file: &FileRef, how: OpenMode) -> Option<(Version, Arc<crate::data::Pinned>)> {
        let cache = self.opts.data_cache.clone()?;
        if !how.read || how.write || !self.passthrough.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let (key, etag, size) = {
            let s = file.lock().await;
            if s.is_local() || s.plain_handles > 0 {
                return None;
            }
            let b = s.base.as_ref()?;
            let v = (b.key.clone(), b.etag.clone(), b.size);
            // The file the kernel already reads for this inode, while it is still the
            // version (after a rename too: the cache knows it under the old key).
            if let Some((p, _)) = &s.passthrough {
                return (Some(p.version().0) == b.etag.as_deref() && p.version().1 == b.size).then(|| (v, p.clone()));
            }
            (b.key.clone(), b.etag.clone()?, b.size)
        };
        let v = (key.clone(), Some(etag.clone()), size);
        let pin = Arc::new(tokio::task::spawn_blocking(move || cache.open_whole(&key, &etag, size)).await.ok()??);
        // The first opener of a cached file starts reading it from disk at full depth.
        let ahead = pin.clone();
        tokio::task::spawn_blocking(move || ahead.read_ahead(PASSTHROUGH_READ_AHEAD));
        Some((v, pin))
    }

    /// The cached file of passthrough handle `fh` (a descriptor of its own) and the id
    /// that tells whether two handles share it.
    pub async fn passthrough_file(&self, fh: u64) -> Option<(u64, std::fs::File)> {
        let h = self.handle(fh).ok()?;
        let h = h.lock().await;
        let Handle::File(f) = &h.handle else { return None };
        let pin = f.passthrough.as_ref()?;
        Some((pin.id(), pin.file().try_clone().ok()?))
    }

    /// The adapter answered `fh` without passthrough after all (it could not register
    /// the file with the kernel, or not get a descriptor of it): its reads come to this
    /// process. `disable`: the kernel refused, so passthrough is off for the mount.
    pub async fn passthrough_refused(&self, fh: u64, disable: bool) {
        if disable {
            self.passthrough.store(false, std::sync::atomic::Ordering::Relaxed);
        }
        let Ok(h) = self.handle(fh) else { return };
        let mut h = h.lock().await;
        let Handle::File(f) = &mut h.handle else { return };
        if f.passthrough.take().is_some() {
            let mut s = f.file.lock().await;
            s.remove_handle(true);
            s.add_handle(None);
        }
    }

    /// Lets read-only opens of wholly cached files be served by the kernel from the
    /// cache (FUSE passthrough): called by the adapter once the kernel agreed to it.
    pub fn enable_passthrough(&self) {
        self.passthrough.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn reader_of(&self, b: &ObjectMeta) -> Box<Prefetcher> {
        let cfg = self.opts.prefetch.clone();
        let p = Prefetcher::new(self.store.clone(), b.key.clone(), b.size, b.etag.clone(), cfg, self.budget.clone());
        Box::new(p.with_cache(self.opts.data_cache.clone()))
    }

    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        let h = self.handle(fh)?;
        let mut h = h.lock().await;
        let ino = h.ino;
        let Handle::File(fh) = &mut h.handle else {
            return Err(FsError::IsDir);
        };
        let file = fh.file.clone();
        let mut s = file.lock().await;
        if s.is_local() {
            return self.read_local(ino, &mut s, offset, size as u64).await;
        }
        self.follow_base(fh, &s);
        drop(s); // the object's bytes come without holding up writers
        match &mut fh.reader {
            Some(r) => Ok(r.read(offset, size as u64).await?),
            None => Ok(Bytes::new()), // no object behind the file (unlinked, never written)
        }
    }

    /// A handle whose epoch is the state's follows the state's base: a commit made on
    /// this mount (through any handle) is what it reads next, as on a local disk.
    fn follow_base(&self, fh: &mut FileHandle, s: &OpenFile) {
        let Some(b) = s.base.as_ref().filter(|_| fh.epoch == s.epoch) else { return };
        let current = fh.reader.as_ref().map(|r| r.version());
        if current != Some((b.key.as_str(), b.etag.as_deref())) {
            fh.reader = Some(self.reader_of(b));
        }
    }

    /// A read of content that lives here: the staged file, the bytes a streaming upload
    /// still holds in memory, or an empty new file. A read of bytes already sent in a
    /// part turns the stream into a staged file (see `staged`).
    async fn read_local(&self, ino: u64, s: &mut OpenFile, offset: u64, len: u64) -> FsResult<Bytes> {
        if let Some(up) = s.upload.as_ref().filter(|_| s.staged.is_none()) {
            if let Some(bytes) = up.read_buffered(offset, len) {
                return Ok(bytes);
            }
        }
        if s.staged.is_none() && s.upload.is_none() {
            return Ok(Bytes::new()); // created or truncated, nothing written yet
        }
        Ok(self.staged(ino, s).await?.read(offset, len).await?)
    }

    /// A read served on the calling thread when its bytes are already fetched (no task
    /// hop, no waiting); `None` when it must go through `read`.
    pub fn try_read_now(&self, fh: u64, offset: u64, size: u32) -> Option<FsResult<Bytes>> {
        let h = self.handle(fh).ok()?;
        let mut h = h.try_lock().ok()?;
        let Handle::File(fh) = &mut h.handle else { return None };
        let file = fh.file.clone();
        let s = file.try_lock().ok()?;
        if s.is_local() {
            return None;
        }
        self.follow_base(fh, &s);
        drop(s);
        let r = fh.reader.as_mut()?.try_read(offset, size as u64).map(|r| r.map_err(FsError::from));
        self.metrics.prefetch(r.is_some());
        r
    }

    /// close(2): by the process that opened a handle it wrote through, the file's
    /// content becomes the object now, and a failure is returned here (EIO) rather than
    /// lost. Closes that carry no data (shells dup2 then close before writing) change
    /// nothing.
    pub async fn flush(&self, fh: u64, pid: u32) -> FsResult<()> {
        let h = self.handle(fh)?;
        let mut h = h.lock().await;
        let ino = h.ino;
        let file = match &mut h.handle {
            Handle::File(f) if f.wrote && f.opener_pid == pid => {
                f.wrote = false;
                f.file.clone()
            }
            _ => return Ok(()),
        };
        drop(h);
        self.commit(ino, &file).await
    }

    /// fsync(2): commit now.
    pub async fn fsync(&self, fh: u64) -> FsResult<()> {
        let (ino, file) = self.file_of(fh).await?;
        self.commit(ino, &file).await
    }

    /// The last close of a handle. The last writer's release commits whatever is still
    /// pending; if that fails, the data is dropped (the store keeps the old object)
    /// and the error is returned.
    pub async fn release(&self, fh: u64) -> FsResult<()> {
        let result = self.release_file(fh).await;
        self.remove_handle(fh); // last: the inode stays known while the commit updates it
        result
    }

    async fn release_file(&self, fh: u64) -> FsResult<()> {
        let h = self.handle(fh)?;
        let (ino, file, mode, direct_io, passthrough) = {
            let h = h.lock().await;
            match &h.handle {
                Handle::File(f) => (h.ino, f.file.clone(), f.mode, f.direct_io, f.passthrough.is_some()),
                Handle::Dir(_) => return Ok(()),
            }
        };
        let last_writer = {
            let mut s = file.lock().await;
            s.remove_handle(passthrough);
            if !direct_io {
                s.cached_handles = s.cached_handles.saturating_sub(1);
            }
            if mode.write {
                s.writers = s.writers.saturating_sub(1);
            }
            // A file created through a read-only handle (open(O_CREAT|O_RDONLY), as
            // `touch`-like programs do) still has to become an object.
            s.writers == 0 && (mode.write || s.must_put())
        };
        if !last_writer {
            return Ok(());
        }
        let result = self.commit(ino, &file).await;
        let mut s = file.lock().await;
        if s.writers == 0 {
            s.broken = false; // the loss was reported; a later writer starts afresh
            if result.is_err() {
                // The last chance is gone: the store keeps the old object (or none). A
                // loss already reported (a failed stream, a conflict whose data was
                // kept) has nothing left here to drop.
                if s.staged.is_some() || s.upload.is_some() {
                    tracing::error!(ino, key = %s.key, "data of a closed file could not be uploaded and is dropped");
                }
                let created = s.created;
                (s.staged, s.upload, s.created, s.truncated) = (None, None, false, false);
                drop(s);
                self.upload_failed(ino, created);
            }
        }
        result
    }

    /// The inode and shared state of an open file handle.
    pub(super) async fn file_of(&self, fh: u64) -> FsResult<(u64, FileRef)> {
        let h = self.handle(fh)?;
        let h = h.lock().await;
        match &h.handle {
            Handle::File(f) => Ok((h.ino, f.file.clone())),
            Handle::Dir(_) => Err(FsError::IsDir),
        }
    }
}
