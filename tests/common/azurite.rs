//! Azurite, Microsoft's Azure Storage emulator (npm `azurite`), blob service only, on
//! 127.0.0.1 with its well-known account; killed on drop. scripts/setup-test-deps.sh
//! installs it under target/test-node (or `$RSTORE_TEST_NODE`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Azurite's well-known development account and key (public, documented by Microsoft).
pub const ACCOUNT: &str = "devstoreaccount1";
pub const KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub struct Azurite {
    /// The blob endpoint: `http://127.0.0.1:<port>/devstoreaccount1`.
    pub url: String,
    child: Child,
    _data: tempfile::TempDir,
}

fn bin() -> PathBuf {
    let node = std::env::var_os("RSTORE_TEST_NODE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-node"));
    node.join("node_modules/.bin/azurite-blob")
}

impl Azurite {
    /// Starts Azurite and creates `containers` (through the Python SDK in the test venv).
    pub fn start(containers: &[&str]) -> Self {
        let port = super::free_port();
        let data = tempfile::tempdir().unwrap();
        let bin = bin();
        let child = Command::new(&bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string(), "--skipApiVersionCheck", "--loose"])
            .arg("--location")
            .arg(data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} (scripts/setup-test-deps.sh installs it): {e}", bin.display()));
        let server = Self { url: format!("http://127.0.0.1:{port}/{ACCOUNT}"), child, _data: data };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "azurite did not start on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        for c in containers {
            server.python(&format!("svc.create_container({c:?})"));
        }
        server
    }

    /// A connection string for this server.
    pub fn connection_string(&self) -> String {
        format!("DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={}/;", self.url)
    }

    /// Runs Python `code` with `svc`, an azure-storage-blob BlobServiceClient of this server.
    pub fn python(&self, code: &str) -> String {
        let script = format!(
            "from azure.storage.blob import BlobServiceClient\nsvc = BlobServiceClient.from_connection_string({:?})\n{code}\n",
            self.connection_string()
        );
        let out = Command::new(super::python::venv_bin("python")).args(["-c", &script]).output().unwrap();
        assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
