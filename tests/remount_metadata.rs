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
