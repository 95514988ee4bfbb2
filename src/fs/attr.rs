//! File attributes as the fs layer knows them (no fuser types here), and the POSIX
//! attributes objects carry in user metadata.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::backend::UserMeta;

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub mtime: SystemTime,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
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
