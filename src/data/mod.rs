//! The data path: reads through a prefetcher, writes as streaming uploads, both
//! drawing buffers from one memory budget.

pub mod mem_limit;
pub mod prefetch;
pub mod staging;
pub mod upload;

pub use mem_limit::{MemoryBudget, Reservation};
pub use prefetch::{PrefetchConfig, Prefetcher};
pub use staging::{Staged, StagingArea, StagingConfig};
pub use upload::{PendingAborts, Upload, UploadConfig, Uploader};

pub const MIB: u64 = 1024 * 1024;
