//! moto_server: a widely used S3 emulator, faithful on markers and metadata edge cases.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct MotoServer {
    pub endpoint: String,
    child: Child,
}

impl MotoServer {
    pub fn start(buckets: &[&str]) -> Self {
        let bin = super::python::venv_bin("moto_server");
        let port = super::free_port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let server = Self { endpoint: format!("http://127.0.0.1:{port}"), child };
        server.wait_ready();
        let c = super::raw_client(&server.endpoint);
        super::rt().block_on(async {
            for b in buckets {
                c.create_bucket().bucket(*b).send().await.unwrap();
            }
        });
        server
    }

    fn wait_ready(&self) {
        let addr = self.endpoint.trim_start_matches("http://").to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(&addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("moto_server did not start on {addr}");
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
