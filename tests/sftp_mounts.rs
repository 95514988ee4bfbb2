//! Mounts of remote-store's `sftp` backend type on OpenSSH's sshd, through the real
//! CLI: remote-store itself (paramiko) on the same config file, programs on the mount,
//! the server's own rename, and bad input failing with one line.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::interop::{remote_store, sh, tree_sums};
use common::sshd::{Sshd, PASSWORD, USER};
use common::{Mounted, BIN};

fn sftp_config(dir: &Path, sshd: &Sshd, password: &str, known: &str, extra: &str) -> PathBuf {
    let sub = tempfile::tempdir_in(dir).unwrap().keep();
    let text = format!(
        "[backends.box]\ntype = \"sftp\"\n[backends.box.options]\nhost = \"127.0.0.1\"\nport = {}\nusername = \"{USER}\"\n\
         password = \"{password}\"\nbase_path = \"{}\"\nknown_host_keys = \"{known}\"\ntimeout = 5\n{extra}\
         [stores.data]\nbackend = \"box\"\nroot_path = \"tree\"\n",
        sshd.port,
        sshd.data.display()
    );
    let p = sub.join("rstore.toml");
    fs::write(&p, text).unwrap();
    p
}

#[test]
fn remote_store_and_an_sftp_mount_share_a_tree() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = sftp_config(dir.path(), &sshd, PASSWORD, &sshd.known_host, "");
    let mut theirs = BTreeMap::new();
    theirs.insert("py/a.txt", b"hello from remote-store\n".to_vec());
    theirs.insert("py/sub/b.bin", common::pattern(3 << 20, 7));
    theirs.insert("py/sub/deep/c.txt", b"c".to_vec());
    remote_store(&cfg, &theirs);
    let m = Mounted::start(&cfg, "data", &["--metadata-ttl", "0"]);
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
    sh(&format!("chmod 0750 {mnt}/copied/one.txt && mkdir {mnt}/empty"));
    let ours = tree_sums(&m.path);
    drop(m);
    let after = remote_store(&cfg, &BTreeMap::new());
    assert_eq!(after, ours, "remote-store reads exactly the mount's tree");
    assert_eq!(after.get("copied/one.txt"), Some(&common::sha256(b"one\ntwo\n")));
    // On the server: real directories, the mode set by chmod, no temporary files left.
    let root = sshd.data.join("tree");
    assert!(root.join("empty").is_dir() && root.join("copied/moved").is_dir() && !root.join("copied/y").exists());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(root.join("copied/one.txt")).unwrap().permissions().mode() & 0o777, 0o750);
    let leftovers = Command::new("find").arg(&root).args(["-name", ".*rstore-*"]).output().unwrap().stdout;
    assert!(leftovers.is_empty(), "{}", String::from_utf8_lossy(&leftovers));
}

#[test]
fn bad_sftp_stores_fail_fast_with_one_line() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mp = d.join("mnt");
    fs::create_dir(&mp).unwrap();
    // Another server's key under the same name: the key shown must be this server's.
    let other = format!(
        "[127.0.0.1]:{} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIy0a7Vd0Oa2yQ8mW2Gk0jZr8Vb3hOq8f2Hc4TnXcG1B",
        sshd.port
    );
    let dead_port = common::free_port();
    let unreachable = sftp_config(d, &sshd, PASSWORD, &sshd.known_host, "").to_str().unwrap().to_string();
    let text = fs::read_to_string(&unreachable)
        .unwrap()
        .replace(&format!("port = {}", sshd.port), &format!("port = {dead_port}"));
    fs::write(&unreachable, text).unwrap();
    let cases = [
        (sftp_config(d, &sshd, "wrong-pw", &sshd.known_host, ""), "authentication as 'rstore-sftp' failed".to_string()),
        (sftp_config(d, &sshd, PASSWORD, &other, ""), "changed (SHA256:".to_string()),
        (
            sftp_config(d, &sshd, PASSWORD, "", "host_keys_path = \"/nonexistent/known_hosts\"\n"),
            "is not known (SHA256:".to_string(),
        ),
        (PathBuf::from(&unreachable), "cannot connect".to_string()),
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
        assert!(lines[0].contains("store 'data'") && lines[0].contains(&expect), "{expect}: {err}");
        assert!(!err.contains(PASSWORD) && !err.contains("wrong-pw"), "no password in {err}");
        assert!(took < Duration::from_secs(10), "took {took:?}");
        assert!(!common::is_mounted(&mp));
    }
}
