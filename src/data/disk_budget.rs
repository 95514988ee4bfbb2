//! One limit on local disk (`--max-cache-size`) for staged files and cached object data
//! together. Staged files hold data not uploaded yet; cached data is a copy. So when a
//! staged file needs room, cached blocks are evicted first (the `reclaim` hook), and a
//! staged write is refused (ENOSPC) only when no cached block is left to give back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Frees at least the given number of bytes if it can; returns the bytes it freed.
pub type Reclaim = Box<dyn Fn(u64) -> u64 + Send + Sync>;

/// Bytes charged against one limit, shared by clones.
#[derive(Clone)]
pub struct DiskBudget {
    max: u64,
    used: Arc<AtomicU64>,
    reclaim: Arc<OnceLock<Reclaim>>,
}

impl std::fmt::Debug for DiskBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskBudget").field("max", &self.max).field("used", &self.used()).finish()
    }
}

impl DiskBudget {
    /// A budget of `max` bytes.
    pub fn new(max: u64) -> Self {
        Self { max, used: Arc::default(), reclaim: Arc::default() }
    }

    /// The limit, bytes.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Bytes charged now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }

    /// Sets the hook that evicts cached data for a charge that does not fit (once).
    pub fn set_reclaim(&self, r: Reclaim) {
        let _ = self.reclaim.set(r);
    }

    /// Charges `bytes` if they fit under the limit, without reclaiming anything.
    pub fn try_charge(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| (u + bytes <= self.max).then_some(u + bytes))
            .is_ok()
    }

    /// Charges `bytes`, evicting cached data to make room; false when they cannot fit.
    pub fn charge(&self, bytes: u64) -> bool {
        loop {
            if self.try_charge(bytes) {
                return true;
            }
            let short = (self.used() + bytes).saturating_sub(self.max);
            match self.reclaim.get() {
                Some(r) if short > 0 && r(short) > 0 => continue,
                Some(_) if short == 0 => continue, // freed meanwhile by someone else
                _ => return false,
            }
        }
    }

    /// Gives back `bytes` charged before.
    pub fn release(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn a_charge_that_does_not_fit_reclaims_first_and_fails_only_when_nothing_is_left() {
        let b = DiskBudget::new(100);
        let cached = Arc::new(AtomicU64::new(0));
        assert!(b.charge(60));
        cached.store(60, Ordering::SeqCst); // pretend those 60 are cached data
        let (budget, held) = (b.clone(), cached.clone());
        b.set_reclaim(Box::new(move |want| {
            let free = held.load(Ordering::SeqCst).min(want);
            held.fetch_sub(free, Ordering::SeqCst);
            budget.release(free);
            free
        }));
        assert!(b.charge(70), "30 fit, 30 more evicted");
        assert_eq!((b.used(), cached.load(Ordering::SeqCst)), (100, 30));
        assert!(b.charge(30));
        assert!(!b.charge(1), "nothing cached is left to evict");
        assert!(!b.try_charge(1));
    }
}
