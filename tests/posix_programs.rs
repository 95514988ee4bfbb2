//! Legacy programs on a real mount: append loops, sed -i, editors, git,
//! sqlite3, in-place overwrites and renames; the data must survive a remount.

mod common;

use std::path::Path;

use common::{get_object, local_config, open_multipart_uploads, s3_config, sh, MotoServer, Mounted};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scenarios/programs.sh");

fn run(phase: &str, m: &Mounted, work: &Path) {
    let (code, out, err) = sh(&format!("{SCRIPT} {phase} {} {}", m.path.display(), work.display()));
    assert_eq!(code, 0, "{phase} failed\nstdout: {out}\nstderr: {err}\nmount log (tail): {}", tail(&m.log_text()));
}

fn tail(s: &str) -> &str {
    &s[s.len().saturating_sub(4000)..]
}

fn write_then_verify_after_remount(config: &Path) {
    let work = tempfile::tempdir().unwrap();
    let m = Mounted::start(config, "data", &[]);
    run("write", &m, work.path());
    assert_eq!(m.unmount(), Some(0));
    // A fresh mount with default flags: its listings read the stored modes.
    let m = Mounted::start(config, "data", &[]);
    run("verify", &m, work.path());
}

#[test]
fn programs_on_a_local_store() {
    let (root, cfg) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_then_verify_after_remount(&local_config(cfg.path(), root.path()));
    let on_disk = std::fs::read(root.path().join("big.bin")).unwrap();
    assert_eq!(on_disk.len(), 20 << 20);
}

/// moto, not s3s-fs: git and mkdir need `dir/` markers beside objects, which s3s-fs
/// cannot store.
#[test]
fn programs_on_an_s3_store() {
    let server = MotoServer::start(&["bkt"]);
    let cfg = tempfile::tempdir().unwrap();
    write_then_verify_after_remount(&s3_config(cfg.path(), &server.endpoint, "bkt", "p"));
    // Another S3 client reads the same bytes.
    let sed = get_object(&server.endpoint, "bkt", "p/sed.txt").unwrap();
    assert_eq!(sed, b"baz\nbar\nbaz\n");
    assert_eq!(open_multipart_uploads(&server.endpoint, "bkt"), 0, "no multipart upload left open");
}
