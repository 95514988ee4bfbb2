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
        # remote-store's S3 listing also yields directory markers (`dir/` objects, which
        # the mount writes on mkdir, as s3fs-fuse does), and then calls them folders.
        if st.is_folder(str(info.path)):
            continue
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

/// The interop scenario every backend type runs: remote-store writes a tree that the
/// mount lists and reads byte-identical; the mount writes a tree (`cp -r`, `tar x`,
/// append, rename, rm, then `more` on the mount path) that remote-store reads back
/// identical, file for file. `cfg` names a store `data`.
pub fn share_a_tree(cfg: &Path, more: &dyn Fn(&Path)) {
    let dir = tempfile::tempdir().unwrap();
    let mut theirs = BTreeMap::new();
    theirs.insert("py/a.txt", b"hello from remote-store\n".to_vec());
    theirs.insert("py/sub/b.bin", super::pattern(3 << 20, 7));
    theirs.insert("py/sub/deep/c.txt", b"c".to_vec());
    remote_store(cfg, &theirs);
    let m = super::Mounted::start(cfg, "data", &["--metadata-ttl", "0"]);
    let mut names: Vec<String> =
        fs::read_dir(m.join("py/sub")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["b.bin", "deep"]);
    let seen = tree_sums(&m.join("py"));
    for (path, data) in &theirs {
        assert_eq!(seen[path.strip_prefix("py/").unwrap()], super::sha256(data), "{path}");
    }
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("x/y")).unwrap();
    fs::write(src.join("x/one.txt"), "one\n").unwrap();
    fs::write(src.join("x/y/big.bin"), super::pattern(20 << 20, 3)).unwrap();
    fs::write(src.join("x/y/gone.txt"), "to be removed").unwrap();
    let (mnt, s) = (m.path.display().to_string(), src.display().to_string());
    sh(&format!("cp -r {s}/x {mnt}/copied"));
    sh(&format!("tar cf {s}/t.tar -C {s} x && mkdir {mnt}/untarred && tar xf {s}/t.tar -C {mnt}/untarred"));
    sh(&format!("printf 'two\\n' >> {mnt}/copied/one.txt"));
    sh(&format!("mv {mnt}/copied/y {mnt}/copied/moved"));
    sh(&format!("rm {mnt}/copied/moved/gone.txt {mnt}/untarred/x/y/gone.txt"));
    more(&m.path);
    let ours = tree_sums(&m.path);
    drop(m);
    let after = remote_store(cfg, &BTreeMap::new());
    assert_eq!(after, ours, "remote-store reads exactly the mount's tree");
    assert_eq!(after.get("copied/one.txt"), Some(&super::sha256(b"one\ntwo\n")));
}

/// Runs the mount on `cfg` (store `data`) at `mp` and checks the bad-input rule: exit 1
/// with one line naming the store and `expect`, none of `secrets` in it, within 10 s,
/// nothing mounted.
pub fn assert_fails_fast(cfg: &Path, mp: &Path, expect: &str, secrets: &[&str]) {
    let start = std::time::Instant::now();
    let out = Command::new(super::BIN)
        .arg("--config")
        .arg(cfg)
        .arg("data")
        .arg(mp)
        .env_remove("RSTORE_CONFIG")
        .output()
        .unwrap();
    let took = start.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(lines[0].contains("store 'data'") && lines[0].contains(expect), "{expect}: {err}");
    for s in secrets {
        assert!(!err.contains(s), "a secret in {err}");
    }
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    assert!(!super::is_mounted(mp), "nothing mounted");
}
