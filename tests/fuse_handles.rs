//! One file, many handles, on real mounts: every open of a file on one mount
//! sees one state, as on ext4. Each scenario runs on a local-directory store and, where
//! it matters for the upload path, on moto.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{local_config, s3_config, MotoServer, Mounted};

fn local_mount() -> (tempfile::TempDir, tempfile::TempDir, Mounted) {
    let root = tempfile::tempdir().unwrap();
    let cfg = tempfile::tempdir().unwrap();
    let m = Mounted::start(&local_config(cfg.path(), root.path()), "data", &[]);
    (root, cfg, m)
}

fn appender(p: &Path) -> File {
    OpenOptions::new().append(true).create(true).mode(0o644).open(p).unwrap()
}

/// The report's five steps, byte-exact.
fn five_steps(dir: &Path) -> Vec<u8> {
    let f = dir.join("five");
    File::create(&f).unwrap();
    let mut fd1 = appender(&f);
    let mut fd2 = appender(&f);
    fd1.write_all(b"a\n").unwrap();
    let mut fd3 = appender(&f);
    fd3.write_all(b"c\n").unwrap();
    drop(fd3);
    fd2.write_all(b"b\n").unwrap();
    drop(fd2);
    drop(fd1);
    fs::read(&f).unwrap()
}

/// `n` processes at once, each `open(O_CREAT|O_APPEND)`, one write of a line, close.
fn parallel_appenders(dir: &Path, n: usize) -> String {
    let f = dir.join(format!("appended-{n}"));
    let script = "printf 'line %03d from %s\\n' \"$1\" \"$$\" >> \"$2\"";
    let children: Vec<_> = (0..n)
        .map(|i| {
            Command::new("sh")
                .args(["-c", script, "sh", &i.to_string()])
                .arg(&f)
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "an appender failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    fs::read_to_string(&f).unwrap()
}

fn check_appended(body: &str, n: usize) {
    assert!(!body.contains('\0'), "NUL bytes nobody wrote: {body:?}");
    let mut numbers: Vec<usize> = body.lines().map(|l| l[5..8].parse().unwrap()).collect();
    numbers.sort();
    assert_eq!(numbers, (0..n).collect::<Vec<_>>(), "every line exactly once: {body}");
}

#[test]
fn concurrent_appenders_on_a_local_store_match_posix() {
    let (root, _cfg, m) = local_mount();
    assert_eq!(five_steps(&m.path), b"a\nc\nb\n");
    assert_eq!(fs::read(root.path().join("five")).unwrap(), b"a\nc\nb\n", "and so does the store");
    for n in [16, 64] {
        check_appended(&parallel_appenders(&m.path, n), n);
        check_appended(&fs::read_to_string(root.path().join(format!("appended-{n}"))).unwrap(), n);
    }
    assert_eq!(m.unmount(), Some(0));
}

#[test]
fn concurrent_appenders_on_s3_match_posix() {
    let server = MotoServer::start(&["bkt"]);
    let cfg = tempfile::tempdir().unwrap();
    let config = s3_config(cfg.path(), &server.endpoint, "bkt", "h");
    let m = Mounted::start(&config, "data", &[]);
    assert_eq!(five_steps(&m.path), b"a\nc\nb\n");
    check_appended(&parallel_appenders(&m.path, 16), 16);
    let stored = common::get_object(&server.endpoint, "bkt", "h/appended-16").unwrap();
    check_appended(&String::from_utf8(stored).unwrap(), 16);
    assert_eq!(m.unmount(), Some(0));
}

/// A file being written (data not uploaded) reads through any other open: `cat`,
/// `open(O_RDONLY)`, and `tail -f` following it line by line.
#[test]
fn a_file_being_written_can_be_read_and_followed() {
    let (_root, _cfg, m) = local_mount();
    let log = m.join("app.log");
    let mut w = File::create(&log).unwrap();
    w.write_all(b"first\n").unwrap();
    assert_eq!(fs::read_to_string(&log).unwrap(), "first\n", "no EBUSY for a second open");
    let out = Command::new("cat").arg(&log).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "first\n");

    let mut tail = Command::new("tail").arg("-f").arg(&log).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(tail.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "first");
    let mut slowest = Duration::ZERO;
    for i in 0..5 {
        std::thread::sleep(Duration::from_millis(300));
        let line = format!("line {i}");
        let t = Instant::now();
        writeln!(w, "{line}").unwrap();
        assert_eq!(lines.next().unwrap().unwrap(), line);
        slowest = slowest.max(t.elapsed());
    }
    let _ = tail.kill();
    let _ = tail.wait();
    eprintln!("tail -f showed each line within {slowest:?}");
    assert!(slowest < Duration::from_millis(1500), "tail -f took {slowest:?} for a line");
    drop(w);
    assert_eq!(m.unmount(), Some(0));
}

/// A read-only mmap shares the page cache: it sees bytes another fd writes, through a
/// direct-I/O write-only fd (the mount drops the stale pages) or a writable mapping.
#[test]
fn a_read_only_mmap_sees_an_open_writers_new_bytes() {
    let (_root, _cfg, m) = local_mount();
    let p = m.join("mapped");
    fs::write(&p, vec![b'a'; 8192]).unwrap();
    let reader = File::open(&p).unwrap();
    let map = Map::new(&reader, 8192, libc::PROT_READ);
    assert_eq!(map.byte(5000), b'a');
    let writer = OpenOptions::new().write(true).open(&p).unwrap();
    writer.write_all_at(b"B", 5000).unwrap();
    assert_eq!(map.byte(5000), b'B', "after write(2) through a write-only fd");
    let rw = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    let wmap = Map::new(&rw, 8192, libc::PROT_READ | libc::PROT_WRITE);
    wmap.set(7000, b'C');
    wmap.sync();
    assert_eq!(map.byte(7000), b'C', "after msync of a writable mapping");
    let mut third = String::new();
    File::open(&p).unwrap().read_to_string(&mut third).unwrap();
    assert_eq!((&third[5000..5001], &third[7000..7001]), ("B", "C"));
    drop((map, wmap, writer, rw, reader));
    assert_eq!(m.unmount(), Some(0));
}

/// Two O_RDWR handles interleave pwrite/pread exactly as they do on the local disk.
#[test]
fn two_read_write_handles_interleave_like_the_local_disk() {
    let (_root, _cfg, m) = local_mount();
    let disk = tempfile::tempdir().unwrap();
    let run = |dir: &Path| -> Vec<Vec<u8>> {
        let p = dir.join("db");
        fs::write(&p, vec![b'.'; 20_000]).unwrap();
        let rw = || OpenOptions::new().read(true).write(true).open(&p).unwrap();
        let (a, b) = (rw(), rw());
        let mut seen = Vec::new();
        let mut x = 7u64;
        for step in 0..200u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let (fd, other) = if step % 2 == 0 { (&a, &b) } else { (&b, &a) };
            let off = (x >> 33) % 24_000;
            let len = 1 + (x >> 13) % 3000;
            fd.write_all_at(&vec![(step % 250) as u8; len as usize], off).unwrap();
            let mut buf = vec![0u8; 4096];
            let n = other.read_at(&mut buf, off.saturating_sub(100)).unwrap();
            seen.push(buf[..n].to_vec());
            if step % 50 == 49 {
                other.set_len(off).unwrap();
            }
        }
        drop((a, b));
        seen.push(fs::read(&p).unwrap());
        seen
    };
    let (want, got) = (run(disk.path()), run(&m.path));
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        assert!(w == g, "step {i}: the mount read {} bytes, the disk {}", g.len(), w.len());
    }
    assert_eq!(m.unmount(), Some(0));
}

/// A shared file mapping, unmapped on drop.
struct Map(*mut u8, usize);

impl Map {
    fn new(f: &File, len: usize, prot: i32) -> Self {
        use std::os::fd::AsRawFd;
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, f.as_raw_fd(), 0) };
        assert_ne!(p, libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
        Self(p as *mut u8, len)
    }
    fn byte(&self, at: usize) -> u8 {
        assert!(at < self.1);
        unsafe { std::ptr::read_volatile(self.0.add(at)) }
    }
    fn set(&self, at: usize, v: u8) {
        assert!(at < self.1);
        unsafe { std::ptr::write_volatile(self.0.add(at), v) }
    }
    fn sync(&self) {
        assert_eq!(unsafe { libc::msync(self.0 as *mut libc::c_void, self.1, libc::MS_SYNC) }, 0);
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.0 as *mut libc::c_void, self.1) };
    }
}
