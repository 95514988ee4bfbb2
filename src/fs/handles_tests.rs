//! One file, many handles: every handle of an inode sees one state, over the
//! memory backend. The real-mount versions are in tests/fuse_local.rs and tests/model.rs.

use std::sync::Arc;
use std::time::Duration;

use super::file::OpenMode;
use super::inode::ROOT_INO as ROOT;
use super::tests::{put, read_all, setup, write_file, PID};
use super::*;
use crate::backend::ObjectStore;

fn append() -> OpenMode {
    OpenMode { write: true, append: true, ..OpenMode::default() }
}

fn rdwr() -> OpenMode {
    OpenMode { write: true, read: true, ..OpenMode::default() }
}

fn rd() -> OpenMode {
    OpenMode { read: true, ..OpenMode::default() }
}

async fn stored(p: &crate::backend::probe::Probe, key: &str) -> Vec<u8> {
    p.inner.get_range(key, 0..1 << 20, None).await.unwrap().to_vec()
}

/// The report's sequence: two appenders open, a third writes and closes between their
/// writes. POSIX gives every line once, in write order.
#[tokio::test]
async fn appenders_on_one_file_land_at_the_shared_end_in_write_order() {
    let (p, fs) = setup();
    write_file(&fs, ROOT, "log", b"").await.unwrap();
    let ino = fs.lookup(ROOT, "log").await.unwrap().ino;
    let fd1 = fs.open(ino, append(), PID).await.unwrap().fh;
    let fd2 = fs.open(ino, append(), PID + 1).await.unwrap().fh;
    // The kernel sends the offset it believes is the end; a stale one must not matter.
    fs.write(fd1, 0, b"a\n").await.unwrap();
    let fd3 = fs.open(ino, append(), PID + 2).await.unwrap().fh;
    fs.write(fd3, 0, b"c\n").await.unwrap();
    fs.flush(fd3, PID + 2).await.unwrap();
    fs.release(fd3).await.unwrap();
    assert_eq!(stored(&p, "log").await, b"a\nc\n", "the third close uploads everything written so far");
    fs.write(fd2, 0, b"b\n").await.unwrap();
    fs.flush(fd2, PID + 1).await.unwrap();
    fs.release(fd2).await.unwrap();
    fs.flush(fd1, PID).await.unwrap();
    fs.release(fd1).await.unwrap();
    assert_eq!(stored(&p, "log").await, b"a\nc\nb\n");
    assert_eq!(read_all(&fs, ino).await, b"a\nc\nb\n");
    assert!(fs.files.is_empty(), "the shared state goes with the last handle");
}

/// `xargs -P`: many processes at once, each open(O_CREAT|O_APPEND), one write, close.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appenders_keep_every_line_exactly_once() {
    for n in [16u32, 64] {
        let (p, fs) = setup();
        let fs = Arc::new(fs);
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let fs = fs.clone();
                tokio::spawn(async move {
                    let pid = 1000 + i;
                    let how = OpenMode { write: true, append: true, ..OpenMode::default() };
                    let fh = match fs.lookup(ROOT, "log").await {
                        Ok(a) => fs.open(a.ino, how, pid).await?.fh,
                        Err(_) => fs.create_with(ROOT, "log", 0o644, how, pid).await?.1.fh,
                    };
                    fs.write(fh, 0, format!("line {i:03}\n").as_bytes()).await?;
                    fs.flush(fh, pid).await?;
                    fs.release(fh).await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let body = String::from_utf8(stored(&p, "log").await).unwrap();
        let mut lines: Vec<&str> = body.lines().collect();
        lines.sort();
        let want: Vec<String> = (0..n).map(|i| format!("line {i:03}")).collect();
        assert_eq!(lines, want, "{n} appenders: every line once, nothing else");
        assert!(!body.contains('\0'));
    }
}

#[tokio::test]
async fn two_read_write_handles_interleave_like_one_file() {
    let (p, fs) = setup();
    put(&p, "db", &[b'.'; 100]).await;
    let ino = fs.lookup(ROOT, "db").await.unwrap().ino;
    let a = fs.open(ino, rdwr(), PID).await.unwrap().fh;
    let b = fs.open(ino, rdwr(), PID).await.unwrap().fh;
    fs.write(a, 10, b"AAAA").await.unwrap();
    assert_eq!(fs.read(b, 8, 8).await.unwrap(), &b"..AAAA.."[..]);
    fs.write(b, 12, b"BB").await.unwrap();
    assert_eq!(fs.read(a, 10, 4).await.unwrap(), &b"AABB"[..]);
    fs.write(b, 120, b"end").await.unwrap();
    assert_eq!(fs.read(a, 98, 30).await.unwrap().len(), 25, "a sees b's growth, with the gap as zeros");
    fs.setattr(ino, SetAttr { size: Some(11), ..SetAttr::default() }).await.unwrap();
    assert_eq!(fs.read(b, 0, 100).await.unwrap().len(), 11, "a truncate shows through every handle");
    fs.release(a).await.unwrap();
    assert_eq!(stored(&p, "db").await, [b'.'; 100], "the last writer's close commits, not the first");
    fs.write(b, 11, b"!").await.unwrap();
    fs.release(b).await.unwrap();
    assert_eq!(stored(&p, "db").await, b"..........A!");
}

#[tokio::test]
async fn a_reader_open_before_the_writer_sees_its_bytes_and_its_commits() {
    let (p, fs) = setup();
    put(&p, "f", b"version one").await;
    let ino = fs.lookup(ROOT, "f").await.unwrap().ino;
    let r = fs.open(ino, rd(), PID).await.unwrap().fh;
    assert_eq!(fs.read(r, 0, 7).await.unwrap(), &b"version"[..]);
    let w = fs.open(ino, OpenMode { write: true, truncate: true, ..OpenMode::default() }, PID).await.unwrap().fh;
    assert_eq!(fs.read(r, 0, 100).await.unwrap(), &b""[..], "O_TRUNC empties the file for every handle");
    fs.write(w, 0, b"streamed ").await.unwrap();
    assert_eq!(fs.read(r, 0, 100).await.unwrap(), &b"streamed "[..], "served from the stream's memory");
    fs.fsync(w).await.unwrap();
    fs.write(w, 9, b"and staged").await.unwrap();
    assert_eq!(fs.read(r, 0, 100).await.unwrap(), &b"streamed and staged"[..]);
    fs.release(w).await.unwrap();
    assert_eq!(fs.read(r, 0, 100).await.unwrap(), &b"streamed and staged"[..], "our own commit is followed");
    fs.release(r).await.unwrap();
}

#[tokio::test]
async fn reading_bytes_a_stream_already_sent_stages_the_file_and_loses_nothing() {
    let (p, fs) = setup();
    let (a, w) = fs.create(ROOT, "big", 0o644, PID).await.unwrap();
    let data: Vec<u8> = (0..12 * crate::data::MIB as usize).map(|i| (i % 251) as u8).collect();
    for (i, chunk) in data.chunks(1 << 20).enumerate() {
        fs.write(w, (i << 20) as u64, chunk).await.unwrap();
    }
    let r = fs.open(a.ino, rd(), PID).await.unwrap().fh;
    assert_eq!(fs.read(r, 12 << 20, 77).await.unwrap().len(), 0);
    assert_eq!(fs.read(r, 100, 10).await.unwrap(), &data[100..110], "a byte of the first, sent part");
    fs.write(w, data.len() as u64, b"tail").await.unwrap();
    fs.release(w).await.unwrap();
    fs.release(r).await.unwrap();
    let mut want = data.clone();
    want.extend_from_slice(b"tail");
    assert_eq!(read_all(&fs, a.ino).await, want);
    assert_eq!(p.inner.open_uploads(), 0);
}

#[tokio::test]
async fn estale_only_when_another_client_replaced_the_version_a_handle_read() {
    let (p, fs) = setup();
    put(&p, "f", &[1u8; 300_000]).await;
    let ino = fs.lookup(ROOT, "f").await.unwrap().ino;
    let old = fs.open(ino, rd(), PID).await.unwrap().fh;
    assert_eq!(fs.read(old, 0, 1).await.unwrap(), &[1u8][..]);
    put(&p, "f", &[2u8; 300_000]).await; // another client
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let new = fs.open(ino, rd(), PID).await.unwrap().fh;
    assert_eq!(fs.read(new, 299_999, 1).await.unwrap(), &[2u8][..], "a new open sees the new version");
    // The old handle never mixes versions: what it had fetched, or ESTALE.
    match fs.read(old, 299_999, 1).await {
        Ok(b) => assert_eq!(b, &[1u8][..]),
        Err(e) => assert_eq!(e.errno(), libc::ESTALE),
    }
    fs.release(old).await.unwrap();
    fs.release(new).await.unwrap();
}

#[tokio::test]
async fn unlinked_open_file_keeps_its_content_for_every_handle() {
    let (p, fs) = setup();
    put(&p, "tmp", b"scratch").await;
    let ino = fs.lookup(ROOT, "tmp").await.unwrap().ino;
    let r = fs.open(ino, rd(), PID).await.unwrap().fh;
    let w = fs.open(ino, append(), PID).await.unwrap().fh;
    fs.unlink(ROOT, "tmp").await.unwrap();
    fs.write(w, 0, b" pad").await.unwrap();
    assert_eq!(fs.read(r, 0, 100).await.unwrap(), &b"scratch pad"[..]);
    fs.release(w).await.unwrap();
    fs.release(r).await.unwrap();
    assert!(p.inner.head("tmp").await.is_err(), "the name does not come back");
}

#[tokio::test]
async fn a_shells_close_without_writing_does_not_commit_another_handles_data() {
    let (p, fs) = setup();
    let (a, w) = fs.create(ROOT, "out", 0o644, PID).await.unwrap();
    fs.write(w, 0, b"partial").await.unwrap();
    let r = fs.open(a.ino, rd(), PID + 1).await.unwrap().fh;
    fs.flush(r, PID + 1).await.unwrap();
    fs.release(r).await.unwrap();
    assert!(p.inner.head("out").await.is_err(), "a reader's close uploads nothing");
    fs.flush(w, PID).await.unwrap();
    assert_eq!(stored(&p, "out").await, b"partial");
    fs.release(w).await.unwrap();
}

#[tokio::test]
async fn a_directory_rename_carries_its_open_files() {
    let (p, fs) = setup();
    put(&p, "d/kept", b"stored").await;
    let d = fs.lookup(ROOT, "d").await.unwrap().ino;
    let kept = fs.lookup(d, "kept").await.unwrap().ino;
    let r = fs.open(kept, rd(), PID).await.unwrap().fh;
    let (_, w) = fs.create(d, "new", 0o644, PID).await.unwrap();
    fs.write(w, 0, b"pending").await.unwrap();
    fs.rename(ROOT, "d", ROOT, "e", rename::RenameFlags::default()).await.unwrap();
    assert_eq!(stored(&p, "e/new").await, b"pending", "what was written moved with the directory");
    fs.write(w, 7, b" and more").await.unwrap();
    assert_eq!(fs.read(r, 0, 100).await.unwrap(), &b"stored"[..], "a reader follows the move");
    fs.release(w).await.unwrap();
    fs.release(r).await.unwrap();
    assert_eq!(stored(&p, "e/new").await, b"pending and more");
    assert!(p.inner.head("d/new").await.is_err() && p.inner.head("d/kept").await.is_err());
}

#[tokio::test]
async fn an_ftruncate_is_committed_by_its_openers_close() {
    let (p, fs) = setup();
    put(&p, "t", b"0123456789").await;
    let ino = fs.lookup(ROOT, "t").await.unwrap().ino;
    let w = fs.open(ino, OpenMode { write: true, ..OpenMode::default() }, PID).await.unwrap().fh;
    let keep_open = fs.open(ino, OpenMode { write: true, ..OpenMode::default() }, PID + 1).await.unwrap().fh;
    fs.setattr(ino, SetAttr { size: Some(4), fh: Some(w), ..SetAttr::default() }).await.unwrap();
    fs.flush(w, PID).await.unwrap();
    assert_eq!(stored(&p, "t").await, b"0123", "close(2) reports the truncate's upload");
    fs.release(w).await.unwrap();
    fs.release(keep_open).await.unwrap();
}

#[tokio::test]
async fn fstat_of_an_unlinked_open_file_keeps_answering_after_the_ttl() {
    let (p, fs) = setup();
    put(&p, "gone", b"12345").await;
    let ino = fs.lookup(ROOT, "gone").await.unwrap().ino;
    let r = fs.open(ino, rd(), PID).await.unwrap().fh;
    fs.unlink(ROOT, "gone").await.unwrap();
    put(&p, "gone", b"another object").await; // the name now means something else
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(fs.getattr(ino).await.unwrap().size, 5, "the open file, not the name's new object");
    assert_eq!(fs.read(r, 0, 100).await.unwrap(), &b"12345"[..]);
    fs.release(r).await.unwrap();
}

/// git's lock files: open(O_CREAT|O_EXCL), close without writing, unlink. The release
/// of the closed handle (asynchronous in FUSE) can race the unlink; it must never bring
/// the deleted name back as an empty object (a stale `config.lock` breaks the next git
/// command, here or on another machine). The DELETE's reply is slowed so that the
/// release comes between the object's removal and the unlink's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_release_racing_an_unlink_never_brings_the_name_back() {
    let (p, fs) = setup();
    let fs = Arc::new(fs);
    p.delete_reply_ms.store(20, std::sync::atomic::Ordering::SeqCst);
    let excl = OpenMode { write: true, read: true, truncate: true, exclusive: true, ..OpenMode::default() };
    for round in 0..5 {
        let (_, o) = fs.create_with(ROOT, "config.lock", 0o644, excl, PID).await.unwrap();
        fs.flush(o.fh, PID).await.unwrap(); // nothing written: no commit yet
        let b = fs.clone();
        let unlink = tokio::spawn(async move { b.unlink(ROOT, "config.lock").await });
        tokio::time::sleep(Duration::from_millis(10)).await; // the DELETE has landed
        let _ = fs.release(o.fh).await;
        unlink.await.unwrap().unwrap();
        assert!(p.inner.head("config.lock").await.is_err(), "round {round}: the unlinked lock file came back");
    }
}

/// The same race with a rename over the file (`mv new.tmp file` while `file`'s last
/// handle is being released): the released handle must not overwrite the moved file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_release_racing_a_rename_over_the_file_does_not_overwrite_it() {
    let (p, fs) = setup();
    let fs = Arc::new(fs);
    let excl = OpenMode { write: true, read: true, truncate: true, exclusive: true, ..OpenMode::default() };
    write_file(&fs, ROOT, "new.tmp", b"the new content").await.unwrap();
    let (_, o) = fs.create_with(ROOT, "file", 0o644, excl, PID).await.unwrap();
    fs.flush(o.fh, PID).await.unwrap(); // nothing written: the empty file is not stored yet
    p.delete_reply_ms.store(20, std::sync::atomic::Ordering::SeqCst);
    let b = fs.clone();
    let mv = tokio::spawn(async move { b.rename(ROOT, "new.tmp", ROOT, "file", rename::RenameFlags::default()).await });
    tokio::time::sleep(Duration::from_millis(10)).await; // copied, source being deleted
    let _ = fs.release(o.fh).await;
    mv.await.unwrap().unwrap();
    assert_eq!(stored(&p, "file").await, b"the new content");
}
