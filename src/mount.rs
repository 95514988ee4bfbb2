//! Mounting: open and check the stores, start one FUSE session per store in this one
//! process, report readiness to the launching process (and systemd), unmount cleanly
//! on SIGINT/SIGTERM.

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
use crate::config::{BackendKind, ResolvedStore};
use crate::data::{MemoryBudget, StagingArea};
use crate::fs::{Fs, FsOptions};
use crate::fuse::FuseAdapter;

/// The launching process reads the outcome of the mount from this descriptor.
const READY_FD_ENV: &str = "RSTORE_MOUNT_READY_FD";
const READY_FD: i32 = 3;

/// A user-facing failure: one line per thing that failed, exit 1.
#[derive(Debug)]
pub struct Failure(pub String);

impl<T: Into<String>> From<T> for Failure {
    fn from(s: T) -> Self {
        Failure(s.into())
    }
}

/// How to mount, beside the stores themselves (from the command line).
#[derive(Clone, Debug, Default)]
pub struct MountSettings {
    pub allow_other: bool,
    pub allow_root: bool,
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Deadline of one attempt of one store request.
    pub request_timeout: Duration,
    /// How long SIGTERM waits for uploads before unmounting.
    pub drain_timeout: Duration,
    /// Where the background process logs.
    pub log: LogFile,
    /// The persistent data cache's directory (`--cache`); `None`: no data cache.
    pub cache: Option<PathBuf>,
    /// Let the kernel read wholly cached files itself (FUSE passthrough).
    pub passthrough: bool,
}

/// The background process's log: its stderr is this file, opened for appending.
#[derive(Clone, Debug, Default)]
pub struct LogFile {
    pub path: PathBuf,
    /// Named by `--log-file`: a file that cannot be opened is an error. The default one
    /// only gets a warning (the mount still starts, its log discarded), so a read-only
    /// state directory does not stop a mount.
    pub explicit: bool,
}

/// One store and where it is mounted.
pub struct Target {
    pub store: ResolvedStore,
    pub mountpoint: PathBuf,
}

/// Stores to mount in one process: one runtime, one memory budget and one staging
/// area (`--max-memory`, `--max-cache-size`) shared by all, one FUSE session each.
pub struct MountRequest {
    pub targets: Vec<Target>,
    pub opts: FsOptions,
    pub settings: MountSettings,
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
    let what = store.describe();
    let backend = backend::open(store, request_timeout).await.map_err(|e| format!("{what}: {e}"))?;
    backend.check().await.map_err(|e| {
        let why = match e {
            BackendError::NoSuchBucket(m) => match &store.backend.kind {
                BackendKind::Azure(o) => format!("container '{}' not found", o.container),
                BackendKind::Http(_) => m,
                BackendKind::Sql(o) => format!("table '{}' not found ({m}); create_table = false", o.table_name),
                BackendKind::Sftp(_) => m,
                _ => format!("bucket missing: {m}"),
            },
            BackendError::AccessDenied(m) => match &store.backend.kind {
                BackendKind::Azure(_) => {
                    format!("access denied ({m}); check account_key, sas_token or connection_string")
                }
                BackendKind::Http(_) => format!("access denied ({m}); check the headers option"),
                BackendKind::Sql(_) => format!("access denied ({m}); check the user and password in url"),
                BackendKind::Sftp(_) => m,
                _ => format!("access denied ({m}); check key and secret"),
            },
            BackendError::NotFound => "not found".into(),
            BackendError::Throttled(m) => format!("throttled by the server: {m}"),
            BackendError::Transient(m) => format!("server unreachable: {m}"),
            other => other.to_string(),
        };
        Failure(format!("{what}: {why}"))
    })?;
    Ok(backend)
}

/// Opens and checks every store at once; all of them, or a failure listing each store
/// that cannot be used (one line each) and nothing opened.
pub async fn open_all(targets: &[Target], request_timeout: Duration) -> Result<Vec<DynStore>, Failure> {
    let checks = targets.iter().map(|t| open_and_check(&t.store, request_timeout));
    let results = futures::future::join_all(checks).await;
    let failed: Vec<String> = results.iter().filter_map(|r| r.as_ref().err().map(|f| f.0.clone())).collect();
    if !failed.is_empty() {
        return Err(Failure(failed.join("\n")));
    }
    Ok(results.into_iter().map(|r| r.expect("no failure")).collect())
}

fn fuse_config(store: &str, opts: &FsOptions, settings: &MountSettings) -> fuser::Config {
    use fuser::{MountOption, SessionACL};
    let mut c = fuser::Config::default();
    c.mount_options = vec![
        MountOption::FSName(format!("rstore:{store}")),
        MountOption::Subtype("rstore".into()),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    if opts.read_only {
        c.mount_options.push(MountOption::RO);
    }
    c.acl = if settings.allow_other {
        SessionACL::All
    } else if settings.allow_root {
        SessionACL::RootAndOwner
    } else {
        SessionACL::Owner
    };
    c
}

/// One live mount: its file system, the session serving it, where it is.
struct Live {
    name: String,
    fs: Arc<Fs>,
    session: fuser::Session<FuseAdapter>,
    mountpoint: PathBuf,
}

/// Serves the mounts in this process until every one is unmounted.
pub fn run_foreground(req: MountRequest) -> Result<(), Failure> {
    let mut ready = ReadyPipe::from_env();
    let (rt, mounts) = match start(&req) {
        Ok(s) => s,
        Err(f) => {
            ready.send(&format!("error: {}", f.0));
            return Err(f);
        }
    };
    ready.send("ok");
    let names: Vec<&str> = mounts.iter().map(|m| m.name.as_str()).collect();
    // systemd Type=notify: READY=1 only now that every mount is live.
    let status = format!("mounted: {}", names.join(", "));
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&status)]);
    let mut unmounters = Vec::new();
    let mut threads = Vec::new();
    for mut m in mounts {
        tracing::info!(store = %m.name, mountpoint = %m.mountpoint.display(), "mounted");
        unmounters.push((m.fs.clone(), m.session.unmount_callable(), m.mountpoint.clone()));
        let name = m.name.clone();
        let thread = std::thread::Builder::new().name(format!("fuse-{name}")).spawn(move || m.session.run());
        threads.push((name, thread.map_err(|e| format!("cannot start the FUSE thread: {e}"))?));
    }
    rt.spawn(handle_signals(unmounters, req.settings.drain_timeout));
    let mut failed = Vec::new();
    // Each session ends when its mount point is unmounted (by us or by hand); the
    // process ends with the last one.
    for (name, t) in threads {
        match t.join() {
            Ok(Ok(())) => tracing::info!(store = %name, "unmounted"),
            Ok(Err(e)) => failed.push(format!("store '{name}': FUSE session failed: {e}")),
            Err(_) => failed.push(format!("store '{name}': FUSE session panicked")),
        }
    }
    rt.shutdown_timeout(Duration::from_secs(5));
    match failed.is_empty() {
        true => Ok(()),
        false => Err(Failure(failed.join("\n"))),
    }
}

fn start(req: &MountRequest) -> Result<(tokio::runtime::Runtime, Vec<Live>), Failure> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(4)
        .thread_name("rstore-io")
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let stores = rt.block_on(open_all(&req.targets, req.settings.request_timeout))?;
    // An http store is read-only whatever the flags say.
    let read_only = |t: &Target| req.opts.read_only || t.store.backend.kind.is_read_only();
    let conditional =
        rt.block_on(futures::future::join_all(req.targets.iter().zip(&stores).map(|(t, s)| async move {
            match read_only(t) {
                true => false,
                false => probe_conditions(&t.store.name, s).await,
            }
        })));
    check_cache_dir(&req.opts.staging.dir)?;
    // One budget and one staging area for every store of the process.
    let budget = MemoryBudget::new(match req.opts.max_memory {
        0 => crate::data::mem_limit::default_budget_bytes(),
        n => n,
    });
    let staging = StagingArea::new(&req.opts.staging);
    // Cached data shares --max-cache-size with staged files (and gives way to them).
    let data_cache = match &req.settings.cache {
        Some(dir) => Some(crate::data::DataCache::open(dir, staging.disk().clone())?),
        None => None,
    };
    if let Some(addr) = req.settings.metrics_addr {
        let bound = rt
            .block_on(crate::metrics::serve(addr, budget.clone()))
            .map_err(|e| format!("--metrics-addr {addr}: {e}"))?;
        tracing::info!(%bound, "serving metrics at /metrics");
    }
    let ttl = req.opts.meta.ttl.unwrap_or(Duration::from_secs(24 * 3600));
    // `--all`/`--stores` mount points are made only now that every store was checked;
    // if mounting fails after all, the ones made here go again.
    let made = MadeDirs::create(req.targets.iter().map(|t| &t.mountpoint))?;
    let mut mounts = Vec::new();
    for ((t, store), conditional_writes) in req.targets.iter().zip(stores).zip(conditional) {
        let known_file = t.store.identity().map(|id| (known_file_path(&req.opts.staging.dir, &t.store.name), id));
        let opts = FsOptions {
            store_name: t.store.name.clone(),
            conditional_writes,
            known_file,
            data_cache: data_cache.as_ref().and_then(|c| cache_of(c, t)),
            read_only: read_only(t),
            ..req.opts.clone()
        };
        let config = fuse_config(&t.store.name, &opts, &req.settings);
        let passthrough = opts.data_cache.is_some() && req.settings.passthrough;
        let fs = Arc::new(Fs::sharing(store, opts, budget.clone(), staging.clone()));
        let adapter = FuseAdapter::new(fs.clone(), rt.handle().clone(), ttl, req.settings.drain_timeout, passthrough);
        // Resolved before mounting: afterwards a stat of it would wait on this very session.
        let resolved = std::fs::canonicalize(&t.mountpoint).unwrap_or_else(|_| t.mountpoint.clone());
        // On failure the mounts made so far are dropped, which unmounts them: all or nothing.
        let session = fuser::Session::new(adapter, &t.mountpoint, &config).map_err(|e| {
            let shown = t.mountpoint.display();
            match e.kind() {
                std::io::ErrorKind::PermissionDenied => format!(
                    "cannot mount at {shown}: permission denied ({e}); is fuse3 installed and /dev/fuse accessible?"
                ),
                _ => format!("cannot mount at {shown}: {e}"),
            }
        })?;
        fs.set_kernel_cache(Box::new(crate::fuse::KernelPages(session.notifier())));
        widen_readahead(&resolved);
        mounts.push(Live { name: t.store.name.clone(), fs, session, mountpoint: t.mountpoint.clone() });
    }
    made.keep();
    Ok((rt, mounts))
}

/// Store `t`'s view of the data cache: none for a store without an identity (memory) or
/// whose ETag may stay the same across a change (the cache could return old bytes).
fn cache_of(cache: &crate::data::DataCache, t: &Target) -> Option<crate::data::StoreCache> {
    if let Some(why) = t.store.backend.kind.weak_etag() {
        tracing::warn!(store = %t.store.name, "--cache is off for this store: {why}, so cached bytes could outlive a change");
        return None;
    }
    t.store.identity().map(|id| cache.store(&id))
}

/// The file keeping the object metadata of store `name` between mounts:
/// `<cache-dir>/metadata/<name>.jsonl`.
pub fn known_file_path(cache_dir: &Path, name: &str) -> PathBuf {
    cache_dir.join("metadata").join(format!("{}.jsonl", name.replace('/', "_")))
}

/// Mount points this start made, removed again unless the start succeeds.
struct MadeDirs(Vec<PathBuf>);

impl MadeDirs {
    fn create<'a>(dirs: impl Iterator<Item = &'a PathBuf>) -> Result<Self, Failure> {
        let mut made = Self(Vec::new());
        for d in dirs.filter(|d| !d.exists()) {
            std::fs::create_dir(d).map_err(|e| format!("mount point {}: {e}", d.display()))?;
            made.0.push(d.clone());
        }
        Ok(made)
    }

    fn keep(mut self) {
        self.0.clear();
    }
}

impl Drop for MadeDirs {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir(d);
        }
    }
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

/// First SIGINT/SIGTERM: finish the uploads of every store, then unmount them all
/// (lazily if busy). Second: exit.
async fn handle_signals(mounts: Vec<(Arc<Fs>, fuser::SessionUnmounter, PathBuf)>, drain: Duration) {
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
    let drains = futures::future::join_all(mounts.iter().map(|(fs, ..)| fs.drain()));
    match tokio::time::timeout(drain, drains).await {
        Ok(failed) if failed.iter().all(|f| *f == 0) => {}
        Ok(failed) => tracing::error!(failed = failed.iter().sum::<usize>(), "some uploads failed before unmount"),
        Err(_) => tracing::error!(?drain, "uploads still running after --drain-timeout; unmounting without them"),
    }
    for (_, mut unmounter, mountpoint) in mounts {
        if let Err(e) = unmounter.unmount() {
            tracing::warn!(error = %e, mountpoint = %mountpoint.display(), "unmount failed, detaching lazily");
            lazy_unmount(&mountpoint);
        }
    }
}

/// Whether commits to `store` can be conditional (see `FsOptions::conditional_writes`);
/// says so in the log either way, since without them the last close wins silently.
async fn probe_conditions(name: &str, store: &DynStore) -> bool {
    match backend::enforces_conditions(&**store).await {
        Ok(true) => {
            tracing::info!(store = name, "the server enforces conditional writes: a file changed elsewhere while open here fails its close with EIO instead of overwriting that change");
            true
        }
        Ok(false) => {
            tracing::warn!(store = name, "the server ignores conditional writes (If-Match/If-None-Match): if another machine changes a file while it is open here, the last close wins");
            false
        }
        Err(e) => {
            tracing::warn!(store = name, error = %e, "could not check whether the server enforces conditional writes; writes are unconditional (the last close wins)");
            false
        }
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
    rt.block_on(open_all(&req.targets, req.settings.request_timeout))?;
    drop(rt);
    let mut fds = [0i32; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()).into());
    }
    // SAFETY: pipe2 returned two fresh descriptors we now own.
    let (mut reader, writer) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    let stderr = open_log(&req.settings.log)?;
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

/// The background process's stderr: the log file, or nothing when the default one cannot
/// be opened (after a warning on our stderr, which the user still sees).
fn open_log(log: &LogFile) -> Result<Stdio, Failure> {
    if !log.explicit {
        if let Some(dir) = log.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
    }
    match std::fs::OpenOptions::new().create(true).append(true).open(&log.path) {
        Ok(f) => Ok(Stdio::from(f)),
        Err(e) if log.explicit => Err(format!("--log-file {}: {e}", log.path.display()).into()),
        Err(e) => {
            eprintln!(
                "rstore-mount: warning: log file {}: {e}; the background process's log is discarded (use --log-file)",
                log.path.display()
            );
            Ok(Stdio::null())
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
