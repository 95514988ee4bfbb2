//! The write side of open files: streaming or staged writes into the inode's shared
//! state, commit (close/fsync), truncate, and draining at unmount.

use std::time::{Instant, SystemTime};

use bytes::Bytes;

use super::handle::Handle;
use super::inode::Inode;
use super::open_file::{FileRef, OpenFile};
use super::{Fs, FsError, FsResult, Kind, Posix};
use crate::backend::{BackendError, Condition, ObjectMeta};
use crate::data::{Staged, Upload};

fn lost() -> FsError {
    FsError::UploadFailed(BackendError::Other("an earlier upload of this file failed".into()))
}

impl Fs {
    /// write(2) through handle `fh`: into the file's shared state, at `offset`, or at
    /// the file's current end for an O_APPEND handle (atomically: the state is locked
    /// for the whole write). Returns the bytes taken (all of `data`).
    pub async fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        let h = self.handle(fh)?;
        let mut h = h.lock().await;
        let ino = h.ino;
        let Handle::File(f) = &mut h.handle else {
            return Err(FsError::BadHandle);
        };
        if !f.mode.write {
            return Err(FsError::BadHandle);
        }
        let file = f.file.clone();
        let mut s = file.lock().await;
        if s.broken {
            return Err(lost());
        }
        let before = s.size();
        let offset = if f.mode.append { before } else { offset };
        if s.can_stream(offset) {
            if s.upload.is_none() {
                let user = self.upload_meta(ino, s.headers.as_ref());
                let mut up = self.uploader.start(s.key.clone(), user);
                // The local copy also feeds the data cache after the upload.
                let safety = self.write_condition(&s) != Condition::Always;
                if safety || self.opts.data_cache.is_some() {
                    match self.staging.spool(safety) {
                        Ok(f) => up.spool_to(f),
                        Err(e) => tracing::warn!(key = %s.key, error = %e, "no local copy of this upload"),
                    }
                }
                s.upload = Some(up);
            }
            let up = s.upload.as_mut().expect("set above");
            up.write(data).await.map_err(FsError::UploadFailed)?;
        } else {
            self.staged(ino, &mut s).await?.write(offset, data).await?;
        }
        f.wrote = true;
        self.mark_writing(ino, s.size());
        // Handles reading through the page cache hold pages this write bypassed (the
        // page holding the old end of file too): the kernel must read them again.
        let stale_pages = f.direct_io && s.cached_handles > 0;
        drop(s);
        drop(h);
        if stale_pages {
            let from = offset.min(before);
            self.kernel_cache.invalidate(ino, from, offset + data.len() as u64 - from);
        }
        Ok(data.len() as u32)
    }

    /// A sequential write that fits in the part being filled, done on the caller's
    /// thread: no copy of the data for a task, no task hop. `None` when the write
    /// must go the async way (handle or file busy, a part to send, staging, an error,
    /// cached pages of other handles to drop).
    pub fn try_write_now(&self, fh: u64, offset: u64, data: &[u8]) -> Option<u32> {
        let h = self.handle(fh).ok()?;
        let mut h = h.try_lock().ok()?;
        let ino = h.ino;
        let Handle::File(f) = &mut h.handle else {
            return None;
        };
        let file = f.file.clone();
        let mut s = file.try_lock().ok()?;
        let offset = if f.mode.append { s.size() } else { offset };
        let blocked = !f.mode.write || s.broken || (f.direct_io && s.cached_handles > 0);
        if blocked || !s.can_stream(offset) || !s.upload.as_mut()?.try_append(data) {
            return None;
        }
        f.wrote = true;
        self.mark_writing(ino, s.size());
        Some(data.len() as u32)
    }

    /// copy_file_range(2). A whole file copied into an empty one (what `cp` asks for)
    /// is a server-side CopyObject; anything else is refused with EOPNOTSUPP, and the
    /// kernel or the program falls back to read/write.
    pub async fn copy_file_range(&self, fh_in: u64, off_in: u64, fh_out: u64, off_out: u64, len: u64) -> FsResult<u32> {
        let (src_ino, src_file) = self.file_of(fh_in).await?;
        let src = self.inode(src_ino)?;
        if src.writing || src.kind != Kind::File || src_file.lock().await.is_local() {
            return Err(FsError::Unsupported("copying a file being written"));
        }
        if off_in >= src.size {
            return Ok(0);
        }
        let whole = off_in == 0 && off_out == 0 && len >= src.size && src.size <= u32::MAX as u64;
        let (ino, file) = self.file_of(fh_out).await?;
        let mut s = file.lock().await;
        if !whole || !s.can_stream(0) || s.upload.is_some() || s.staged.is_some() || s.unlinked {
            return Err(FsError::Unsupported("copy_file_range of part of a file"));
        }
        // CopyObject takes no write condition: where one applies (an O_EXCL create, an
        // overwrite of a version another mount may replace), the kernel falls back to
        // read/write, which commits under it.
        if self.write_condition(&s) != Condition::Always {
            return Err(FsError::Unsupported("copy_file_range under a write condition"));
        }
        self.store.copy(&src.key(), &s.key).await?;
        let meta = self.store.head(&s.key).await?;
        let copied = meta.size as u32;
        (s.created, s.truncated) = (false, false);
        s.adopt(meta.clone());
        self.committed(ino, Some(meta));
        Ok(copied)
    }

    /// The file's staged copy, created on first need. Bytes the streaming upload still
    /// holds in memory move into it; if parts were already sent, the data written so
    /// far is committed first (documented: not atomic) and staged from there.
    pub(super) async fn staged<'s>(&self, ino: u64, s: &'s mut OpenFile) -> FsResult<&'s mut Staged> {
        if s.staged.is_none() {
            let mut upload = s.upload.take();
            let buffered = upload.as_mut().and_then(|u| u.take_buffered());
            let mut staged = match (upload, buffered) {
                (_, Some(buffered)) => {
                    let mut st = self.staging.stage(&self.uploader, None)?;
                    st.write(0, &buffered).await?;
                    st
                }
                (Some(mut streaming), None) if s.unlinked => {
                    // Its name is gone: completing the upload would bring it back.
                    streaming.abort().await;
                    s.broken = true;
                    return Err(FsError::UploadFailed(BackendError::Other(
                        "the uploaded parts of an unlinked file cannot be read back".into(),
                    )));
                }
                (Some(mut streaming), None) => {
                    // If this fails, the bytes already streamed are gone: no later write
                    // or commit of this file may pretend otherwise.
                    let cond = self.write_condition(s);
                    streaming.set_condition(cond.clone());
                    let meta = match streaming.finish().await {
                        Ok(meta) => meta,
                        Err(e) => {
                            if e == BackendError::PreconditionFailed {
                                self.keep_conflict(s, Some(&mut streaming), &cond).await;
                            }
                            s.broken = true;
                            return Err(FsError::UploadFailed(e));
                        }
                    };
                    self.committed(ino, Some(meta.clone()));
                    (s.created, s.truncated) = (false, false);
                    s.adopt(meta.clone());
                    self.staging.stage(&self.uploader, Some(meta))?
                }
                (None, None) if s.must_put() => self.staging.stage(&self.uploader, None)?,
                (None, None) => self.staging.stage(&self.uploader, s.base.clone().filter(|b| b.size > 0))?,
            };
            if s.must_put() {
                staged.truncate(staged.size())?; // an empty new file must still be written
            }
            s.staged = Some(Box::new(staged.with_cache(self.opts.data_cache.clone())));
        }
        Ok(s.staged.as_deref_mut().expect("set above"))
    }

    pub(super) fn mark_writing(&self, ino: u64, size: u64) {
        if let Some(i) = self.inodes.lock().unwrap().get_mut(ino) {
            (i.size, i.mtime, i.writing) = (size, SystemTime::now(), true);
            // Stored with the data (as s3fs does): the server's Last-Modified has whole
            // seconds and is not returned by PutObject, so without them the times shown
            // after the upload would differ from those shown after the next HEAD.
            (i.posix.mtime, i.posix.ctime) = (Some(i.mtime), Some(i.mtime));
        }
    }

    /// Makes the file's whole current content the object, once, whichever handle
    /// asked; a no-op when nothing is pending. Handles stay writable afterwards and
    /// build on what was uploaded.
    pub(super) async fn commit(&self, ino: u64, file: &FileRef) -> FsResult<()> {
        let mut s = file.lock().await;
        let unsent = self.commit_locked(ino, &mut s).await?;
        drop(s);
        match unsent {
            Some(want) => self.persist_posix(&self.inode(ino)?, want).await,
            None => Ok(()),
        }
    }

    /// `commit` with the file's state already locked. Returns the POSIX attributes
    /// the upload could not carry (a chmod during a multipart stream, whose metadata
    /// was fixed at its start): the caller stores them once the state is unlocked.
    pub(super) async fn commit_locked(&self, ino: u64, s: &mut OpenFile) -> FsResult<Option<Posix>> {
        if s.broken {
            return Err(lost());
        }
        if s.unlinked {
            if let Some(mut up) = s.upload.take() {
                up.abort().await;
            }
            return Ok(None);
        }
        if !s.pending() {
            return Ok(None);
        }
        let must_put = s.must_put();
        let user = self.upload_meta(ino, s.headers.as_ref());
        let wanted = self.inode(ino).map(|i| i.posix).ok();
        let key = s.key.clone();
        let cond = self.write_condition(s);
        let mut upload = s.upload.take();
        let result = match (&mut s.staged, upload.as_mut()) {
            (Some(st), _) if st.modified() || must_put => st.upload(&key, &user, &cond).await.map(Some),
            (Some(_), _) => Ok(None),
            (None, Some(up)) => {
                up.set_user(user);
                up.set_condition(cond.clone());
                up.finish().await.map(Some)
            }
            (None, None) => self.store.put_if(&key, Bytes::new(), &user, &cond).await.map(Some),
        };
        match result {
            Ok(meta) => {
                (s.created, s.truncated) = (false, false);
                if let Some(m) = &meta {
                    self.cache_written(s, upload.as_mut(), m).await;
                    s.adopt(m.clone());
                }
                let sent = meta.as_ref().and_then(|m| m.user.as_ref()).map(Posix::from_user);
                self.committed(ino, meta);
                Ok(match (wanted, sent) {
                    (Some(want), Some(sent)) if want != sent => Some(want),
                    _ => None,
                })
            }
            Err(BackendError::PreconditionFailed) => {
                // A staged file whose copy could not be written keeps its temp file
                // while the state lives (its handles get EIO).
                if self.keep_conflict(s, upload.as_mut(), &cond).await {
                    s.staged = None;
                }
                self.upload_failed(ino, s.created);
                (s.created, s.truncated, s.broken) = (false, false, true);
                Err(FsError::UploadFailed(BackendError::PreconditionFailed))
            }
            Err(e) => {
                tracing::error!(key = %key, error = %e, "upload failed; the object was not changed");
                // The streamed bytes are gone with the failed upload: a later write or
                // commit must not upload the file without them.
                if upload.is_some() {
                    s.broken = true;
                }
                // A staged file keeps its data: the next fsync or the last close retries.
                if s.staged.is_none() {
                    self.upload_failed(ino, s.created);
                    (s.created, s.truncated) = (false, false);
                }
                Err(FsError::UploadFailed(e))
            }
        }
    }

    /// Leaves the content just uploaded as `m` in the data cache: the local copy of a
    /// streamed upload in the background (nothing writes to it any more), a staged file
    /// before the state is unlocked (the next write would change it under the copy).
    async fn cache_written(
        &self,
        s: &OpenFile,
        upload: Option<&mut crate::data::Upload>,
        m: &crate::backend::ObjectMeta,
    ) {
        let Some(cache) = self.opts.data_cache.clone() else { return };
        // The old content's blocks go even when the new version's ETag is the same.
        cache.forget(&m.key);
        let Some(etag) = m.etag.clone() else { return };
        let (key, size) = (m.key.clone(), m.size);
        if let Some(staged) = &s.staged {
            let Some((file, ranges)) = staged.filled_copy() else { return };
            let copy = tokio::task::spawn_blocking(move || cache.write_from(&key, &etag, size, &file, &ranges));
            let _ = copy.await;
        } else if let Some(spool) = upload.and_then(|u| u.take_spool()) {
            // Whole only if every byte was spooled (a full disk stops the copy).
            if spool.file().metadata().is_ok_and(|md| md.len() == size) {
                let whole = 0..size;
                tokio::task::spawn_blocking(move || {
                    cache.write_from(&key, &etag, size, spool.file(), std::slice::from_ref(&whole))
                });
            }
        }
    }

    /// What a commit of `s` requires of the object. With conditional writes on: still
    /// the version this state started from (`If-Match` its ETag), or no object at all
    /// for a file created with O_EXCL. A file created without O_EXCL replaces whatever
    /// is there, as creat(2) on an existing file would.
    pub(super) fn write_condition(&self, s: &OpenFile) -> Condition {
        if !self.opts.conditional_writes {
            return Condition::Always;
        }
        if s.created {
            return if s.exclusive { Condition::IfAbsent } else { Condition::Always };
        }
        match &s.base {
            Some(b) if b.key == s.key => b.etag.clone().map_or(Condition::Always, Condition::IfMatch),
            _ => Condition::Always,
        }
    }

    /// A commit refused because the object changed elsewhere since this file's version
    /// was read (another mount or client wrote it): uploading would have overwritten
    /// that change. This mount's data goes to `conflicts/` in the cache directory, and
    /// the log names the file and both versions' ETags.
    /// Returns whether this mount's data is now in the kept file (or there was none).
    async fn keep_conflict(&self, s: &mut OpenFile, upload: Option<&mut Upload>, cond: &Condition) -> bool {
        let now = self.store.head(&s.key).await.ok().and_then(|m| m.etag);
        let started = match cond {
            Condition::IfAbsent => Some("none (created with O_EXCL)".to_string()),
            _ => cond.etag().map(str::to_owned).or_else(|| s.base.as_ref().and_then(|b| b.etag.clone())),
        };
        let saved = match self.staging.conflict_file(&self.opts.store_name, &s.key) {
            Err(e) => Err(e),
            Ok((path, mut out)) => {
                let r = match (s.staged.as_deref(), upload) {
                    (Some(st), _) => st.save_to(&mut out).map(|missing| Some((path.clone(), missing))),
                    (None, Some(up)) => match up.save_to(&mut out) {
                        Ok(true) => Ok(Some((path.clone(), Vec::new()))),
                        Ok(false) => Err(std::io::Error::other("no local copy of the parts already sent")),
                        Err(e) => Err(e),
                    },
                    (None, None) => Ok(None),
                };
                // The copy's name must survive a crash too.
                if let (Ok(Some(_)), Some(dir)) = (&r, path.parent()) {
                    let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
                }
                if !matches!(r, Ok(Some(_))) {
                    let _ = std::fs::remove_file(&path);
                }
                r
            }
        };
        let key = &s.key;
        let kept = saved.is_ok();
        match saved {
            Ok(Some((path, missing))) if missing.is_empty() => tracing::error!(
                %key, started_from = ?started, now = ?now, kept = %path.display(),
                "not uploaded: the object was changed by another writer since this file was opened; this mount's version is kept (path in the kept field)"
            ),
            Ok(Some((path, missing))) => tracing::error!(
                %key, started_from = ?started, now = ?now, kept = %path.display(), ?missing,
                "not uploaded: the object was changed by another writer since this file was opened; this mount's changes are kept (path in the kept field; the byte ranges in the missing field were not changed here and are zeros there)"
            ),
            Ok(None) => tracing::error!(
                %key, started_from = ?started, now = ?now,
                "not uploaded: the object was changed (or created) by another writer since this file was opened; this mount wrote no data to keep"
            ),
            Err(e) => tracing::error!(
                %key, started_from = ?started, now = ?now, error = %e,
                "not uploaded: the object was changed by another writer since this file was opened, and this mount's version could not be kept"
            ),
        }
        kept
    }

    pub(super) fn committed(&self, ino: u64, meta: Option<ObjectMeta>) {
        let mut table = self.inodes.lock().unwrap();
        let Some(i) = table.get_mut(ino) else { return };
        i.writing = false;
        if let Some(m) = meta {
            self.learn_written(&m);
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

    /// truncate(2)/ftruncate(2). An open file is truncated in its shared state (every
    /// handle sees the new size at once) and uploaded by its writers' close; a file
    /// nobody writes is uploaded now.
    pub(super) async fn truncate(&self, i: &Inode, size: u64) -> FsResult<()> {
        if i.kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        let file = self.files.get_or_create(i.ino, || super::open_file::OpenFile::new(i.key()));
        let mut s = file.lock().await;
        if s.writers == 0 && !s.pending() && !s.is_local() {
            // A closed file (or one only read): the object as the inode knows it.
            let base =
                ObjectMeta { key: i.key(), size: i.size, last_modified: i.mtime, etag: i.etag.clone(), user: None };
            if s.base.as_ref().map(|b| (&b.key, &b.etag)) != Some((&base.key, &base.etag)) {
                s.rebase(Some(base));
            }
            if size == s.size() {
                return Ok(());
            }
        }
        self.truncate_state(i.ino, &mut s, size).await?;
        let writers = s.writers;
        drop(s);
        if writers == 0 {
            self.commit(i.ino, &file).await?;
        }
        Ok(())
    }

    /// Handle `fh` changed the file (ftruncate): its opener's close commits.
    pub(super) async fn mark_written(&self, fh: u64) {
        if let Ok(h) = self.handle(fh) {
            if let Handle::File(f) = &mut h.lock().await.handle {
                f.wrote |= f.mode.write;
            }
        }
    }

    /// Sets the shared state's size to `size` bytes.
    pub(super) async fn truncate_state(&self, ino: u64, s: &mut OpenFile, size: u64) -> FsResult<()> {
        if size == s.size() && (size > 0 || s.is_local()) {
            return Ok(());
        }
        if size == 0 && s.staged.is_none() {
            if let Some(mut up) = s.upload.take() {
                up.abort().await; // nothing of it stays
            }
            s.truncated = true; // streaming from 0 stays possible
        } else {
            self.staged(ino, s).await?.truncate(size)?;
        }
        self.mark_writing(ino, size);
        Ok(())
    }

    /// Gives up on every unfinished upload (unmount after `--drain-timeout`): each
    /// multipart upload is aborted, and what cannot be aborted is named in the log as
    /// left on the server. Files whose state is locked by a stuck commit are named too.
    pub async fn abandon(&self) {
        for file in self.files.all() {
            let Ok(mut s) = file.try_lock() else {
                let key = self.inode(file.ino()).map(|i| i.key()).unwrap_or_default();
                tracing::error!(%key, "upload still running at exit; its data is not stored");
                continue;
            };
            if s.pending() {
                tracing::error!(key = %s.key, "unmounted before this file could be uploaded; its data is not stored");
            }
            if let Some(mut up) = s.upload.take() {
                up.abort().await;
            }
        }
        for (key, id) in self.uploader.aborts.pending() {
            tracing::error!(%key, upload_id = %id, "multipart upload left on the server (abort it or set a lifecycle rule)");
        }
    }

    /// Finishes every open upload and retries failed aborts (SIGTERM, unmount).
    /// Returns how many uploads failed.
    pub async fn drain(&self) -> usize {
        let mut failed = 0;
        for file in self.files.all() {
            if self.commit(file.ino(), &file).await.is_err() {
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
