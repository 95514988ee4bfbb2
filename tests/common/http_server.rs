//! npm's `http-server` serving a directory on 127.0.0.1 (Range, ETag, Last-Modified,
//! directory redirects), killed on drop. Installed by scripts/setup-test-deps.sh.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct HttpServer {
    /// `http://127.0.0.1:<port>/`
    pub url: String,
    child: Child,
}

impl HttpServer {
    /// Serves `root`, with no caching headers that would hide changes.
    pub fn start(root: &Path) -> Self {
        let node = std::env::var_os("RSTORE_TEST_NODE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-node"));
        let bin = node.join("node_modules/.bin/http-server");
        let port = super::free_port();
        let child = Command::new(&bin)
            .arg(root)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-c-1", "--silent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} (scripts/setup-test-deps.sh installs it): {e}", bin.display()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "http-server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { url: format!("http://127.0.0.1:{port}/"), child }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
