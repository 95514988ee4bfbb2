//! rename and copy_file_range over the memory backend.

use super::file::OpenMode;
use super::inode::ROOT_INO as ROOT;
use super::rename::RenameFlags;
use super::tests::{put, read_all, setup, write_file, PID};
use super::*;
use crate::backend::probe::Probe;
use crate::backend::ObjectStore;

const PLAIN: RenameFlags = RenameFlags { noreplace: false, exchange: false };

async fn keys(p: &Probe) -> Vec<String> {
    crate::backend::list_all(&p.inner, "", None).await.unwrap().objects.into_iter().map(|o| o.key).collect()
}

#[tokio::test]
async fn a_file_rename_copies_deletes_and_replaces() {
    let (p, fs) = setup();
    put(&p, "a", b"new").await;
    put(&p, "b", b"old").await;
    let a = fs.lookup(ROOT, "a").await.unwrap().ino;
    fs.lookup(ROOT, "b").await.unwrap();
    let noreplace = RenameFlags { noreplace: true, ..PLAIN };
    assert_eq!(fs.rename(ROOT, "a", ROOT, "b", noreplace).await.unwrap_err().errno(), libc::EEXIST);
    fs.rename(ROOT, "a", ROOT, "b", PLAIN).await.unwrap();
    assert_eq!(keys(&p).await, ["b"]);
    assert_eq!(p.inner.get_range("b", 0..10, None).await.unwrap(), &b"new"[..]);
    assert_eq!(fs.lookup(ROOT, "b").await.unwrap().ino, a, "the inode moves with the name");
    assert!(matches!(fs.lookup(ROOT, "a").await, Err(FsError::NotFound)));
    assert_eq!(read_all(&fs, a).await, b"new");
}

#[tokio::test]
async fn a_directory_rename_moves_every_object_below_it() {
    let (p, fs) = setup();
    for k in ["d/", "d/x", "d/sub/y", "e/"] {
        put(&p, k, b"1").await;
    }
    let d = fs.lookup(ROOT, "d").await.unwrap().ino;
    let sub = fs.lookup(d, "sub").await.unwrap().ino;
    let e = fs.lookup(ROOT, "e").await.unwrap().ino;
    assert_eq!(fs.rename(ROOT, "d", d, "inside", PLAIN).await.unwrap_err().errno(), libc::EINVAL);
    fs.rename(ROOT, "d", e, "moved", PLAIN).await.unwrap();
    assert_eq!(keys(&p).await, ["e/", "e/moved/", "e/moved/sub/y", "e/moved/x"]);
    let y = fs.lookup(sub, "y").await.unwrap();
    assert_eq!(fs.inode(y.ino).unwrap().key(), "e/moved/sub/y", "cached descendants follow");
    assert_eq!(fs.rename(e, "moved", ROOT, "e", PLAIN).await.unwrap_err().errno(), libc::ENOTEMPTY);
    write_file(&fs, ROOT, "f", b"f").await.unwrap();
    assert_eq!(fs.rename(ROOT, "f", e, "moved", PLAIN).await.unwrap_err().errno(), libc::EISDIR);
    assert_eq!(fs.rename(e, "moved", ROOT, "f", PLAIN).await.unwrap_err().errno(), libc::ENOTDIR);
}

#[tokio::test]
async fn renaming_a_file_open_for_writing_uploads_it_under_the_new_name() {
    let (p, fs) = setup();
    let (_, fh) = fs.create(ROOT, "tmp", 0o644, PID).await.unwrap();
    fs.write(fh, 0, b"saved").await.unwrap();
    fs.rename(ROOT, "tmp", ROOT, "final", PLAIN).await.unwrap();
    fs.write(fh, 5, b"!").await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(keys(&p).await, ["final"]);
    assert_eq!(p.inner.get_range("final", 0..10, None).await.unwrap(), &b"saved!"[..]);
}

#[tokio::test]
async fn copy_file_range_of_a_whole_file_is_a_server_side_copy() {
    let (p, fs) = setup();
    put(&p, "src", &[5u8; 3000]).await;
    let src = fs.lookup(ROOT, "src").await.unwrap().ino;
    let fh_in = fs.open(src, OpenMode { read: true, ..OpenMode::default() }, PID).await.unwrap().fh;
    let (_, fh_out) = fs.create(ROOT, "dst", 0o644, PID).await.unwrap();
    assert_eq!(fs.copy_file_range(fh_in, 0, fh_out, 0, 1 << 30).await.unwrap(), 3000);
    assert_eq!(fs.copy_file_range(fh_in, 3000, fh_out, 3000, 1 << 30).await.unwrap(), 0, "then EOF");
    let partial = fs.copy_file_range(fh_in, 10, fh_out, 0, 5).await.unwrap_err();
    assert_eq!(partial.errno(), libc::EOPNOTSUPP, "the kernel falls back to read/write");
    fs.release(fh_out).await.unwrap();
    fs.release(fh_in).await.unwrap();
    assert_eq!(Probe::count(&p.copies), 1);
    assert_eq!(p.sent(), 0, "no data went through the mount");
    assert_eq!(p.inner.get_range("dst", 0..5000, None).await.unwrap(), vec![5u8; 3000]);
}

#[tokio::test]
async fn a_file_renamed_over_one_open_for_writing_is_not_overwritten_at_its_close() {
    let (p, fs) = setup();
    put(&p, "a", b"renamed").await;
    fs.lookup(ROOT, "a").await.unwrap();
    let (_, fh) = fs.create(ROOT, "b", 0o644, PID).await.unwrap();
    fs.write(fh, 0, b"x").await.unwrap();
    fs.flush(fh, PID).await.unwrap();
    fs.rename(ROOT, "a", ROOT, "b", PLAIN).await.unwrap();
    fs.write(fh, 1, b"y").await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(p.inner.get_range("b", 0..100, None).await.unwrap(), &b"renamed"[..]);
}
