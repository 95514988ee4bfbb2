//! rstore-mount: a FUSE filesystem over the stores of a remote-store config.
//!
//! Layers, top to bottom: `cli` → `mount` → `fuse` (adapter) → `fs` (POSIX semantics)
//! → `data` (prefetch, upload) and `meta` (caches, listing) → `backend` (object stores)
//! ← `config`.

pub mod backend;
pub mod cli;
pub mod config;
pub mod data;
pub mod fs;
pub mod fuse;
pub mod meta;
pub mod metrics;
pub mod mount;
