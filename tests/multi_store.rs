//! Every store of a config in one process: `--all DIR` and `--stores a,b DIR`
//! mount each store at DIR/<store>, as its own mount point, checked all-or-nothing.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{get_object, is_mounted, MotoServer, S3sServer, ACCESS_KEY, BIN, SECRET_KEY};

const STORES: [&str; 4] = ["alpha", "beta", "delta", "gamma"];

/// Two S3 stores on one bucket (different root_paths), one on a second bucket, one local.
fn four_stores(dir: &Path, endpoint: &str, local_root: &Path) -> PathBuf {
    let s3 = |name: &str, bucket: &str| {
        format!(
            "[backends.{name}]\ntype = \"s3\"\n[backends.{name}.options]\nbucket = \"{bucket}\"\n\
             endpoint_url = \"{endpoint}\"\nkey = \"{ACCESS_KEY}\"\nsecret = \"{SECRET_KEY}\"\nregion_name = \"us-east-1\"\n"
        )
    };
    let text = format!(
        "{}{}[backends.files]\ntype = \"local\"\n[backends.files.options]\nroot = \"{}\"\n\
         [stores.alpha]\nbackend = \"one\"\nroot_path = \"a\"\n[stores.beta]\nbackend = \"one\"\nroot_path = \"b/deeper\"\n\
         [stores.gamma]\nbackend = \"two\"\n[stores.delta]\nbackend = \"files\"\n",
        s3("one", "bkt-one"),
        s3("two", "bkt-two"),
        local_root.display()
    );
    let p = dir.join("rstore.toml");
    fs::write(&p, text).unwrap();
    p
}

/// `rstore-mount --config CFG ARGS.. -f`, unmounted and stopped when dropped.
struct AllMounted {
    root: PathBuf,
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl AllMounted {
    fn start(config: &Path, args: &[&str], expect: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("stores");
        fs::create_dir(&root).unwrap();
        let log = dir.path().join("mount.log");
        let child = Command::new(BIN)
            .arg("--config")
            .arg(config)
            .args(args)
            .arg(&root)
            .args(["-f", "--log-level", "debug", "--cache-dir"])
            .arg(dir.path().join("cache"))
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut m = Self { root, child: Some(child), log, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !expect.iter().all(|s| is_mounted(&m.root.join(s))) {
            if let Some(status) = m.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("mount exited ({status}): {}", m.log_text());
            }
            assert!(Instant::now() < deadline, "not all mounted after 30 s: {}", m.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }

    fn join(&self, store: &str, rel: &str) -> PathBuf {
        self.root.join(store).join(rel)
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to exit on its own; its exit code.
    fn wait(&mut self, limit: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(s) = child.try_wait().unwrap() {
                self.child = None;
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for AllMounted {
    fn drop(&mut self) {
        for s in STORES {
            let p = self.root.join(s);
            if is_mounted(&p) {
                let _ = Command::new("umount").arg("-l").arg(&p).status();
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn every_store_of_a_config_mounts_in_one_process_and_each_unmounts_alone() {
    let server = MotoServer::start(&["bkt-one", "bkt-two"]);
    let (cfg, local) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = four_stores(cfg.path(), &server.endpoint, local.path());
    let mut m = AllMounted::start(&config, &["--all"], &STORES);
    let pid = m.child.as_ref().unwrap().id();
    // One process, one mount point per store (findmnt shows each).
    for s in STORES {
        let out = Command::new("findmnt").arg("-n").arg("-o").arg("SOURCE").arg(m.root.join(s)).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("rstore:{s}"), "findmnt of {s}");
        fs::write(m.join(s, "hello.txt"), format!("from {s}\n")).unwrap();
    }
    let get =
        |bucket: &str, key: &str| get_object(&server.endpoint, bucket, key).map(|b| String::from_utf8(b).unwrap());
    assert_eq!(get("bkt-one", "a/hello.txt").as_deref(), Some("from alpha\n"));
    assert_eq!(get("bkt-one", "b/deeper/hello.txt").as_deref(), Some("from beta\n"));
    assert_eq!(get("bkt-two", "hello.txt").as_deref(), Some("from gamma\n"));
    assert_eq!(fs::read_to_string(local.path().join("hello.txt")).unwrap(), "from delta\n");
    for s in STORES {
        let names: Vec<String> =
            fs::read_dir(m.root.join(s)).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(names, ["hello.txt"], "{s} shows only its own root_path");
    }

    // Unmounting one by hand leaves the others serving.
    assert!(Command::new("umount").arg(m.root.join("alpha")).status().unwrap().success());
    assert!(!is_mounted(&m.root.join("alpha")));
    fs::write(m.join("beta", "after.txt"), "still here").unwrap();
    assert_eq!(fs::read_to_string(m.join("gamma", "hello.txt")).unwrap(), "from gamma\n");

    // SIGTERM with a write in flight in two stores: both are committed, all unmount.
    let mut open: Vec<fs::File> = Vec::new();
    for s in ["beta", "gamma"] {
        let mut f = fs::File::create(m.join(s, "inflight.bin")).unwrap();
        f.write_all(&vec![7u8; 3 << 20]).unwrap();
        open.push(f);
    }
    // SAFETY: kill(2) on the child we started.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    for (bucket, key) in [("bkt-one", "b/deeper/inflight.bin"), ("bkt-two", "inflight.bin")] {
        // Committed by the drain while the program still holds the file open.
        while get_object(&server.endpoint, bucket, key).map_or(0, |b| b.len()) != 3 << 20 {
            assert!(Instant::now() < deadline, "{bucket}/{key} not committed at SIGTERM: {}", m.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // The busy mounts were detached; the process ends once their last files close.
    drop(open);
    assert_eq!(m.wait(Duration::from_secs(30)), Some(0), "{}", m.log_text());
    for s in STORES {
        assert!(!is_mounted(&m.root.join(s)), "{s} still mounted");
    }
}

#[test]
fn stores_mounts_a_subset_and_the_process_ends_with_its_last_mount() {
    let server = MotoServer::start(&["bkt-one", "bkt-two"]);
    let (cfg, local) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = four_stores(cfg.path(), &server.endpoint, local.path());
    let addr = format!("127.0.0.1:{}", common::free_port());
    let mut m = AllMounted::start(&config, &["--stores", "gamma,delta", "--metrics-addr", &addr], &["gamma", "delta"]);
    assert!(!m.root.join("alpha").exists(), "only the chosen stores");
    fs::write(m.join("gamma", "g"), vec![1u8; 1000]).unwrap();
    fs::write(m.join("delta", "d"), vec![2u8; 3000]).unwrap();
    // One endpoint for the process; each store's series carry its name.
    let text = common::scrape(&addr);
    for (s, n) in [("gamma", 1000.0), ("delta", 3000.0)] {
        assert_eq!(common::metric(&text, &format!("rstore_bytes_written_total{{store=\"{s}\"}}")), n, "{text}");
    }
    for s in ["gamma", "delta"] {
        assert!(Command::new("umount").arg(m.root.join(s)).status().unwrap().success());
    }
    assert_eq!(m.wait(Duration::from_secs(20)), Some(0), "unmounting the last one ends the process");
}

#[test]
fn one_unusable_store_fails_the_whole_start_with_one_line_each() {
    let server = S3sServer::start(&["good"]);
    let (cfg, local, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let endpoint = format!("http://127.0.0.1:{}", server.port());
    let s3 = |name: &str, bucket: &str, secret: &str| {
        format!(
            "[backends.{name}]\ntype = \"s3\"\n[backends.{name}.options]\nbucket = \"{bucket}\"\n\
             endpoint_url = \"{endpoint}\"\nkey = \"{ACCESS_KEY}\"\nsecret = \"{secret}\"\nregion_name = \"us-east-1\"\n\
             [backends.{name}.retry]\nmax_attempts = 1\n"
        )
    };
    let text = format!(
        "{}{}{}[backends.files]\ntype = \"local\"\n[backends.files.options]\nroot = \"{}\"\n\
         [stores.ok]\nbackend = \"good\"\n[stores.badkey]\nbackend = \"badkey\"\n[stores.nobucket]\nbackend = \"nobucket\"\n\
         [stores.disk]\nbackend = \"files\"\n",
        s3("good", "good", SECRET_KEY),
        s3("badkey", "good", "wrong-secret"),
        s3("nobucket", "missing", SECRET_KEY),
        local.path().display()
    );
    fs::write(cfg.path().join("rstore.toml"), text).unwrap();
    let root = dir.path().join("stores");
    fs::create_dir(&root).unwrap();
    let out =
        Command::new(BIN).arg("--config").arg(cfg.path().join("rstore.toml")).arg("--all").arg(&root).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "one line per unusable store: {err}");
    assert!(lines.iter().any(|l| l.contains("store 'badkey'") && l.contains("access denied")), "{err}");
    assert!(lines.iter().any(|l| l.contains("store 'nobucket'")), "{err}");
    assert!(!err.contains("wrong-secret"), "secret leaked: {err}");
    for s in ["ok", "badkey", "nobucket", "disk"] {
        assert!(!is_mounted(&root.join(s)) && !root.join(s).exists(), "{s} was mounted or left behind");
    }
    // A store directory that is not empty: refused by name, nothing made for the others.
    fs::create_dir(root.join("disk")).unwrap();
    fs::write(root.join("disk/keep.txt"), "mine").unwrap();
    let out = Command::new(BIN).arg("--config").arg(cfg.path().join("rstore.toml")).arg("--all").arg(&root).output();
    let out = out.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("disk") && err.contains("not empty") && err.lines().count() == 1, "{err}");
    assert!(!root.join("ok").exists(), "no directory made for the other stores");
}
