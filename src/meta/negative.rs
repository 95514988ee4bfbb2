//! Remembers names that do not exist, so repeated misses (shells probing `$PATH`,
//! editors probing swap files) cost no request within the TTL.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

pub struct NegativeCache {
    ttl: Duration,
    entries: Mutex<LruCache<(u64, String), Instant>>,
}

impl NegativeCache {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        let cap = NonZeroUsize::new(capacity.max(1)).expect("max(1) is non-zero");
        Self { ttl, entries: Mutex::new(LruCache::new(cap)) }
    }

    pub fn insert(&self, parent: u64, name: &str) {
        if !self.ttl.is_zero() {
            self.entries.lock().unwrap().put((parent, name.to_string()), Instant::now());
        }
    }

    pub fn contains(&self, parent: u64, name: &str) -> bool {
        let mut entries = self.entries.lock().unwrap();
        let key = (parent, name.to_string());
        match entries.get(&key) {
            Some(at) if at.elapsed() < self.ttl => true,
            Some(_) => {
                entries.pop(&key);
                false
            }
            None => false,
        }
    }

    /// The name now exists (we created it): forget the miss at once.
    pub fn remove(&self, parent: u64, name: &str) {
        self.entries.lock().unwrap().pop(&(parent, name.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misses_expire_and_can_be_removed() {
        let c = NegativeCache::new(Duration::from_millis(30), 2);
        c.insert(1, "a");
        assert!(c.contains(1, "a"));
        assert!(!c.contains(2, "a"));
        c.remove(1, "a");
        assert!(!c.contains(1, "a"));
        c.insert(1, "b");
        std::thread::sleep(Duration::from_millis(40));
        assert!(!c.contains(1, "b"));
        let off = NegativeCache::new(Duration::ZERO, 2);
        off.insert(1, "a");
        assert!(!off.contains(1, "a"));
    }
}
