//! Running as a service: scripts/install.sh, the systemd units' ExecStart with a notify socket,
//! `systemd-analyze verify`, the mount.rstore helper behind `mount -t rstore`, and the
//! metrics endpoint during a copy.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{is_mounted, local_config, sh, Unmount, BIN};

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
    exec_start_of(&unit_text_of(unit), subst, cfg, work)
}

/// As `exec_start`, for a unit's text.
fn exec_start_of(
    text: &str,
    subst: &[(&str, &str)],
    cfg: &Path,
    work: &Path,
) -> (std::process::Child, UnixDatagram, String) {
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

/// The README's service steps, in a staged root: `scripts/install.sh` (DESTDIR, with
/// the binary under test instead of a release build), the template config replaced by
/// the user's, `echo MOUNTPOINT=... > /etc/rstore/data.env`, then the installed unit's
/// ExecStart as systemd runs it, and the installed mount helper behind an fstab line
/// (`mount -T FSTAB DIR`) and `mount -t rstore`, in a private mount namespace whose
/// /sbin and /usr/local/bin are the staged ones. The README must still say these steps.
#[test]
fn install_script_then_the_readme_service_steps_work() {
    let readme = include_str!("../README.md");
    for step in [
        "scripts/install.sh ",
        "echo MOUNTPOINT=/mnt/data > /etc/rstore/data.env",
        "systemctl enable --now rstore-mount@data",
        "data  /mnt/data  rstore  _netdev,config=/etc/rstore/config.toml,allow_other  0 0",
        "mount -t rstore data /mnt/data -o config=/etc/rstore/config.toml",
    ] {
        assert!(readme.contains(step), "README no longer says {step:?}: update this test with it");
    }
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let staged = w.join("root");
    let repo = env!("CARGO_MANIFEST_DIR");
    let (code, out, err) =
        sh(&format!("cd {repo} && DESTDIR={} RSTORE_BIN={BIN} scripts/install.sh", staged.display()));
    assert_eq!(code, 0, "{out}{err}");
    let installed = |rel: &str| staged.join(rel);
    for rel in [
        "usr/local/bin/rstore-mount",
        "etc/systemd/system/rstore-mount@.service",
        "etc/systemd/system/rstore-mount-all.service",
        "sbin/mount.rstore",
        "etc/rstore/config.toml",
        "usr/local/share/doc/rstore-mount/README.md",
        "usr/local/share/doc/rstore-mount/SEMANTICS.md",
    ] {
        assert!(installed(rel).is_file(), "{rel} not installed");
    }
    use std::os::unix::fs::PermissionsExt;
    let cfg = installed("etc/rstore/config.toml");
    assert_eq!(std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777, 0o600);
    // The template is a valid config with no stores yet.
    let (code, _, err) = sh(&format!("{BIN} --config {} --list", cfg.display()));
    assert_eq!(code, 0, "{err}");
    // A second run keeps the user's config.
    std::fs::write(&cfg, "# mine\n").unwrap();
    let (code, out, err) =
        sh(&format!("cd {repo} && DESTDIR={} RSTORE_BIN={BIN} scripts/install.sh", staged.display()));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), "# mine\n");

    // The user describes a store "data" (a local directory here) and where to mount it.
    let (root, mnt) = (w.join("files"), w.join("mnt/data"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&mnt).unwrap();
    std::fs::write(root.join("hello.txt"), "hi\n").unwrap();
    let text = format!("[backends.disk]\ntype = \"local\"\n[backends.disk.options]\nroot = \"{}\"\n[stores.data]\nbackend = \"disk\"\n", root.display());
    std::fs::write(&cfg, text).unwrap();
    std::fs::write(installed("etc/rstore/data.env"), format!("MOUNTPOINT={}\n", mnt.display())).unwrap();

    // The installed unit names the installed binary; run with the env file's MOUNTPOINT.
    let staged_bin = installed("usr/local/bin/rstore-mount");
    let unit = std::fs::read_to_string(installed("etc/systemd/system/rstore-mount@.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/rstore-mount --foreground %i ${MOUNTPOINT}"), "{unit}");
    assert!(unit.contains("EnvironmentFile=-/etc/rstore/%i.env"), "{unit}");
    let unit = unit.replace("/usr/local/bin/rstore-mount", staged_bin.to_str().unwrap());
    let env = std::fs::read_to_string(installed("etc/rstore/data.env")).unwrap();
    let mountpoint = env.trim().strip_prefix("MOUNTPOINT=").unwrap().to_string();
    let (child, sock, msg) = exec_start_of(&unit, &[("%i", "data"), ("${MOUNTPOINT}", &mountpoint)], &cfg, w);
    let _guard = Unmount(mnt.clone());
    assert!(msg.contains("READY=1") && is_mounted(&mnt), "{msg}");
    assert_eq!(std::fs::read_to_string(mnt.join("hello.txt")).unwrap(), "hi\n");
    stop_cleanly(child, &sock);
    assert!(!is_mounted(&mnt));

    // fstab and mount -t, through the installed helper (which runs the installed binary).
    if Command::new("unshare").arg("--version").output().is_err() {
        panic!("unshare (util-linux) is needed for the fstab step");
    }
    let fstab = w.join("fstab");
    let opts =
        format!("_netdev,config={},cache_dir={}/cache,log_file={}/mount.log", cfg.display(), w.display(), w.display());
    std::fs::write(&fstab, format!("data  {}  rstore  {opts}  0 0\n", mnt.display())).unwrap();
    let script = format!(
        "set -e\n\
         mount --bind {s}/sbin /sbin\n\
         mount --bind {s}/usr/local/bin /usr/local/bin\n\
         mount -T {fstab} {m}\n\
         cat {m}/hello.txt\n\
         umount {m}\n\
         mount -t rstore data {m} -o config={cfg},cache_dir={w}/cache,log_file={w}/mount.log\n\
         cat {m}/hello.txt\n\
         umount {m}\n",
        s = staged.display(),
        fstab = fstab.display(),
        m = mnt.display(),
        cfg = cfg.display(),
        w = w.display(),
    );
    let out =
        Command::new("unshare").args(["--mount", "--propagation", "private", "sh", "-c", &script]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text, "hi\nhi\n");

    // --uninstall removes what it installed and keeps the config.
    let (code, out, err) = sh(&format!("cd {repo} && DESTDIR={} scripts/install.sh --uninstall", staged.display()));
    assert_eq!(code, 0, "{out}{err}");
    assert!(!staged_bin.exists() && !installed("sbin/mount.rstore").exists());
    assert!(!installed("etc/systemd/system/rstore-mount@.service").exists());
    assert!(cfg.exists());
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
