//! The data path: reads through a prefetcher, writes as streaming uploads, both
//! drawing buffers from one memory budget; a persistent data cache and staged files
//! sharing one disk budget.

pub mod cache;
pub mod disk_budget;
pub mod mem_limit;
pub mod prefetch;
pub mod staging;
pub mod upload;

pub use cache::{DataCache, Pinned, StoreCache};
pub use disk_budget::DiskBudget;
pub use mem_limit::{MemoryBudget, Reservation};
pub use prefetch::{PrefetchConfig, Prefetcher};
pub use staging::{Staged, StagingArea, StagingConfig};
pub use upload::{PendingAborts, Upload, UploadConfig, Uploader};

pub const MIB: u64 = 1024 * 1024;
