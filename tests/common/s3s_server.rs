//! s3s-fs: an in-process S3 server over a temp directory, served over real HTTP.

use std::path::PathBuf;
use std::thread::JoinHandle;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

pub struct S3sServer {
    pub endpoint: String,
    pub root: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl S3sServer {
    pub fn start(buckets: &[&str]) -> Self {
        let root = tempfile::tempdir().unwrap();
        for b in buckets {
            std::fs::create_dir(root.path().join(b)).unwrap();
        }
        Self::serve(root, None)
    }

    /// Serves `root` again (after `stop`), on `port` when given.
    fn serve(root: tempfile::TempDir, port: Option<u16>) -> Self {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let dir: PathBuf = root.path().to_path_buf();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let fs = s3s_fs::FileSystem::new(&dir).unwrap();
                let mut b = S3ServiceBuilder::new(fs);
                b.set_auth(SimpleAuth::from_single(super::ACCESS_KEY, super::SECRET_KEY));
                let service = b.build();
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.unwrap_or(0))).await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let http = ConnBuilder::new(TokioExecutor::new());
                let accept = async {
                    loop {
                        let Ok((sock, _)) = listener.accept().await else {
                            continue;
                        };
                        // Without NODELAY each request on a reused connection stalls ~40 ms.
                        let _ = sock.set_nodelay(true);
                        let conn = http.serve_connection(TokioIo::new(sock), service.clone()).into_owned();
                        tokio::spawn(async move {
                            let _ = conn.await;
                        });
                    }
                };
                tokio::select! { _ = accept => {}, _ = stop_rx => {} }
            });
            rt.shutdown_background(); // drops every open connection
        });
        let addr = addr_rx.recv().unwrap();
        Self { endpoint: format!("http://{addr}"), root, stop: Some(stop_tx), thread: Some(thread) }
    }

    /// Stops serving: open connections drop, new ones are refused.
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    pub fn port(&self) -> u16 {
        self.endpoint.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Starts serving the same data again on the same port.
    pub fn restart(mut self) -> Self {
        self.stop();
        let port = self.port();
        let root = std::mem::replace(&mut self.root, tempfile::tempdir().unwrap());
        Self::serve(root, Some(port))
    }

    /// Multipart uploads neither completed nor aborted (s3s-fs keeps one
    /// `.upload-ID.json` each; it has no ListMultipartUploads).
    pub fn open_uploads(&self) -> usize {
        std::fs::read_dir(self.root.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(".upload-"))
            .count()
    }

    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.path().join(bucket).join(key)
    }
}

impl Drop for S3sServer {
    fn drop(&mut self) {
        self.stop();
    }
}
