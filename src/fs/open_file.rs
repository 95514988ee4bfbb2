//! One file, many handles: the state that every open of one inode shares on this mount.
//!
//! On a local filesystem every open of a file sees one inode: bytes written through one
//! fd are read through any other at once, and O_APPEND lands at the common end.
//! `OpenFile` is that inode state here: the object the file is based on, and the local
//! changes not uploaded yet (a streaming upload while the file is written sequentially
//! from 0, a staged temp file otherwise). Every handle reads and writes through it, and
//! a commit uploads its whole content once, whichever handle asked.
//!
//! It lives while a handle of the inode is open or an operation holds a [`FileRef`]; the
//! table drops it with the last reference.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use crate::backend::{ObjectMeta, UserMeta};
use crate::data::{Pinned, Staged, Upload};

pub struct OpenFile {
    /// The object key the file is uploaded to (follows renames).
    pub key: String,
    /// The object the content builds on (at open, or after our last commit); `None`
    /// when the file is new, truncated to 0 or unlinked.
    pub base: Option<ObjectMeta>,
    /// The object's x-amz-meta headers, kept across O_TRUNC so an overwrite keeps them.
    pub headers: Option<UserMeta>,
    /// Truncated to 0 (O_TRUNC, truncate): the object must become empty even if
    /// nothing is written.
    pub truncated: bool,
    /// Created here and not uploaded yet: an empty object must appear at close.
    pub created: bool,
    /// Created with O_EXCL: with conditional writes, its first commit must find no
    /// object under its name (`If-None-Match: *`), whoever else created one meanwhile.
    pub exclusive: bool,
    /// Sequential writing from 0 streams as a multipart upload...
    pub upload: Option<Upload>,
    /// ...anything else (append to an existing object, overwrite, a read of sent
    /// bytes, truncate) goes through a staged temp file, for the rest of the state's life.
    pub staged: Option<Box<Staged>>,
    /// The name was unlinked (or renamed over) while open: nothing is uploaded any more.
    pub unlinked: bool,
    /// Data acknowledged to a program was lost by a failed streamed upload: every write
    /// and commit fails (EIO) until the last writer closes, rather than upload a file
    /// without it.
    pub broken: bool,
    /// Handles open for writing; the last one to close commits what is left.
    pub writers: u32,
    /// Handles whose reads go through the kernel's page cache: a write through a
    /// direct-I/O handle must drop the pages they may hold.
    pub cached_handles: u32,
    /// Handles the kernel reads from a cached file itself (FUSE passthrough): the cache
    /// entry's id and their number. The kernel refuses any other open of the inode
    /// while they are open, and wants the same backing file for all of them.
    pub passthrough: Option<(Arc<Pinned>, u32)>,
    /// Handles served by this process (every handle not in `passthrough`).
    pub plain_handles: u32,
    /// Bumped when the base is replaced by another client's version: handles opened
    /// before keep reading the version they opened (close-to-open), while changes
    /// made on this mount are followed by every handle.
    pub epoch: u64,
}

impl OpenFile {
    pub fn new(key: String) -> Self {
        Self {
            key,
            base: None,
            headers: None,
            truncated: false,
            created: false,
            exclusive: false,
            upload: None,
            staged: None,
            unlinked: false,
            broken: false,
            writers: 0,
            cached_handles: 0,
            passthrough: None,
            plain_handles: 0,
            epoch: 0,
        }
    }

    /// Whether closing must write an object even when nothing was written.
    pub fn must_put(&self) -> bool {
        self.created || self.truncated
    }

    /// Refuses an open the kernel could not serve beside the passthrough handles open
    /// now (it wants every open of the inode on the one backing file): ETXTBSY for a
    /// writer, checked before the open changes anything.
    pub fn check_passthrough(&self, write: bool) -> super::FsResult<()> {
        match (write, &self.passthrough) {
            (true, Some(_)) => Err(super::FsError::TextBusy),
            _ => Ok(()),
        }
    }

    /// Counts a new handle: `pin` is the cached file of a passthrough handle (the one
    /// already shared, if any: the kernel wants one backing file per inode).
    pub fn add_handle(&mut self, pin: Option<&Arc<Pinned>>) {
        match (pin, &mut self.passthrough) {
            (Some(_), Some((_, n))) => *n += 1,
            (Some(p), None) => self.passthrough = Some((p.clone(), 1)),
            (None, _) => self.plain_handles += 1,
        }
    }

    /// Uncounts a handle (`passthrough`: it was one).
    pub fn remove_handle(&mut self, passthrough: bool) {
        match (passthrough, &mut self.passthrough) {
            (true, Some((_, 1))) => self.passthrough = None,
            (true, Some((_, n))) => *n -= 1,
            _ => self.plain_handles = self.plain_handles.saturating_sub(1),
        }
    }

    /// Whether a commit has something to upload.
    pub fn has_data(&self) -> bool {
        self.upload.is_some() || self.staged.as_ref().is_some_and(|s| s.modified())
    }

    /// Whether the content lives here rather than in `base` (reads go through the
    /// state, not through a reader of the object).
    pub fn is_local(&self) -> bool {
        self.upload.is_some() || self.staged.is_some() || self.must_put()
    }

    /// Whether something not yet in the store must be uploaded.
    pub fn pending(&self) -> bool {
        self.has_data() || self.must_put()
    }

    /// The file's size in bytes as every handle sees it.
    pub fn size(&self) -> u64 {
        match (&self.staged, &self.upload) {
            (Some(s), _) => s.size(),
            (None, Some(u)) => u.written(),
            (None, None) if self.must_put() => 0,
            (None, None) => self.base.as_ref().map_or(0, |b| b.size),
        }
    }

    /// Whether a write at `offset` can continue (or start) the streaming upload.
    pub fn can_stream(&self, offset: u64) -> bool {
        match (&self.staged, &self.upload) {
            (Some(_), _) => false,
            (None, Some(u)) => offset == u.written(),
            (None, None) => offset == 0 && self.size() == 0,
        }
    }

    /// Our own upload (or metadata change) produced `meta`: it is the base now, and
    /// every handle follows it.
    pub fn adopt(&mut self, meta: ObjectMeta) {
        if meta.user.is_some() {
            self.headers = meta.user.clone();
        }
        self.base = Some(meta);
    }

    /// The store holds `current` (what a HEAD at open said) and nothing is pending
    /// here. Another client's version replaces the base (and a staged copy of the old
    /// one); handles opened before keep theirs.
    pub fn rebase(&mut self, current: Option<ObjectMeta>) {
        let version = |m: &Option<ObjectMeta>| m.as_ref().map(|m| (m.key.clone(), m.etag.clone(), m.size));
        if version(&self.base) != version(&current) {
            self.epoch += 1;
            self.staged = None;
            self.headers = current.as_ref().and_then(|m| m.user.clone());
            self.base = current;
        } else if let (Some(b), Some(c)) = (&mut self.base, current) {
            if c.user.is_some() {
                self.headers = c.user.clone();
                b.user = c.user;
            }
        }
    }
}

pub type SharedFile = tokio::sync::Mutex<OpenFile>;

/// The open files of a mount, by inode number.
#[derive(Clone, Default)]
pub struct OpenFiles(Arc<Mutex<HashMap<u64, Arc<SharedFile>>>>);

impl OpenFiles {
    /// The state of `ino` if a handle or an operation has it open.
    pub fn get(&self, ino: u64) -> Option<FileRef> {
        let file = self.0.lock().unwrap().get(&ino).cloned()?;
        Some(FileRef { ino, file: Some(file), table: self.clone() })
    }

    /// The state of `ino`, made by `make` if nobody has it open.
    pub fn get_or_create(&self, ino: u64, make: impl FnOnce() -> OpenFile) -> FileRef {
        self.get_or_make(ino, make).0
    }

    /// As `get_or_create`, and whether `make` made it.
    pub fn get_or_make(&self, ino: u64, make: impl FnOnce() -> OpenFile) -> (FileRef, bool) {
        let mut made = false;
        let mut map = self.0.lock().unwrap();
        let file = map.entry(ino).or_insert_with(|| {
            made = true;
            Arc::new(tokio::sync::Mutex::new(make()))
        });
        (FileRef { ino, file: Some(file.clone()), table: self.clone() }, made)
    }

    /// Every open file (to drain them at unmount).
    pub fn all(&self) -> Vec<FileRef> {
        let map = self.0.lock().unwrap();
        map.iter().map(|(ino, f)| FileRef { ino: *ino, file: Some(f.clone()), table: self.clone() }).collect()
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A counted reference to one open file's state; the last one dropped removes the
/// state from the table (its staged file and any unfinished upload go with it).
pub struct FileRef {
    ino: u64,
    file: Option<Arc<SharedFile>>,
    table: OpenFiles,
}

impl FileRef {
    pub fn ino(&self) -> u64 {
        self.ino
    }
}

impl Clone for FileRef {
    fn clone(&self) -> Self {
        Self { ino: self.ino, file: self.file.clone(), table: self.table.clone() }
    }
}

impl Deref for FileRef {
    type Target = SharedFile;
    fn deref(&self) -> &SharedFile {
        self.file.as_ref().expect("present until drop")
    }
}

impl Drop for FileRef {
    fn drop(&mut self) {
        let removed = {
            let mut map = self.table.0.lock().unwrap();
            drop(self.file.take());
            // Counted under the table's lock, which every new reference also takes.
            match map.get(&self.ino) {
                Some(f) if Arc::strong_count(f) == 1 => map.remove(&self.ino),
                _ => None,
            }
        };
        drop(removed); // outside the lock: dropping an upload may spawn its abort
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_lives_exactly_as_long_as_its_references() {
        let files = OpenFiles::default();
        let a = files.get_or_create(7, || OpenFile::new("k".into()));
        let b = files.get_or_create(7, || panic!("must share the existing state"));
        assert!(Arc::ptr_eq(a.file.as_ref().unwrap(), b.file.as_ref().unwrap()));
        let c = b.clone();
        drop(a);
        drop(b);
        assert_eq!(files.len(), 1, "one reference left");
        drop(c);
        assert!(files.is_empty() && files.get(7).is_none());
    }

    #[test]
    fn rebase_to_another_version_bumps_the_epoch_and_drops_the_staged_copy() {
        let meta = |etag: &str| ObjectMeta {
            key: "k".into(),
            size: 3,
            last_modified: std::time::SystemTime::UNIX_EPOCH,
            etag: Some(etag.into()),
            user: None,
        };
        let mut f = OpenFile::new("k".into());
        f.rebase(Some(meta("a")));
        let e = f.epoch;
        f.rebase(Some(meta("a")));
        assert_eq!(f.epoch, e, "same version: nothing changes");
        f.adopt(meta("ours"));
        assert_eq!(f.epoch, e, "our own commit is followed, not a new epoch");
        f.rebase(Some(meta("theirs")));
        assert_eq!(f.epoch, e + 1);
        assert_eq!(f.size(), 3);
        f.truncated = true;
        assert_eq!((f.size(), f.is_local(), f.can_stream(0)), (0, true, true));
    }
}
