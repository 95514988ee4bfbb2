//! chmod, chown, utimens and symlinks, kept in the object's user metadata (the
//! headers s3fs uses). A change is written at once (CopyObject onto itself), or
//! rides along with the upload when the file has unwritten data.

use std::time::SystemTime;

use bytes::Bytes;

use super::inode::{Found, Inode};
use super::{Attr, Fs, FsError, FsResult, Kind, Posix, SetAttr};
use crate::backend::{BackendError, UserMeta};

impl Fs {
    pub async fn setattr(&self, ino: u64, set: SetAttr) -> FsResult<Attr> {
        let i = self.inode(ino)?;
        if let Some(size) = set.size {
            self.check_writable()?;
            self.truncate(&i, size).await?;
            if let Some(fh) = set.fh {
                self.mark_written(fh).await;
            }
        }
        if set.mtime.is_some() {
            // utimes on a directory sets its mtime from now on, over the time its
            // entries last changed here.
            if let Some(cur) = self.inodes.lock().unwrap().get_mut(ino) {
                cur.touched = None;
            }
        }
        let i = self.inode(ino)?;
        let cur = self.attr_of(&i);
        let mut p = i.posix;
        if let Some(m) = set.mode.filter(|m| (m & 0o7777) as u16 != cur.perm) {
            p.mode = Some(i.kind.type_bits() | (m & 0o7777));
        }
        if let Some(u) = set.uid.filter(|u| *u != cur.uid) {
            p.uid = Some(u);
        }
        if let Some(g) = set.gid.filter(|g| *g != cur.gid) {
            p.gid = Some(g);
        }
        if let Some(t) = set.mtime.filter(|t| *t != cur.mtime) {
            p.mtime = Some(t);
        }
        if let Some(t) = set.atime.filter(|t| *t != cur.atime) {
            p.atime = Some(t);
        }
        if p != i.posix {
            self.check_writable()?;
            // The change moves ctime, not mtime: the copy that stores it gives the
            // object a new Last-Modified, so the shown mtime is pinned first.
            p.mtime = Some(p.mtime.unwrap_or(cur.mtime));
            p.ctime = Some(SystemTime::now());
            self.set_posix(&i, p).await?;
        } else if set.mode.is_some() || set.uid.is_some() || set.gid.is_some() || set.mtime.is_some() {
            // chmod/chown/utimes to the values already set still count as a change.
            self.touch_ctime(ino);
        }
        Ok(self.attr_of(&self.inode(ino)?))
    }

    /// Shows `p` at once and stores it: now, or with the pending upload.
    async fn set_posix(&self, i: &Inode, p: Posix) -> FsResult<()> {
        if let Some(cur) = self.inodes.lock().unwrap().get_mut(i.ino) {
            cur.posix = p;
            self.listings.upsert(cur.parent, &cur.name, cur.found());
        }
        if self.has_pending_upload(i.ino).await {
            return Ok(()); // commit() sends the inode's metadata with the data
        }
        self.persist_posix(i, p).await
    }

    /// Writes `p` into the object's metadata now.
    pub(super) async fn persist_posix(&self, i: &Inode, p: Posix) -> FsResult<()> {
        let key = i.key();
        let mut copied = None; // the ETag of the version the metadata is copied onto
        let mut user = match self.store.head(&key).await {
            Ok(m) => {
                copied = m.etag;
                m.user.unwrap_or_default()
            }
            // An implicit directory gets a marker to carry its metadata.
            Err(BackendError::NotFound) if i.kind == Kind::Dir => UserMeta::new(),
            Err(e) => return Err(e.into()),
        };
        p.merge_into(&mut user);
        let meta = match self.store.set_user_meta(&key, &user).await {
            Err(BackendError::NotFound) if i.kind == Kind::Dir => {
                self.store.put_with(&key, Bytes::new(), &user).await?
            }
            r => r?,
        };
        match i.kind {
            Kind::Dir => self.learn_dir(&key, p),
            _ => {
                // Same bytes, new ETag: the open file keeps building on this object, if
                // it is still the version the file started from. If another client
                // replaced it meanwhile, the file keeps its old base, so that its commit
                // is refused (If-Match, or the staged source check) instead of
                // overwriting that client's version.
                if let Some(file) = self.files.get(i.ino) {
                    let mut s = file.lock().await;
                    let ours = s.base.as_ref().is_some_and(|b| b.key == key && b.etag == copied);
                    if let Some(st) = s.staged.as_mut().filter(|_| ours) {
                        st.retag(&key, meta.etag.clone());
                    }
                    if ours {
                        let mut b = s.base.clone().expect("checked");
                        (b.etag, b.user) = (meta.etag.clone(), meta.user.clone());
                        s.adopt(b);
                    }
                }
                self.committed(i.ino, Some(meta));
            }
        }
        Ok(())
    }

    /// An entry of directory `dir` was created, removed or renamed here: its mtime
    /// and ctime move to now (in memory; see `Inode::touched`).
    pub(super) fn touch_dir(&self, dir: u64) {
        if let Some(i) = self.inodes.lock().unwrap().get_mut(dir) {
            i.touched = Some(SystemTime::now());
        }
    }

    /// Moves the shown change time of `ino` to now, in memory.
    fn touch_ctime(&self, ino: u64) {
        if let Some(i) = self.inodes.lock().unwrap().get_mut(ino) {
            i.posix.ctime = Some(SystemTime::now());
        }
    }

    async fn has_pending_upload(&self, ino: u64) -> bool {
        match self.files.get(ino) {
            Some(file) => file.lock().await.pending(),
            None => false,
        }
    }

    /// A new entry made by another user (with --allow-other) belongs to that user, as
    /// on a local disk; root's entries keep the mount's defaults. In a directory with
    /// the set-group-ID bit, the entry takes the directory's group, and a new
    /// subdirectory the bit too (what the kernel's `inode_init_owner` does for local
    /// filesystems; a FUSE server must do it itself).
    pub async fn owned_by(&self, parent: u64, a: Attr, uid: u32, gid: u32) -> FsResult<Attr> {
        let dir = self.attr_of(&self.inode(parent)?);
        let setgid = dir.perm as u32 & libc::S_ISGID != 0;
        let want_uid = if uid == 0 { a.uid } else { uid };
        let want_gid = match (setgid, uid) {
            (true, _) => dir.gid,
            (false, 0) => a.gid,
            (false, _) => gid,
        };
        let mode = (setgid && a.kind == Kind::Dir && a.perm as u32 & libc::S_ISGID == 0)
            .then_some(a.perm as u32 | libc::S_ISGID);
        if (a.uid, a.gid) == (want_uid, want_gid) && mode.is_none() {
            return Ok(a);
        }
        let set = SetAttr { uid: Some(want_uid), gid: Some(want_gid), mode, ..SetAttr::default() };
        self.setattr(a.ino, set).await
    }

    /// The metadata an upload of `ino` carries: what the object had, with the
    /// inode's POSIX attributes on top.
    pub(super) fn upload_meta(&self, ino: u64, base: Option<&UserMeta>) -> UserMeta {
        let mut user = base.cloned().unwrap_or_default();
        if let Some(i) = self.inodes.lock().unwrap().get(ino) {
            i.posix.merge_into(&mut user);
        }
        user
    }

    /// The POSIX attributes a new file or directory starts with: only what differs
    /// from the mount's defaults is stored.
    pub(super) fn initial_posix(&self, kind: Kind, mode: u32) -> Posix {
        let default = if kind == Kind::Dir { self.opts.owner.dir_mode } else { self.opts.owner.file_mode };
        let perm = mode & 0o7777;
        let mode = (perm as u16 != default).then_some(kind.type_bits() | perm);
        // The times go with the first PUT for the reason `mark_writing` gives.
        let now = SystemTime::now();
        Posix { mode, mtime: Some(now), ctime: Some(now), ..Posix::default() }
    }

    pub async fn symlink(&self, parent: u64, name: &str, target: &str) -> FsResult<Attr> {
        let now = Some(SystemTime::now());
        let posix = Posix { mode: Some(libc::S_IFLNK | 0o777), mtime: now, ctime: now, ..Posix::default() };
        self.make_node(parent, name, posix, Bytes::copy_from_slice(target.as_bytes())).await
    }

    /// mknod(2): a fifo, socket or device node, stored as an empty object whose
    /// `x-amz-meta-mode` names its type and `x-amz-meta-rdev` its device number, as
    /// s3fs stores them; `S_IFREG` makes an empty file. EINVAL for other types.
    pub async fn mknod(&self, parent: u64, name: &str, mode: u32, rdev: u32) -> FsResult<Attr> {
        let kind =
            Kind::from_mode(mode).filter(|k| k.is_special() || *k == Kind::File).ok_or(FsError::InvalidArgument)?;
        let device = matches!(kind, Kind::CharDevice | Kind::BlockDevice);
        let now = Some(SystemTime::now());
        let posix = Posix {
            mode: Some(mode & (libc::S_IFMT | 0o7777)),
            mtime: now,
            ctime: now,
            rdev: device.then_some(rdev),
            ..Posix::default()
        };
        self.make_node(parent, name, posix, Bytes::new()).await
    }

    /// A new object at `parent/name` that is whole at once (a symlink, a special
    /// file): one PUT carrying `posix`.
    async fn make_node(&self, parent: u64, name: &str, posix: Posix, body: Bytes) -> FsResult<Attr> {
        let key = self.vacant(parent, name).await?;
        let mut user = UserMeta::new();
        posix.merge_into(&mut user);
        let meta = self.store.put_with(&key, body, &user).await?;
        self.learn_written(&meta);
        self.touch_dir(parent);
        let found = Found::object(&meta);
        self.negative.remove(parent, name);
        self.listings.upsert(parent, name, found.clone());
        let mut table = self.inodes.lock().unwrap();
        let ino = table.upsert(parent, name, found);
        table.add_lookup(ino);
        Ok(self.attr_of(table.get(ino).expect("just inserted")))
    }

    pub async fn readlink(&self, ino: u64) -> FsResult<Bytes> {
        let i = self.inode(ino)?;
        if i.kind != Kind::Symlink {
            return Err(FsError::InvalidArgument);
        }
        Ok(self.store.get_range(&i.key(), 0..i.size.max(4096), None).await?)
    }
}
