//! What the store says about one entry: its kind, the POSIX attributes its object
//! carries in user metadata, and what a lookup or listing learned (`Found`). Both the
//! metadata caches and the fs layer use these; they live here, the lower layer.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::backend::{ObjectMeta, UserMeta};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A named pipe (mkfifo): a zero-length object whose mode says so; the kernel
    /// serves its I/O, as for the other special files.
    Fifo,
    /// A unix-domain socket's name.
    Socket,
    /// A character device node (its number in `Posix::rdev`).
    CharDevice,
    /// A block device node (its number in `Posix::rdev`).
    BlockDevice,
}

impl Kind {
    /// The file-type bits of st_mode.
    pub fn type_bits(self) -> u32 {
        match self {
            Kind::File => libc::S_IFREG,
            Kind::Dir => libc::S_IFDIR,
            Kind::Symlink => libc::S_IFLNK,
            Kind::Fifo => libc::S_IFIFO,
            Kind::Socket => libc::S_IFSOCK,
            Kind::CharDevice => libc::S_IFCHR,
            Kind::BlockDevice => libc::S_IFBLK,
        }
    }

    /// The kind st_mode's type bits name.
    pub fn from_mode(mode: u32) -> Option<Kind> {
        [Kind::File, Kind::Dir, Kind::Symlink, Kind::Fifo, Kind::Socket, Kind::CharDevice, Kind::BlockDevice]
            .into_iter()
            .find(|k| k.type_bits() == mode & libc::S_IFMT)
    }

    /// Fifos, sockets and device nodes: stored as empty objects, never read or
    /// written through the mount.
    pub fn is_special(self) -> bool {
        matches!(self, Kind::Fifo | Kind::Socket | Kind::CharDevice | Kind::BlockDevice)
    }
}

/// mode, uid, gid, times and device number as s3fs stores them (`x-amz-meta-mode` is
/// the decimal st_mode with its type bits; `x-amz-meta-mtime`, `-ctime` and `-atime`
/// are seconds since the epoch; `x-amz-meta-rdev` the decimal dev_t), so a bucket
/// written by either tool reads right in the other. Unset fields fall back to the
/// mount's defaults and the object's Last-Modified.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Posix {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mtime: Option<SystemTime>,
    /// When the attributes last changed (chmod, chown, utimes, a write).
    pub ctime: Option<SystemTime>,
    /// Set only by utimes (reads do not move it: the mount behaves as `noatime`).
    pub atime: Option<SystemTime>,
    /// The device number of a device node.
    pub rdev: Option<u32>,
}

const MODE: &str = "mode";
const UID: &str = "uid";
const GID: &str = "gid";
const MTIME: &str = "mtime";
const CTIME: &str = "ctime";
const ATIME: &str = "atime";
const RDEV: &str = "rdev";

impl Posix {
    pub fn from_user(user: &UserMeta) -> Self {
        let num = |k: &str| user.get(k).and_then(|v| v.trim().parse::<u32>().ok());
        let time = |k: &str| user.get(k).and_then(|v| parse_time(v));
        Self {
            mode: num(MODE),
            uid: num(UID),
            gid: num(GID),
            mtime: time(MTIME),
            ctime: time(CTIME),
            atime: time(ATIME),
            rdev: num(RDEV),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The kind the mode names, when it names one we show.
    pub fn kind(&self) -> Option<Kind> {
        Kind::from_mode(self.mode?)
    }

    /// Writes the fields that are set into `user`, keeping its other entries.
    pub fn merge_into(&self, user: &mut UserMeta) {
        let mut set = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                user.insert(k.to_string(), v);
            }
        };
        set(MODE, self.mode.map(|m| m.to_string()));
        set(UID, self.uid.map(|u| u.to_string()));
        set(GID, self.gid.map(|g| g.to_string()));
        set(MTIME, self.mtime.map(format_time));
        set(CTIME, self.ctime.map(format_time));
        set(ATIME, self.atime.map(format_time));
        set(RDEV, self.rdev.map(|r| r.to_string()));
    }
}

/// Whole seconds (what s3fs writes), with nanoseconds after a dot only when there are
/// some (as rclone writes), so rsync's nanosecond comparison finds the file unchanged.
fn format_time(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    match d.subsec_nanos() {
        0 => d.as_secs().to_string(),
        n => format!("{}.{n:09}", d.as_secs()),
    }
}

fn parse_time(v: &str) -> Option<SystemTime> {
    let (secs, frac) = v.trim().split_once('.').unwrap_or((v.trim(), ""));
    let secs: u64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let nanos = if digits.is_empty() { 0 } else { format!("{digits:0<9}").parse::<u32>().ok()? };
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// What a lookup or listing learned about one entry.
#[derive(Clone, Debug)]
pub struct Found {
    pub kind: Kind,
    pub size: u64,
    pub mtime: SystemTime,
    pub etag: Option<String>,
    /// From HEAD or our own writes; `None` from a listing (S3 lists no metadata).
    pub posix: Option<Posix>,
    /// When the store said this (for a listing: when the LIST began). Information
    /// older than what the mount already knows of an entry (its own commit after that
    /// LIST began) must not replace it.
    pub seen: Instant,
}

impl Found {
    pub fn file(size: u64, mtime: SystemTime, etag: Option<String>) -> Self {
        Self { kind: Kind::File, size, mtime, etag, posix: None, seen: Instant::now() }
    }

    pub fn dir(mtime: SystemTime) -> Self {
        Self { kind: Kind::Dir, size: 0, mtime, etag: None, posix: None, seen: Instant::now() }
    }

    /// An object as HEAD (or our upload) describes it: a symlink or special file if
    /// its mode says so (a mode naming a directory on a plain key is a file).
    pub fn object(m: &ObjectMeta) -> Self {
        let posix = m.user.as_ref().map(Posix::from_user);
        let kind = posix.and_then(|p| p.kind()).filter(|k| *k != Kind::Dir).unwrap_or(Kind::File);
        Self { kind, size: m.size, mtime: m.last_modified, etag: m.etag.clone(), posix, seen: Instant::now() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3fs_headers_round_trip() {
        let user: UserMeta = [("mode", "41471"), ("uid", "1000"), ("gid", "100"), ("mtime", "1700000000")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let p = Posix::from_user(&user);
        assert_eq!(p.mode, Some(libc::S_IFLNK | 0o777));
        assert_eq!(p.kind(), Some(Kind::Symlink));
        assert_eq!((p.uid, p.gid), (Some(1000), Some(100)));
        assert_eq!(p.mtime, Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)));
        let mut out = UserMeta::new();
        p.merge_into(&mut out);
        assert_eq!(out, user);
        let precise = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        assert_eq!(format_time(precise), "1700000000.000000005");
        assert_eq!(parse_time("1700000000.000000005"), Some(precise));
        assert_eq!(parse_time("1700000000.5"), Some(UNIX_EPOCH + Duration::new(1_700_000_000, 500_000_000)));
        assert_eq!(parse_time("soon"), None);
    }
}
