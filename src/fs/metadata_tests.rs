//! chmod/chown/utimens/symlink kept in user metadata, as s3fs does.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;

use super::inode::ROOT_INO as ROOT;
use super::tests::{opts, put, read_all, setup, PID};
use super::*;
use crate::backend::probe::Probe;
use crate::backend::{ObjectStore, UserMeta};

async fn user_of(p: &Probe, key: &str) -> UserMeta {
    p.inner.head(key).await.unwrap().user.unwrap()
}

/// A second mount of the same store: nothing cached.
fn remount(p: &Arc<Probe>) -> Fs {
    Fs::new(p.clone(), opts())
}

#[tokio::test]
async fn chmod_chown_utimens_are_stored_as_s3fs_headers_and_survive_a_remount() {
    let (p, fs) = setup();
    put(&p, "f", b"x").await;
    let a = fs.lookup(ROOT, "f").await.unwrap();
    let unchanged = SetAttr { mode: Some(0o100644), uid: Some(a.uid), gid: Some(a.gid), ..SetAttr::default() };
    fs.setattr(a.ino, unchanged).await.unwrap();
    assert_eq!(Probe::count(&p.meta_updates), 0, "no change, no request");
    let when = UNIX_EPOCH + Duration::new(1_600_000_000, 123);
    let set = SetAttr { mode: Some(0o600), uid: Some(1234), gid: Some(99), mtime: Some(when), ..SetAttr::default() };
    let shown = fs.setattr(a.ino, set).await.unwrap();
    assert_eq!((shown.perm, shown.uid, shown.gid, shown.mtime), (0o600, 1234, 99, when));
    let user = user_of(&p, "f").await;
    assert_eq!(user["mode"], (libc::S_IFREG | 0o600).to_string());
    assert_eq!((user["uid"].as_str(), user["gid"].as_str()), ("1234", "99"));
    assert_eq!(user["mtime"], "1600000000.000000123");
    assert_eq!(p.inner.get_range("f", 0..10, None).await.unwrap(), &b"x"[..], "the body is kept");
    let fs2 = remount(&p);
    let b = fs2.lookup(ROOT, "f").await.unwrap();
    assert_eq!((b.perm, b.uid, b.gid, b.mtime), (0o600, 1234, 99, when));
}

#[tokio::test]
async fn objects_written_by_s3fs_show_their_mode_owner_and_mtime() {
    let (p, fs) = setup();
    let user: UserMeta = [("mode", "33261"), ("uid", "7"), ("gid", "8"), ("mtime", "1500000000")]
        .map(|(k, v)| (k.into(), v.into()))
        .into();
    p.inner.put_with("tool", Bytes::from_static(b"#!/bin/sh\n"), &user).await.unwrap();
    let a = fs.lookup(ROOT, "tool").await.unwrap();
    assert_eq!((a.perm, a.uid, a.gid), (0o755, 7, 8));
    assert_eq!(a.mtime, UNIX_EPOCH + Duration::from_secs(1_500_000_000));
}

#[tokio::test]
async fn symlinks_are_objects_holding_their_target() {
    let (p, fs) = setup();
    let l = fs.symlink(ROOT, "link", "../some/target").await.unwrap();
    assert_eq!((l.kind, l.size), (Kind::Symlink, 14));
    assert_eq!(fs.readlink(l.ino).await.unwrap(), &b"../some/target"[..]);
    assert_eq!(p.inner.get_range("link", 0..100, None).await.unwrap(), &b"../some/target"[..]);
    assert_eq!(user_of(&p, "link").await["mode"], (libc::S_IFLNK | 0o777).to_string());
    assert_eq!(fs.symlink(ROOT, "link", "x").await.unwrap_err().errno(), libc::EEXIST);
    let fs2 = remount(&p);
    let l2 = fs2.lookup(ROOT, "link").await.unwrap();
    assert_eq!(l2.kind, Kind::Symlink);
    assert_eq!(fs2.readlink(l2.ino).await.unwrap(), &b"../some/target"[..]);
}

#[tokio::test]
async fn a_mode_given_at_create_and_a_chmod_before_close_ride_with_the_upload() {
    let (p, fs) = setup();
    let (a, fh) = fs.create(ROOT, "secret", 0o600, PID).await.unwrap();
    assert_eq!(a.perm, 0o600);
    fs.write(fh, 0, b"data").await.unwrap();
    let later = UNIX_EPOCH + Duration::from_secs(1_234_567_890);
    fs.setattr(a.ino, SetAttr { mtime: Some(later), ..SetAttr::default() }).await.unwrap();
    fs.flush(fh, PID).await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(Probe::count(&p.meta_updates), 0, "sent with the data, not as a second request");
    let user = user_of(&p, "secret").await;
    assert_eq!(user["mode"], (libc::S_IFREG | 0o600).to_string());
    assert_eq!(user["mtime"], "1234567890");
    assert_eq!(read_all(&fs, a.ino).await, b"data");
}

#[tokio::test]
async fn a_relisting_keeps_known_metadata_while_the_object_is_unchanged() {
    let (p, fs) = setup();
    put(&p, "f", b"x").await;
    let a = fs.lookup(ROOT, "f").await.unwrap();
    fs.setattr(a.ino, SetAttr { mode: Some(0o640), ..SetAttr::default() }).await.unwrap();
    let seen = |fs: &Fs| {
        let mut perms = Vec::new();
        let fh = futures::executor::block_on(fs.opendir(ROOT)).unwrap();
        futures::executor::block_on(fs.readdir(fh, 0, true, |_, n, a| {
            if n == "f" {
                perms.push(a.perm);
            }
            false
        }))
        .unwrap();
        perms
    };
    assert_eq!(seen(&fs), [0o640]);
    p.inner.put("f", Bytes::from_static(b"rewritten by another client")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the listing TTL
    assert_eq!(seen(&fs), [0o644], "a new object has no mode: the default shows");
    let heads = p.heads.load(Ordering::SeqCst);
    assert_eq!(heads, 3, "lookup + chmod's read of the old metadata + the new version's, read by the listing");
}

#[tokio::test]
async fn chmod_of_a_directory_lands_on_its_marker() {
    let (p, fs) = setup();
    let d = fs.mkdir(ROOT, "private", 0o700).await.unwrap();
    assert_eq!(d.perm, 0o700);
    assert_eq!(user_of(&p, "private/").await["mode"], (libc::S_IFDIR | 0o700).to_string());
    put(&p, "implicit/x", b"1").await;
    let i = fs.lookup(ROOT, "implicit").await.unwrap();
    fs.setattr(i.ino, SetAttr { mode: Some(0o750), ..SetAttr::default() }).await.unwrap();
    assert_eq!(user_of(&p, "implicit/").await["mode"], (libc::S_IFDIR | 0o750).to_string());
}

#[tokio::test]
async fn reading_metadata_on_list_shows_modes_and_symlinks_of_a_cold_listing() {
    let (p, fs) = setup();
    let (a, fh) = fs.create(ROOT, "run", 0o755, PID).await.unwrap();
    fs.release(fh).await.unwrap();
    fs.symlink(ROOT, "link", "run").await.unwrap();
    fs.mkdir(ROOT, "d", 0o700).await.unwrap();
    assert_eq!(a.perm, 0o755);
    let listed = |fs: Fs| async move {
        let fh = fs.opendir(ROOT).await.unwrap();
        let mut out = Vec::new();
        fs.readdir(fh, 2, true, |_, n, a| {
            out.push((n.to_string(), a.kind, a.perm));
            false
        })
        .await
        .unwrap();
        out
    };
    let with =
        |m: MetadataOnList| FsOptions { meta: MetaConfig { metadata_on_list: m, ..Default::default() }, ..opts() };
    let cold = listed(Fs::new(p.clone(), with(MetadataOnList::Never))).await;
    assert_eq!(cold[2], ("run".into(), Kind::File, 0o644), "plain listings show defaults: {cold:?}");
    let want =
        [("d".into(), Kind::Dir, 0o700), ("link".into(), Kind::Symlink, 0o777), ("run".into(), Kind::File, 0o755)];
    for m in [MetadataOnList::Auto, MetadataOnList::Always] {
        let heads = p.heads.load(Ordering::SeqCst);
        assert_eq!(listed(Fs::new(p.clone(), with(m))).await, want, "{m:?}");
        assert_eq!(p.heads.load(Ordering::SeqCst) - heads, 3, "one HEAD per entry");
    }
}

#[tokio::test]
async fn an_append_keeps_the_stored_mode_when_only_a_listing_was_seen() {
    let (p, fs) = setup();
    let user: UserMeta = [("mode", "33152"), ("x-other", "kept")].map(|(k, v)| (k.into(), v.into())).into();
    p.inner.put_with("secret", Bytes::from_static(b"one\n"), &user).await.unwrap();
    let dh = fs.opendir(ROOT).await.unwrap();
    let mut ino = 0;
    fs.readdir(dh, 0, true, |_, n, a| {
        if n == "secret" {
            ino = a.ino;
        }
        false
    })
    .await
    .unwrap();
    let fh =
        fs.open(ino, super::file::OpenMode { write: true, append: true, ..Default::default() }, PID).await.unwrap().fh;
    fs.write(fh, 4, b"two\n").await.unwrap();
    fs.release(fh).await.unwrap();
    let stored = user_of(&p, "secret").await;
    assert_eq!((stored["mode"].as_str(), stored["x-other"].as_str()), ("33152", "kept"));
    assert_eq!(p.inner.get_range("secret", 0..100, None).await.unwrap(), &b"one\ntwo\n"[..]);
}
