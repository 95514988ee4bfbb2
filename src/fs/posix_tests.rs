//! What a program stored, a fresh mount shows: metadata read on listing and kept
//! across mounts, special files, ctime and directory times, set-group-ID directories.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::inode::ROOT_INO as ROOT;
use super::tests::{opts, put, setup, PID};
use super::*;
use crate::backend::probe::Probe;
use crate::backend::ObjectStore;

/// A mount of `p` that keeps what HEADs learned in `dir` (as `<cache-dir>/metadata`).
fn mount_keeping(p: &Arc<Probe>, dir: &std::path::Path) -> Fs {
    let known_file = Some((dir.join("store.jsonl"), "memory test".to_string()));
    Fs::new(p.clone(), FsOptions { known_file, ..opts() })
}

/// Every entry of directory `ino` with its attributes, through readdirplus.
async fn ls_l(fs: &Fs, ino: u64) -> Vec<(String, Attr)> {
    let fh = fs.opendir(ino).await.unwrap();
    let mut out = Vec::new();
    let mut offset = 2;
    loop {
        let before = out.len();
        fs.readdir(fh, offset, true, |next, n, a| {
            out.push((n.to_string(), *a));
            offset = next;
            false
        })
        .await
        .unwrap();
        if out.len() == before {
            break;
        }
    }
    fs.releasedir(fh);
    out
}

fn heads(p: &Probe) -> usize {
    p.heads.load(Ordering::SeqCst)
}

#[tokio::test]
async fn a_remount_shows_stored_modes_and_reads_them_only_once() {
    let (p, fs) = setup();
    let (a, fh) = fs.create(ROOT, "tool", 0o755, PID).await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(a.perm, 0o755);
    fs.mkdir(ROOT, "private", 0o700).await.unwrap();
    fs.symlink(ROOT, "link", "tool").await.unwrap();
    put(&p, "plain", b"no metadata").await;
    let want = |l: Vec<(String, Attr)>| l.into_iter().map(|(n, a)| (n, a.kind, a.perm)).collect::<Vec<_>>();
    let expected = vec![
        ("link".to_string(), Kind::Symlink, 0o777),
        ("plain".to_string(), Kind::File, 0o644),
        ("private".to_string(), Kind::Dir, 0o700),
        ("tool".to_string(), Kind::File, 0o755),
    ];
    let cache = tempfile::tempdir().unwrap();
    let before = heads(&p);
    assert_eq!(want(ls_l(&mount_keeping(&p, cache.path()), ROOT).await), expected, "default flags");
    assert_eq!(heads(&p) - before, 4, "one HEAD per entry of a small directory");
    let before = heads(&p);
    assert_eq!(want(ls_l(&mount_keeping(&p, cache.path()), ROOT).await), expected);
    assert_eq!(heads(&p) - before, 1, "only the directory's marker: files unchanged since are known");
    // Another client replaces a file: its old metadata is not shown for the new version.
    p.inner.put("tool", bytes::Bytes::from_static(b"new version")).await.unwrap();
    let again = want(ls_l(&mount_keeping(&p, cache.path()), ROOT).await);
    assert_eq!(again[3], ("tool".to_string(), Kind::File, 0o644));
}

#[tokio::test]
async fn auto_skips_large_directories_but_a_lookup_reads_what_is_stored() {
    let (p, fs) = setup();
    for i in 0..AUTO_LIMIT {
        put(&p, &format!("big/f{i:05}"), b"x").await;
    }
    let d = fs.lookup(ROOT, "big").await.unwrap().ino;
    let (_, fh) = fs.create(d, "run", 0o750, PID).await.unwrap();
    fs.release(fh).await.unwrap();
    let fresh = Fs::new(p.clone(), opts());
    let big = fresh.lookup(ROOT, "big").await.unwrap().ino;
    let before = heads(&p);
    // A plain readdir (ls without -l) keeps no inode: the next stat is a lookup.
    let dh = fresh.opendir(big).await.unwrap();
    fresh.readdir(dh, 0, false, |_, _, _| false).await.unwrap();
    assert_eq!(heads(&p) - before, 0, "1,001 entries: more than one LIST page, no HEAD");
    let a = fresh.lookup(big, "run").await.unwrap();
    assert_eq!((a.perm, heads(&p) - before), (0o750, 1), "looked up alone: the stored mode, one HEAD");
    let never =
        FsOptions { meta: MetaConfig { metadata_on_list: MetadataOnList::Never, ..Default::default() }, ..opts() };
    let plain = Fs::new(p.clone(), never);
    let small = plain.mkdir(ROOT, "small", 0o755).await.unwrap().ino;
    assert_eq!(ls_l(&plain, small).await.len(), 0);
    let before = heads(&p);
    let listed = ls_l(&plain, ROOT).await;
    assert_eq!((listed.len(), heads(&p) - before), (2, 0), "never: listings cost no HEAD");
}

#[tokio::test]
async fn fifos_sockets_and_devices_are_objects_with_their_type_and_rdev() {
    let (p, fs) = setup();
    let fifo = fs.mknod(ROOT, "fifo", libc::S_IFIFO | 0o640, 0).await.unwrap();
    let dev = fs.mknod(ROOT, "tty", libc::S_IFCHR | 0o620, libc::makedev(4, 1) as u32).await.unwrap();
    let blk = fs.mknod(ROOT, "disk", libc::S_IFBLK | 0o660, libc::makedev(8, 0) as u32).await.unwrap();
    let sock = fs.mknod(ROOT, "sock", libc::S_IFSOCK | 0o755, 0).await.unwrap();
    assert_eq!((fifo.kind, fifo.perm, fifo.rdev), (Kind::Fifo, 0o640, 0));
    assert_eq!((dev.kind, dev.rdev), (Kind::CharDevice, libc::makedev(4, 1) as u32));
    assert_eq!((blk.kind, sock.kind), (Kind::BlockDevice, Kind::Socket));
    // Stored as s3fs stores them: an empty object, the decimal st_mode and rdev.
    let m = p.inner.head("tty").await.unwrap();
    let user = m.user.unwrap();
    assert_eq!(m.size, 0);
    assert_eq!(user["mode"], (libc::S_IFCHR | 0o620).to_string());
    assert_eq!(user["rdev"], (libc::makedev(4, 1) as u32).to_string());
    assert!(matches!(fs.mknod(ROOT, "tty", libc::S_IFIFO | 0o600, 0).await, Err(FsError::Exists)));
    // A second mount shows them, through a lookup and through a listing.
    let other = Fs::new(p.clone(), opts());
    let a = other.lookup(ROOT, "tty").await.unwrap();
    assert_eq!((a.kind, a.perm, a.rdev), (Kind::CharDevice, 0o620, libc::makedev(4, 1) as u32));
    let kinds: Vec<_> = ls_l(&Fs::new(p.clone(), opts()), ROOT).await.into_iter().map(|(n, a)| (n, a.kind)).collect();
    let want = [("disk", Kind::BlockDevice), ("fifo", Kind::Fifo), ("sock", Kind::Socket), ("tty", Kind::CharDevice)];
    assert_eq!(kinds, want.map(|(n, k)| (n.to_string(), k)));
    // They are renamed and removed like files.
    fs.rename(ROOT, "fifo", ROOT, "pipe", rename::RenameFlags::default()).await.unwrap();
    assert_eq!(Fs::new(p.clone(), opts()).lookup(ROOT, "pipe").await.unwrap().kind, Kind::Fifo);
    fs.unlink(ROOT, "pipe").await.unwrap();
    assert!(p.inner.head("pipe").await.is_err());
}

#[tokio::test]
async fn chmod_moves_ctime_not_mtime_and_entries_move_their_directory_times() {
    let (_p, fs) = setup();
    let d = fs.mkdir(ROOT, "d", 0o755).await.unwrap();
    let (f, fh) = fs.create(d.ino, "f", 0o644, PID).await.unwrap();
    fs.release(fh).await.unwrap();
    let f0 = fs.getattr(f.ino).await.unwrap();
    let d0 = fs.getattr(d.ino).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let f1 = fs.setattr(f.ino, SetAttr { mode: Some(0o600), ..SetAttr::default() }).await.unwrap();
    assert_eq!(f1.mtime, f0.mtime, "chmod keeps mtime");
    assert!(f1.ctime > f0.ctime, "chmod moves ctime");
    assert_eq!(fs.getattr(d.ino).await.unwrap().mtime, d0.mtime, "a chmod inside is no entry change");
    let (_, fh) = fs.create(d.ino, "g", 0o644, PID).await.unwrap();
    fs.release(fh).await.unwrap();
    let d1 = fs.getattr(d.ino).await.unwrap();
    assert!(d1.mtime > d0.mtime && d1.ctime >= d1.mtime, "a create moves the directory's mtime and ctime");
    tokio::time::sleep(Duration::from_millis(20)).await;
    fs.rename(d.ino, "g", d.ino, "h", rename::RenameFlags::default()).await.unwrap();
    let d2 = fs.getattr(d.ino).await.unwrap();
    assert!(d2.mtime > d1.mtime, "a rename moves it");
    tokio::time::sleep(Duration::from_millis(20)).await;
    fs.unlink(d.ino, "h").await.unwrap();
    assert!(fs.getattr(d.ino).await.unwrap().mtime > d2.mtime, "an unlink moves it");
    let t = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let f2 = fs.setattr(f.ino, SetAttr { atime: Some(t), ..SetAttr::default() }).await.unwrap();
    assert_eq!((f2.atime, f2.mtime), (t, f1.mtime), "utimensat with UTIME_OMIT for mtime");
}

#[tokio::test]
async fn a_set_group_id_directory_passes_its_group_and_the_bit_to_subdirectories() {
    let (_p, fs) = setup();
    let d = fs.mkdir(ROOT, "shared", 0o2775).await.unwrap();
    let d = fs.setattr(d.ino, SetAttr { gid: Some(4242), ..SetAttr::default() }).await.unwrap();
    assert_eq!((d.perm, d.gid), (0o2775, 4242));
    let sub = fs.mkdir(d.ino, "sub", 0o755).await.unwrap();
    let sub = fs.owned_by(d.ino, sub, 1000, 1000).await.unwrap();
    assert_eq!((sub.uid, sub.gid, sub.perm), (1000, 4242, 0o2755));
    let (f, fh) = fs.create(d.ino, "f", 0o644, PID).await.unwrap();
    let f = fs.owned_by(d.ino, f, 1000, 1000).await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!((f.gid, f.perm), (4242, 0o644), "files take the group, not the bit");
    let plain = fs.mkdir(ROOT, "plain", 0o755).await.unwrap();
    let g = fs.mkdir(plain.ino, "g", 0o755).await.unwrap();
    assert_eq!(fs.owned_by(plain.ino, g, 1000, 1000).await.unwrap().gid, 1000);
}

#[tokio::test]
async fn a_file_created_through_a_read_only_handle_becomes_an_object() {
    let (p, fs) = setup();
    let how = super::file::OpenMode { read: true, ..Default::default() };
    let (a, opened) = fs.create_with(ROOT, "touched", 0o600, how, PID).await.unwrap();
    fs.release(opened.fh).await.unwrap();
    let m = p.inner.head("touched").await.expect("the object exists after the close");
    assert_eq!((m.size, m.user.unwrap()["mode"].as_str()), (0, "33152"));
    let b = Fs::new(p.clone(), opts()).lookup(ROOT, "touched").await.unwrap();
    assert_eq!((b.perm, b.size), (a.perm, 0));
    fs.setattr(a.ino, SetAttr { mode: Some(0o111), ..SetAttr::default() }).await.expect("chmod after such a close");
}

#[tokio::test]
async fn times_shown_do_not_move_when_the_store_is_asked_again() {
    // PutObject returns no Last-Modified: what this mount showed after its own write
    // must be what a later HEAD (after the TTL) shows, else "ctime unchanged" breaks.
    let p = Arc::new(Probe { s3_times: true.into(), ..Probe::default() });
    let meta = MetaConfig { ttl: Some(Duration::from_millis(50)), ..Default::default() };
    let fs = Fs::new(p.clone(), FsOptions { meta, ..opts() });
    let (f, fh) = fs.create(ROOT, "f", 0o644, PID).await.unwrap();
    fs.write(fh, 0, b"data").await.unwrap();
    fs.release(fh).await.unwrap();
    let fifo = fs.mknod(ROOT, "fifo", libc::S_IFIFO | 0o644, 0).await.unwrap();
    let d = fs.mkdir(ROOT, "d", 0o755).await.unwrap();
    let before: Vec<Attr> = futures::future::join_all([f.ino, fifo.ino, d.ino].map(|i| fs.getattr(i)))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    tokio::time::sleep(Duration::from_millis(1100)).await; // a new second on the server
    let after: Vec<Attr> = futures::future::join_all([f.ino, fifo.ino, d.ino].map(|i| fs.getattr(i)))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    for (b, a) in before.iter().zip(&after) {
        assert_eq!((b.mtime, b.ctime), (a.mtime, a.ctime), "{:?}", a.kind);
    }
    let other = Fs::new(p.clone(), opts());
    let seen = other.lookup(ROOT, "f").await.unwrap();
    assert_eq!((seen.mtime, seen.ctime), (after[0].mtime, after[0].ctime), "another mount shows the same times");
}

#[tokio::test]
async fn a_directory_looked_up_alone_shows_what_its_marker_stores() {
    let (p, fs) = setup();
    let d = fs.mkdir(ROOT, "private", 0o700).await.unwrap();
    let old = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    fs.setattr(d.ino, SetAttr { mtime: Some(old), ..SetAttr::default() }).await.unwrap();
    let (_, fh) = fs.create(d.ino, "f", 0o644, PID).await.unwrap();
    fs.release(fh).await.unwrap();
    put(&p, "implicit/x", b"1").await;
    let fresh = Fs::new(p.clone(), opts());
    let a = fresh.lookup(ROOT, "private").await.unwrap();
    // (The create moved the mtime this mount shows; that is kept in memory only.)
    assert_eq!((a.perm, a.mtime), (0o700, old), "the stored mode and mtime");
    assert_eq!(fresh.lookup(ROOT, "implicit").await.unwrap().perm, 0o755, "no marker: the default");
    let u = fs.setattr(d.ino, SetAttr { mtime: Some(old), ..SetAttr::default() }).await.unwrap();
    assert_eq!(u.mtime, old, "utimes on a directory wins over its entries' changes");
}

#[tokio::test]
async fn a_failing_metadata_head_never_fails_the_listing() {
    let (p, fs) = setup();
    put(&p, "d/marker-less/x", b"1").await;
    put(&p, "d/f", b"1").await;
    let d = fs.lookup(ROOT, "d").await.unwrap().ino;
    *p.fail_heads.lock().unwrap() = (10, Some(crate::backend::BackendError::Other("server says 500".into())));
    let names: Vec<String> = ls_l(&fs, d).await.into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["f", "marker-less"], "listed, with defaults");
}

#[tokio::test]
async fn a_file_unlinked_while_open_has_no_links() {
    let (_p, fs) = setup();
    let (a, fh) = fs.create(ROOT, "gone", 0o644, PID).await.unwrap();
    assert_eq!(fs.getattr(a.ino).await.unwrap().nlink, 1);
    fs.unlink(ROOT, "gone").await.unwrap();
    fs.write(fh, 0, b"still writable").await.unwrap();
    assert_eq!(fs.getattr(a.ino).await.unwrap().nlink, 0, "fstat of the open descriptor");
    fs.release(fh).await.unwrap();
}
