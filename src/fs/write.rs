//! The write side of open files: streaming or staged writes, commit (close/fsync),
//! truncate, and draining at unmount.

use std::time::{Instant, SystemTime};

use bytes::Bytes;

use super::handle::{Handle, Writer};
use super::inode::Inode;
use super::{Fs, FsError, FsResult, Kind, Posix};
use crate::backend::{BackendError, ObjectMeta};
use crate::data::Staged;

impl Fs {
    pub async fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        let h = self.handle(fh)?;
        let mut h = h.lock().await;
        let ino = h.ino;
        let Handle::Write(w) = &mut h.handle else {
            return Err(FsError::BadHandle);
        };
        if w.broken {
            return Err(FsError::UploadFailed(BackendError::Other("an earlier upload of this file failed".into())));
        }
        if w.can_stream(offset) {
            let key = w.key.clone();
            if w.upload.is_none() {
                let user = self.upload_meta(ino, w.base.as_ref().and_then(|b| b.user.as_ref()));
                w.upload = Some(self.uploader.start(key, user));
            }
            let up = w.upload.as_mut().expect("set above");
            up.write(data).await.map_err(FsError::UploadFailed)?;
        } else {
            self.staged(ino, w).await?.write(offset, data).await?;
        }
        self.writers.add(ino, fh);
        self.mark_writing(ino, w.size());
        Ok(data.len() as u32)
    }

    /// A sequential write that fits in the part being filled, done on the caller's
    /// thread: no copy of the data for a task, no task hop. `None` when the write
    /// must go the async way (handle busy, a part to send, staging, an error).
    pub fn try_write_now(&self, fh: u64, offset: u64, data: &[u8]) -> Option<u32> {
        let h = self.handle(fh).ok()?;
        let mut h = h.try_lock().ok()?;
        let ino = h.ino;
        let Handle::Write(w) = &mut h.handle else {
            return None;
        };
        if w.broken || !w.can_stream(offset) || !w.upload.as_mut()?.try_append(data) {
            return None;
        }
        self.writers.add(ino, fh);
        self.mark_writing(ino, w.size());
        Some(data.len() as u32)
    }

    /// copy_file_range(2). A whole file copied into an empty one (what `cp` asks for)
    /// is a server-side CopyObject; anything else is refused with EOPNOTSUPP, and the
    /// kernel or the program falls back to read/write.
    pub async fn copy_file_range(&self, fh_in: u64, off_in: u64, fh_out: u64, off_out: u64, len: u64) -> FsResult<u32> {
        let src = self.inode(self.handle(fh_in)?.lock().await.ino)?;
        if src.writing || src.kind != Kind::File {
            return Err(FsError::Unsupported("copying a file being written"));
        }
        if off_in >= src.size {
            return Ok(0);
        }
        let whole = off_in == 0 && off_out == 0 && len >= src.size && src.size <= u32::MAX as u64;
        let h = self.handle(fh_out)?;
        let mut h = h.lock().await;
        let ino = h.ino;
        let Handle::Write(w) = &mut h.handle else {
            return Err(FsError::BadHandle);
        };
        if !whole || !w.can_stream(0) || w.upload.is_some() {
            return Err(FsError::Unsupported("copy_file_range of part of a file"));
        }
        self.store.copy(&src.key(), &w.key).await?;
        let meta = self.store.head(&w.key).await?;
        let copied = meta.size as u32;
        (w.created, w.truncated, w.base) = (false, false, Some(meta.clone()));
        self.committed(ino, Some(meta));
        Ok(copied)
    }

    /// The writer's staged file, created on first need. Bytes the streaming upload
    /// still holds in memory move into it; if parts were already sent, the data
    /// written so far is committed first (documented: not atomic) and staged from there.
    pub(super) async fn staged<'w>(&self, ino: u64, w: &'w mut Writer) -> FsResult<&'w mut Staged> {
        if w.staged.is_none() {
            let mut upload = w.upload.take();
            let buffered = upload.as_mut().and_then(|u| u.take_buffered());
            let mut staged = match (upload, buffered) {
                (_, Some(buffered)) => {
                    let mut s = self.staging.stage(&self.uploader, None)?;
                    s.write(0, &buffered).await?;
                    s
                }
                (Some(streaming), None) => {
                    // If this fails, the bytes already streamed are gone: no later write
                    // or close on this handle may pretend otherwise.
                    let meta =
                        streaming.finish().await.inspect_err(|_| w.broken = true).map_err(FsError::UploadFailed)?;
                    self.committed(ino, Some(meta.clone()));
                    w.base = Some(meta.clone());
                    self.staging.stage(&self.uploader, Some(meta))?
                }
                (None, None) => self.staging.stage(&self.uploader, w.base.clone().filter(|b| b.size > 0))?,
            };
            if w.must_put() {
                staged.truncate(staged.size())?; // an empty new file must still be written
            }
            w.staged = Some(Box::new(staged));
        }
        Ok(w.staged.as_deref_mut().expect("set above"))
    }

    pub(super) fn mark_writing(&self, ino: u64, size: u64) {
        if let Some(i) = self.inodes.lock().unwrap().get_mut(ino) {
            (i.size, i.mtime, i.writing) = (size, SystemTime::now(), true);
            if i.posix.mtime.is_some() {
                i.posix.mtime = Some(i.mtime); // a stored mtime must move with the data
            }
        }
    }

    /// Makes the writer's data the object. Nothing written: only a created or truncated
    /// file needs an (empty) object. The handle stays writable afterwards.
    pub(super) async fn commit(&self, fh: u64) -> FsResult<()> {
        let h = self.handle(fh)?;
        let mut h = h.lock().await;
        let ino = h.ino;
        let Handle::Write(w) = &mut h.handle else {
            return Ok(());
        };
        if w.broken {
            return Err(FsError::UploadFailed(BackendError::Other("an earlier upload of this file failed".into())));
        }
        if w.unlinked {
            if let Some(mut up) = w.upload.take() {
                up.abort().await;
            }
            return Ok(());
        }
        let must_put = w.must_put();
        let user = self.upload_meta(ino, w.base.as_ref().and_then(|b| b.user.as_ref()));
        let wanted = self.inode(ino).map(|i| i.posix).ok();
        let result = match (&mut w.staged, w.upload.take()) {
            (Some(s), _) if s.modified() || must_put => s.upload(&w.key, &user).await.map(Some),
            (Some(_), _) => Ok(None),
            (None, Some(mut up)) => {
                up.set_user(user);
                up.finish().await.map(Some)
            }
            (None, None) if must_put => self.store.put_with(&w.key, Bytes::new(), &user).await.map(Some),
            (None, None) => Ok(None),
        };
        match result {
            Ok(meta) => {
                (w.created, w.truncated) = (false, false);
                if let Some(m) = &meta {
                    w.base = Some(m.clone());
                }
                // chmod/utimens during a streaming upload: its metadata was fixed at start.
                let sent = meta.as_ref().and_then(|m| m.user.as_ref()).map(Posix::from_user);
                self.committed(ino, meta);
                drop(h);
                match (wanted, sent) {
                    (Some(want), Some(sent)) if want != sent => self.persist_posix(&self.inode(ino)?, want).await,
                    _ => Ok(()),
                }
            }
            Err(e) => {
                tracing::error!(key = %w.key, error = %e, "upload failed; the object was not changed");
                // A staged file keeps its data: the next fsync or the last close retries.
                if w.staged.is_none() {
                    self.upload_failed(ino, w.created);
                    (w.created, w.truncated) = (false, false);
                }
                Err(FsError::UploadFailed(e))
            }
        }
    }

    pub(super) fn committed(&self, ino: u64, meta: Option<ObjectMeta>) {
        let mut table = self.inodes.lock().unwrap();
        let Some(i) = table.get_mut(ino) else { return };
        i.writing = false;
        if let Some(m) = meta {
            self.learn(&m);
            if let Some(user) = &m.user {
                i.posix = Posix::from_user(user);
            }
            (i.size, i.mtime, i.etag, i.validated) = (m.size, m.last_modified, m.etag, Instant::now());
            self.listings.upsert(i.parent, &i.name, i.found());
        }
    }

    /// The store still holds the old object (or none): forget what we showed locally.
    pub(super) fn upload_failed(&self, ino: u64, created: bool) {
        let mut table = self.inodes.lock().unwrap();
        let Some(i) = table.get_mut(ino) else { return };
        i.writing = false;
        i.make_stale();
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
        let writer = self.writers.latest(i.ino);
        if let Some(fh) = writer {
            let h = self.handle(fh)?;
            let mut h = h.lock().await;
            if let Handle::Write(w) = &mut h.handle {
                return self.truncate_open(i.ino, w, size).await;
            }
        }
        if size == i.size {
            return Ok(());
        }
        let meta = if size == 0 {
            self.store.put_with(&i.key(), Bytes::new(), &self.upload_meta(i.ino, None)).await?
        } else {
            let base =
                ObjectMeta { key: i.key(), size: i.size, last_modified: i.mtime, etag: i.etag.clone(), user: None };
            let mut staged = self.staging.stage(&self.uploader, Some(base))?;
            staged.truncate(size)?;
            staged.upload(&i.key(), &self.upload_meta(i.ino, None)).await?
        };
        self.committed(i.ino, Some(meta));
        Ok(())
    }

    async fn truncate_open(&self, ino: u64, w: &mut Writer, size: u64) -> FsResult<()> {
        if size == w.size() && (size > 0 || w.upload.is_some() || w.staged.is_some() || w.must_put()) {
            return Ok(());
        }
        if size == 0 && w.upload.is_none() && w.staged.is_none() {
            (w.truncated, w.base) = (true, None); // streaming from 0 stays possible
        } else {
            self.staged(ino, w).await?.truncate(size)?;
        }
        self.mark_writing(ino, size);
        Ok(())
    }

    /// Finishes every open upload and retries failed aborts (SIGTERM, unmount).
    /// Returns how many uploads failed.
    pub async fn drain(&self) -> usize {
        let fhs = self.writers.all();
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
