//! A 3-node Garage cluster on 127.0.0.1 through `scripts/cluster.sh` (the script users
//! run), in a directory and on ports of its own; dropping it stops every node.

use std::path::{Path, PathBuf};
use std::process::Command;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster.sh");

pub struct GarageCluster {
    dir: tempfile::TempDir,
    port: u16,
    /// The rstore config the script printed: stores n1, n2, n3, one per node endpoint.
    pub config: PathBuf,
}

impl GarageCluster {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Node N uses port + 10(N-1) and the one after it; the range is probed free.
        // A range per cluster of this process (and per process), then checked free.
        static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
        let nth = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let port = (0..50)
            .map(|i| 20000 + (std::process::id() as u16 % 200) * 200 + ((nth + i) % 6) * 30)
            .find(|p| (0..3).all(|n| [0, 1].iter().all(|d| free(p + n * 10 + d))))
            .expect("a free port range");
        let cluster = Self { config: dir.path().join("cluster/rstore.toml"), dir, port };
        let out = cluster.run(&["start"]);
        assert!(out.status.success(), "cluster.sh start: {}", String::from_utf8_lossy(&out.stderr));
        cluster
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new(SCRIPT)
            .args(args)
            .env("CLUSTER_DIR", self.dir.path().join("cluster"))
            .env("CLUSTER_PORT", self.port.to_string())
            .output()
            .unwrap()
    }

    /// Stops node `n` (1-3) at once, as a crash.
    pub fn kill(&self, n: u8) {
        assert!(self.run(&["kill", &n.to_string()]).status.success());
    }

    /// Starts node `n` again with its data.
    pub fn revive(&self, n: u8) {
        let out = self.run(&["revive", &n.to_string()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for GarageCluster {
    fn drop(&mut self) {
        let _ = self.run(&["stop"]);
    }
}

fn free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}
