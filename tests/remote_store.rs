//! The same config file serves remote-store (Python) and rstore-mount: bytes written by
//! either are read back identical by the other.

mod common;

use std::fs;
use std::process::Command;

use common::{python::venv_bin, s3_config, MotoServer, Mounted};

const SCRIPT: &str = r#"
import sys
from remote_store import Registry, RegistryConfig
cfg = RegistryConfig.from_toml(sys.argv[1], resolve_env_vars=True)
with Registry(cfg) as reg:
    st = reg.get_store("data")
    data = st.read_bytes("from-mount/blob.bin")
    sys.stdout.write(str(len(data)) + " ")
    import hashlib
    sys.stdout.write(hashlib.sha256(data).hexdigest())
    st.write("from-python/hello.bin", bytes(range(256)) * 4096, overwrite=True)
"#;

#[test]
fn remote_store_and_the_mount_read_each_others_files() {
    let server = MotoServer::start(&["bkt"]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = s3_config(dir.path(), &server.endpoint, "bkt", "shared/root");
    let m = Mounted::start(&cfg, "data", &["--metadata-ttl", "0"]);
    let blob = common::pattern(9 << 20, 3);
    fs::create_dir(m.join("from-mount")).unwrap();
    fs::write(m.join("from-mount/blob.bin"), &blob).unwrap();
    let out = Command::new(venv_bin("python")).arg("-c").arg(SCRIPT).arg(&cfg).output().unwrap();
    assert!(out.status.success(), "remote-store failed: {}", String::from_utf8_lossy(&out.stderr));
    let answer = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(answer, format!("{} {}", blob.len(), common::sha256(&blob)));
    let expected: Vec<u8> = (0..=255u8).cycle().take(256 * 4096).collect();
    assert_eq!(fs::read(m.join("from-python/hello.bin")).unwrap(), expected);
}

/// The interop scenario every backend type runs (tests/common/interop.rs), on S3.
#[test]
fn remote_store_and_an_s3_mount_share_a_tree() {
    let server = MotoServer::start(&["bkt"]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = s3_config(dir.path(), &server.endpoint, "bkt", "tree");
    common::interop::share_a_tree(&cfg, &|_| {});
}
