//! What a program stored, a fresh mount with default flags shows again: modes,
//! owners, mtimes, symlinks and fifos of a tree unpacked by tar, read back by tar
//! after a remount (issue 19's first acceptance item), on moto.

mod common;

use std::path::Path;

use common::{s3_config, sh, MotoServer, Mounted};

/// `tar tvf` of a tree packed in name order, with the leading `./` entry's line
/// (which names the directory the tree was packed from) kept.
fn listing(dir: &Path, archive: &Path) -> String {
    let (code, _, err) =
        sh(&format!("tar --sort=name --numeric-owner -cf {} -C {} .", archive.display(), dir.display()));
    assert_eq!(code, 0, "tar cf of {}: {err}", dir.display());
    let (code, out, err) = sh(&format!("tar --numeric-owner -tvf {}", archive.display()));
    assert_eq!(code, 0, "{err}");
    out
}

#[test]
fn a_tree_unpacked_by_tar_lists_identically_after_a_remount() {
    let server = MotoServer::start(&["bkt"]);
    let work = tempfile::tempdir().unwrap();
    let w = work.path().display().to_string();
    let src = work.path().join("src");
    // The tree: an executable, a private directory, a private file, other owners,
    // old mtimes, a symlink, a fifo.
    let (code, _, err) = sh(&format!(
        "set -e; mkdir -p {w}/src/bin {w}/src/dirB {w}/src/docs
         printf '#!/bin/sh\\necho tool ran\\n' > {w}/src/bin/tool; chmod 0755 {w}/src/bin/tool
         echo secret > {w}/src/dirB/key; chmod 0600 {w}/src/dirB/key; chmod 0700 {w}/src/dirB
         echo hello > {w}/src/docs/readme.txt; chown 1234:5678 {w}/src/docs/readme.txt
         chown 4321:8765 {w}/src/docs
         ln -s ../bin/tool {w}/src/docs/link
         mkfifo -m 0640 {w}/src/docs/pipe
         touch -h -d '2001-02-03 04:05:06' {w}/src/docs/link
         touch -d '2001-02-03 04:05:06' {w}/src/bin/tool {w}/src/docs/readme.txt {w}/src/docs/pipe {w}/src/dirB/key
         touch -d '2002-03-04 05:06:07' {w}/src/bin {w}/src/dirB {w}/src/docs {w}/src"
    ));
    assert_eq!(code, 0, "{err}");
    let want = listing(&src, &work.path().join("src.tar"));
    let config = s3_config(work.path(), &server.endpoint, "bkt", "t");
    let cache = work.path().join("cache");
    let m = Mounted::start_in(&config, "data", &[], &[], Some(&cache));
    let tree = m.join("tree");
    let (code, _, err) =
        sh(&format!("set -e; mkdir {t}; tar --same-owner -xpf {w}/src.tar -C {t}", t = tree.display()));
    assert_eq!(code, 0, "tar x into the mount: {err}");
    assert_eq!(m.unmount(), Some(0));

    // A new cache directory: the mount knows nothing and reads what is stored.
    let cold = Mounted::start(&config, "data", &[]);
    let got = listing(&cold.join("tree"), &work.path().join("cold.tar"));
    assert_eq!(got, want, "tar tvf after a remount with default flags");
    let (code, out, err) = sh(&format!("{}", cold.join("tree/bin/tool").display()));
    assert_eq!((code, out.trim()), (0, "tool ran"), "the executable runs: {err}");
    assert_eq!(cold.unmount(), Some(0));

    // The first mount's cache directory: what it learned is used, and still right.
    let warm = Mounted::start_in(&config, "data", &[], &[], Some(&cache));
    let got = listing(&warm.join("tree"), &work.path().join("warm.tar"));
    assert_eq!(got, want, "tar tvf after a remount that keeps its cache directory");
    assert!(cache.join("metadata").join("data.jsonl").exists(), "metadata kept in the cache directory");
}

/// Unmounts an s3fs mount when dropped, even if the test fails.
struct S3fs(std::path::PathBuf);

impl Drop for S3fs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn fifos_and_device_nodes_read_the_same_in_a_second_mount_and_in_s3fs() {
    let server = MotoServer::start(&["bkt"]);
    let work = tempfile::tempdir().unwrap();
    let config = s3_config(work.path(), &server.endpoint, "bkt", "t");
    let m = Mounted::start(&config, "data", &[]);
    let mp = m.path.display().to_string();
    let (code, _, err) =
        sh(&format!("mkfifo -m 0640 {mp}/pipe && mknod -m 0620 {mp}/tty c 4 1 && mknod {mp}/disk b 8 3"));
    assert_eq!(code, 0, "{err}");
    let want = "fifo 640 0,0 pipe\ncharacter special file 620 4,1 tty\n";
    let stat = |dir: &str| {
        let (code, out, err) = sh(&format!("cd {dir} && stat -c '%F %a %t,%T %n' pipe tty && stat -c '%F %t,%T' disk"));
        assert_eq!(code, 0, "stat in {dir}: {err}");
        out
    };
    let blk = "block special file 8,3\n";
    assert_eq!(stat(&mp), format!("{want}{blk}"), "this mount");
    let second = Mounted::start(&config, "data", &[]);
    assert_eq!(stat(&second.path.display().to_string()), format!("{want}{blk}"), "a second mount");

    // s3fs-fuse on the same bucket reads the same headers.
    let passwd = work.path().join("s3fs.passwd");
    std::fs::write(&passwd, format!("{}:{}\n", common::ACCESS_KEY, common::SECRET_KEY)).unwrap();
    std::fs::set_permissions(&passwd, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let s3fs_mp = work.path().join("s3fs");
    std::fs::create_dir(&s3fs_mp).unwrap();
    let (code, _, err) = sh(&format!(
        "s3fs bkt {} -o passwd_file={} -o url={} -o use_path_request_style -o endpoint=us-east-1",
        s3fs_mp.display(),
        passwd.display(),
        server.endpoint
    ));
    assert_eq!(code, 0, "s3fs mount: {err}");
    let _s3fs = S3fs(s3fs_mp.clone());
    let s3 = format!("{}/t", s3fs_mp.display());
    // s3fs answers before its daemon has mounted.
    for _ in 0..100 {
        if common::is_mounted(&s3fs_mp) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // s3fs 1.90 (Debian 12) stores and reads no device number (it has no
    // `x-amz-meta-rdev`): it shows the type and mode, and 0,0.
    let (code, out, err) = sh(&format!("cd {s3} && stat -c '%F %a %n' pipe tty disk"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "fifo 640 pipe\ncharacter special file 620 tty\nblock special file 644 disk\n", "s3fs");
    // And back: a fifo s3fs makes is a fifo here.
    let (code, _, err) = sh(&format!("mkfifo -m 0600 {s3}/from-s3fs"));
    assert_eq!(code, 0, "{err}");
    let third = Mounted::start(&config, "data", &[]);
    let (code, out, _) = sh(&format!("stat -c '%F %a' {}", third.join("from-s3fs").display()));
    assert_eq!((code, out.as_str()), (0, "fifo 600\n"), "s3fs's fifo in a fresh mount");
}
