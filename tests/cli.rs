//! The CLI: background mount that returns when live, --list, and every bad input giving
//! one readable line, a non-zero exit, quickly, with nothing mounted.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::mount::BIN;
use common::{is_mounted, s3_config, S3sServer};

struct Outcome {
    code: i32,
    stderr: String,
    took: Duration,
}

fn run(args: &[&str], cwd: &Path) -> Outcome {
    let start = Instant::now();
    let out = Command::new(BIN).args(args).current_dir(cwd).env_remove("RSTORE_CONFIG").output().unwrap();
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: start.elapsed(),
    }
}

/// The acceptance rule for bad input.
fn assert_one_line_failure(o: &Outcome, mountpoint: &Path, expect: &str) {
    assert_ne!(o.code, 0, "must fail: {}", o.stderr);
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line: {:?}", o.stderr);
    assert!(lines[0].starts_with("rstore-mount: error: "), "{}", lines[0]);
    assert!(lines[0].contains(expect), "{:?} should mention {expect:?}", lines[0]);
    assert!(!o.stderr.contains("panicked") && !o.stderr.contains("backtrace"));
    assert!(o.took < Duration::from_secs(10), "took {:?}", o.took);
    assert!(!is_mounted(mountpoint), "nothing mounted");
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn background_mount_is_live_when_the_command_returns() {
    let root = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("hello"), "hi").unwrap();
    let cfg = common::local_config(dir.path(), root.path());
    let mp = dir.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let o = run(&["--config", s(&cfg), "data", s(&mp)], dir.path());
    assert_eq!(o.code, 0, "{}", o.stderr);
    let live = is_mounted(&mp);
    let content = std::fs::read_to_string(mp.join("hello"));
    let _ = Command::new("umount").arg(&mp).status();
    assert!(live, "mounted when the command returned");
    assert_eq!(content.unwrap(), "hi");
}

#[test]
fn list_prints_the_stores_and_config_is_found_in_cwd() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = s3_config(dir.path(), "http://127.0.0.1:1", "bkt", "data/raw");
    assert_eq!(cfg.file_name().unwrap(), "rstore.toml");
    let out = Command::new(BIN).arg("--list").current_dir(dir.path()).env_remove("RSTORE_CONFIG").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["STORE", "BACKEND", "TYPE", "LOCATION", "ROOT_PATH", "MOUNTABLE"]);
    assert_eq!(rows[1], ["data", "s3", "s3", "s3://bkt", "data/raw", "yes"], "{text}");
    let out = Command::new(BIN).arg("--list").current_dir("/").env("RSTORE_CONFIG", &cfg).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("s3://bkt"));
}

#[test]
fn list_marks_stores_that_cannot_be_mounted_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rstore.toml");
    let text = "[backends.f]\ntype = \"ftp\"\n[backends.f.options]\nhost = \"h\"\n\
                [backends.m]\ntype = \"memory\"\n\
                [stores.files]\nbackend = \"f\"\n[stores.scratch]\nbackend = \"m\"\n";
    std::fs::write(&cfg, text).unwrap();
    let out = Command::new(BIN).args(["--list", "--config", s(&cfg)]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let row = |store: &str| text.lines().find(|l| l.starts_with(store)).unwrap_or_default().to_string();
    assert!(row("files ").contains("no: backend 'f' has type 'ftp'"), "{text}");
    assert!(row("scratch ").trim_end().ends_with("yes"), "{text}");
}

/// With no --log-file, a background mount's errors are kept in the file --help and the
/// README name ($XDG_STATE_HOME/rstore-mount/rstore-mount.log), not discarded: an upload
/// that fails after the command returned leaves its line there, naming the store.
#[test]
fn background_mount_keeps_its_errors_in_the_default_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let cfg = common::local_config(dir.path(), &root);
    let mp = dir.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let state = dir.path().join("state");
    let out = Command::new(BIN)
        .args(["--config", s(&cfg), "data", s(&mp), "--cache-dir", s(&dir.path().join("cache"))])
        .env("XDG_STATE_HOME", &state)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mounted = is_mounted(&mp);
    // A file is written, then the store's directory becomes a plain file, so the upload
    // at close fails: the program sees EIO, and the log must say why.
    let closed = (|| {
        use std::io::Write;
        let mut f = std::fs::File::create(mp.join("report.csv"))?;
        f.write_all(b"a,b\n")?;
        std::fs::remove_dir_all(&root)?;
        std::fs::write(&root, "")?;
        f.sync_all()
    })();
    let _ = Command::new("umount").arg(&mp).status();
    assert!(mounted);
    assert_eq!(closed.unwrap_err().raw_os_error(), Some(libc::EIO));
    let log = state.join("rstore-mount/rstore-mount.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    while Instant::now() < deadline && !text.contains("upload failed") {
        std::thread::sleep(Duration::from_millis(100));
        text = std::fs::read_to_string(&log).unwrap_or_default();
    }
    let line = text.lines().find(|l| l.contains("upload failed")).unwrap_or_else(|| panic!("log: {text:?}"));
    assert!(line.contains("ERROR") && line.contains("store{name=data}") && line.contains("report.csv"), "{line}");
}

#[test]
fn bad_inputs_fail_fast_with_one_line() {
    let server = S3sServer::start(&["bkt"]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mp = d.join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let good = s3_config(d, &server.endpoint, "bkt", "");
    let cases: Vec<(String, &str)> = vec![
        ("[backends.s3]\ntype = \"s3\"\n[stores.other]\nbackend = \"s3\"\n".to_string(), "unknown store 'data'"),
        ("[stores.data]\nbackend = \n".into(), "bad.toml:2:"),
        ("[backends.b]\ntype = \"ftp\"\n[stores.data]\nbackend = \"b\"\n".into(), "'ftp'"),
        (std::fs::read_to_string(&good).unwrap().replace("bucket = \"bkt\"", "bucket = \"missing\""), "does not exist"),
        (std::fs::read_to_string(&good).unwrap().replace(common::SECRET_KEY, "wrong-secret"), "access denied"),
        (
            std::fs::read_to_string(&good).unwrap().replace(common::ACCESS_KEY, "${UNSET_VAR_FOR_TEST}"),
            "UNSET_VAR_FOR_TEST",
        ),
        (
            std::fs::read_to_string(&good)
                .unwrap()
                .replace(&server.endpoint, &format!("http://127.0.0.1:{}", common::free_port())),
            "server unreachable",
        ),
    ];
    for (text, expect) in cases {
        let bad = d.join("bad.toml");
        std::fs::write(&bad, &text).unwrap();
        let o = run(&["--config", s(&bad), "data", s(&mp)], d);
        assert_one_line_failure(&o, &mp, expect);
        assert!(!o.stderr.contains("wrong-secret") && !o.stderr.contains(common::SECRET_KEY), "secret leaked");
    }
    let o = run(&["--config", s(&d.join("nope.toml")), "data", s(&mp)], d);
    assert_one_line_failure(&o, &mp, "nope.toml");
    let o = run(&["--config", s(&good), "data", s(&d.join("missing"))], d);
    assert_one_line_failure(&o, &mp, "does not exist");
    std::fs::write(mp.join("occupied"), "x").unwrap();
    let o = run(&["--config", s(&good), "data", s(&mp)], d);
    assert_one_line_failure(&o, &mp, "not empty");
    let o = run(&["--config", s(&good), "data", s(&good)], d);
    assert_one_line_failure(&o, &mp, "not a directory");
    let o = run(&["data", s(&mp)], Path::new("/"));
    assert_ne!(o.code, 0);
}

#[test]
fn missing_fuse_device_says_to_install_fuse3() {
    let root = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::local_config(dir.path(), root.path());
    let mp = dir.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    // A private mount namespace whose /dev has no fuse device.
    let script = format!("mount -t tmpfs none /dev && exec {BIN} --config {} data {}", s(&cfg), s(&mp));
    let start = Instant::now();
    let out = Command::new("unshare").args(["-m", "sh", "-c", &script]).output().unwrap();
    let o = Outcome {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: start.elapsed(),
    };
    assert_one_line_failure(&o, &mp, "install fuse3");
}
