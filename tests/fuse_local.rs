//! Real mounts of a local-directory store, driven by std::fs and real programs.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;

use common::{local_config, sh, Mounted};

fn setup() -> (tempfile::TempDir, tempfile::TempDir, Mounted) {
    let root = tempfile::tempdir().unwrap();
    let cfg = tempfile::tempdir().unwrap();
    fs::write(root.path().join("existing.txt"), "from disk\n").unwrap();
    let m = Mounted::start(&local_config(cfg.path(), root.path()), "data", &[]);
    (root, cfg, m)
}

#[test]
fn shell_programs_work_on_a_local_store() {
    let (root, _cfg, m) = setup();
    let mp = m.path.display().to_string();
    let (code, out, err) = sh(&format!("echo hi > {mp}/x && cat {mp}/x"));
    assert_eq!((code, out.as_str()), (0, "hi\n"), "{err}");
    assert_eq!(fs::read_to_string(root.path().join("x")).unwrap(), "hi\n");
    assert_eq!(fs::read_to_string(m.join("existing.txt")).unwrap(), "from disk\n");
    let (code, _, err) = sh(&format!("dd if=/dev/urandom of={mp}/r.bin bs=1M count=12 status=none && cp {mp}/r.bin {mp}/copy.bin && cmp {mp}/r.bin {mp}/copy.bin"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(fs::metadata(root.path().join("copy.bin")).unwrap().len(), 12 << 20);
    let (code, out, _) = sh(&format!("ls -la {mp}"));
    assert_eq!(code, 0);
    for name in ["existing.txt", "x", "r.bin", "copy.bin", " .", " .."] {
        assert!(out.contains(name), "ls -la misses {name}: {out}");
    }
    let (code, _, err) = sh(&format!("mkdir -p {mp}/a/b/c && touch {mp}/a/b/c/f && ls {mp}/a/b/c/f"));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = sh(&format!("rmdir {mp}/a"));
    assert_ne!(code, 0);
    assert!(err.contains("Directory not empty"), "{err}");
    let (code, _, err) = sh(&format!("rm {mp}/a/b/c/f && rmdir {mp}/a/b/c && rm {mp}/x {mp}/copy.bin"));
    assert_eq!(code, 0, "{err}");
    assert!(!root.path().join("x").exists());
    assert!(!root.path().join("a/b/c").exists());
    assert_eq!(m.unmount(), Some(0), "clean exit after umount");
}

#[test]
fn stat_matches_the_backing_file() {
    let (root, _cfg, m) = setup();
    let mut f = fs::File::create(m.join("sized")).unwrap();
    f.write_all(&[5u8; 4321]).unwrap();
    drop(f);
    let st = fs::metadata(m.join("sized")).unwrap();
    assert!(st.is_file());
    assert_eq!(st.len(), 4321);
    assert_eq!(st.mode() & 0o777, 0o644);
    let disk = fs::metadata(root.path().join("existing.txt")).unwrap();
    let seen = fs::metadata(m.join("existing.txt")).unwrap();
    assert_eq!(seen.mtime(), disk.mtime());
    assert!(fs::metadata(m.join("nope")).unwrap_err().kind() == std::io::ErrorKind::NotFound);
    let st = fs::metadata(&m.path).unwrap();
    assert!(st.is_dir());
    let (code, out, _) = sh(&format!("df -P {}", m.path.display()));
    assert_eq!(code, 0);
    assert!(out.contains("rstore:data"), "{out}");
}

#[test]
fn append_rename_symlink_chmod_fifo_work_and_hard_links_are_refused() {
    let (root, _cfg, m) = setup();
    let mp = m.path.display().to_string();
    let (code, _, err) = sh(&format!("echo more >> {mp}/existing.txt"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(fs::read_to_string(root.path().join("existing.txt")).unwrap(), "from disk\nmore\n");
    let (code, _, err) = sh(&format!("mv {mp}/existing.txt {mp}/moved.txt"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(fs::read_to_string(root.path().join("moved.txt")).unwrap(), "from disk\nmore\n");
    assert!(!root.path().join("existing.txt").exists());
    let (code, _, err) = sh(&format!("ln {mp}/moved.txt {mp}/hard"));
    assert_ne!(code, 0);
    assert!(err.contains("Operation not permitted"), "{err}");
    let (code, out, err) = sh(&format!("ln -s moved.txt {mp}/sym && readlink {mp}/sym && cat {mp}/sym"));
    assert_eq!((code, out.as_str()), (0, "moved.txt\nfrom disk\nmore\n"), "{err}");
    let (code, out, err) = sh(&format!("chmod 640 {mp}/moved.txt && stat -c %a {mp}/moved.txt"));
    assert_eq!((code, out.trim()), (0, "640"), "{err}");
    // A fifo is an empty object whose mode names its type: the kernel serves its I/O.
    let (code, out, err) = sh(&format!(
        "mkfifo -m 640 {mp}/fifo && stat -c '%F %a' {mp}/fifo && (echo through > {mp}/fifo &) && cat {mp}/fifo"
    ));
    assert_eq!((code, out.as_str()), (0, "fifo 640\nthrough\n"), "{err}");
}

#[test]
fn read_only_mount_refuses_every_write_with_erofs() {
    let root = tempfile::tempdir().unwrap();
    let cfg = tempfile::tempdir().unwrap();
    fs::write(root.path().join("f"), "keep").unwrap();
    let m = Mounted::start(&local_config(cfg.path(), root.path()), "data", &["--read-only"]);
    let mp = m.path.display().to_string();
    for cmd in [
        format!("echo x > {mp}/new"),
        format!("echo x > {mp}/f"),
        format!("mkdir {mp}/d"),
        format!("rm {mp}/f"),
        format!("truncate -s 0 {mp}/f"),
        format!("touch {mp}/f"),
        format!("echo x >> {mp}/f"),
        format!("mv {mp}/f {mp}/g"),
        format!("ln -s f {mp}/l"),
        format!("chmod 600 {mp}/f"),
    ] {
        let (code, _, err) = sh(&cmd);
        assert_ne!(code, 0, "{cmd} must fail");
        assert!(err.contains("Read-only file system"), "{cmd}: {err}");
    }
    assert_eq!(fs::read_to_string(m.join("f")).unwrap(), "keep");
    assert_eq!(fs::read_to_string(root.path().join("f")).unwrap(), "keep");
}

#[test]
fn sigterm_finishes_and_unmounts() {
    let (root, _cfg, m) = setup();
    let mut f = fs::File::create(m.join("open-at-signal")).unwrap();
    f.write_all(b"written before SIGTERM").unwrap();
    let (code, out, _) = sh(&format!("pgrep -f 'rstore-mount.*{}'", m.path.display()));
    assert_eq!(code, 0);
    let pid = out.lines().next().unwrap().trim().to_string();
    sh(&format!("kill -TERM {pid}"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while common::is_mounted(&m.path) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!common::is_mounted(&m.path), "unmounted after SIGTERM");
    assert_eq!(fs::read_to_string(root.path().join("open-at-signal")).unwrap(), "written before SIGTERM");
    drop(f);
}

/// Peak resident memory of a process, from /proc.
fn peak_rss_kib(pid: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_directory_of_100k_entries_lists_completely_in_bounded_memory() {
    let root = tempfile::tempdir().unwrap();
    let cfg = tempfile::tempdir().unwrap();
    let big = root.path().join("big");
    fs::create_dir(&big).unwrap();
    for i in 0..100_000 {
        fs::File::create(big.join(format!("file-{i:06}"))).unwrap();
    }
    let m = Mounted::start(&local_config(cfg.path(), root.path()), "data", &[]);
    let mut names: Vec<String> =
        fs::read_dir(m.join("big")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names.len(), 100_000);
    assert!(names.iter().enumerate().all(|(i, n)| *n == format!("file-{i:06}")));
    let (code, out, _) = sh(&format!("ls -l {}/big | wc -l", m.path.display()));
    assert_eq!((code, out.trim()), (0, "100001"));
    let (_, pid, _) = sh(&format!("pgrep -f 'rstore-mount.*{}'", m.path.display()));
    let rss = peak_rss_kib(pid.trim());
    eprintln!("peak RSS of the mount after listing 100k entries twice: {} MiB", rss / 1024);
    assert!(rss < 300 * 1024, "peak RSS {} MiB", rss / 1024);
}

/// A 4 KiB pwrite into a 1 GiB file re-uploads far less than
/// 1 GiB (the mount's own byte counter, read from its metrics endpoint).
#[test]
fn a_4kib_change_in_a_1gib_file_sends_one_part() {
    let root = tempfile::tempdir().unwrap();
    let cfg = tempfile::tempdir().unwrap();
    let big = root.path().join("big.bin");
    let (code, _, err) = sh(&format!("head -c 1G /dev/urandom > {}", big.display()));
    assert_eq!(code, 0, "{err}");
    let addr = format!("127.0.0.1:{}", common::free_port());
    let m = Mounted::start(&local_config(cfg.path(), root.path()), "data", &["--metrics-addr", &addr]);
    let before = common::scrape(&addr);
    let at = (512u64 << 20) + 4321;
    let mut want = fs::read(&big).unwrap();
    let f = fs::OpenOptions::new().write(true).open(m.join("big.bin")).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[7u8; 4096], at).unwrap();
    drop(f);
    want[at as usize..at as usize + 4096].fill(7);
    let after = common::scrape(&addr);
    let sent =
        common::metric(&after, "rstore_bytes_written_total") - common::metric(&before, "rstore_bytes_written_total");
    assert!(sent <= (16 << 20) as f64, "bytes sent for a 4 KiB change in 1 GiB: {sent}");
    let copied = common::metric(&after, "rstore_s3_requests_total{op=\"upload_part_copy\",result=\"ok\"}");
    assert!(copied >= 120.0, "parts copied instead of sent: {copied}");
    assert!(fs::read(&big).unwrap() == want, "the file holds the change and nothing else changed");
    assert_eq!(fs::metadata(m.join("big.bin")).unwrap().len(), 1 << 30);
}

#[test]
fn the_mount_asks_the_kernel_for_one_mib_reads() {
    let (_root, _cfg, m) = setup();
    let dev = fs::metadata(&m.path).unwrap().dev();
    // st_dev of a FUSE mount is an anonymous device: major 0.
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let kib = fs::read_to_string(format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb")).unwrap();
    assert_eq!(kib.trim(), "1024", "the kernel default would be 128");
    assert_eq!(m.unmount(), Some(0));
}
