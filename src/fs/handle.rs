//! Open file and directory handles.

use crate::data::{Prefetcher, Upload};
use crate::meta::Entries;

/// A handle open for writing. The object is replaced only when the upload finishes.
pub struct Writer {
    pub key: String,
    /// The object's size when opened; non-zero means streaming cannot start from 0
    /// unless the file was truncated.
    pub base_size: u64,
    /// O_TRUNC or a truncate to 0 happened: the object must become empty even if
    /// nothing is written.
    pub truncated: bool,
    /// The file was created by this handle: an empty object must appear at close.
    pub created: bool,
    pub upload: Option<Upload>,
    /// An upload with data was committed; later writes cannot continue it.
    pub done: bool,
    /// close() by this process commits; closes by others (forked children, dup2
    /// juggling in shells) leave the upload open until release.
    pub opener_pid: u32,
}

impl Writer {
    /// Whether closing must write an object even when nothing was written.
    pub fn must_put(&self) -> bool {
        self.created || self.truncated
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
