//! Mounts of remote-store's `sql-blob` backend type on SQLite and on a throwaway
//! PostgreSQL cluster, through the real CLI: remote-store itself on the same config
//! file, programs on the mount, and bad input failing with one line.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::interop::{assert_fails_fast, share_a_tree};
use common::postgres::{Postgres, PASSWORD};
use common::Mounted;

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

#[test]
fn remote_store_and_a_sqlite_mount_share_a_tree() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("objects.db");
    share_a_tree(&sql_config(dir.path(), &format!("sqlite:///{}", db.display()), ""), &|_| {});
}

#[test]
fn remote_store_and_a_postgresql_mount_share_a_tree() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    share_a_tree(&sql_config(dir.path(), &pg.url("+psycopg"), ""), &|_| {});
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
        assert_fails_fast(&cfg, &mp, expect, &[PASSWORD, "wrong-pw"]);
    }
}

/// remote-store has no directory rows, so an empty directory is not stored: it shows
/// on this mount, and is gone after a remount; one with a file in it stays.
#[test]
fn an_empty_directory_is_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("objects.db");
    let cfg = sql_config(dir.path(), &format!("sqlite:///{}", db.display()), "");
    let m = Mounted::start(&cfg, "data", &[]);
    fs::create_dir(m.join("empty")).unwrap();
    fs::create_dir(m.join("full")).unwrap();
    fs::write(m.join("full/f"), "f").unwrap();
    assert!(m.join("empty").is_dir() && m.join("full").is_dir());
    drop(m);
    let m = Mounted::start(&cfg, "data", &[]);
    assert!(!m.join("empty").exists());
    assert_eq!(fs::read_to_string(m.join("full/f")).unwrap(), "f");
}
