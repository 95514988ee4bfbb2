//! One byte budget shared by prefetch windows and upload buffers.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Budget granularity: permits are KiB so a u32 permit count covers terabytes.
const UNIT: u64 = 1024;

#[derive(Clone, Debug)]
pub struct MemoryBudget {
    sem: Arc<Semaphore>,
    total_units: u64,
}

/// Bytes held against the budget until dropped.
#[derive(Debug)]
pub struct Reservation {
    _permit: Option<OwnedSemaphorePermit>,
}

impl MemoryBudget {
    pub fn new(bytes: u64) -> Self {
        let total_units = (bytes / UNIT).clamp(1, u32::MAX as u64);
        Self { sem: Arc::new(Semaphore::new(total_units as usize)), total_units }
    }

    fn units(&self, bytes: u64) -> u32 {
        bytes.div_ceil(UNIT).clamp(1, self.total_units) as u32
    }

    /// Waits until `bytes` fit (writers use this: backpressure).
    pub async fn reserve(&self, bytes: u64) -> Reservation {
        let permit = self.sem.clone().acquire_many_owned(self.units(bytes)).await.ok();
        Reservation { _permit: permit }
    }

    /// Takes `bytes` only if they fit now (read-ahead uses this: it just stops growing).
    pub fn try_reserve(&self, bytes: u64) -> Option<Reservation> {
        let permit = self.sem.clone().try_acquire_many_owned(self.units(bytes)).ok()?;
        Some(Reservation { _permit: Some(permit) })
    }

    /// Bytes currently reserved.
    pub fn reserved(&self) -> u64 {
        (self.total_units - self.sem.available_permits() as u64) * UNIT
    }

    pub fn total(&self) -> u64 {
        self.total_units * UNIT
    }
}

/// The default budget: an eighth of RAM, at least 256 MiB.
pub fn default_budget_bytes() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let (pages, page) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    let ram = (pages.max(0) as u64) * (page.max(0) as u64);
    (ram / 8).max(256 * 1024 * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reservations_never_exceed_the_budget() {
        let b = MemoryBudget::new(10 * 1024);
        let r1 = b.try_reserve(6 * 1024).unwrap();
        assert!(b.try_reserve(6 * 1024).is_none());
        assert_eq!(b.reserved(), 6 * 1024);
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.reserve(6 * 1024).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "must wait while the budget is spent");
        drop(r1);
        let _r2 = waiter.await.unwrap();
        assert_eq!(b.reserved(), 6 * 1024);
    }
}
