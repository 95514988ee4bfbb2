//! Mounts of remote-store's `sftp` backend type on OpenSSH's sshd, through the real
//! CLI: remote-store itself (paramiko) on the same config file, programs on the mount,
//! the server's own rename, and bad input failing with one line.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::interop::{assert_fails_fast, sh, share_a_tree};
use common::sshd::{Sshd, PASSWORD, USER};

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
    share_a_tree(&cfg, &|mnt| sh(&format!("chmod 0750 {0}/copied/one.txt && mkdir {0}/empty", mnt.display())));
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
        assert_fails_fast(&cfg, &mp, &expect, &[PASSWORD, "wrong-pw"]);
    }
}
