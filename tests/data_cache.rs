//! The persistent data cache (`--cache DIR`) on real mounts of an s3s-fs store: bytes
//! identical after a remount and read without the store, read by the kernel itself
//! (FUSE passthrough) or by the daemon, never another version's bytes, corrupted blocks
//! fetched again, the directory kept under `--max-cache-size`, one process per directory.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{put_object, s3_config, Mounted, S3sServer};

const BUCKET: &str = "bkt";
const MIB: usize = 1 << 20;

struct Setup {
    server: S3sServer,
    cfg: tempfile::TempDir,
    config: PathBuf,
    cache: PathBuf,
}

fn setup() -> Setup {
    let server = S3sServer::start(&[BUCKET]);
    let cfg = tempfile::tempdir().unwrap();
    let config = s3_config(cfg.path(), &server.endpoint, BUCKET, "");
    let cache = cfg.path().join("data-cache");
    Setup { server, cfg, config, cache }
}

impl Setup {
    /// Mounts with the data cache, metrics on a port of its own; returns the mount and
    /// the metrics address.
    fn mount(&self, extra: &[&str]) -> (Mounted, String) {
        let addr = format!("127.0.0.1:{}", common::free_port());
        let cache = self.cache.display().to_string();
        let mut args = vec!["--cache", &cache, "--metrics-addr", &addr];
        args.extend_from_slice(extra);
        (Mounted::start(&self.config, "data", &args), addr)
    }

    fn put(&self, key: &str, body: &[u8]) {
        put_object(&self.server.endpoint, BUCKET, key, body);
    }

    /// The data files of the cache (one per cached key).
    fn data_files(&self) -> Vec<PathBuf> {
        let dir = self.cache.join("objects");
        let mut v: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "data"))
            .collect();
        v.sort();
        v
    }
}

/// Bytes the cache directory takes on disk (allocated blocks, as `du` counts them).
fn du(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.blocks() * 512;
            }
        }
    }
    total
}

fn counter(text: &str, name: &str) -> f64 {
    common::metric(text, name)
}

/// What `cat` of `path` reads, as a sha256 (a real program reading the file).
fn cat_sha(path: &Path) -> String {
    // pipefail: a cat that fails (EIO, ETXTBSY) fails the test, not hashes nothing.
    let (code, out, err) = common::sh(&format!("set -o pipefail; cat '{}' | sha256sum", path.display()));
    assert_eq!(code, 0, "{err}");
    out.split_whitespace().next().unwrap().to_string()
}

/// Waits until the mount has written at least `bytes` into its cache (the writes run
/// behind the reads).
fn wait_stored(addr: &str, bytes: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stored = counter(&common::scrape(addr), "rstore_cache_stored_bytes_total");
        if stored >= bytes as f64 {
            return;
        }
        assert!(Instant::now() < deadline, "only {stored} of {bytes} bytes cached after 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The object's size in whole 4 KiB pages, as the cache counts what it stored.
fn on_disk(len: usize) -> usize {
    len / MIB * MIB + (len % MIB).div_ceil(4096) * 4096
}

#[test]
fn cached_bytes_are_identical_after_a_remount_and_the_kernel_reads_them_itself() {
    let s = setup();
    let body = common::pattern(24 * MIB + 12_345, 7);
    let want = common::sha256(&body);
    s.put("big.bin", &body);
    {
        let (m, addr) = s.mount(&[]);
        assert_eq!(cat_sha(&m.join("big.bin")), want, "cold read through the cache");
        wait_stored(&addr, on_disk(body.len()));
    }
    // A remount: every byte from the cache, read by the kernel from the cached file.
    {
        let (m, addr) = s.mount(&[]);
        let before = common::scrape(&addr);
        assert_eq!(cat_sha(&m.join("big.bin")), want);
        let after = common::scrape(&addr);
        let delta = |n: &str| counter(&after, n) - counter(&before, n);
        assert_eq!(delta("rstore_bytes_read_total"), 0.0, "no byte from the store");
        assert_eq!(delta("rstore_cache_passthrough_opens_total"), 1.0, "{}", m.log_text());
        assert_eq!(delta("rstore_cache_served_bytes_total"), 0.0, "the daemon served no read");
        // mmap reads go to the cached file too.
        let (code, out, err) = common::sh(&format!(
            "python3 -c \"import mmap,hashlib;f=open('{}','rb');print(hashlib.sha256(mmap.mmap(f.fileno(),0,prot=mmap.PROT_READ)).hexdigest())\"",
            m.join("big.bin").display()
        ));
        assert_eq!((code, out.trim()), (0, want.as_str()), "{err}");
    }
    // Without passthrough the daemon serves the cached blocks itself: still no GET.
    let (m, addr) = s.mount(&["--no-passthrough"]);
    let before = common::scrape(&addr);
    assert_eq!(cat_sha(&m.join("big.bin")), want);
    let after = common::scrape(&addr);
    let delta = |n: &str| counter(&after, n) - counter(&before, n);
    assert_eq!(delta("rstore_bytes_read_total"), 0.0, "no byte from the store");
    assert_eq!(delta("rstore_cache_passthrough_opens_total"), 0.0);
    assert_eq!(delta("rstore_cache_served_bytes_total"), body.len() as f64, "every byte from the daemon's cache");
}

#[test]
fn an_object_changed_by_another_client_is_never_served_from_the_cache_after_the_ttl() {
    let s = setup();
    let (v1, v2) = (common::pattern(6 * MIB + 1, 1), common::pattern(6 * MIB + 1, 2));
    s.put("f.bin", &v1);
    {
        let (m, addr) = s.mount(&[]);
        assert_eq!(cat_sha(&m.join("f.bin")), common::sha256(&v1));
        wait_stored(&addr, on_disk(v1.len()));
    }
    // A new mount (the kernel holds no page of the file): opens are passthrough.
    let (m, addr) = s.mount(&[]);
    // A handle opened on the cached version keeps reading it (close-to-open).
    let old = fs::File::open(m.join("f.bin")).unwrap();
    s.put("f.bin", &v2);
    std::thread::sleep(Duration::from_millis(1300)); // past --metadata-ttl (1 s)
    let mut got = vec![0u8; v1.len()];
    std::os::unix::fs::FileExt::read_exact_at(&old, &mut got, 0).unwrap();
    assert!(got == v1, "an open handle keeps the version it opened");
    // The kernel reads that handle from the cached file, and allows no other open of the
    // inode beside it: a new version's open waits for it (ETXTBSY), as documented.
    let err = fs::File::open(m.join("f.bin")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ETXTBSY), "{err}");
    drop(old);
    assert_eq!(cat_sha(&m.join("f.bin")), common::sha256(&v2), "the new version, not the cached one");
    wait_stored(&addr, on_disk(v2.len()));
    assert_eq!(s.data_files().len(), 1, "the old version's blocks were dropped");
    assert!(du(&s.cache) < (v1.len() + v2.len()) as u64);
    let before = common::scrape(&addr);
    assert_eq!(cat_sha(&m.join("f.bin")), common::sha256(&v2));
    let after = common::scrape(&addr);
    assert_eq!(counter(&after, "rstore_bytes_read_total"), counter(&before, "rstore_bytes_read_total"));
    // Renamed while the kernel reads it from the cache: opens of the new name share
    // that file (same version), they do not get ETXTBSY.
    drop(m);
    let (m, addr) = s.mount(&[]);
    let reader = fs::File::open(m.join("f.bin")).unwrap();
    let opens = counter(&common::scrape(&addr), "rstore_cache_passthrough_opens_total");
    assert_eq!(opens, 1.0, "the reader is passthrough");
    fs::rename(m.join("f.bin"), m.join("g.bin")).unwrap();
    assert_eq!(cat_sha(&m.join("g.bin")), common::sha256(&v2));
    // Closed, then at once opened for writing: the open waits for the release the kernel
    // sends after close(2) returns, instead of failing with ETXTBSY.
    drop(reader);
    let mut w = fs::OpenOptions::new().append(true).open(m.join("g.bin")).unwrap();
    std::io::Write::write_all(&mut w, b"more").unwrap();
}

#[test]
fn a_corrupted_block_is_fetched_again_never_returned() {
    let s = setup();
    let body = common::pattern(20 * MIB, 3);
    let want = common::sha256(&body);
    s.put("c.bin", &body);
    {
        let (m, addr) = s.mount(&[]);
        assert_eq!(cat_sha(&m.join("c.bin")), want);
        wait_stored(&addr, body.len());
    }
    // A flipped byte in block 5 of the cached file, the mount being down.
    let data = &s.data_files()[0];
    let f = fs::OpenOptions::new().write(true).open(data).unwrap();
    let at = 5 * MIB as u64 + 3;
    std::os::unix::fs::FileExt::write_all_at(&f, &[body[at as usize] ^ 0x5a], at).unwrap();
    drop(f);
    let (m, addr) = s.mount(&[]);
    let before = common::scrape(&addr);
    assert_eq!(cat_sha(&m.join("c.bin")), want, "the right bytes, not the corrupted ones");
    let after = common::scrape(&addr);
    let delta = |n: &str| counter(&after, n) - counter(&before, n);
    assert!(delta("rstore_cache_corrupt_blocks_total") >= 1.0);
    assert_eq!(delta("rstore_cache_passthrough_opens_total"), 0.0, "a changed file is not handed to the kernel");
    let fetched = delta("rstore_bytes_read_total");
    assert!(fetched > 0.0 && fetched <= (8 * MIB) as f64, "only the part with the bad block: {fetched}");
    // Refilled and checked whole again: after a remount the open is passthrough again.
    wait_stored(&addr, MIB);
    drop(m);
    let (m, addr) = s.mount(&[]);
    assert_eq!(cat_sha(&m.join("c.bin")), want);
    let after = common::scrape(&addr);
    assert_eq!(counter(&after, "rstore_cache_passthrough_opens_total"), 1.0, "{}", m.log_text());
    assert_eq!(counter(&after, "rstore_bytes_read_total"), 0.0);
}

#[test]
fn eviction_keeps_the_cache_directory_under_max_cache_size_during_a_read_of_three_times_it() {
    let s = setup();
    let body = common::pattern(48 * MIB, 4);
    s.put("e.bin", &body);
    let limit = 16 * MIB as u64;
    let (m, addr) = s.mount(&["--max-cache-size", "16M"]);
    let (stop, peak) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let watcher = {
        let (stop, peak, dir) = (stop.clone(), peak.clone(), s.cache.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                peak.fetch_max(du(&dir), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    assert_eq!(cat_sha(&m.join("e.bin")), common::sha256(&body));
    std::thread::sleep(Duration::from_millis(500)); // the writes behind the read land
    stop.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= limit, "the cache directory took {peak} bytes, over the {limit} limit");
    assert!(peak >= limit / 2, "the cache was used: {peak}");
    assert!(counter(&common::scrape(&addr), "rstore_cache_evictions_total") >= 30.0);
}

#[test]
fn a_file_written_through_the_mount_is_read_back_from_the_cache() {
    let s = setup();
    let body = common::pattern(20 * MIB + 5, 5);
    let src = s.cfg.path().join("src.bin");
    fs::write(&src, &body).unwrap();
    {
        let (m, addr) = s.mount(&[]);
        let (code, _, err) = common::sh(&format!("cp '{}' '{}'", src.display(), m.join("w.bin").display()));
        assert_eq!(code, 0, "{err}");
        wait_stored(&addr, on_disk(body.len()));
    }
    let (m, addr) = s.mount(&[]);
    let before = common::scrape(&addr);
    assert_eq!(cat_sha(&m.join("w.bin")), common::sha256(&body));
    let after = common::scrape(&addr);
    assert_eq!(counter(&after, "rstore_bytes_read_total"), counter(&before, "rstore_bytes_read_total"), "no GET");
}

#[test]
fn one_cache_directory_serves_one_mount_process() {
    let s = setup();
    let (_m, _) = s.mount(&[]);
    let mp = s.cfg.path().join("second");
    fs::create_dir(&mp).unwrap();
    let start = Instant::now();
    let out = Command::new(common::BIN)
        .arg("--config")
        .arg(&s.config)
        .arg("data")
        .arg(&mp)
        .arg("--cache")
        .arg(&s.cache)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("in use by another rstore-mount process"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(!common::is_mounted(&mp));
}
