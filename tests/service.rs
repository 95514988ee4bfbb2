//! Running as a service (issue 5): the systemd unit's ExecStart with a notify socket,
//! `systemd-analyze verify`, the mount.rstore helper behind `mount -t rstore`, and the
//! metrics endpoint during a copy.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{is_mounted, local_config, sh, BIN};

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/rstore-mount@.service");
const HELPER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/mount.rstore");

const ALL_UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/rstore-mount-all.service");

/// A unit with its binary path pointing at the build under test.
fn unit_text_of(unit: &str) -> String {
    std::fs::read_to_string(unit).unwrap().replace("/usr/local/bin/rstore-mount", BIN)
}

/// `systemd-analyze verify` of `unit` installed as `name`: no error, no warning about it.
fn verify_unit(unit: &str, name: &str) {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        eprintln!("systemd-analyze is not installed; skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), unit_text_of(unit)).unwrap();
    let (code, out, err) = sh(&format!("cd {} && systemd-analyze verify ./{name}", dir.path().display()));
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains(&format!("{name}:")), "warnings about the unit: {err}");
}

#[test]
fn systemd_analyze_accepts_the_units() {
    verify_unit(UNIT, "rstore-mount@data.service");
    verify_unit(ALL_UNIT, "rstore-mount-all.service");
}

/// Runs a unit's ExecStart line as systemd would (with `subst` applied), with
/// NOTIFY_SOCKET on a socket we hold. Returns the process and the first notification.
fn exec_start(
    unit: &str,
    subst: &[(&str, &str)],
    cfg: &Path,
    work: &Path,
) -> (std::process::Child, UnixDatagram, String) {
    let text = unit_text_of(unit);
    let mut exec = text.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("an ExecStart line").to_string();
    for (from, to) in subst {
        exec = exec.replace(from, to);
    }
    let argv: Vec<&str> = exec.split_whitespace().collect();
    let sock_path = work.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let child = Command::new(argv[0])
        .args(&argv[1..])
        .env("RSTORE_CONFIG", cfg)
        .env("NOTIFY_SOCKET", &sock_path)
        .arg("--cache-dir")
        .arg(work.join("cache"))
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("READY=1 within 20 s");
    (child, sock, String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// SIGTERM: STOPPING=1 is sent, the process exits 0.
fn stop_cleanly(mut child: std::process::Child, sock: &UnixDatagram) {
    // SAFETY: kill(2) on the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("STOPPING=1");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

/// The per-store unit (instance `data`): READY=1 arrives only once the mount is live,
/// and SIGTERM unmounts cleanly with exit status 0.
#[test]
fn exec_start_notifies_ready_when_live_and_stops_cleanly_on_sigterm() {
    let work = tempfile::tempdir().unwrap();
    let (root, mnt) = (work.path().join("root"), work.path().join("mnt"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&mnt).unwrap();
    std::fs::write(root.join("hello.txt"), "hi\n").unwrap();
    let cfg = local_config(work.path(), &root);
    let subst = [("%i", "data"), ("${MOUNTPOINT}", mnt.to_str().unwrap())];
    let (child, sock, msg) = exec_start(UNIT, &subst, &cfg, work.path());
    let _guard = Unmount(mnt.clone());
    assert!(msg.contains("READY=1"), "{msg}");
    assert!(is_mounted(&mnt), "READY=1 came before the mount was live");
    assert_eq!(std::fs::read_to_string(mnt.join("hello.txt")).unwrap(), "hi\n");
    stop_cleanly(child, &sock);
    assert!(!is_mounted(&mnt), "unmounted");
}

/// The all-stores unit: READY=1 once every store is mounted, with STATUS= naming them;
/// SIGTERM unmounts them all.
#[test]
fn the_all_stores_unit_is_ready_once_every_store_is_mounted() {
    let work = tempfile::tempdir().unwrap();
    let (one, two, mnt) = (work.path().join("one"), work.path().join("two"), work.path().join("stores"));
    for d in [&one, &two, &mnt] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(two.join("hello.txt"), "two\n").unwrap();
    let cfg = work.path().join("rstore.toml");
    let text = format!(
        "[backends.one]\ntype = \"local\"\n[backends.one.options]\nroot = \"{}\"\n\
         [backends.two]\ntype = \"local\"\n[backends.two.options]\nroot = \"{}\"\n\
         [stores.first]\nbackend = \"one\"\n[stores.second]\nbackend = \"two\"\n",
        one.display(),
        two.display()
    );
    std::fs::write(&cfg, text).unwrap();
    let (child, sock, msg) = exec_start(ALL_UNIT, &[("${MOUNTROOT}", mnt.to_str().unwrap())], &cfg, work.path());
    let _guards = [Unmount(mnt.join("first")), Unmount(mnt.join("second"))];
    assert!(msg.contains("READY=1") && msg.contains("STATUS=mounted: first, second"), "{msg}");
    assert!(is_mounted(&mnt.join("first")) && is_mounted(&mnt.join("second")), "READY=1 before every mount");
    assert_eq!(std::fs::read_to_string(mnt.join("second/hello.txt")).unwrap(), "two\n");
    stop_cleanly(child, &sock);
    assert!(!is_mounted(&mnt.join("first")) && !is_mounted(&mnt.join("second")), "all unmounted");
}

/// Unmounts on drop and removes what the test installed.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

#[test]
fn the_mount_helper_turns_fstab_options_into_flags() {
    let (code, out, err) = sh(&format!(
        "RSTORE_MOUNT_DRY_RUN=1 RSTORE_MOUNT_BIN=rstore-mount {HELPER} data /mnt/data -o \
         _netdev,config=/etc/rstore/config.toml,allow_other,ro,uid=1000,metadata_ttl=5,x-systemd.automount,defaults"
    ));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "rstore-mount data /mnt/data --config /etc/rstore/config.toml --allow-other --read-only --uid 1000 --metadata-ttl 5"
    );
    let (code, out, err) = sh(&format!(
        "RSTORE_MOUNT_DRY_RUN=1 RSTORE_MOUNT_BIN=rstore-mount {HELPER} @all /mnt/stores -o _netdev,config=/etc/rstore/c.toml"
    ));
    assert_eq!((code, out.trim()), (0, "rstore-mount --all /mnt/stores --config /etc/rstore/c.toml"), "{err}");
    let (code, _, err) = sh(&format!("RSTORE_MOUNT_DRY_RUN=1 {HELPER} data /mnt/data -o bogus"));
    assert_ne!(code, 0);
    assert!(err.contains("unknown option bogus"), "{err}");
}

/// `mount -t rstore data DIR -o config=F`, as an fstab line would run it, through the
/// helper installed as /sbin/mount.rstore for the duration of the test.
#[test]
fn mount_t_rstore_mounts_through_the_helper() {
    let installed = Path::new("/sbin/mount.rstore");
    let _helper = InstalledHelper::install(installed);
    let work = tempfile::tempdir().unwrap();
    let (root, mnt) = (work.path().join("root"), work.path().join("mnt"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&mnt).unwrap();
    std::fs::write(root.join("f"), "via fstab\n").unwrap();
    let cfg = local_config(work.path(), &root);
    let _guard = Unmount(mnt.clone());
    let (code, out, err) = sh(&format!(
        "RSTORE_MOUNT_BIN={BIN} mount -t rstore data {} -o config={},cache_dir={}/cache",
        mnt.display(),
        cfg.display(),
        work.path().display()
    ));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(std::fs::read_to_string(mnt.join("f")).unwrap(), "via fstab\n");
    let (code, _, err) = sh(&format!("umount {}", mnt.display()));
    assert_eq!(code, 0, "{err}");
}

/// Puts the repo's helper at /sbin/mount.rstore unless one is installed already, and
/// takes it away again.
struct InstalledHelper(Option<PathBuf>);

impl InstalledHelper {
    fn install(at: &Path) -> Self {
        if at.exists() {
            return Self(None);
        }
        std::os::unix::fs::symlink(HELPER, at).unwrap();
        Self(Some(at.to_path_buf()))
    }
}

impl Drop for InstalledHelper {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// `curl /metrics` during a copy shows the counters moving.
#[test]
fn metrics_move_during_a_copy() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let addr = format!("127.0.0.1:{}", common::free_port());
    let m = common::Mounted::start(&local_config(work.path(), &root), "data", &["--metrics-addr", &addr]);
    let mut copy = Command::new("dd")
        .args(["if=/dev/zero", &format!("of={}", m.join("big").display()), "bs=1M", "count=300", "status=none"])
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    while copy.try_wait().unwrap().is_none() && seen.len() < 50 {
        let text = common::scrape(&addr);
        seen.push(common::metric(&text, "rstore_bytes_written_total{store=\"data\"}"));
        std::thread::sleep(Duration::from_millis(100));
    }
    copy.wait().unwrap();
    let end = common::scrape(&addr);
    assert_eq!(common::metric(&end, "rstore_bytes_written_total{store=\"data\"}"), (300u64 << 20) as f64);
    assert!(seen.windows(2).any(|w| w[1] > w[0]), "counters moved while the copy ran: {seen:?}");
    for name in ["rstore_s3_requests_total", "rstore_memory_reserved_bytes", "rstore_cache_lookups_total"] {
        assert!(end.contains(name), "{name} missing:\n{end}");
    }
}
