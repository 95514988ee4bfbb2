//! Mounts of remote-store's `azure` (on Azurite) and `http` (on npm's http-server)
//! backend types, through the real CLI: remote-store itself on the same config file,
//! programs on the mount, and bad input failing with one line.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::azurite::{Azurite, KEY};
use common::http_server::HttpServer;
use common::interop::{remote_store, sh, tree_sums};
use common::{Mounted, BIN};

/// Writes a config in a new directory under `dir` (so several can coexist).
fn azure_config(dir: &Path, url: &str, container: &str, key: &str) -> std::path::PathBuf {
    let text = format!(
        "[backends.az]\ntype = \"azure\"\n[backends.az.options]\ncontainer = \"{container}\"\nhns = false\n\
         account_url = \"{url}\"\naccount_key = \"{key}\"\n[backends.az.retry]\nmax_attempts = 2\n\
         [stores.data]\nbackend = \"az\"\nroot_path = \"tree\"\n"
    );
    write_config(dir, &text)
}

fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    let sub = tempfile::tempdir_in(dir).unwrap().keep();
    let p = sub.join("rstore.toml");
    fs::write(&p, text).unwrap();
    p
}

fn http_config(dir: &Path, base_url: &str) -> std::path::PathBuf {
    let text = format!("[backends.web]\ntype = \"http\"\n[backends.web.options]\nbase_url = \"{base_url}\"\ntimeout = 5\n[stores.data]\nbackend = \"web\"\n");
    write_config(dir, &text)
}

#[test]
fn remote_store_and_an_azure_mount_share_a_tree() {
    let server = Azurite::start(&["ctr"]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = azure_config(dir.path(), &server.url, "ctr", KEY);
    // remote-store writes a tree; the mount lists and reads it byte-identical.
    let mut theirs = BTreeMap::new();
    theirs.insert("py/a.txt", b"hello from remote-store\n".to_vec());
    theirs.insert("py/sub/b.bin", common::pattern(3 << 20, 7));
    theirs.insert("py/sub/deep/c.txt", b"c".to_vec());
    let before = remote_store(&cfg, &theirs);
    let m = Mounted::start(&cfg, "data", &["--metadata-ttl", "0"]);
    let mut names: Vec<String> =
        fs::read_dir(m.join("py/sub")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["b.bin", "deep"]);
    let seen = tree_sums(&m.join("py"));
    for (path, data) in &theirs {
        assert_eq!(seen[path.strip_prefix("py/").unwrap()], common::sha256(data), "{path}");
    }
    // The mount writes a tree: cp -r, tar x, append, rename, rm.
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("x/y")).unwrap();
    fs::write(src.join("x/one.txt"), "one\n").unwrap();
    fs::write(src.join("x/y/big.bin"), common::pattern(20 << 20, 3)).unwrap();
    fs::write(src.join("x/y/gone.txt"), "to be removed").unwrap();
    let mnt = m.path.display().to_string();
    let s = src.display().to_string();
    sh(&format!("cp -r {s}/x {mnt}/copied"));
    sh(&format!("tar cf {s}/t.tar -C {s} x && mkdir {mnt}/untarred && tar xf {s}/t.tar -C {mnt}/untarred"));
    sh(&format!("printf 'two\\n' >> {mnt}/copied/one.txt"));
    sh(&format!("mv {mnt}/copied/y {mnt}/copied/moved"));
    sh(&format!("rm {mnt}/copied/moved/gone.txt {mnt}/untarred/x/y/gone.txt"));
    let ours = tree_sums(&m.path);
    drop(m);
    let after = remote_store(&cfg, &BTreeMap::new());
    for (path, sum) in &ours {
        assert_eq!(after.get(path), Some(sum), "{path} as remote-store reads it");
    }
    assert_eq!(after.get("copied/one.txt"), Some(&common::sha256(b"one\ntwo\n")));
    assert!(after.contains_key("copied/moved/big.bin") && !after.keys().any(|k| k.contains("gone.txt")));
    assert!(after.len() >= before.len() + 4, "{after:?}");
}

#[test]
fn an_http_mount_reads_files_and_refuses_every_write() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.path().join("pub/data")).unwrap();
    let size = 96 << 20;
    let body = common::pattern(size, 11);
    fs::write(root.path().join("pub/data/big.bin"), &body).unwrap();
    let server = HttpServer::start(root.path());
    let dir = tempfile::tempdir().unwrap();
    let cfg = http_config(dir.path(), &server.url);
    let m = Mounted::start(&cfg, "data", &[]);
    // Sequential: the whole file; random: 200 reads at scattered offsets.
    assert_eq!(common::sha256(&fs::read(m.join("pub/data/big.bin")).unwrap()), common::sha256(&body));
    use std::io::{Read, Seek, SeekFrom};
    let mut f = fs::File::open(m.join("pub/data/big.bin")).unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..200 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let off = (x % size as u64) as usize;
        let mut buf = vec![0; 4096.min(size - off)];
        f.seek(SeekFrom::Start(off as u64)).unwrap();
        f.read_exact(&mut buf).unwrap();
        assert_eq!(buf, &body[off..off + buf.len()], "at {off}");
    }
    assert_eq!(fs::metadata(m.join("pub/data/big.bin")).unwrap().len(), size as u64);
    // Every write is EROFS.
    let erofs = |r: std::io::Result<()>| assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EROFS));
    erofs(fs::write(m.join("pub/new.txt"), "x"));
    erofs(fs::write(m.join("pub/data/big.bin"), "x"));
    erofs(fs::create_dir(m.join("pub/newdir")));
    erofs(fs::remove_file(m.join("pub/data/big.bin")));
    erofs(fs::rename(m.join("pub/data/big.bin"), m.join("pub/data/moved.bin")));
    assert_eq!(fs::read_dir(m.join("pub")).unwrap().count(), 0, "HTTP lists nothing");
    let missing = fs::metadata(m.join("pub/no-such-file")).unwrap_err();
    assert_eq!(missing.raw_os_error(), Some(libc::ENOENT));
}

#[test]
fn bad_azure_and_http_stores_fail_fast_with_one_line() {
    let server = Azurite::start(&["ctr"]);
    let files = tempfile::tempdir().unwrap();
    let web = HttpServer::start(files.path());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mp = d.join("mnt");
    fs::create_dir(&mp).unwrap();
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let wrong_key = "d3Jvbmcga2V5IGZvciB0ZXN0cw==";
    let cases = [
        (azure_config(d, &server.url, "ctr", wrong_key), "access denied"),
        (azure_config(d, &server.url, "missing-ctr", KEY), "container 'missing-ctr' not found"),
        (azure_config(d, &format!("{dead}/devstoreaccount1"), "ctr", KEY), "server unreachable"),
        (http_config(d, &format!("{}no-such-dir/", web.url)), "404"),
        (http_config(d, &format!("{dead}/")), "server unreachable"),
    ];
    for (cfg, expect) in cases {
        let text = fs::read_to_string(&cfg).unwrap();
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
        assert_eq!(out.status.code(), Some(1), "{text}: {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {err}");
        assert!(lines[0].contains("store 'data'") && lines[0].contains(expect), "{expect}: {err}");
        assert!(!err.contains(KEY) && !err.contains(wrong_key), "no secret in {err}");
        assert!(took < Duration::from_secs(10), "took {took:?}");
        assert!(!common::is_mounted(&mp));
    }
}
