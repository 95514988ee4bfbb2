//! File attributes as the fs layer knows them (no fuser types here). The kind of an
//! entry and the POSIX attributes objects carry live in `meta`, which reads them.

use std::time::SystemTime;

pub use crate::meta::{Kind, Posix};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub mtime: SystemTime,
    /// Last change of data or attributes (never before `mtime`).
    pub ctime: SystemTime,
    pub atime: SystemTime,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    /// The device number of a device node (0 for everything else).
    pub rdev: u32,
    /// Names the entry has: 2 for a directory, 1 for anything else, 0 for a file
    /// unlinked while open (fstat of its descriptor).
    pub nlink: u32,
}

/// Ownership and permission defaults for objects that carry none.
#[derive(Clone, Copy, Debug)]
pub struct Ownership {
    pub uid: u32,
    pub gid: u32,
    pub file_mode: u16,
    pub dir_mode: u16,
}

impl Default for Ownership {
    fn default() -> Self {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Self { uid, gid, file_mode: 0o644, dir_mode: 0o755 }
    }
}
