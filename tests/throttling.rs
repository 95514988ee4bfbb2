//! A throttled or stalled server: the start-up check goes through the retry
//! policy, the terminal gets our own lines only, and unmounting is bounded by
//! `--drain-timeout` when an upload cannot finish.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::throttle::ThrottleProxy;
use common::{is_mounted, MotoServer, ACCESS_KEY, BIN, SECRET_KEY};

fn config(dir: &Path, endpoint: &str) -> PathBuf {
    let text = format!(
        "[backends.s3]\ntype = \"s3\"\n[backends.s3.options]\nbucket = \"bkt\"\nendpoint_url = \"{endpoint}\"\n\
         key = \"{ACCESS_KEY}\"\nsecret = \"{SECRET_KEY}\"\nregion_name = \"us-east-1\"\n\
         [backends.s3.retry]\nmax_attempts = 12\nbackoff_base = 0.01\nbackoff_max = 0.05\n\
         [stores.data]\nbackend = \"s3\"\n"
    );
    let p = dir.join("rstore.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Kills the mount process and detaches its mount point when a test ends early.
struct Cleanup(std::process::Child, PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if is_mounted(&self.1) {
            let _ = Command::new("umount").arg("-l").arg(&self.1).status();
        }
    }
}

/// `rstore-mount --config CFG data MNT -f EXTRA..` with stderr to `log`, live when this
/// returns; killed and unmounted when the guard drops, also on a failed assertion.
fn mount_fg(cfg: &Path, mnt: &Path, extra: &[&str], log: &Path) -> Cleanup {
    let child = Command::new(BIN)
        .args(["--config", cfg.to_str().unwrap(), "data", mnt.to_str().unwrap(), "-f"])
        .args(extra)
        .arg("--cache-dir")
        .arg(log.with_extension("cache"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut guard = Cleanup(child, mnt.to_path_buf());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !is_mounted(mnt) {
        if let Some(status) = guard.0.try_wait().unwrap() {
            panic!("mount failed ({status}): {}", std::fs::read_to_string(log).unwrap_or_default());
        }
        assert!(Instant::now() < deadline, "mount not live after 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    guard
}

/// Lines on stderr that are not ours ("rstore-mount: ..." or our own log lines).
fn foreign_lines(stderr: &str) -> Vec<String> {
    stderr.lines().filter(|l| !l.starts_with("rstore-mount: ")).map(str::to_string).collect()
}

#[test]
fn twenty_mounts_through_a_throttling_server_all_succeed_and_print_nothing_foreign() {
    let server = MotoServer::start(&["bkt"]);
    let proxy = ThrottleProxy::start(&server.endpoint, 20, 2026);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &proxy.endpoint);
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    for i in 0..20 {
        let log = dir.path().join(format!("stderr-{i}"));
        let mut m = mount_fg(&cfg, &mnt, &[], &log);
        std::fs::write(mnt.join(format!("f{i}")), b"through the proxy").unwrap();
        assert!(Command::new("umount").arg(&mnt).status().unwrap().success());
        assert_eq!(m.0.wait().unwrap().code(), Some(0), "mount {i}");
        let stderr = std::fs::read_to_string(&log).unwrap();
        assert!(foreign_lines(&stderr).is_empty(), "mount {i} printed lines that are not ours:\n{stderr}");
    }
    let (seen, failed) = proxy.counts();
    eprintln!("{seen} requests through the proxy, {failed} answered 503");
    assert!(failed > 0, "the proxy must have throttled some requests");
}

#[test]
fn a_server_that_always_throttles_fails_the_start_with_one_line_and_the_attempt_count() {
    let server = MotoServer::start(&["bkt"]);
    let proxy = ThrottleProxy::start(&server.endpoint, 100, 7);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &proxy.endpoint);
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let t = Instant::now();
    let out =
        Command::new(BIN).args(["--config", cfg.to_str().unwrap(), "data", mnt.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("throttled") && lines[0].contains("12 attempts"), "{stderr}");
    assert!(t.elapsed() < Duration::from_secs(20), "within the retry budget: {:?}", t.elapsed());
    assert!(!is_mounted(&mnt));
}

#[test]
fn unmounting_with_an_upload_that_cannot_finish_exits_within_the_drain_timeout() {
    let server = MotoServer::start(&["bkt"]);
    let proxy = ThrottleProxy::start(&server.endpoint, 0, 1);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &proxy.endpoint);
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let log = dir.path().join("stderr");
    let mut guard = mount_fg(&cfg, &mnt, &["--drain-timeout", "2"], &log);
    let child = &mut guard.0;
    std::fs::write(mnt.join("stuck.bin"), vec![3u8; 9 << 20]).unwrap();
    // O_TRUNC without a write: close(2) returns at once and the last release uploads the
    // empty file, which the now stalled server never answers.
    let f = std::fs::OpenOptions::new().write(true).truncate(true).open(mnt.join("stuck.bin")).unwrap();
    proxy.set_stall(true);
    drop(f);
    std::thread::sleep(Duration::from_millis(200));
    assert!(Command::new("umount").arg(&mnt).status().unwrap().success(), "umount");
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > Duration::from_secs(7) {
            let _ = child.kill();
            panic!("still running {:?} after umount: {}", t.elapsed(), std::fs::read_to_string(&log).unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&log).unwrap();
    eprintln!("exited {status} {:?} after umount (--drain-timeout 2):\n{stderr}", t.elapsed());
    assert!(
        stderr.contains("stuck.bin") || stderr.contains("upload still running"),
        "the unfinished upload is named in the log:\n{stderr}"
    );
}
