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
}

impl Kind {
    /// The file-type bits of st_mode.
    pub fn type_bits(self) -> u32 {
        match self {
            Kind::File => libc::S_IFREG,
            Kind::Dir => libc::S_IFDIR,
            Kind::Symlink => libc::S_IFLNK,
        }
    }
}

/// mode, uid, gid and mtime as s3fs stores them (`x-amz-meta-mode` is the decimal
/// st_mode with its type bits; `x-amz-meta-mtime` is seconds since the epoch), so a
/// bucket written by either tool reads right in the other. Unset fields fall back to
/// the mount's defaults and the object's Last-Modified.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Posix {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mtime: Option<SystemTime>,
}

const MODE: &str = "mode";
const UID: &str = "uid";
const GID: &str = "gid";
const MTIME: &str = "mtime";

impl Posix {
    pub fn from_user(user: &UserMeta) -> Self {
        let num = |k: &str| user.get(k).and_then(|v| v.trim().parse::<u32>().ok());
        Self { mode: num(MODE), uid: num(UID), gid: num(GID), mtime: user.get(MTIME).and_then(|v| parse_time(v)) }
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The kind the mode names, when it names one we show.
    pub fn kind(&self) -> Option<Kind> {
        match self.mode? & libc::S_IFMT {
            libc::S_IFLNK => Some(Kind::Symlink),
            libc::S_IFDIR => Some(Kind::Dir),
            libc::S_IFREG => Some(Kind::File),
            _ => None,
        }
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

    /// An object as HEAD (or our upload) describes it: a symlink if its mode says so.
    pub fn object(m: &ObjectMeta) -> Self {
        let posix = m.user.as_ref().map(Posix::from_user);
        let kind = match posix.and_then(|p| p.kind()) {
            Some(Kind::Symlink) => Kind::Symlink,
            _ => Kind::File,
        };
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
