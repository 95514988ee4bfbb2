//! Mounting: open and check the store, start the FUSE session, report readiness to the
//! launching process, unmount cleanly on SIGINT/SIGTERM.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{self, BackendError, DynStore};
use crate::cli::{describe_store, Args, Failure};
use crate::config::ResolvedStore;
use crate::fs::{Fs, FsOptions};
use crate::fuse::FuseAdapter;

/// The launching process reads the outcome of the mount from this descriptor.
const READY_FD_ENV: &str = "RSTORE_MOUNT_READY_FD";
const READY_FD: i32 = 3;

pub struct MountRequest {
    pub store: ResolvedStore,
    pub mountpoint: PathBuf,
    pub opts: FsOptions,
    pub args: Args,
}

pub fn check_fuse_available() -> Result<(), Failure> {
    if !Path::new("/dev/fuse").exists() {
        return Err("FUSE is not available: /dev/fuse is missing (install fuse3: apt-get install fuse3, and load the fuse module)".into());
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root && which("fusermount3").is_none() && which("fusermount").is_none() {
        return Err("FUSE is not available: fusermount3 not found (install fuse3: apt-get install fuse3)".into());
    }
    Ok(())
}

fn which(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(bin)).find(|p| p.is_file())
}

/// Opens the store and proves it usable (bucket exists, credentials accepted).
pub async fn open_and_check(store: &ResolvedStore, request_timeout: Duration) -> Result<DynStore, Failure> {
    let what = describe_store(store);
    let backend = backend::open(store, request_timeout).await.map_err(|e| format!("{what}: {e}"))?;
    backend.check().await.map_err(|e| {
        let why = match e {
            BackendError::NoSuchBucket(m) => m,
            BackendError::AccessDenied(m) => format!("access denied ({m}); check key and secret"),
            BackendError::NotFound => "not found".into(),
            BackendError::Transient(m) | BackendError::Throttled(m) => {
                format!("cannot reach the server: {m}")
            }
            other => other.to_string(),
        };
        Failure(format!("{what}: {why}"))
    })?;
    Ok(backend)
}

fn fuse_config(req: &MountRequest) -> fuser::Config {
    use fuser::{MountOption, SessionACL};
    let mut c = fuser::Config::default();
    c.mount_options = vec![
        MountOption::FSName(format!("rstore:{}", req.store.name)),
        MountOption::Subtype("rstore".into()),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    if req.opts.read_only {
        c.mount_options.push(MountOption::RO);
    }
    c.acl = if req.args.allow_other {
        SessionACL::All
    } else if req.args.allow_root {
        SessionACL::RootAndOwner
    } else {
        SessionACL::Owner
    };
    c
}

/// Serves the mount in this process until it is unmounted.
pub fn run_foreground(req: MountRequest) -> Result<(), Failure> {
    let mut ready = ReadyPipe::from_env();
    let started = start(&req);
    let (rt, fs, mut session) = match started {
        Ok(s) => s,
        Err(f) => {
            ready.send(&format!("error: {}", f.0));
            return Err(f);
        }
    };
    ready.send("ok");
    // systemd Type=notify: READY=1 only now that the mount is live.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tracing::info!(store = %req.store.name, mountpoint = %req.mountpoint.display(), "mounted");
    let unmounter = session.unmount_callable();
    rt.spawn(handle_signals(fs, unmounter, req.mountpoint.clone(), req.args.drain_timeout()));
    session.run().map_err(|e| format!("FUSE session failed: {e}"))?;
    rt.shutdown_timeout(Duration::from_secs(5));
    Ok(())
}

type Started = (tokio::runtime::Runtime, Arc<Fs>, fuser::Session<FuseAdapter>);

fn start(req: &MountRequest) -> Result<Started, Failure> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(4)
        .thread_name("rstore-io")
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let store = rt.block_on(open_and_check(&req.store, req.args.request_timeout()))?;
    check_cache_dir(&req.opts.staging.dir)?;
    let fs = Arc::new(Fs::new(store, req.opts.clone()));
    if let Some(addr) = req.args.metrics_addr {
        let bound = rt
            .block_on(crate::metrics::serve(addr, fs.budget().clone()))
            .map_err(|e| format!("--metrics-addr {addr}: {e}"))?;
        tracing::info!(%bound, "serving metrics at /metrics");
    }
    let ttl = req.opts.meta.ttl.unwrap_or(Duration::from_secs(24 * 3600));
    let adapter = FuseAdapter::new(fs.clone(), rt.handle().clone(), ttl);
    // Resolved before mounting: afterwards a stat of it would wait on this very session.
    let resolved = std::fs::canonicalize(&req.mountpoint).unwrap_or_else(|_| req.mountpoint.clone());
    let session = fuser::Session::new(adapter, &req.mountpoint, &fuse_config(req)).map_err(|e| {
        let shown = req.mountpoint.display();
        match e.kind() {
            std::io::ErrorKind::PermissionDenied => format!(
                "cannot mount at {shown}: permission denied ({e}); is fuse3 installed and /dev/fuse accessible?"
            ),
            _ => format!("cannot mount at {shown}: {e}"),
        }
    })?;
    fs.set_kernel_cache(Box::new(crate::fuse::KernelPages(session.notifier())));
    widen_readahead(&resolved);
    Ok((rt, fs, session))
}

/// The kernel caps a FUSE mount's read-ahead at its 128 KiB default whatever INIT asks,
/// so a sequential read costs 8 round trips per MiB. Raising the mount's bdi to
/// `MAX_READAHEAD` lets it send 1 MiB reads. Only root may write sysfs; others keep 128 KiB.
fn widen_readahead(mountpoint: &std::path::Path) {
    let kib = crate::fuse::MAX_READAHEAD / 1024;
    let Some(dev) = mount_device(mountpoint) else {
        return tracing::debug!("mount not found in /proc/self/mountinfo; read-ahead stays at the default");
    };
    let knob = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    match std::fs::write(&knob, kib.to_string()) {
        Ok(()) => tracing::debug!(knob, kib, "raised kernel read-ahead"),
        Err(e) => tracing::debug!(knob, error = %e, "cannot raise kernel read-ahead; it stays at 128 KiB"),
    }
}

/// The `major:minor` of the mount at the resolved `mountpoint`, read from mountinfo (a
/// stat would ask this very mount, whose session is not serving yet).
fn mount_device(mountpoint: &std::path::Path) -> Option<String> {
    let target = mountpoint.to_str()?.replace(' ', "\\040");
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        (fields.get(4) == Some(&target.as_str())).then(|| fields[2].to_string())
    })
}

/// First SIGINT/SIGTERM: finish uploads, then unmount (lazily if busy). Second: exit.
async fn handle_signals(fs: Arc<Fs>, mut unmounter: fuser::SessionUnmounter, mountpoint: PathBuf, drain: Duration) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::info!("signal received: finishing uploads and unmounting");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    tokio::spawn(async move {
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        eprintln!("rstore-mount: second signal, exiting now");
        std::process::exit(130);
    });
    match tokio::time::timeout(drain, fs.drain()).await {
        Ok(0) => {}
        Ok(failed) => tracing::error!(failed, "some uploads failed before unmount"),
        Err(_) => tracing::error!(?drain, "uploads still running after --drain-timeout; unmounting without them"),
    }
    if let Err(e) = unmounter.unmount() {
        tracing::warn!(error = %e, "unmount failed, detaching lazily");
        lazy_unmount(&mountpoint);
    }
}

/// Staged files need a writable directory: say so before mounting, not at the first
/// append.
fn check_cache_dir(dir: &Path) -> Result<(), Failure> {
    std::fs::create_dir_all(dir)
        .and_then(|()| tempfile::tempfile_in(dir).map(drop))
        .map_err(|e| format!("--cache-dir {}: {e}", dir.display()).into())
}

fn lazy_unmount(mountpoint: &Path) {
    let Ok(c) = CString::new(mountpoint.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: c is a valid NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        let _ = Command::new("fusermount3").arg("-uz").arg(mountpoint).status();
    }
}

/// Checks the store here (so errors print at once), then starts the mount in a
/// background process and returns when it is live or has failed.
pub fn run_background(req: MountRequest) -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(open_and_check(&req.store, req.args.request_timeout()))?;
    drop(rt);
    let mut fds = [0i32; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()).into());
    }
    // SAFETY: pipe2 returned two fresh descriptors we now own.
    let (mut reader, writer) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    let stderr = match &req.args.log_file {
        Some(p) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| format!("--log-file {}: {e}", p.display()))?,
        ),
        None => Stdio::null(),
    };
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let wfd = fds[1];
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args_os().skip(1)).arg("--foreground").env(READY_FD_ENV, READY_FD.to_string());
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 || libc::dup2(wfd, READY_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start the mount process: {e}"))?;
    drop(writer);
    let mut answer = String::new();
    let _ = reader.read_to_string(&mut answer);
    match answer.trim() {
        "ok" => Ok(()),
        msg if msg.starts_with("error: ") => Err(msg["error: ".len()..].to_string().into()),
        _ => {
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            Err(format!("the mount process exited before the mount was live ({status}); run with -f to see why").into())
        }
    }
}

/// The write end of the launcher's pipe, when started by `run_background`.
struct ReadyPipe(Option<File>);

impl ReadyPipe {
    fn from_env() -> Self {
        let fd = std::env::var(READY_FD_ENV).ok().and_then(|v| v.parse::<i32>().ok());
        std::env::remove_var(READY_FD_ENV);
        // SAFETY: the launcher placed the pipe's write end at this descriptor for us.
        Self(fd.map(|fd| unsafe { File::from_raw_fd(fd) }))
    }

    fn send(&mut self, msg: &str) {
        if let Some(mut f) = self.0.take() {
            let _ = f.write_all(msg.as_bytes());
        }
    }
}
