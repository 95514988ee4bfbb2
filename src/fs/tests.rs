//! Semantics of the fs layer over the memory backend (no kernel needed).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::file::OpenMode;
use super::inode::ROOT_INO;
use super::*;
use crate::backend::probe::Probe;
use crate::backend::ObjectStore;
use crate::data::{UploadConfig, MIB};

const ROOT: u64 = ROOT_INO;
pub(super) const PID: u32 = 42;

pub(super) fn opts() -> FsOptions {
    FsOptions {
        upload: UploadConfig { part_size: 5 * MIB, max_in_flight: 2 },
        max_memory: 64 * MIB,
        ..FsOptions::default()
    }
}

pub(super) fn setup() -> (Arc<Probe>, Fs) {
    let probe = Arc::new(Probe::default());
    (probe.clone(), Fs::new(probe, opts()))
}

fn wr() -> OpenMode {
    OpenMode { write: true, truncate: true, ..OpenMode::default() }
}

pub(super) async fn put(p: &Probe, key: &str, body: &[u8]) {
    p.inner.put(key, Bytes::copy_from_slice(body)).await.unwrap();
}

pub(super) async fn write_file(fs: &Fs, parent: u64, name: &str, data: &[u8]) -> FsResult<()> {
    let (_, fh) = fs.create(parent, name, 0o644, PID).await?;
    for (i, chunk) in data.chunks(128 * 1024).enumerate() {
        fs.write(fh, (i * 128 * 1024) as u64, chunk).await?;
    }
    fs.flush(fh, PID).await?;
    fs.release(fh).await
}

pub(super) async fn read_all(fs: &Fs, ino: u64) -> Vec<u8> {
    let fh = fs.open(ino, OpenMode { read: true, ..OpenMode::default() }, PID).await.unwrap().fh;
    let mut out = Vec::new();
    loop {
        let chunk = fs.read(fh, out.len() as u64, 100_000).await.unwrap();
        if chunk.is_empty() {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    fs.release(fh).await.unwrap();
    out
}

pub(super) async fn names(fs: &Fs, ino: u64) -> Vec<String> {
    let fh = fs.opendir(ino).await.unwrap();
    let mut out = Vec::new();
    fs.readdir(fh, 0, false, |_, n, _| {
        out.push(n.to_string());
        false
    })
    .await
    .unwrap();
    fs.releasedir(fh);
    out
}

#[tokio::test]
async fn implicit_and_marker_directories_both_appear() {
    let (p, fs) = setup();
    put(&p, "a/b/c.txt", b"hello").await;
    put(&p, "m/", b"").await;
    assert_eq!(names(&fs, ROOT).await, [".", "..", "a", "m"]);
    let a = fs.lookup(ROOT, "a").await.unwrap();
    assert_eq!(a.kind, Kind::Dir);
    let b = fs.lookup(a.ino, "b").await.unwrap();
    let c = fs.lookup(b.ino, "c.txt").await.unwrap();
    assert_eq!((c.kind, c.size), (Kind::File, 5));
    assert_eq!(read_all(&fs, c.ino).await, b"hello");
    assert_eq!(fs.lookup(ROOT, "m").await.unwrap().kind, Kind::Dir);
    assert!(matches!(fs.lookup(ROOT, "nope").await, Err(FsError::NotFound)));
}

#[tokio::test]
async fn small_file_is_one_put_and_large_file_streams_as_multipart() {
    let (p, fs) = setup();
    write_file(&fs, ROOT, "small", b"tiny").await.unwrap();
    assert_eq!(p.inner.head("small").await.unwrap().size, 4);
    let big: Vec<u8> = (0..12 * MIB as usize + 77).map(|i| (i % 241) as u8).collect();
    write_file(&fs, ROOT, "big", &big).await.unwrap();
    assert_eq!(p.inner.open_uploads(), 0);
    let attr = fs.lookup(ROOT, "big").await.unwrap();
    assert_eq!(attr.size, big.len() as u64);
    assert_eq!(read_all(&fs, attr.ino).await, big);
    assert_eq!(fs.budget().reserved(), 0);
}

#[tokio::test]
async fn failed_upload_is_eio_at_close_and_leaves_the_old_object() {
    let (p, fs) = setup();
    put(&p, "f", b"old contents").await;
    let ino = fs.lookup(ROOT, "f").await.unwrap().ino;
    p.fail_parts.store(true, Ordering::SeqCst);
    let fh = fs.open(ino, wr(), PID).await.unwrap().fh;
    let data = vec![7u8; 11 * MIB as usize];
    let mut failed = None;
    for (i, chunk) in data.chunks(MIB as usize).enumerate() {
        if let Err(e) = fs.write(fh, (i as u64) * MIB, chunk).await {
            failed = Some(e);
            break;
        }
    }
    let close = fs.flush(fh, PID).await;
    let err = failed.or(close.err()).expect("the failure must surface");
    assert_eq!(err.errno(), libc::EIO);
    let _ = fs.release(fh).await;
    assert_eq!(p.inner.get_range("f", 0..100, None).await.unwrap(), &b"old contents"[..]);
    assert_eq!(p.inner.open_uploads(), 0, "the multipart upload was aborted");
}

#[tokio::test]
async fn new_file_failing_upload_does_not_appear() {
    let (p, fs) = setup();
    p.fail_parts.store(true, Ordering::SeqCst);
    let data = vec![1u8; 6 * MIB as usize];
    assert!(write_file(&fs, ROOT, "n", &data).await.is_err());
    assert!(p.inner.head("n").await.is_err());
    p.fail_parts.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(matches!(fs.lookup(ROOT, "n").await, Err(FsError::NotFound)));
}

#[tokio::test]
async fn close_without_data_by_a_shell_dup_does_not_commit() {
    let (p, fs) = setup();
    let (_, fh) = fs.create(ROOT, "log", 0o644, PID).await.unwrap();
    fs.flush(fh, PID).await.unwrap(); // `exec >log`: dup2 + close before any write
    fs.write(fh, 0, b"line 1\n").await.unwrap();
    fs.flush(fh, PID + 1).await.unwrap(); // a forked child closing its copy
    fs.write(fh, 7, b"line 2\n").await.unwrap();
    assert!(p.inner.head("log").await.is_err(), "not visible before the opener's close");
    fs.flush(fh, PID).await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(p.inner.get_range("log", 0..100, None).await.unwrap(), &b"line 1\nline 2\n"[..]);
}

#[tokio::test]
async fn touch_creates_an_empty_object_and_truncate_empties() {
    let (p, fs) = setup();
    let (_, fh) = fs.create(ROOT, "t", 0o644, PID).await.unwrap();
    fs.flush(fh, PID).await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(p.inner.head("t").await.unwrap().size, 0);
    put(&p, "u", b"12345").await;
    let ino = fs.lookup(ROOT, "u").await.unwrap().ino;
    fs.setattr(ino, SetAttr { size: Some(0), ..SetAttr::default() }).await.unwrap();
    assert_eq!(p.inner.head("u").await.unwrap().size, 0);
    put(&p, "v", b"12345").await;
    let ino = fs.lookup(ROOT, "v").await.unwrap().ino;
    fs.setattr(ino, SetAttr { size: Some(2), ..SetAttr::default() }).await.unwrap();
    assert_eq!(p.inner.get_range("v", 0..100, None).await.unwrap(), &b"12"[..]);
    fs.setattr(ino, SetAttr { size: Some(4), ..SetAttr::default() }).await.unwrap();
    assert_eq!(p.inner.get_range("v", 0..100, None).await.unwrap(), &b"12\0\0"[..]);
}

#[tokio::test]
async fn in_place_writes_are_staged_and_land_at_close() {
    let (p, fs) = setup();
    put(&p, "f", b"keep me").await;
    let ino = fs.lookup(ROOT, "f").await.unwrap().ino;
    let fh = fs.open(ino, OpenMode { write: true, ..OpenMode::default() }, PID).await.unwrap().fh;
    fs.write(fh, 0, b"K").await.unwrap();
    fs.write(fh, 7, b"!").await.unwrap();
    assert_eq!(p.inner.get_range("f", 0..100, None).await.unwrap(), &b"keep me"[..], "nothing lands before close");
    fs.flush(fh, PID).await.unwrap();
    assert_eq!(p.inner.get_range("f", 0..100, None).await.unwrap(), &b"Keep me!"[..]);
    // fsync/flush keep the handle writable: later writes land at the next close.
    fs.write(fh, 10, b"gap").await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(p.inner.get_range("f", 0..100, None).await.unwrap(), &b"Keep me!\0\0gap"[..]);
    // A streamed file that turns non-sequential keeps every byte already written.
    let fh = fs.open(ino, wr(), PID).await.unwrap().fh;
    fs.write(fh, 0, b"abc").await.unwrap();
    fs.write(fh, 1, b"B").await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(p.inner.get_range("f", 0..100, None).await.unwrap(), &b"aBc"[..]);
}

#[tokio::test]
async fn o_rdwr_reads_back_its_own_writes() {
    let (p, fs) = setup();
    put(&p, "db", &[7u8; 10_000]).await;
    let ino = fs.lookup(ROOT, "db").await.unwrap().ino;
    let rw = OpenMode { write: true, read: true, ..OpenMode::default() };
    let fh = fs.open(ino, rw, PID).await.unwrap().fh;
    assert_eq!(fs.read(fh, 9_990, 100).await.unwrap(), vec![7u8; 10]);
    fs.write(fh, 4096, &[1u8; 4096]).await.unwrap();
    assert_eq!(fs.read(fh, 4090, 10).await.unwrap(), &[7u8, 7, 7, 7, 7, 7, 1, 1, 1, 1][..]);
    fs.fsync(fh).await.unwrap();
    assert_eq!(p.inner.get_range("db", 4095..4097, None).await.unwrap(), &[7, 1][..]);
    fs.release(fh).await.unwrap();
}

#[tokio::test]
async fn mkdir_rmdir_unlink_semantics() {
    let (p, fs) = setup();
    let d = fs.mkdir(ROOT, "d", 0o755).await.unwrap();
    assert!(p.inner.head("d/").await.is_ok(), "marker object");
    assert_eq!(fs.mkdir(ROOT, "d", 0o755).await.unwrap_err().errno(), libc::EEXIST);
    write_file(&fs, d.ino, "f", b"x").await.unwrap();
    assert_eq!(fs.rmdir(ROOT, "d").await.unwrap_err().errno(), libc::ENOTEMPTY);
    assert_eq!(fs.unlink(ROOT, "d").await.unwrap_err().errno(), libc::EISDIR);
    assert_eq!(fs.rmdir(d.ino, "f").await.unwrap_err().errno(), libc::ENOTDIR);
    fs.unlink(d.ino, "f").await.unwrap();
    assert!(p.inner.head("d/f").await.is_err());
    fs.rmdir(ROOT, "d").await.unwrap();
    assert!(p.inner.head("d/").await.is_err());
    assert!(matches!(fs.lookup(ROOT, "d").await, Err(FsError::NotFound)));
    assert_eq!(fs.mkdir(ROOT, &"n".repeat(256), 0o755).await.unwrap_err().errno(), libc::ENAMETOOLONG);
}

#[tokio::test]
async fn read_only_refuses_every_write() {
    let p = Arc::new(Probe::default());
    put(&p, "f", b"x").await;
    let fs = Fs::new(p.clone(), FsOptions { read_only: true, ..opts() });
    let ino = fs.lookup(ROOT, "f").await.unwrap().ino;
    assert_eq!(fs.create(ROOT, "n", 0o644, PID).await.unwrap_err().errno(), libc::EROFS);
    assert_eq!(fs.mkdir(ROOT, "d", 0o755).await.unwrap_err().errno(), libc::EROFS);
    assert_eq!(fs.unlink(ROOT, "f").await.unwrap_err().errno(), libc::EROFS);
    assert_eq!(fs.open(ino, wr(), PID).await.unwrap_err().errno(), libc::EROFS);
    let trunc = SetAttr { size: Some(0), ..SetAttr::default() };
    assert_eq!(fs.setattr(ino, trunc).await.unwrap_err().errno(), libc::EROFS);
    assert_eq!(read_all(&fs, ino).await, b"x");
}

#[tokio::test]
async fn cached_stat_and_negative_lookup_cost_no_requests() {
    let (p, fs) = setup();
    put(&p, "f", b"x").await;
    let ino = fs.lookup(ROOT, "f").await.unwrap().ino;
    let (h, l) = (p.heads.load(Ordering::SeqCst), p.lists.load(Ordering::SeqCst));
    fs.getattr(ino).await.unwrap();
    fs.lookup(ROOT, "f").await.unwrap();
    assert!(fs.lookup(ROOT, "missing").await.is_err());
    let (h2, l2) = (p.heads.load(Ordering::SeqCst), p.lists.load(Ordering::SeqCst));
    assert!(fs.lookup(ROOT, "missing").await.is_err());
    assert_eq!((p.heads.load(Ordering::SeqCst), p.lists.load(Ordering::SeqCst)), (h2, l2), "negative cache hit");
    assert_eq!((h2, l2), (h + 1, l + 1), "only the miss went to the store");
    // After the TTL, another client's change shows.
    put(&p, "f", b"longer").await;
    put(&p, "missing", b"now here").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(fs.getattr(ino).await.unwrap().size, 6);
    assert_eq!(fs.lookup(ROOT, "missing").await.unwrap().size, 8);
}

#[tokio::test]
async fn a_name_that_is_file_and_directory_shows_the_directory() {
    let (p, fs) = setup();
    put(&p, "x", b"file").await;
    put(&p, "x/inner", b"i").await;
    let x = fs.lookup(ROOT, "x").await.unwrap();
    assert_eq!(x.kind, Kind::Dir);
    assert_eq!(names(&fs, ROOT).await, [".", "..", "x"]);
    assert_eq!(names(&fs, x.ino).await, [".", "..", "inner"]);
}

#[tokio::test]
async fn readdirplus_counts_lookups_for_entries_it_returns() {
    let (p, fs) = setup();
    for i in 0..5 {
        put(&p, &format!("f{i}"), b"x").await;
    }
    let fh = fs.opendir(ROOT).await.unwrap();
    let mut seen = Vec::new();
    fs.readdir(fh, 0, true, |off, n, a| {
        seen.push((off, n.to_string(), a.ino));
        seen.len() == 4 // buffer full after 3 entries
    })
    .await
    .unwrap();
    let resume = seen[2].0;
    let mut rest = Vec::new();
    fs.readdir(fh, resume, true, |_, n, _| {
        rest.push(n.to_string());
        false
    })
    .await
    .unwrap();
    assert_eq!(rest, ["f1", "f2", "f3", "f4"]);
    fs.releasedir(fh);
    let f0 = seen[2].2;
    fs.forget(f0, 1);
    assert!(fs.inodes.lock().unwrap().get(f0).is_none(), "forget frees the inode");
}

#[tokio::test]
async fn file_being_written_is_listed_and_stat_shows_its_size() {
    let (_p, fs) = setup();
    let (a, fh) = fs.create(ROOT, "w", 0o644, PID).await.unwrap();
    fs.write(fh, 0, b"12345").await.unwrap();
    assert!(names(&fs, ROOT).await.contains(&"w".to_string()));
    assert_eq!(fs.getattr(a.ino).await.unwrap().size, 5);
    assert_eq!(fs.rmdir(ROOT, "w").await.unwrap_err().errno(), libc::ENOTDIR);
    fs.release(fh).await.unwrap();
}

#[tokio::test]
async fn drain_commits_open_uploads() {
    let (p, fs) = setup();
    let (_, fh) = fs.create(ROOT, "pending", 0o644, PID).await.unwrap();
    fs.write(fh, 0, b"data").await.unwrap();
    assert_eq!(fs.drain().await, 0);
    assert_eq!(p.inner.head("pending").await.unwrap().size, 4);
}

/// `ls -l` as the kernel drives it with readdirplus: opendir, readdirplus, a stat each.
async fn ls_l(fs: &Fs, ino: u64) -> usize {
    let fh = fs.opendir(ino).await.unwrap();
    let mut inos = Vec::new();
    let mut offset = 0;
    loop {
        let before = inos.len();
        fs.readdir(fh, offset, true, |next, _, a| {
            if inos.len() - before == 100 {
                return true; // a 100-entry reply buffer is full: this entry is not taken
            }
            inos.push(a.ino);
            offset = next;
            false
        })
        .await
        .unwrap();
        if inos.len() == before {
            break;
        }
    }
    fs.releasedir(fh);
    for ino in &inos[2..] {
        fs.getattr(*ino).await.unwrap();
    }
    inos.len() - 2
}

fn counts(p: &Probe) -> (usize, usize) {
    (p.lists.load(Ordering::SeqCst), p.heads.load(Ordering::SeqCst))
}

#[tokio::test]
async fn ls_l_costs_one_list_per_thousand_entries_and_no_head() {
    let (p, fs) = setup();
    for i in 0..2500 {
        put(&p, &format!("big/f{i:05}"), b"x").await;
    }
    let dir = fs.lookup(ROOT, "big").await.unwrap().ino;
    let before = counts(&p);
    assert_eq!(ls_l(&fs, dir).await, 2500);
    let after = counts(&p);
    assert_eq!((after.0 - before.0, after.1 - before.1), (3, 0), "ceil(2500/1000) LISTs, 0 HEADs");
    assert_eq!(ls_l(&fs, dir).await, 2500);
    assert_eq!(counts(&p), after, "a second ls -l within the TTL makes no request");
    // A name absent from the fresh listing costs nothing either.
    assert!(fs.lookup(dir, "not-there").await.is_err());
    assert_eq!(counts(&p), after);
}

#[tokio::test]
async fn new_names_in_an_expired_listing_cost_one_relist_not_a_probe_each() {
    let p = Arc::new(Probe::default());
    let meta = crate::meta::MetaConfig { ttl: Some(Duration::from_millis(200)), ..Default::default() };
    let fs = Fs::new(p.clone(), FsOptions { meta, ..opts() });
    put(&p, "small/a", b"1").await;
    for i in 0..2500 {
        put(&p, &format!("big/f{i:05}"), b"x").await;
    }
    let (small, big) = (fs.lookup(ROOT, "small").await.unwrap().ino, fs.lookup(ROOT, "big").await.unwrap().ino);
    ls_l(&fs, small).await;
    ls_l(&fs, big).await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    put(&p, "small/theirs", b"2").await;
    let before = counts(&p);
    assert_eq!(fs.lookup(small, "theirs").await.unwrap().size, 1, "another client's file is seen");
    for i in 0..20 {
        assert!(fs.lookup(small, &format!("new{i}")).await.is_err());
    }
    let after = counts(&p);
    // (and one HEAD: the new object's metadata, read under --metadata-on-list auto)
    assert_eq!((after.0 - before.0, after.1 - before.1), (1, 1), "one LIST answers them all");
    // A three-page listing: one probe (HEAD + LIST) first, then listing again is cheaper.
    for i in 0..20 {
        assert!(fs.lookup(big, &format!("new{i}")).await.is_err());
    }
    let last = counts(&p);
    assert_eq!((last.0 - after.0, last.1 - after.1), (1 + 3, 1));
}

#[tokio::test]
async fn listing_shows_our_changes_at_once_and_others_after_the_ttl() {
    let (p, fs) = setup();
    put(&p, "d/a", b"1").await;
    let d = fs.lookup(ROOT, "d").await.unwrap().ino;
    assert_eq!(names(&fs, d).await, [".", "..", "a"]);
    write_file(&fs, d, "mine", b"22").await.unwrap();
    fs.mkdir(d, "sub", 0o755).await.unwrap();
    fs.unlink(d, "a").await.unwrap();
    put(&p, "d/theirs", b"3").await;
    assert_eq!(names(&fs, d).await, [".", "..", "mine", "sub"], "own changes at once");
    assert_eq!(fs.lookup(d, "mine").await.unwrap().size, 2);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(names(&fs, d).await, [".", "..", "mine", "sub", "theirs"], "others' after the TTL");
}

#[tokio::test]
async fn copying_into_a_new_directory_needs_one_put_per_file() {
    let (p, fs) = setup();
    let d = fs.mkdir(ROOT, "dst", 0o755).await.unwrap().ino;
    let before = counts(&p);
    for i in 0..20 {
        assert!(fs.lookup(d, &format!("f{i}")).await.is_err());
        write_file(&fs, d, &format!("f{i}"), b"small").await.unwrap();
    }
    assert_eq!(counts(&p), before, "no LIST or HEAD: the new directory's listing is known");
    assert_eq!(p.inner.list_page("dst/", None, None, None).await.unwrap().objects.len(), 21);
}

#[tokio::test]
async fn indefinite_ttl_never_asks_again() {
    let p = Arc::new(Probe::default());
    put(&p, "f", b"x").await;
    let meta = crate::meta::MetaConfig { ttl: None, ..crate::meta::MetaConfig::default() };
    let fs = Fs::new(p.clone(), FsOptions { meta, ..opts() });
    let ino = fs.lookup(ROOT, "f").await.unwrap().ino;
    ls_l(&fs, ROOT).await;
    let c = counts(&p);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    fs.getattr(ino).await.unwrap();
    ls_l(&fs, ROOT).await;
    assert_eq!(counts(&p), c);
}

#[tokio::test]
async fn a_file_being_written_reads_what_was_written_so_far() {
    let (_p, fs) = setup();
    let (a, fh) = fs.create(ROOT, "t", 0o644, PID).await.unwrap();
    fs.flush(fh, PID).await.unwrap(); // close(2) returned; release is still to come
    assert!(read_all(&fs, a.ino).await.is_empty());
    fs.write(fh, 0, b"data").await.unwrap();
    assert_eq!(read_all(&fs, a.ino).await, b"data", "a reader sees what the writer wrote, before any upload");
    fs.release(fh).await.unwrap();
    assert_eq!(read_all(&fs, a.ino).await, b"data");
}

#[tokio::test]
async fn page_cache_is_kept_only_while_the_etag_is_unchanged() {
    let (p, fs) = setup();
    put(&p, "f", b"v1").await;
    let ino = fs.lookup(ROOT, "f").await.unwrap().ino;
    let rd = || OpenMode { read: true, ..OpenMode::default() };
    let first = fs.open(ino, rd(), PID).await.unwrap();
    assert!(!first.keep_cache, "nothing cached yet");
    assert!(fs.open(ino, rd(), PID).await.unwrap().keep_cache, "same ETag: keep");
    put(&p, "f", b"v2 longer").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(!fs.open(ino, rd(), PID).await.unwrap().keep_cache, "object changed: drop the cache");
}
