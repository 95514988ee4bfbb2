//! A throwaway PostgreSQL cluster (Debian's `postgresql` package) on 127.0.0.1, run as
//! the `postgres` user in a temporary directory, stopped on drop.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "rstore";
pub const PASSWORD: &str = "rstore-test-pw";

pub struct Postgres {
    pub port: u16,
    dir: tempfile::TempDir,
}

/// Where the server programs are: on PATH, else Debian's versioned directory.
fn bin(name: &str) -> PathBuf {
    if let Ok(found) = which(name) {
        return found;
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path().join("bin"))).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.pop().map(|d| d.join(name)).unwrap_or_else(|| panic!("{name} not found: apt-get install postgresql"))
}

fn which(name: &str) -> Result<PathBuf, ()> {
    let path = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file()).ok_or(())
}

/// Runs a server program as the `postgres` user (initdb refuses root).
fn as_postgres(prog: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(bin(prog));
    c
}

impl Postgres {
    /// A new cluster with a password-protected user `rstore` and a database `rstore`.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        Command::new("chown").arg("-R").arg("postgres:postgres").arg(dir.path()).status().unwrap();
        let ok = as_postgres("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "--auth=scram-sha-256", "--pwfile"])
            .arg(&pwfile)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "initdb failed");
        let port = super::free_port();
        let opts = format!("-h 127.0.0.1 -p {port} -k {}", dir.path().display());
        let ok = as_postgres("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-o", &opts, "-l"])
            .arg(dir.path().join("log"))
            .args(["-w", "start"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(
            ok.success(),
            "pg_ctl start failed: {}",
            std::fs::read_to_string(dir.path().join("log")).unwrap_or_default()
        );
        let server = Self { port, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "postgres did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let ok = Command::new(bin("createdb"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", USER, USER])
            .env("PGPASSWORD", PASSWORD)
            .status()
            .unwrap();
        assert!(ok.success(), "createdb failed");
        server
    }

    /// A SQLAlchemy URL of the `rstore` database.
    pub fn url(&self, driver: &str) -> String {
        format!("postgresql{driver}://{USER}:{PASSWORD}@127.0.0.1:{}/{USER}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
