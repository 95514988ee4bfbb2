//! Mounts of remote-store's `sql-blob` backend type on SQLite and on a throwaway
//! PostgreSQL cluster, through the real CLI: remote-store itself on the same config
//! file, programs on the mount, and bad input failing with one line.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::interop::{remote_store, sh, tree_sums};
use common::postgres::{Postgres, PASSWORD};
use common::{Mounted, BIN};

fn sql_config(dir: &Path, url: &str, extra: &str) -> PathBuf {
    let sub = tempfile::tempdir_in(dir).unwrap().keep();
    let text = format!(
        "[backends.db]\ntype = \"sql-blob\"\n[backends.db.options]\nurl = \"{url}\"\ntable_name = \"files\"\n{extra}\
         [stores.data]\nbackend = \"db\"\nroot_path = \"tree\"\n"
    );
    let p = sub.join("rstore.toml");
    fs::write(&p, text).unwrap();
    p
}

/// remote-store writes a tree the mount reads byte-identical; the mount writes a tree
/// (cp -r, tar x, append, rename, rm) that remote-store reads back identical.
fn share_a_tree(cfg: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let mut theirs = BTreeMap::new();
    theirs.insert("py/a.txt", b"hello from remote-store\n".to_vec());
    theirs.insert("py/sub/b.bin", common::pattern(3 << 20, 7));
    theirs.insert("py/sub/deep/c.txt", b"c".to_vec());
    remote_store(cfg, &theirs);
    let m = Mounted::start(cfg, "data", &["--metadata-ttl", "0"]);
    let seen = tree_sums(&m.join("py"));
    for (path, data) in &theirs {
        assert_eq!(seen[path.strip_prefix("py/").unwrap()], common::sha256(data), "{path}");
    }
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("x/y")).unwrap();
    fs::write(src.join("x/one.txt"), "one\n").unwrap();
    fs::write(src.join("x/y/big.bin"), common::pattern(20 << 20, 3)).unwrap();
    fs::write(src.join("x/y/gone.txt"), "to be removed").unwrap();
    let (mnt, s) = (m.path.display().to_string(), src.display().to_string());
    sh(&format!("cp -r {s}/x {mnt}/copied"));
    sh(&format!("tar cf {s}/t.tar -C {s} x && mkdir {mnt}/untarred && tar xf {s}/t.tar -C {mnt}/untarred"));
    sh(&format!("printf 'two\\n' >> {mnt}/copied/one.txt"));
    sh(&format!("mv {mnt}/copied/y {mnt}/copied/moved"));
    sh(&format!("rm {mnt}/copied/moved/gone.txt {mnt}/untarred/x/y/gone.txt"));
    let ours = tree_sums(&m.path);
    drop(m);
    let after = remote_store(cfg, &BTreeMap::new());
    assert_eq!(after, ours, "remote-store reads exactly the mount's tree");
    assert_eq!(after.get("copied/one.txt"), Some(&common::sha256(b"one\ntwo\n")));
}

#[test]
fn remote_store_and_a_sqlite_mount_share_a_tree() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("objects.db");
    share_a_tree(&sql_config(dir.path(), &format!("sqlite:///{}", db.display()), ""));
}

#[test]
fn remote_store_and_a_postgresql_mount_share_a_tree() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    share_a_tree(&sql_config(dir.path(), &pg.url("+psycopg"), ""));
}

#[test]
fn a_file_over_max_blob_size_is_efbig() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("objects.db");
    let cfg = sql_config(dir.path(), &format!("sqlite:///{}", db.display()), "max_blob_size = 1048576\n");
    let m = Mounted::start(&cfg, "data", &[]);
    fs::write(m.join("small.bin"), vec![1u8; 1000]).unwrap();
    // Small files are sent whole at close: close and fsync report it (fs::write would
    // drop close's error, as many programs do not; cp does).
    use std::io::Write;
    let mut f = fs::File::create(m.join("big.bin")).unwrap();
    f.write_all(&vec![1u8; 3 << 20]).unwrap();
    let err = f.sync_all().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EFBIG), "{err}");
    drop(f);
    // A large file streams in parts: the write itself fails once past the limit.
    let mut f = fs::File::create(m.join("huge.bin")).unwrap();
    let err = (0..40).try_for_each(|_| f.write_all(&vec![2u8; 1 << 20])).and_then(|_| f.sync_all()).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EFBIG), "{err}");
    drop(f);
    let out = Command::new("cp").arg(m.join("small.bin")).arg(m.join("copy.bin")).status().unwrap();
    assert!(out.success());
    let sizes: Vec<u64> =
        ["big.bin", "huge.bin"].iter().filter_map(|n| fs::metadata(m.join(n)).ok()).map(|m| m.len()).collect();
    drop(m);
    // Nothing over the limit reached the database.
    let m = Mounted::start(&cfg, "data", &[]);
    for n in ["big.bin", "huge.bin"] {
        assert!(!m.join(n).exists(), "{n} is not stored (sizes seen before: {sizes:?})");
    }
}

#[test]
fn bad_sql_stores_fail_fast_with_one_line() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mp = d.join("mnt");
    fs::create_dir(&mp).unwrap();
    let dead = format!("postgresql://rstore:x@127.0.0.1:{}/rstore", common::free_port());
    let cases = [
        (sql_config(d, &pg.url("").replace(PASSWORD, "wrong-pw"), ""), "access denied"),
        (sql_config(d, &dead, ""), "server unreachable"),
        (sql_config(d, &pg.url(""), "create_table = false\n"), "table 'files' not found"),
        (
            sql_config(d, &format!("sqlite:///{}", d.join("empty.db").display()), "create_table = false\n"),
            "table 'files' not found",
        ),
    ];
    for (cfg, expect) in cases {
        let start = Instant::now();
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .arg("data")
            .arg(&mp)
            .env_remove("RSTORE_CONFIG")
            .output()
            .unwrap();
        let took = start.elapsed();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {err}");
        assert!(lines[0].contains("store 'data'") && lines[0].contains(expect), "{expect}: {err}");
        assert!(!err.contains(PASSWORD) && !err.contains("wrong-pw"), "no password in {err}");
        assert!(took < Duration::from_secs(10), "took {took:?}");
        assert!(!common::is_mounted(&mp));
    }
}
