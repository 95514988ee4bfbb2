//! Open file and directory handles.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::backend::ObjectMeta;
use crate::data::{Prefetcher, Staged, Upload};
use crate::meta::Entries;

/// A handle open for writing. The object is replaced only when an upload finishes.
pub struct Writer {
    pub key: String,
    /// The object as it stands (at open, or after our last upload); `None` when the
    /// file is new or truncated to 0, so writing can stream from offset 0.
    pub base: Option<ObjectMeta>,
    /// O_TRUNC or a truncate to 0 happened: the object must become empty even if
    /// nothing is written.
    pub truncated: bool,
    /// The file was created by this handle: an empty object must appear at close.
    pub created: bool,
    /// Sequential writing from 0 streams as a multipart upload...
    pub upload: Option<Upload>,
    /// ...anything else (append, overwrite, read back, truncate) goes through a
    /// staged temp file, for the rest of the handle's life.
    pub staged: Option<Box<Staged>>,
    /// The name was unlinked while open: nothing is uploaded any more.
    pub unlinked: bool,
    /// Data acknowledged to the program was lost by a failed upload: every later write
    /// and close on this handle fails (EIO) rather than upload a file without it.
    pub broken: bool,
    /// close() by this process commits; closes by others (forked children, dup2
    /// juggling in shells) leave the upload open until release.
    pub opener_pid: u32,
}

impl Writer {
    /// Whether closing must write an object even when nothing was written.
    pub fn must_put(&self) -> bool {
        self.created || self.truncated
    }

    /// The file's size as this handle sees it.
    pub fn size(&self) -> u64 {
        match (&self.staged, &self.upload) {
            (Some(s), _) => s.size(),
            (None, Some(u)) => u.written(),
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

    /// Whether there is something to upload at close.
    pub fn has_data(&self) -> bool {
        self.upload.is_some() || self.staged.as_ref().is_some_and(|s| s.modified())
    }
}

/// The write handles open on each inode (several fds may write one file; each close
/// commits what its handle holds).
#[derive(Default)]
pub struct Writers(Mutex<HashMap<u64, Vec<u64>>>);

impl Writers {
    pub fn add(&self, ino: u64, fh: u64) {
        let mut map = self.0.lock().unwrap();
        let fhs = map.entry(ino).or_default();
        if !fhs.contains(&fh) {
            fhs.push(fh);
        }
    }

    pub fn remove(&self, ino: u64, fh: u64) {
        let mut map = self.0.lock().unwrap();
        if let Some(fhs) = map.get_mut(&ino) {
            fhs.retain(|f| *f != fh);
            if fhs.is_empty() {
                map.remove(&ino);
            }
        }
    }

    pub fn of(&self, ino: u64) -> Vec<u64> {
        self.0.lock().unwrap().get(&ino).cloned().unwrap_or_default()
    }

    pub fn latest(&self, ino: u64) -> Option<u64> {
        self.0.lock().unwrap().get(&ino).and_then(|f| f.last().copied())
    }

    pub fn all(&self) -> Vec<u64> {
        self.0.lock().unwrap().values().flatten().copied().collect()
    }
}

pub enum Handle {
    Read(Box<Prefetcher>),
    Write(Box<Writer>),
    Dir(Entries),
}

pub struct OpenHandle {
    pub ino: u64,
    pub handle: Handle,
}
