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
    /// Which listed entries are HEADed for their POSIX metadata (see `read_metadata`).
    pub metadata_on_list: MetadataOnList,
}

/// When a listing reads its entries' metadata (mode, owner, times, kind), one HEAD
/// per entry whose version is not already known (`PosixCache`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MetadataOnList {
    /// For directories of at most `AUTO_LIMIT` entries (one LIST page): a remount
    /// shows what was stored, and large data directories stay one LIST per 1,000.
    #[default]
    Auto,
    /// For every directory, as s3fs does.
    Always,
    /// Never: listings show the mount's defaults until an entry is looked up alone.
    Never,
}

/// The largest directory (entries) whose listing `MetadataOnList::Auto` completes
/// with HEADs: what one ListObjectsV2 page holds.
pub const AUTO_LIMIT: usize = 1000;

impl std::str::FromStr for MetadataOnList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            _ => Err(format!("'{s}': expected auto, always or never")),
        }
    }
}

impl Default for MetaConfig {
    fn default() -> Self {
        Self {
            ttl: Some(Duration::from_secs(1)),
            negative_ttl: Duration::from_secs(1),
            negative_capacity: 10_000,
            listing_capacity: 1024,
            posix_capacity: 100_000,
            metadata_on_list: MetadataOnList::Auto,
        }
    }
}

impl MetaConfig {
    pub fn fresh(&self, validated: std::time::Instant) -> bool {
        self.ttl.is_none_or(|ttl| validated.elapsed() < ttl)
    }
}
