//! Open file and directory handles. A file handle holds only what is its own (access
//! mode, who opened it, its reader of the object); the file's content and pending
//! changes live in the inode's shared [`OpenFile`](super::open_file::OpenFile).

use super::file::OpenMode;
use super::open_file::FileRef;
use crate::data::Prefetcher;
use crate::meta::Entries;

pub struct FileHandle {
    /// The inode's shared state.
    pub file: FileRef,
    pub mode: OpenMode,
    /// The kernel bypasses its page cache for this handle (FOPEN_DIRECT_IO).
    pub direct_io: bool,
    /// close(2) by this process commits; closes by others (forked children, dup2
    /// juggling in shells) leave the data pending until a later commit or release.
    pub opener_pid: u32,
    /// Written through since this handle's last close: its opener's close commits.
    pub wrote: bool,
    /// The state's epoch at open: while it is unchanged this handle follows the
    /// state's base; after another client's version replaced it, it keeps its own.
    pub epoch: u64,
    /// Reads the object while the content is the object (no local changes); pinned to
    /// the version it was made for (key and ETag).
    pub reader: Option<Box<Prefetcher>>,
    /// The cached file the kernel reads for this handle (FUSE passthrough), pinned in
    /// the data cache while the handle is open; `None`: reads come to this process.
    pub passthrough: Option<std::sync::Arc<crate::data::Pinned>>,
}

pub enum Handle {
    File(Box<FileHandle>),
    Dir(Entries),
}

pub struct OpenHandle {
    pub ino: u64,
    pub handle: Handle,
}
