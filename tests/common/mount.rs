//! A mount through the real CLI binary; dropping it always unmounts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_rstore-mount");

pub struct Mounted {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
    log: PathBuf,
    child: Option<Child>,
}

impl Mounted {
    /// Mounts `store` of `config` in the foreground process we own, and waits until live.
    pub fn start(config: &Path, store: &str, extra: &[&str]) -> Self {
        Self::start_with_env(config, store, extra, &[])
    }

    /// As `start`, with extra environment for the mount process (e.g. RSTORE_FAULTS).
    pub fn start_with_env(config: &Path, store: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_in(config, store, extra, env, None)
    }

    /// As `start_with_env`, with `cache` as the cache directory (so that a remount finds
    /// what an earlier mount kept there); `None`: a new one.
    pub fn start_in(config: &Path, store: &str, extra: &[&str], env: &[(&str, &str)], cache: Option<&Path>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache.map(Path::to_path_buf).unwrap_or_else(|| dir.path().join("cache"));
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        let log = dir.path().join("mount.log");
        let child = Command::new(BIN)
            .arg("--config")
            .arg(config)
            .arg(store)
            .arg(&path)
            .arg("-f")
            .args(["--log-level", "debug"])
            .arg("--cache-dir")
            .arg(&cache)
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut m = Self { path, _dir: dir, log, child: Some(child) };
        m.wait_live();
        m
    }

    fn wait_live(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if super::is_mounted(&self.path) {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("mount exited ({status}): {}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("mount not live after 20 s: {}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The mount process (to kill it, or read its RSS).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// Unmounts and waits for the process to exit; returns its exit status code.
    pub fn unmount(mut self) -> Option<i32> {
        self.teardown()
    }

    fn teardown(&mut self) -> Option<i32> {
        if super::is_mounted(&self.path) {
            let ok = Command::new("umount").arg(&self.path).status().is_ok_and(|s| s.success());
            if !ok {
                let _ = Command::new("umount").arg("-l").arg(&self.path).status();
            }
        }
        let mut child = self.child.take()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(s) = child.try_wait().unwrap() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        self.teardown();
    }
}
