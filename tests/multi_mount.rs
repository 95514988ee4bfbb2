//! Two mounts of one bucket (separate processes, as on two machines) on moto, which
//! enforces S3 conditional writes as AWS does: concurrent writers of one file never
//! overwrite each other silently. Exactly one close succeeds; the other fails with EIO,
//! its data is kept where its log line says, and the object is the winner's whole.

mod common;

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use common::{get_object, put_object, s3_config, MotoServer, Mounted};

const BUCKET: &str = "shared";

fn two_mounts(moto: &MotoServer, dir: &std::path::Path) -> (Mounted, Mounted) {
    let cfg = s3_config(dir, &moto.endpoint, BUCKET, "");
    let flags = ["--metadata-ttl", "0", "--negative-metadata-ttl", "0"];
    (Mounted::start(&cfg, "data", &flags), Mounted::start(&cfg, "data", &flags))
}

/// The path a mount's log gives for the kept copy of `key` (`kept=PATH`).
fn kept_path(log: &str, key: &str) -> PathBuf {
    let line = log
        .lines()
        .find(|l| l.contains("not uploaded") && l.contains(&format!("key={key}")))
        .unwrap_or_else(|| panic!("no conflict line for {key} in the log:\n{log}"));
    assert!(line.contains("started_from=") && line.contains("now="), "both ETags named: {line}");
    let at = line.rfind(" kept=").expect("kept= in the line") + " kept=".len();
    PathBuf::from(line[at..].split_whitespace().next().unwrap())
}

#[test]
fn the_server_enforcing_conditions_is_detected_at_mount() {
    let moto = MotoServer::start(&[BUCKET]);
    let dir = tempfile::tempdir().unwrap();
    let (a, _b) = two_mounts(&moto, dir.path());
    assert!(a.log_text().contains("the server enforces conditional writes"), "{}", a.log_text());
    assert!(common::list_keys(&moto.endpoint, BUCKET, "").is_empty(), "the probe object is gone");
}

#[test]
fn concurrent_in_place_modify_on_two_mounts_one_close_wins_the_other_keeps_its_data() {
    let moto = MotoServer::start(&[BUCKET]);
    let dir = tempfile::tempdir().unwrap();
    put_object(&moto.endpoint, BUCKET, "report.csv", b"name,total\nx,1\ny,2\n");
    let (a, b) = two_mounts(&moto, dir.path());
    let open = |m: &Mounted| OpenOptions::new().read(true).write(true).open(m.join("report.csv")).unwrap();
    let (mut fa, mut fb) = (open(&a), open(&b));
    fa.seek(SeekFrom::Start(13)).unwrap();
    fa.write_all(b"7").unwrap();
    fb.seek(SeekFrom::End(0)).unwrap();
    fb.write_all(b"z,3\n").unwrap();
    drop(fa); // A closes first: its version lands
    let b_close = fb.sync_all(); // what close reports; the drop below only releases
    drop(fb);
    assert_eq!(b_close.unwrap_err().raw_os_error(), Some(libc::EIO), "B's close fails");
    assert_eq!(get_object(&moto.endpoint, BUCKET, "report.csv").unwrap(), b"name,total\nx,7\ny,2\n");
    let kept = kept_path(&b.log_text(), "report.csv");
    assert_eq!(std::fs::read(&kept).unwrap(), b"name,total\nx,1\ny,2\nz,3\n", "B's version, whole");
    // Both mounts now read the winner's version.
    let mut text = String::new();
    std::fs::File::open(b.join("report.csv")).unwrap().read_to_string(&mut text).unwrap();
    assert_eq!(text, "name,total\nx,7\ny,2\n");
}

#[test]
fn two_exclusive_creators_on_two_mounts_exactly_one_close_succeeds() {
    let moto = MotoServer::start(&[BUCKET]);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_mounts(&moto, dir.path());
    let create =
        |m: &Mounted| OpenOptions::new().write(true).create_new(true).mode(0o644).open(m.join("job.lock")).unwrap();
    // Both creates succeed: neither mount can see the other's file before it closes.
    let (mut fa, mut fb) = (create(&a), create(&b));
    fa.write_all(b"owner: a\n").unwrap();
    fb.write_all(b"owner: b\n").unwrap();
    let ra = fa.sync_all();
    let rb = fb.sync_all();
    drop((fa, fb));
    assert!(ra.is_ok(), "{ra:?}");
    assert_eq!(rb.unwrap_err().raw_os_error(), Some(libc::EIO));
    assert_eq!(get_object(&moto.endpoint, BUCKET, "job.lock").unwrap(), b"owner: a\n");
    assert_eq!(std::fs::read(kept_path(&b.log_text(), "job.lock")).unwrap(), b"owner: b\n");
}

#[test]
fn a_file_closed_on_one_mount_reads_whole_on_the_other() {
    let moto = MotoServer::start(&[BUCKET]);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_mounts(&moto, dir.path());
    let data = common::pattern(20 << 20, 3); // a multipart upload
                                             // B looks first: the name is missing there, and B must not keep believing it.
    assert!(!b.join("out.bin").exists());
    std::fs::write(a.join("out.bin"), &data).unwrap();
    // --metadata-ttl 0: the next open on B asks the store.
    assert!(std::fs::read(b.join("out.bin")).unwrap() == data, "B reads A's whole file at once");
    let names: Vec<String> =
        std::fs::read_dir(b.path.clone()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names, ["out.bin"]);
    std::fs::rename(a.join("out.bin"), a.join("final.bin")).unwrap();
    assert!(!b.join("out.bin").exists() && b.join("final.bin").exists(), "renames show on B");
    std::fs::remove_file(a.join("final.bin")).unwrap();
    assert!(!b.join("final.bin").exists(), "deletes show on B");
}

#[test]
fn a_reader_on_one_mount_never_mixes_versions_across_an_overwrite() {
    let moto = MotoServer::start(&[BUCKET]);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_mounts(&moto, dir.path());
    let (old, new) = (common::pattern(24 << 20, 1), common::pattern(24 << 20, 2));
    std::fs::write(a.join("data.bin"), &old).unwrap();
    let reader = std::fs::File::open(b.join("data.bin")).unwrap();
    common::read_across_an_overwrite(reader, &old, || std::fs::write(a.join("data.bin"), &new).unwrap());
    assert!(std::fs::read(b.join("data.bin")).unwrap() == new, "a new open reads the new version");
}

/// The same with a file of several parts, committed as a multipart upload (parts copied
/// on the server): B's commit is refused, its change kept.
#[test]
fn a_multipart_commit_that_would_overwrite_another_mount_is_refused() {
    let moto = MotoServer::start(&[BUCKET]);
    let dir = tempfile::tempdir().unwrap();
    let base = common::pattern(20 << 20, 4);
    put_object(&moto.endpoint, BUCKET, "big.bin", &base);
    let (a, b) = two_mounts(&moto, dir.path());
    let open = |m: &Mounted| OpenOptions::new().read(true).write(true).open(m.join("big.bin")).unwrap();
    let (mut fa, mut fb) = (open(&a), open(&b));
    fa.write_all(b"written by A").unwrap();
    fb.seek(SeekFrom::Start(15 << 20)).unwrap();
    fb.write_all(b"written by B").unwrap();
    fa.sync_all().unwrap();
    assert_eq!(fb.sync_all().unwrap_err().raw_os_error(), Some(libc::EIO));
    drop((fa, fb));
    let mut want = base.clone();
    want[..12].copy_from_slice(b"written by A");
    assert!(get_object(&moto.endpoint, BUCKET, "big.bin").unwrap() == want, "the object is A's version");
    let kept = std::fs::read(kept_path(&b.log_text(), "big.bin")).unwrap();
    assert_eq!(kept.len(), 20 << 20);
    assert_eq!(&kept[15 << 20..(15 << 20) + 12], b"written by B", "B's change is kept");
}
