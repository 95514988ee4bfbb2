//! What HEADs and our own writes taught us about objects' POSIX metadata (mode,
//! owner, mtime, symlink), by key and ETag. Listings carry no metadata; with this, a
//! re-listing (after the TTL, or once the kernel forgot an inode) still shows it, for
//! as long as the object is unchanged.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

use super::Posix;

pub struct PosixCache {
    entries: Mutex<LruCache<String, (String, Posix)>>,
}

impl PosixCache {
    pub fn new(capacity: usize) -> Self {
        let cap = NonZeroUsize::new(capacity.max(1)).expect("max(1) is non-zero");
        Self { entries: Mutex::new(LruCache::new(cap)) }
    }

    /// Records `posix` for the version `etag` of `key`; objects without metadata are
    /// not worth a slot.
    pub fn insert(&self, key: &str, etag: Option<&str>, posix: Posix) {
        let mut entries = self.entries.lock().unwrap();
        match etag {
            Some(etag) if !posix.is_empty() => {
                entries.put(key.to_string(), (etag.to_string(), posix));
            }
            _ => {
                entries.pop(key);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.lock().unwrap().is_empty()
    }

    /// The metadata of this exact version of `key`, if known.
    pub fn get(&self, key: &str, etag: Option<&str>) -> Option<Posix> {
        let mut entries = self.entries.lock().unwrap();
        match entries.get(key) {
            Some((known, posix)) if Some(known.as_str()) == etag => Some(*posix),
            _ => None,
        }
    }

    /// `old` was copied to `new` (whose ETag is `etag`) and deleted.
    pub fn moved(&self, old: &str, new: &str, etag: Option<&str>) {
        let known = self.forget(old);
        self.insert(new, etag, known.unwrap_or_default());
    }

    /// `key` is gone; returns what was known about it.
    pub fn forget(&self, key: &str) -> Option<Posix> {
        self.entries.lock().unwrap().pop(key).map(|(_, posix)| posix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_only_for_the_same_version_and_follows_renames() {
        let c = PosixCache::new(2);
        let p = Posix { mode: Some(0o100600), ..Posix::default() };
        c.insert("a", Some("e1"), p);
        assert_eq!(c.get("a", Some("e1")), Some(p));
        assert_eq!(c.get("a", Some("e2")), None, "another version");
        c.moved("a", "b", Some("e3"));
        assert_eq!((c.get("a", Some("e1")), c.get("b", Some("e3"))), (None, Some(p)));
        c.insert("b", Some("e4"), Posix::default());
        assert_eq!(c.get("b", Some("e4")), None, "no metadata, no entry");
        c.insert("d/", Some("dir"), p);
        c.moved("elsewhere/", "d/", Some("dir"));
        assert_eq!(c.get("d/", Some("dir")), None, "what moved in replaces what was there");
    }
}
