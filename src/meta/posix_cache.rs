//! What HEADs and our own writes taught us about objects' POSIX metadata (mode,
//! owner, times, kind), by key and version. Listings carry no metadata; with this, a
//! re-listing (after the TTL, or once the kernel forgot an inode) still shows it, for
//! as long as the object is unchanged.
//!
//! A version is the ETag and, for what a HEAD said, the Last-Modified second: S3's
//! CopyObject keeps a single-part object's MD5 ETag, so a chmod made by another
//! machine (a copy onto itself with new metadata) changes only Last-Modified, which
//! listings show. What our own writes returned has no server time (PutObject does not
//! return Last-Modified) and matches on the ETag alone.
//!
//! With a file (`open`), what HEADs learned survives unmount: it is appended as one
//! JSON line per entry and read back at the next start, so a fresh mount's listing
//! costs no HEAD for objects unchanged since (see `--metadata-on-list auto`).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use lru::LruCache;
use serde::{Deserialize, Serialize};

use super::Posix;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Known {
    etag: String,
    /// Last-Modified in whole seconds since the epoch, when a HEAD said it.
    modified: Option<u64>,
    posix: Posix,
}

/// One line of the file: a key's version and its metadata, as s3fs's headers say it.
#[derive(Serialize, Deserialize)]
struct Line {
    k: String,
    e: String,
    t: u64,
    m: crate::backend::UserMeta,
}

/// The first line of the file: what it describes. A file written for another bucket
/// or root (the same store name in another config) is not used.
#[derive(Serialize, Deserialize)]
struct Header {
    store: String,
}

struct Persist {
    path: PathBuf,
    file: File,
    /// Lines in the file; past `4 * capacity` it is rewritten from memory.
    lines: usize,
}

pub struct PosixCache {
    entries: Mutex<LruCache<String, Known>>,
    capacity: usize,
    file: Mutex<Option<Persist>>,
    identity: String,
}

/// Whole seconds: listings (ISO 8601 with milliseconds on some servers) and HEAD
/// (an HTTP date) agree on those.
fn seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl PosixCache {
    /// An in-memory cache of at most `capacity` objects.
    pub fn new(capacity: usize) -> Self {
        let cap = NonZeroUsize::new(capacity.max(1)).expect("max(1) is non-zero");
        Self { entries: Mutex::new(LruCache::new(cap)), capacity, file: Mutex::new(None), identity: String::new() }
    }

    /// A cache kept in `path` as well, for the store described by `identity` (its
    /// backend location and root: never a secret). What the file holds is loaded; a
    /// file for another identity, or unreadable lines (a crash mid-write), are
    /// ignored. Errors (the directory cannot be written) leave an in-memory cache and
    /// a warning: metadata is then read again by the next mount.
    pub fn open(capacity: usize, path: &Path, identity: &str) -> Self {
        let mut c = Self::new(capacity);
        c.identity = identity.to_string();
        match c.load(path) {
            Ok(()) => {}
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot keep object metadata on disk"),
        }
        c
    }

    fn load(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut lines = 0;
        if let Ok(f) = File::open(path) {
            let mut reader = BufReader::new(f).lines();
            let ours = reader
                .next()
                .and_then(|l| l.ok())
                .and_then(|l| serde_json::from_str::<Header>(&l).ok())
                .is_some_and(|h| h.store == self.identity);
            if ours {
                let mut entries = self.entries.lock().unwrap();
                for line in reader.map_while(|l| l.ok()) {
                    lines += 1;
                    if let Ok(l) = serde_json::from_str::<Line>(&line) {
                        let posix = Posix::from_user(&l.m);
                        entries.put(l.k, Known { etag: l.e, modified: Some(l.t), posix });
                    }
                }
            }
        }
        let len = self.entries.lock().unwrap().len();
        // Rewritten at start when mostly superseded lines (or another store's).
        let file = if lines == 0 || lines > 2 * len.max(1) {
            self.rewrite(path)?
        } else {
            let file = OpenOptions::new().append(true).open(path)?;
            Persist { path: path.to_path_buf(), file, lines }
        };
        *self.file.lock().unwrap() = Some(file);
        Ok(())
    }

    /// Writes the file anew from memory (through a temporary file and a rename, so a
    /// crash leaves the old or the new file, never half of one).
    fn rewrite(&self, path: &Path) -> std::io::Result<Persist> {
        let tmp = path.with_extension("tmp");
        let mut out = std::io::BufWriter::new(File::create(&tmp)?);
        serde_json::to_writer(&mut out, &Header { store: self.identity.clone() })?;
        out.write_all(b"\n")?;
        let mut lines = 0;
        for (k, known) in self.entries.lock().unwrap().iter() {
            if let Some(line) = Self::line(k, known) {
                out.write_all(line.as_bytes())?;
                lines += 1;
            }
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Persist { path: path.to_path_buf(), file, lines })
    }

    fn line(key: &str, known: &Known) -> Option<String> {
        let t = known.modified?;
        let mut m = crate::backend::UserMeta::new();
        known.posix.merge_into(&mut m);
        let line = Line { k: key.to_string(), e: known.etag.clone(), t, m };
        serde_json::to_string(&line).ok().map(|s| s + "\n")
    }

    fn put(&self, key: &str, known: Known) {
        let line = Self::line(key, &known);
        self.entries.lock().unwrap().put(key.to_string(), known);
        let Some(line) = line else { return };
        let mut file = self.file.lock().unwrap();
        let Some(p) = file.as_mut() else { return };
        // One write per line on an O_APPEND file: another mount of the same store
        // appending at the same time does not interleave inside a line.
        let written = p.file.write_all(line.as_bytes());
        p.lines += 1;
        let rewrite = p.lines > 4 * self.capacity.max(1);
        if let Err(e) = written {
            tracing::warn!(path = %p.path.display(), error = %e, "cannot keep object metadata on disk");
            *file = None;
        } else if rewrite {
            let path = p.path.clone();
            *file = self.rewrite(&path).ok();
        }
    }

    /// Records what our own write of `key` stored (version `etag`).
    pub fn insert(&self, key: &str, etag: Option<&str>, posix: Posix) {
        match etag {
            Some(etag) => self.put(key, Known { etag: etag.to_string(), modified: None, posix }),
            None => {
                self.entries.lock().unwrap().pop(key);
            }
        }
    }

    /// Records what a HEAD said of `key`: its version (`etag`, `modified`) and
    /// metadata. Kept on disk when the cache has a file.
    pub fn insert_seen(&self, key: &str, etag: Option<&str>, modified: SystemTime, posix: Posix) {
        match etag {
            Some(etag) => self.put(key, Known { etag: etag.to_string(), modified: Some(seconds(modified)), posix }),
            None => {
                self.entries.lock().unwrap().pop(key);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.lock().unwrap().is_empty()
    }

    /// The metadata of this exact version of `key`, if known. `modified` is the
    /// Last-Modified a listing showed (`None`: compare ETags only).
    pub fn get(&self, key: &str, etag: Option<&str>, modified: Option<SystemTime>) -> Option<Posix> {
        let mut entries = self.entries.lock().unwrap();
        let k = entries.get(key)?;
        let same_time = match (k.modified, modified) {
            (Some(a), Some(b)) => a == seconds(b),
            _ => true,
        };
        (Some(k.etag.as_str()) == etag && same_time).then_some(k.posix)
    }

    /// `old` was copied to `new` (whose ETag is `etag`) and deleted.
    pub fn moved(&self, old: &str, new: &str, etag: Option<&str>) {
        let known = self.forget(old);
        self.insert(new, etag, known.unwrap_or_default());
    }

    /// `key` is gone; returns what was known about it.
    pub fn forget(&self, key: &str) -> Option<Posix> {
        self.entries.lock().unwrap().pop(key).map(|k| k.posix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn known_only_for_the_same_version_and_follows_renames() {
        let c = PosixCache::new(2);
        let p = Posix { mode: Some(0o100600), ..Posix::default() };
        c.insert("a", Some("e1"), p);
        assert_eq!(c.get("a", Some("e1"), None), Some(p));
        assert_eq!(c.get("a", Some("e2"), None), None, "another version");
        c.moved("a", "b", Some("e3"));
        assert_eq!((c.get("a", Some("e1"), None), c.get("b", Some("e3"), None)), (None, Some(p)));
        c.insert("b", Some("e4"), Posix::default());
        assert_eq!(c.get("b", Some("e4"), None), Some(Posix::default()), "no metadata is known too");
        c.insert("d/", Some("dir"), p);
        c.moved("elsewhere/", "d/", Some("dir"));
        assert_eq!(c.get("d/", Some("dir"), None), Some(Posix::default()), "what moved in replaces what was there");
    }

    #[test]
    fn a_copy_onto_itself_with_the_same_etag_is_another_version() {
        let c = PosixCache::new(4);
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let p = Posix { mode: Some(0o100755), ..Posix::default() };
        c.insert_seen("a", Some("md5"), t, p);
        assert_eq!(c.get("a", Some("md5"), Some(t + Duration::from_millis(300))), Some(p), "same second");
        assert_eq!(c.get("a", Some("md5"), Some(t + Duration::from_secs(5))), None, "chmod elsewhere");
    }

    #[test]
    fn what_heads_learned_survives_a_restart_and_other_stores_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta").join("s.jsonl");
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let p = Posix { mode: Some(0o100700), uid: Some(7), ..Posix::default() };
        {
            let c = PosixCache::open(100, &path, "s3://b/root");
            c.insert_seen("x", Some("e1"), t, p);
            c.insert_seen("plain", Some("e2"), t, Posix::default());
            c.insert("ours", Some("e3"), p); // no server time: memory only
        }
        // A torn last line (a crash mid-append) is skipped.
        OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"k\":\"torn").unwrap();
        let c = PosixCache::open(100, &path, "s3://b/root");
        assert_eq!(c.get("x", Some("e1"), Some(t)), Some(p));
        assert_eq!(c.get("plain", Some("e2"), Some(t)), Some(Posix::default()));
        assert_eq!(c.get("ours", Some("e3"), None), None);
        let other = PosixCache::open(100, &path, "s3://other/root");
        assert!(other.is_empty(), "another bucket's file is not used");
        drop(other);
        let again = PosixCache::open(100, &path, "s3://b/root");
        assert!(again.is_empty(), "and was replaced by the other store's");
    }

    #[test]
    fn the_file_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        let c = PosixCache::open(3, &path, "id");
        for i in 0..50 {
            c.insert_seen("k", Some(&format!("e{i}")), UNIX_EPOCH, Posix::default());
        }
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 1 + 4 * 3, "{lines} lines");
        let c = PosixCache::open(3, &path, "id");
        assert_eq!(c.get("k", Some("e49"), Some(UNIX_EPOCH)), Some(Posix::default()));
    }
}
