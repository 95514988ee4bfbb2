//! remote-store itself on the same config file as a mount, and helpers to compare trees.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use super::python::venv_bin;

/// remote-store on the config: `write` writes the files given as JSON {path: hex}, then
/// it prints {path: sha256} of every file under the store (recursive listing).
const REMOTE_STORE: &str = r#"
import sys, json, hashlib
from remote_store import Registry, RegistryConfig
cfg = RegistryConfig.from_toml(sys.argv[1])
with Registry(cfg) as reg:
    st = reg.get_store("data")
    for path, hexdata in json.loads(sys.stdin.read()).items():
        st.write(path, bytes.fromhex(hexdata), overwrite=True)
    out = {}
    for info in st.list_files("", recursive=True):
        out[str(info.path)] = hashlib.sha256(st.read_bytes(str(info.path))).hexdigest()
    print(json.dumps(out))
"#;

pub fn remote_store(cfg: &Path, write: &BTreeMap<&str, Vec<u8>>) -> BTreeMap<String, String> {
    let files: BTreeMap<&str, String> =
        write.iter().map(|(k, v)| (*k, v.iter().map(|b| format!("{b:02x}")).collect())).collect();
    use std::io::Write;
    let mut child = Command::new(venv_bin("python"))
        .args(["-c", REMOTE_STORE])
        .arg(cfg)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(serde_json::to_string(&files).unwrap().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "remote-store failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// sha256 of every regular file under `root`, by path relative to it.
pub fn tree_sums(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_string();
                out.insert(rel, super::sha256(&fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

pub fn sh(cmd: &str) {
    let st = Command::new("sh").args(["-c", cmd]).status().unwrap();
    assert!(st.success(), "{cmd}");
}
