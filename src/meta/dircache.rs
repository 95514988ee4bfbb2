//! Directory listings kept for the metadata TTL: a second `ls` costs nothing, and a
//! name absent from a fresh listing is known missing without a request (`cp -r` into
//! a directory just listed or just made). The mount's own changes edit the cached
//! listing at once, so a program always sees its own writes.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use lru::LruCache;

use super::Found;
use super::{DirEntry, MetaConfig};

/// Entries sorted by name, shared with open directory handles without copying.
pub type Entries = Arc<Vec<DirEntry>>;

struct Listing {
    entries: Entries,
    at: Instant,
    /// Names probed one by one since the listing expired (see `worth_relisting`).
    probes: usize,
}

impl Listing {
    fn find(&self, name: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|e| e.name.as_str().cmp(name))
    }
}

pub struct DirCache {
    cfg: MetaConfig,
    dirs: Mutex<LruCache<u64, Listing>>,
    /// When the mount last changed an entry of each directory: a listing whose LIST
    /// began before that may lack the change, so it is not kept.
    changed: Mutex<LruCache<u64, Instant>>,
}

impl DirCache {
    pub fn new(cfg: MetaConfig, capacity: usize) -> Self {
        let cap = NonZeroUsize::new(capacity.max(1)).expect("max(1) is non-zero");
        let changes = NonZeroUsize::new(capacity.max(1) * 4).expect("non-zero");
        Self { cfg, dirs: Mutex::new(LruCache::new(cap)), changed: Mutex::new(LruCache::new(changes)) }
    }

    /// The fresh listing of `dir`, if any.
    pub fn get(&self, dir: u64) -> Option<Entries> {
        let mut dirs = self.dirs.lock().unwrap();
        let l = dirs.get(&dir).filter(|l| self.cfg.fresh(l.at))?;
        Some(l.entries.clone())
    }

    /// `Some(Some(found))`: listed; `Some(None)`: known absent; `None`: no fresh listing.
    pub fn lookup(&self, dir: u64, name: &str) -> Option<Option<Found>> {
        let mut dirs = self.dirs.lock().unwrap();
        let l = dirs.get(&dir).filter(|l| self.cfg.fresh(l.at))?;
        Some(l.find(name).ok().map(|i| l.entries[i].found.clone()))
    }

    /// Whether a lookup in `dir`, whose listing expired, should list it again rather
    /// than probe the name (a HEAD and a LIST). Ski rental: probing continues until the
    /// probes have cost about what listing again costs (one LIST per 1000 entries);
    /// a one-page directory is listed again at once. Counts this lookup as a probe
    /// when the answer is no.
    pub fn worth_relisting(&self, dir: u64) -> bool {
        let mut dirs = self.dirs.lock().unwrap();
        let Some(l) = dirs.peek_mut(&dir).filter(|l| !self.cfg.fresh(l.at)) else {
            return false;
        };
        let pages = l.entries.len().div_ceil(1000).max(1);
        let relist = pages <= 2 * l.probes + 1;
        if !relist {
            l.probes += 1;
        }
        relist
    }

    /// Caches a listing; `entries` must be sorted by name (as `list_dir` returns them).
    pub fn put(&self, dir: u64, entries: Entries) {
        if self.cfg.ttl.is_some_and(|t| t.is_zero()) {
            return;
        }
        self.dirs.lock().unwrap().put(dir, Listing { entries, at: Instant::now(), probes: 0 });
    }

    /// Caches a listing whose LIST began at `started`, unless the mount changed the
    /// directory since (the listing may lack that change; the next one is kept).
    pub fn put_listed(&self, dir: u64, entries: Entries, started: Instant) {
        if self.changed.lock().unwrap().get(&dir).is_some_and(|at| *at >= started) {
            return;
        }
        self.put(dir, entries);
    }

    /// Records our own change in a cached listing (no-op when `dir` is not cached).
    pub fn upsert(&self, dir: u64, name: &str, found: Found) {
        self.changed.lock().unwrap().put(dir, Instant::now());
        if let Some(l) = self.dirs.lock().unwrap().peek_mut(&dir) {
            let entry = DirEntry { name: name.to_string(), found };
            match l.find(name) {
                Ok(i) => Arc::make_mut(&mut l.entries)[i] = entry,
                Err(i) => Arc::make_mut(&mut l.entries).insert(i, entry),
            }
        }
    }

    pub fn remove(&self, dir: u64, name: &str) {
        self.changed.lock().unwrap().put(dir, Instant::now());
        if let Some(l) = self.dirs.lock().unwrap().peek_mut(&dir) {
            if let Ok(i) = l.find(name) {
                Arc::make_mut(&mut l.entries).remove(i);
            }
        }
    }

    pub fn invalidate(&self, dir: u64) {
        self.dirs.lock().unwrap().pop(&dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn found() -> Found {
        Found::file(1, SystemTime::UNIX_EPOCH, None)
    }

    #[test]
    fn listings_expire_and_track_our_changes() {
        let cfg = MetaConfig { ttl: Some(Duration::from_millis(40)), ..MetaConfig::default() };
        let c = DirCache::new(cfg, 2);
        assert!(c.lookup(1, "a").is_none());
        c.put(1, Arc::new(vec![DirEntry { name: "a".into(), found: found() }]));
        assert!(c.lookup(1, "a").unwrap().is_some());
        assert!(c.lookup(1, "b").unwrap().is_none(), "absent from a fresh listing");
        c.upsert(1, "b", found());
        c.remove(1, "a");
        let names: Vec<String> = c.get(1).unwrap().iter().map(|e| e.name.clone()).collect();
        assert_eq!(names, ["b"]);
        std::thread::sleep(Duration::from_millis(50));
        assert!(c.get(1).is_none() && c.lookup(1, "b").is_none(), "expired");
        c.upsert(7, "x", found());
        assert!(c.get(7).is_none(), "upsert does not invent a listing");
    }

    #[test]
    fn a_listing_that_began_before_our_change_is_not_kept() {
        let c = DirCache::new(MetaConfig::default(), 4);
        let started = Instant::now();
        c.upsert(1, "mine", found()); // committed while the LIST was under way
        c.put_listed(1, Arc::new(vec![DirEntry { name: "old".into(), found: found() }]), started);
        assert!(c.get(1).is_none(), "it may lack our change");
        c.put_listed(1, Arc::default(), Instant::now());
        assert!(c.get(1).is_some(), "a listing begun after the change is kept");
    }

    #[test]
    fn zero_ttl_caches_nothing_and_capacity_is_bounded() {
        let off = DirCache::new(MetaConfig { ttl: Some(Duration::ZERO), ..MetaConfig::default() }, 4);
        off.put(1, Arc::default());
        assert!(off.get(1).is_none());
        let c = DirCache::new(MetaConfig::default(), 2);
        for d in 0..3 {
            c.put(d, Arc::default());
        }
        assert!(c.get(0).is_none(), "least recently used listing evicted");
        assert!(c.get(2).is_some());
    }
}
