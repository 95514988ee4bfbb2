//! Real mounts of S3 stores: s3s-fs in-process for the data path, moto for markers.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime};

use common::{get_object, list_keys, put_object, s3_config, sh, MotoServer, Mounted, S3sServer};

const BUCKET: &str = "bkt";
const ROOT: &str = "data/raw";

/// Writes `len` pseudo-random bytes to `path` in chunks; returns their sha256.
fn write_source(path: &std::path::Path, len: usize) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut f = std::io::BufWriter::new(fs::File::create(path).unwrap());
    for (i, chunk) in (0..len).step_by(64 << 20).enumerate() {
        let block = common::pattern((64 << 20).min(len - chunk), i as u64);
        h.update(&block);
        f.write_all(&block).unwrap();
    }
    format!("{:x}", h.finalize())
}

#[test]
fn a_1gib_file_round_trips_and_is_identical_in_the_bucket() {
    let server = S3sServer::start(&[BUCKET]);
    let cfg = tempfile::tempdir().unwrap();
    let m = Mounted::start(&s3_config(cfg.path(), &server.endpoint, BUCKET, ROOT), "data", &[]);
    let src = cfg.path().join("src.bin");
    let want = write_source(&src, 1 << 30);
    let mp = m.path.display().to_string();
    let (code, _, err) = sh(&format!("cp {} {mp}/big.bin", src.display()));
    assert_eq!(code, 0, "{err}");
    assert_eq!(fs::metadata(m.join("big.bin")).unwrap().len(), 1 << 30);
    let (code, out, err) = sh(&format!("cat {mp}/big.bin | sha256sum"));
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&want), "read back through the mount");
    assert_eq!(common::sha256_file(&server.object_path(BUCKET, "data/raw/big.bin")), want, "object in the bucket");
    assert_eq!(server.open_uploads(), 0, "no multipart upload left open");
    // Random and mixed reads return the right bytes.
    let mut local = fs::File::open(&src).unwrap();
    let mut mounted = fs::File::open(m.join("big.bin")).unwrap();
    let mut seed = 12345u64;
    for i in 0..200 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let len = if i % 3 == 0 { 1 << 20 } else { (seed % 300_000) as usize + 1 };
        let off = (seed >> 11) % ((1u64 << 30) - len as u64);
        let (mut a, mut b) = (vec![0u8; len], vec![0u8; len]);
        std::os::unix::fs::FileExt::read_exact_at(&local, &mut a, off).unwrap();
        std::os::unix::fs::FileExt::read_exact_at(&mounted, &mut b, off).unwrap();
        assert!(a == b, "pread of {len} bytes at {off}");
        if i % 50 == 0 {
            // a sequential stretch in between
            use std::io::{Read, Seek, SeekFrom};
            local.seek(SeekFrom::Start(off)).unwrap();
            mounted.seek(SeekFrom::Start(off)).unwrap();
            let (mut a, mut b) = (vec![0u8; 20 << 20], vec![0u8; 20 << 20]);
            let n = local.read(&mut a).unwrap();
            mounted.read_exact(&mut b[..n]).unwrap();
            assert!(a[..n] == b[..n], "sequential stretch at {off}");
        }
    }
}

/// A 4 KiB overwrite in the middle of a multi-part object re-sends one part; the
/// rest is copied by the server (UploadPartCopy). 64 MiB here: s3s-fs copies in
/// 4 KiB reads, so 1 GiB would take minutes (the 1 GiB case runs on a local store).
#[test]
fn a_small_overwrite_resends_one_part_and_the_server_copies_the_rest() {
    let server = S3sServer::start(&[BUCKET]);
    let mut expect = common::pattern(64 << 20, 77);
    put_object(&server.endpoint, BUCKET, "data/raw/db.bin", &expect);
    let cfg = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", common::free_port());
    let config = s3_config(cfg.path(), &server.endpoint, BUCKET, ROOT);
    let m = Mounted::start(&config, "data", &["--metrics-addr", &addr]);
    let before = common::scrape(&addr);
    let at = (40 << 20) + 777;
    let f = fs::OpenOptions::new().write(true).open(m.join("db.bin")).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[b'Z'; 4096], at as u64).unwrap();
    f.sync_all().unwrap();
    drop(f);
    expect[at..at + 4096].fill(b'Z');
    let after = common::scrape(&addr);
    let delta = |name: &str| common::metric(&after, name) - common::metric(&before, name);
    assert_eq!(delta("rstore_bytes_written_total"), (8 << 20) as f64, "one 8 MiB part sent");
    assert_eq!(delta("rstore_s3_requests_total{op=\"upload_part_copy\",result=\"ok\"}"), 7.0);
    assert_eq!(common::sha256_file(&server.object_path(BUCKET, "data/raw/db.bin")), common::sha256(&expect));
    assert_eq!(server.open_uploads(), 0);
}

#[test]
fn objects_from_other_clients_appear_and_outside_root_is_invisible() {
    let server = S3sServer::start(&[BUCKET]);
    put_object(&server.endpoint, BUCKET, "data/raw/ext/file1.txt", b"external bytes");
    put_object(&server.endpoint, BUCKET, "data/rawish.txt", b"sibling prefix");
    put_object(&server.endpoint, BUCKET, "outside.txt", b"no");
    let cfg = tempfile::tempdir().unwrap();
    let m = Mounted::start(&s3_config(cfg.path(), &server.endpoint, BUCKET, ROOT), "data", &[]);
    assert_eq!(fs::read_to_string(m.join("ext/file1.txt")).unwrap(), "external bytes");
    let st = fs::metadata(m.join("ext/file1.txt")).unwrap();
    assert_eq!(st.len(), 14);
    let age = SystemTime::now().duration_since(st.modified().unwrap()).unwrap_or_default();
    assert!(age < Duration::from_secs(120), "mtime is the object's LastModified: {age:?}");
    let names: Vec<String> =
        fs::read_dir(&m.path).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names, ["ext"]);
    assert!(fs::metadata(m.join("outside.txt")).is_err());
    // A later write by another client shows after the metadata TTL.
    put_object(&server.endpoint, BUCKET, "data/raw/ext/file2.txt", b"later");
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(fs::read_to_string(m.join("ext/file2.txt")).unwrap(), "later");
}

#[test]
fn programs_behave_as_on_ext4() {
    let server = S3sServer::start(&[BUCKET]);
    let cfg = tempfile::tempdir().unwrap();
    let m = Mounted::start(&s3_config(cfg.path(), &server.endpoint, BUCKET, ROOT), "data", &[]);
    let mp = m.path.display().to_string();
    let (code, out, err) = sh(&format!("echo hi > {mp}/x && cat {mp}/x"));
    assert_eq!((code, out.as_str()), (0, "hi\n"), "{err}");
    assert_eq!(get_object(&server.endpoint, BUCKET, "data/raw/x").unwrap(), b"hi\n");
    let (code, _, err) = sh(&format!("mkdir -p {mp}/a/b/c && echo deep > {mp}/a/b/c/f && ls -la {mp}/a/b/c"));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = sh(&format!("rmdir {mp}/a"));
    assert!(code != 0 && err.contains("Directory not empty"), "{err}");
    let (code, out, _) = sh(&format!("stat -c '%s %F %a' {mp}/a/b/c/f {mp}/a"));
    assert_eq!((code, out.as_str()), (0, "5 regular file 644\n0 directory 755\n"));
    let (code, _, err) = sh(&format!("dd if=/dev/zero of={mp}/z bs=64k count=100 status=none && rm {mp}/x {mp}/z"));
    assert_eq!(code, 0, "{err}");
    assert!(get_object(&server.endpoint, BUCKET, "data/raw/x").is_none());
    let (code, _, err) = sh(&format!("cat {mp}/x"));
    assert!(code != 0 && err.contains("No such file"), "{err}");
    assert_eq!(list_keys(&server.endpoint, BUCKET, "data/raw/"), ["data/raw/a/b/c/f"]);
}

#[test]
fn server_failure_mid_write_is_eio_at_close_and_no_partial_object() {
    let mut server = S3sServer::start(&[BUCKET]);
    put_object(&server.endpoint, BUCKET, "data/raw/victim.bin", b"old version");
    let cfg = tempfile::tempdir().unwrap();
    let m = Mounted::start(
        &s3_config(cfg.path(), &server.endpoint, BUCKET, ROOT),
        "data",
        &["--write-part-size", "5M", "--metadata-ttl", "0"],
    );
    let mut f = fs::OpenOptions::new().write(true).truncate(true).open(m.join("victim.bin")).unwrap();
    // A 500 MiB write; the server dies after the first 100 MiB.
    let chunk = vec![9u8; 1 << 20];
    for _ in 0..100 {
        f.write_all(&chunk).unwrap();
    }
    server.stop();
    let mut result = Ok(());
    for _ in 0..400 {
        result = f.write_all(&chunk);
        if result.is_err() {
            break;
        }
    }
    let result = result.and_then(|_| f.sync_all());
    let err = result.expect_err("the failed upload must surface");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    drop(f);
    let server = server.restart();
    assert_eq!(get_object(&server.endpoint, BUCKET, "data/raw/victim.bin").unwrap(), b"old version");
    m.unmount();
    assert_eq!(server.open_uploads(), 0, "the abort was retried once the server came back");
}

#[test]
fn moto_markers_and_implicit_directories() {
    let server = MotoServer::start(&[BUCKET]);
    put_object(&server.endpoint, BUCKET, "data/raw/implicit/deep/f.txt", b"x");
    put_object(&server.endpoint, BUCKET, "data/raw/marked/", b"");
    let cfg = tempfile::tempdir().unwrap();
    let m = Mounted::start(&s3_config(cfg.path(), &server.endpoint, BUCKET, ROOT), "data", &[]);
    let mp = m.path.display().to_string();
    let (code, out, _) = sh(&format!("ls {mp}; ls {mp}/marked | wc -l"));
    assert_eq!((code, out.as_str()), (0, "implicit\nmarked\n0\n"));
    assert!(fs::metadata(m.join("implicit/deep")).unwrap().is_dir());
    fs::create_dir(m.join("newdir")).unwrap();
    assert!(list_keys(&server.endpoint, BUCKET, "data/raw/").contains(&"data/raw/newdir/".to_string()));
    fs::write(m.join("newdir/inside"), "i").unwrap();
    assert_eq!(fs::remove_dir(m.join("newdir")).unwrap_err().raw_os_error(), Some(libc::ENOTEMPTY));
    fs::remove_file(m.join("newdir/inside")).unwrap();
    fs::remove_dir(m.join("newdir")).unwrap();
    fs::remove_dir(m.join("marked")).unwrap();
    let keys = list_keys(&server.endpoint, BUCKET, "data/raw/");
    assert_eq!(keys, ["data/raw/implicit/deep/f.txt"]);
    assert_eq!(fs::metadata(m.join("implicit/deep/f.txt")).unwrap().size(), 1);
}

#[test]
fn moto_odd_keys_are_skipped_safely() {
    let server = MotoServer::start(&[BUCKET]);
    for key in ["data/raw/ok.txt", "data/raw/a//b", "data/raw/./dot", "data/raw/../up", "data/raw/with-body/"] {
        put_object(&server.endpoint, BUCKET, key, b"body");
    }
    let long = format!("data/raw/{}", "L".repeat(300));
    put_object(&server.endpoint, BUCKET, &long, b"long");
    let cfg = tempfile::tempdir().unwrap();
    let m = Mounted::start(&s3_config(cfg.path(), &server.endpoint, BUCKET, ROOT), "data", &[]);
    let (code, out, err) = sh(&format!("ls -a {}", m.path.display()));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, ".\n..\na\nok.txt\nwith-body\n");
    assert_eq!(fs::read_to_string(m.join("ok.txt")).unwrap(), "body");
}
