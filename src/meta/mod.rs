//! The control path's memory: TTLs for attributes, a negative cache, and directory
//! listings turned into entries.

pub mod dircache;
pub mod entry;
pub mod listing;
pub mod negative;
pub mod posix_cache;

pub use dircache::{DirCache, Entries};
pub use entry::{Found, Kind, Posix};
pub use listing::{list_dir, read_metadata, valid_name, DirEntry};
pub use negative::NegativeCache;
pub use posix_cache::PosixCache;

use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub struct MetaConfig {
    /// How long a file's size/mtime are trusted; `None` = forever.
    pub ttl: Option<Duration>,
    pub negative_ttl: Duration,
    pub negative_capacity: usize,
    /// Directory listings kept (each for `ttl`).
    pub listing_capacity: usize,
    /// Objects whose POSIX metadata is remembered (see `PosixCache`).
    pub posix_capacity: usize,
    /// HEAD every listed entry for its POSIX metadata (see `read_metadata`).
    pub metadata_on_list: bool,
}

impl Default for MetaConfig {
    fn default() -> Self {
        Self {
            ttl: Some(Duration::from_secs(1)),
            negative_ttl: Duration::from_secs(1),
            negative_capacity: 10_000,
            listing_capacity: 1024,
            posix_capacity: 100_000,
            metadata_on_list: false,
        }
    }
}

impl MetaConfig {
    pub fn fresh(&self, validated: std::time::Instant) -> bool {
        self.ttl.is_none_or(|ttl| validated.elapsed() < ttl)
    }
}
