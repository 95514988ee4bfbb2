//! A Python venv with remote-store[s3] and moto[server]: `$RSTORE_TEST_VENV` when set
//! (scripts/test.sh makes one), else created once under target/.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

const REQUIREMENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/test-requirements.txt");

fn venv() -> &'static PathBuf {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        if let Some(v) = std::env::var_os("RSTORE_TEST_VENV") {
            return PathBuf::from(v);
        }
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-venv");
        if !dir.join(".ready").exists() {
            let ok = Command::new("python3").args(["-m", "venv"]).arg(&dir).status().is_ok_and(|s| s.success());
            assert!(ok, "python3 -m venv failed: install python3-venv");
            let pip = dir.join("bin/pip");
            let ok = Command::new(&pip).args(["install", "-q", "-r", REQUIREMENTS]).status().is_ok_and(|s| s.success());
            assert!(ok, "pip install -r {REQUIREMENTS} failed");
            std::fs::write(dir.join(".ready"), "").unwrap();
        }
        dir
    })
}

pub fn venv_bin(name: &str) -> PathBuf {
    venv().join("bin").join(name)
}
