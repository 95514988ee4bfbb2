//! Shared test harness: real S3 servers on 127.0.0.1, a mount guard that always
//! unmounts, and a raw S3 client to check what the mount did.
#![allow(dead_code)]

pub mod azurite;
pub mod cluster;
pub mod http_server;
pub mod interop;
pub mod moto;
pub mod mount;
pub mod postgres;
pub mod python;
pub mod s3s_server;
pub mod sshd;
pub mod throttle;

use std::path::{Path, PathBuf};

#[allow(unused_imports)]
pub use moto::MotoServer;
#[allow(unused_imports)]
pub use mount::{Mounted, BIN};
#[allow(unused_imports)]
pub use s3s_server::S3sServer;

pub const ACCESS_KEY: &str = "rstore-test-key";
pub const SECRET_KEY: &str = "rstore-test-secret-value";

/// A remote-store TOML with one S3 store `data` (and the same backend under other names).
pub fn s3_config(dir: &Path, endpoint: &str, bucket: &str, root_path: &str) -> PathBuf {
    let text = format!(
        r#"[backends.s3]
type = "s3"
[backends.s3.options]
bucket = "{bucket}"
endpoint_url = "{endpoint}"
key = "{ACCESS_KEY}"
secret = "{SECRET_KEY}"
region_name = "us-east-1"
[backends.s3.retry]
max_attempts = 2
[stores.data]
backend = "s3"
root_path = "{root_path}"
"#
    );
    let p = dir.join("rstore.toml");
    std::fs::write(&p, text).unwrap();
    p
}

pub fn local_config(dir: &Path, root: &Path) -> PathBuf {
    let text = format!(
        "[backends.files]\ntype = \"local\"\n[backends.files.options]\nroot = \"{}\"\n[stores.data]\nbackend = \"files\"\n",
        root.display()
    );
    let p = dir.join("rstore.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// A raw aws-sdk-s3 client: "another S3 client" in the tests.
pub fn raw_client(endpoint: &str) -> aws_sdk_s3::Client {
    let creds = aws_sdk_s3::config::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test");
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(creds)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

pub fn put_object(endpoint: &str, bucket: &str, key: &str, body: &[u8]) {
    let c = raw_client(endpoint);
    let body = aws_sdk_s3::primitives::ByteStream::from(body.to_vec());
    rt().block_on(c.put_object().bucket(bucket).key(key).body(body).send()).unwrap();
}

pub fn get_object(endpoint: &str, bucket: &str, key: &str) -> Option<Vec<u8>> {
    let c = raw_client(endpoint);
    rt().block_on(async {
        let out = c.get_object().bucket(bucket).key(key).send().await.ok()?;
        Some(out.body.collect().await.unwrap().into_bytes().to_vec())
    })
}

pub fn list_keys(endpoint: &str, bucket: &str, prefix: &str) -> Vec<String> {
    let c = raw_client(endpoint);
    rt().block_on(async {
        let out = c.list_objects_v2().bucket(bucket).prefix(prefix).send().await.unwrap();
        out.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect()
    })
}

pub fn open_multipart_uploads(endpoint: &str, bucket: &str) -> usize {
    let c = raw_client(endpoint);
    rt().block_on(async {
        let out = c.list_multipart_uploads().bucket(bucket).send().await.unwrap();
        out.uploads().len()
    })
}

pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(data))
}

pub fn sha256_file(p: &Path) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut f = std::fs::File::open(p).unwrap();
    std::io::copy(&mut f, &mut h).unwrap();
    format!("{:x}", h.finalize())
}

/// Deterministic pseudo-random bytes (fast, no extra crate).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Runs `bash -c script`, returning (exit code, stdout, stderr).
pub fn sh(script: &str) -> (i32, String, String) {
    let out = std::process::Command::new("bash").arg("-c").arg(script).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn is_mounted(path: &Path) -> bool {
    let canon = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let needle = canon.to_string_lossy().into_owned();
    mounts.lines().any(|l| l.split_whitespace().nth(1) == Some(needle.as_str()))
}

/// Unmounts (lazily) on drop whatever is still mounted at the path: a guard for mounts
/// a test makes through other programs (a unit's ExecStart, `mount -t`, a README block).
pub struct Unmount(pub PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Reads 1 MiB through `reader`, runs `overwrite` (another mount replacing the file
/// with a different version), then reads on: every byte read must be `old`'s, and the
/// read may end early only with ESTALE, never with a mix of the two versions.
pub fn read_across_an_overwrite(mut reader: std::fs::File, old: &[u8], overwrite: impl FnOnce()) {
    use std::io::Read;
    let mut first = vec![0u8; 1 << 20];
    reader.read_exact(&mut first).unwrap();
    assert!(first[..] == old[..1 << 20]);
    overwrite();
    let mut rest = Vec::new();
    // Bytes still in the read-ahead, then ESTALE once the old version is needed.
    if let Err(e) = reader.read_to_end(&mut rest) {
        assert_eq!(e.raw_os_error(), Some(libc::ESTALE), "{e}");
    }
    let got = [&first[..], &rest[..]].concat();
    assert!(got[..] == old[..got.len()], "every byte read is the old version's ({} bytes)", got.len());
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// GET http://ADDR/metrics (the mount's Prometheus endpoint).
pub fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

/// The sum of the samples named like `name` that carry every label `name` gives
/// (`rstore_x_total` sums all; `rstore_x_total{op="get"}` those with op="get", whatever
/// their other labels, such as `store`); 0 when absent.
pub fn metric(text: &str, name: &str) -> f64 {
    let (want_name, want_labels) = split_sample(name);
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (sample, value) = l.rsplit_once(' ')?;
            let (n, labels) = split_sample(sample);
            (n == want_name && want_labels.iter().all(|w| labels.contains(w)))
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}

/// `name{a="1",b="2"}` → (`name`, [`a="1"`, `b="2"`]).
fn split_sample(s: &str) -> (&str, Vec<&str>) {
    match s.split_once('{') {
        Some((n, rest)) => (n, rest.trim_end_matches('}').split(',').filter(|l| !l.is_empty()).collect()),
        None => (s, Vec::new()),
    }
}
