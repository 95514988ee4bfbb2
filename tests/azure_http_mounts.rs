//! Mounts of remote-store's `azure` (on Azurite) and `http` (on npm's http-server)
//! backend types, through the real CLI: remote-store itself on the same config file,
//! programs on the mount, and bad input failing with one line.

mod common;

use std::fs;
use std::path::Path;

use common::azurite::{Azurite, KEY};
use common::http_server::HttpServer;
use common::interop::{assert_fails_fast, share_a_tree};
use common::Mounted;

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
    share_a_tree(&azure_config(dir.path(), &server.url, "ctr", KEY), &|_| {});
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
        assert_fails_fast(&cfg, &mp, expect, &[KEY, wrong_key]);
    }
}
