//! Receive buffers for large GET bodies, reused instead of freshly mapped.
//!
//! A new 8 MiB buffer is a fresh mapping: the kernel zeroes and faults in every page,
//! which cost a third of the mount's CPU on a sequential read. A buffer handed out as
//! `Bytes` comes back here when the last slice of it is dropped.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Bodies smaller than this are not worth pooling (small files, random reads).
const MIN_POOLED: usize = 1 << 20;

#[derive(Debug)]
pub struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
    /// Idle buffers kept; the rest are freed.
    keep: usize,
}

impl BufferPool {
    pub fn new(keep: usize) -> Arc<Self> {
        Arc::new(Self { free: Mutex::new(Vec::new()), keep })
    }

    /// An empty buffer with room for `len` bytes: a pooled one when it fits without
    /// wasting more than a quarter.
    pub fn take(&self, len: usize) -> Vec<u8> {
        if len >= MIN_POOLED {
            let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = free.iter().position(|b| b.capacity() >= len && b.capacity() <= len + len / 4) {
                return free.swap_remove(i);
            }
        }
        Vec::with_capacity(len)
    }

    /// Freezes `buf` into `Bytes` that return it to the pool once fully dropped.
    pub fn freeze(self: &Arc<Self>, buf: Vec<u8>) -> Bytes {
        if buf.capacity() < MIN_POOLED {
            return Bytes::from(buf);
        }
        Bytes::from_owner(Pooled { buf, pool: self.clone() })
    }

    /// Keeps the most recently returned buffers: their sizes are the ones in demand (the
    /// small first parts of a read-ahead window must not crowd out the full-size ones).
    fn give_back(&self, mut buf: Vec<u8>) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() >= self.keep {
            free.remove(0);
        }
        buf.clear();
        free.push(buf);
    }

    #[cfg(test)]
    fn idle(&self) -> usize {
        self.free.lock().unwrap().len()
    }
}

struct Pooled {
    buf: Vec<u8>,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_body_is_reused_by_the_next_one() {
        let pool = BufferPool::new(2);
        let mut buf = pool.take(2 << 20);
        buf.extend_from_slice(&[7u8; 2 << 20]);
        let first_ptr = buf.as_ptr();
        let body = pool.freeze(buf);
        let slice = body.slice(10..20);
        drop(body);
        assert_eq!(pool.idle(), 0, "a slice still refers to the buffer");
        assert_eq!(&slice[..], &[7u8; 10]);
        drop(slice);
        assert_eq!(pool.idle(), 1);
        let again = pool.take(2 << 20);
        assert_eq!(again.as_ptr(), first_ptr);
        assert!(again.is_empty(), "a reused buffer starts empty");
    }

    #[test]
    fn the_pool_keeps_only_the_latest_few_and_skips_small_or_ill_fitting_bodies() {
        let pool = BufferPool::new(1);
        let a = pool.freeze(vec![0u8; 4 << 20]);
        let b = pool.freeze(vec![0u8; 2 << 20]);
        drop((a, b));
        assert_eq!(pool.idle(), 1);
        assert_eq!(pool.take(2 << 20).capacity(), 2 << 20, "the latest one is kept");
        drop(pool.freeze(vec![0u8; 2 << 20]));
        drop(pool.freeze(vec![0u8; 1024]));
        assert_eq!(pool.idle(), 1, "small bodies are not pooled");
        assert_eq!(pool.take(1 << 20).capacity(), 1 << 20, "a 2 MiB buffer would waste half");
        assert_eq!(pool.idle(), 1);
    }
}
