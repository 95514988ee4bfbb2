//! Two writers of one object on different mounts (two `Fs` over one memory store, which
//! enforces conditions as S3 does): with conditional writes, the close that would
//! overwrite the other's version fails with EIO, the object stays the winner's, and the
//! loser's data is kept under `conflicts/` in the cache directory. Without them (a
//! server that ignores the headers), the last close wins, as documented.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::file::OpenMode;
use super::inode::ROOT_INO as ROOT;
use super::tests::{opts, put, PID};
use super::*;
use crate::backend::probe::Probe;
use crate::backend::ObjectStore;
use crate::data::{StagingConfig, MIB};

struct Mounts {
    store: Arc<Probe>,
    a: Fs,
    b: Fs,
    cache: tempfile::TempDir,
}

fn two_mounts(conditional_writes: bool) -> Mounts {
    let store = Arc::new(Probe::default());
    let cache = tempfile::tempdir().unwrap();
    let o = |name: &str| FsOptions {
        store_name: name.into(),
        conditional_writes,
        // Each open asks the store again (close-to-open with --metadata-ttl 0).
        meta: crate::meta::MetaConfig { ttl: Some(std::time::Duration::ZERO), ..opts().meta },
        staging: StagingConfig { dir: cache.path().join(name), max_bytes: 1 << 30 },
        ..opts()
    };
    let (a, b) = (Fs::new(store.clone(), o("a")), Fs::new(store.clone(), o("b")));
    Mounts { store, a, b, cache }
}

fn rdwr() -> OpenMode {
    OpenMode { write: true, read: true, ..OpenMode::default() }
}

fn excl() -> OpenMode {
    OpenMode { write: true, truncate: true, exclusive: true, ..OpenMode::default() }
}

async fn stored(p: &Probe, key: &str) -> Vec<u8> {
    p.inner.get_range(key, 0..1 << 30, None).await.unwrap().to_vec()
}

async fn open_rdwr(fs: &Fs, name: &str) -> u64 {
    let ino = fs.lookup(ROOT, name).await.unwrap().ino;
    fs.open(ino, rdwr(), PID).await.unwrap().fh
}

/// close(2): flush then release; the flush's answer is what close returns.
async fn close(fs: &Fs, fh: u64) -> FsResult<()> {
    let r = fs.flush(fh, PID).await;
    let _ = fs.release(fh).await;
    r
}

/// The files kept under `conflicts/` of one mount's cache directory.
fn kept(cache: &Path, mount: &str) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                walk(&e.path(), out);
            } else {
                out.push(e.path());
            }
        }
    }
    let mut out = Vec::new();
    walk(&cache.join(mount).join("conflicts"), &mut out);
    out
}

#[tokio::test]
async fn concurrent_in_place_modify_the_second_close_fails_and_keeps_its_data() {
    let m = two_mounts(true);
    put(&m.store, "doc.txt", b"0123456789").await;
    let fa = open_rdwr(&m.a, "doc.txt").await;
    let fb = open_rdwr(&m.b, "doc.txt").await;
    m.a.write(fa, 0, b"AA").await.unwrap();
    m.b.write(fb, 8, b"BB").await.unwrap();
    close(&m.a, fa).await.unwrap();
    let err = close(&m.b, fb).await.unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    assert_eq!(stored(&m.store, "doc.txt").await, b"AA23456789", "the first close's version stays whole");
    let files = kept(m.cache.path(), "b");
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].to_string_lossy().contains("conflicts/b/doc.txt.conflict-"), "{files:?}");
    assert_eq!(std::fs::read(&files[0]).unwrap(), b"01234567BB", "the loser's whole version");
    assert!(kept(m.cache.path(), "a").is_empty());
    // The next open on B sees the winner's version, and can write again.
    let fb = open_rdwr(&m.b, "doc.txt").await;
    m.b.write(fb, 9, b"!").await.unwrap();
    close(&m.b, fb).await.unwrap();
    assert_eq!(stored(&m.store, "doc.txt").await, b"AA2345678!");
}

#[tokio::test]
async fn two_exclusive_creators_of_one_name_exactly_one_wins() {
    let m = two_mounts(true);
    let (_, ca) = m.a.create_with(ROOT, "lock", 0o644, excl(), PID).await.unwrap();
    let (_, cb) = m.b.create_with(ROOT, "lock", 0o644, excl(), PID).await.unwrap();
    m.a.write(ca.fh, 0, b"held by a\n").await.unwrap();
    m.b.write(cb.fh, 0, b"held by b\n").await.unwrap();
    close(&m.a, ca.fh).await.unwrap();
    assert_eq!(close(&m.b, cb.fh).await.unwrap_err().errno(), libc::EIO);
    assert_eq!(stored(&m.store, "lock").await, b"held by a\n");
    let files = kept(m.cache.path(), "b");
    assert_eq!(files.len(), 1);
    assert_eq!(std::fs::read(&files[0]).unwrap(), b"held by b\n");
}

/// An overwrite streamed as a multipart upload (parts already sent when the conflict
/// shows at completion): the spool keeps every byte.
#[tokio::test]
async fn a_streamed_overwrite_that_loses_is_kept_whole() {
    let m = two_mounts(true);
    put(&m.store, "big", b"old").await;
    let ino = m.b.lookup(ROOT, "big").await.unwrap().ino;
    let fb = m.b.open(ino, OpenMode { write: true, truncate: true, ..OpenMode::default() }, PID).await.unwrap().fh;
    let data: Vec<u8> = (0..12 * MIB as usize).map(|i| (i * 7 + i / 4096) as u8).collect();
    for (i, chunk) in data.chunks(1 << 20).enumerate() {
        m.b.write(fb, (i << 20) as u64, chunk).await.unwrap();
    }
    put(&m.store, "big", b"written elsewhere meanwhile").await;
    assert_eq!(close(&m.b, fb).await.unwrap_err().errno(), libc::EIO);
    assert_eq!(stored(&m.store, "big").await, b"written elsewhere meanwhile");
    let files = kept(m.cache.path(), "b");
    assert_eq!(files.len(), 1);
    assert!(std::fs::read(&files[0]).unwrap() == data, "every streamed byte kept");
    assert!(m.store.inner.open_uploads() == 0, "the refused multipart upload is aborted");
}

/// Our own commits and metadata changes move the version we build on: an fsync, more
/// writes, a chmod and the close never conflict with themselves.
#[tokio::test]
async fn a_writer_never_conflicts_with_its_own_commits() {
    let m = two_mounts(true);
    put(&m.store, "f", b"abc").await;
    let fa = open_rdwr(&m.a, "f").await;
    m.a.write(fa, 3, b"d").await.unwrap();
    m.a.fsync(fa).await.unwrap();
    let ino = m.a.lookup(ROOT, "f").await.unwrap().ino;
    m.a.setattr(ino, SetAttr { mode: Some(0o600), ..SetAttr::default() }).await.unwrap();
    m.a.write(fa, 4, b"e").await.unwrap();
    close(&m.a, fa).await.unwrap();
    assert_eq!(stored(&m.store, "f").await, b"abcde");
    assert!(kept(m.cache.path(), "a").is_empty());
}

/// The documented fallback where the server ignores conditions: the last close wins.
#[tokio::test]
async fn without_conditional_writes_the_last_close_wins() {
    let m = two_mounts(false);
    let (_, ca) = m.a.create_with(ROOT, "lock", 0o644, excl(), PID).await.unwrap();
    let (_, cb) = m.b.create_with(ROOT, "lock", 0o644, excl(), PID).await.unwrap();
    m.a.write(ca.fh, 0, b"a").await.unwrap();
    m.b.write(cb.fh, 0, b"b").await.unwrap();
    close(&m.a, ca.fh).await.unwrap();
    close(&m.b, cb.fh).await.unwrap();
    assert_eq!(stored(&m.store, "lock").await, b"b");
}

#[tokio::test]
async fn the_probe_tells_an_enforcing_store() {
    let store = Probe::default();
    assert!(crate::backend::enforces_conditions(&store).await.unwrap());
    assert!(store.inner.list_page("", None, None, None).await.unwrap().objects.is_empty(), "probe key removed");
}

/// A chmod is stored at once when no data is pending (here: after an fsync). If B
/// replaced the file before it, A must not take on B's version as its own base: A's
/// staged blocks came from its own version, and its close would mix the two.
#[tokio::test]
async fn a_chmod_after_another_writer_does_not_take_on_its_version() {
    let m = two_mounts(true);
    put(&m.store, "f", b"0123456789").await;
    let fa = open_rdwr(&m.a, "f").await;
    m.a.write(fa, 0, b"A").await.unwrap();
    m.a.fsync(fa).await.unwrap();
    let fb = open_rdwr(&m.b, "f").await;
    m.b.write(fb, 9, b"B").await.unwrap();
    close(&m.b, fb).await.unwrap();
    let ino = m.a.lookup(ROOT, "f").await.unwrap().ino;
    m.a.setattr(ino, SetAttr { mode: Some(0o600), ..SetAttr::default() }).await.unwrap();
    m.a.write(fa, 1, b"a").await.unwrap();
    assert_eq!(close(&m.a, fa).await.unwrap_err().errno(), libc::EIO);
    assert_eq!(stored(&m.store, "f").await, b"A12345678B", "B's version (on A's fsync) stays");
    assert_eq!(std::fs::read(&kept(m.cache.path(), "a")[0]).unwrap(), b"Aa23456789");
}

/// A whole-file copy_file_range is a CopyObject, which takes no condition: under one it
/// is refused, and the kernel copies by read/write instead.
#[tokio::test]
async fn copy_file_range_under_a_condition_falls_back_to_read_write() {
    for conditional in [true, false] {
        let m = two_mounts(conditional);
        put(&m.store, "src", b"payload").await;
        let src = m.a.lookup(ROOT, "src").await.unwrap().ino;
        let fin = m.a.open(src, OpenMode { read: true, ..OpenMode::default() }, PID).await.unwrap().fh;
        let (_, out) = m.a.create_with(ROOT, "dst", 0o644, excl(), PID).await.unwrap();
        let r = m.a.copy_file_range(fin, 0, out.fh, 0, 7).await;
        assert_eq!(r.is_err(), conditional, "{r:?}");
        let _ = close(&m.a, out.fh).await;
        let _ = m.a.release(fin).await;
    }
}
