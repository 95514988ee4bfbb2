//! Command line: arguments → config → checks → mount (in the background unless -f).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::config::{Registry, ResolvedStore};
use crate::data::{PrefetchConfig, StagingConfig, UploadConfig, MIB};
use crate::fs::{FsOptions, Ownership};
use crate::meta::MetaConfig;
use crate::mount::{self, Failure, LogFile, MountRequest, MountSettings, Target};

/// Mount the stores of a remote-store config (S3, local directory or memory) as directories.
///
/// One store:       rstore-mount STORE DIR
/// Every store:     rstore-mount --all DIR          (each at DIR/<store>)
/// Some stores:     rstore-mount --stores a,b DIR
#[derive(Parser, Debug)]
#[command(
    name = "rstore-mount",
    version,
    about,
    long_about = None,
    verbatim_doc_comment,
    override_usage = "rstore-mount [OPTIONS] STORE MOUNTPOINT      one store\n       \
                      rstore-mount [OPTIONS] --all DIR            every store, each at DIR/<store>\n       \
                      rstore-mount [OPTIONS] --stores A,B DIR     these stores, each at DIR/<store>\n       \
                      rstore-mount [OPTIONS] --list               the stores of the config"
)]
pub struct Args {
    /// Store name from the config ([stores.NAME]); with --all or --stores, the directory
    /// under which each store is mounted
    #[arg(required_unless_present_any = ["list", "all", "stores"])]
    pub store: Option<String>,
    /// Empty directory to mount the store at
    #[arg(required_unless_present_any = ["list", "all", "stores"])]
    pub mountpoint: Option<PathBuf>,

    /// Config file (else $RSTORE_CONFIG, ./rstore.toml, $XDG_CONFIG_HOME/rstore/config.toml, /etc/rstore/config.toml)
    #[arg(long, value_name = "FILE", help_heading = "Stores")]
    pub config: Option<PathBuf>,
    /// Print the stores of the config (type, bucket or root, root_path) and exit
    #[arg(long, help_heading = "Stores")]
    pub list: bool,
    /// Mount every store of the config, each at DIR/<store>, in this one process
    #[arg(long, conflicts_with = "stores", help_heading = "Stores")]
    pub all: bool,
    /// Mount these stores (comma-separated), each at DIR/<store>, in this one process
    #[arg(long, value_delimiter = ',', value_name = "A,B", help_heading = "Stores")]
    pub stores: Option<Vec<String>>,

    /// Mount read-only: every write fails with EROFS
    #[arg(long, help_heading = "Mount")]
    pub read_only: bool,
    /// Stay in the foreground (default: return once the mounts are live)
    #[arg(short, long, help_heading = "Mount")]
    pub foreground: bool,
    /// Let other users access the mount (needs user_allow_other in /etc/fuse.conf for non-root)
    #[arg(long, help_heading = "Mount")]
    pub allow_other: bool,
    /// Let root access the mount too
    #[arg(long, conflicts_with = "allow_other", help_heading = "Mount")]
    pub allow_root: bool,
    /// Owner (uid) of files and directories that carry none (default: the mounting user)
    #[arg(long, help_heading = "Mount")]
    pub uid: Option<u32>,
    /// Group (gid) of files and directories that carry none (default: the mounting user's)
    #[arg(long, help_heading = "Mount")]
    pub gid: Option<u32>,
    /// Permission bits of files, octal
    #[arg(long, default_value = "644", value_name = "OCTAL", help_heading = "Mount")]
    pub file_mode: String,
    /// Permission bits of directories, octal
    #[arg(long, default_value = "755", value_name = "OCTAL", help_heading = "Mount")]
    pub dir_mode: String,
    /// On SIGTERM/SIGINT, how long to wait for uploads in flight before unmounting
    #[arg(long, default_value = "60", value_name = "SECS", help_heading = "Mount")]
    pub drain_timeout: f64,

    /// Seconds to trust cached attributes, or "indefinite" for data that never changes
    #[arg(long, default_value = "1", value_name = "SECS", help_heading = "Caching and consistency")]
    pub metadata_ttl: String,
    /// Seconds to remember that a name does not exist
    #[arg(long, default_value = "1", value_name = "SECS", help_heading = "Caching and consistency")]
    pub negative_metadata_ttl: String,
    /// Which listings read their objects' metadata (mode, owner, mtime, symlinks,
    /// special files: one HEAD per object not already known, 32 at a time): auto =
    /// directories of at most 1,000 entries; always = every directory (as s3fs);
    /// never = none (listings show defaults until an entry is looked up alone).
    /// What was read is kept in the cache directory, so a remount does not read it again
    #[arg(long, default_value = "auto", value_name = "WHEN", help_heading = "Caching and consistency")]
    pub metadata_on_list: crate::meta::MetadataOnList,
    /// The same as --metadata-on-list always (the flag of earlier versions)
    #[arg(long, hide = true, help_heading = "Caching and consistency")]
    pub read_metadata_on_list: bool,
    /// Directory for staged files (files modified in place); default
    /// $XDG_CACHE_HOME/rstore-mount, or /var/cache/rstore for root
    #[arg(long, value_name = "DIR", help_heading = "Caching and consistency")]
    pub cache_dir: Option<PathBuf>,
    /// Space staged files and cached data (--cache) of all mounted stores may take
    /// together; cached data is evicted first (least recently used), and past it
    /// writes fail with ENOSPC
    #[arg(long, default_value = "10G", value_name = "SIZE", help_heading = "Caching and consistency")]
    pub max_cache_size: String,
    /// Keep object data read (and written) in DIR, across reads, remounts and restarts:
    /// blocks keyed by object and ETag, checked by checksum, one mount process per DIR
    #[arg(long, value_name = "DIR", help_heading = "Caching and consistency")]
    pub cache: Option<PathBuf>,
    /// With --cache: serve reads of wholly cached files from this process, instead of
    /// letting the kernel read the cached file itself (FUSE passthrough: Linux ≥ 6.9, root)
    #[arg(long, help_heading = "Caching and consistency")]
    pub no_passthrough: bool,

    /// Memory budget of all mounted stores for read-ahead and upload buffers (e.g. 512M;
    /// default: 1/8 of RAM, ≥ 256M)
    #[arg(long, value_name = "SIZE", help_heading = "Performance")]
    pub max_memory: Option<String>,
    /// Multipart upload part size
    #[arg(long, default_value = "8M", value_name = "SIZE", help_heading = "Performance")]
    pub write_part_size: String,
    /// Ranged GET size for sequential reads
    #[arg(long, default_value = "8M", value_name = "SIZE", help_heading = "Performance")]
    pub read_part_size: String,
    /// Largest read-ahead window per open file
    #[arg(long, default_value = "64M", value_name = "SIZE", help_heading = "Performance")]
    pub max_prefetch_window: String,
    /// Deadline of one attempt of one object-store request; a stalled request then fails
    /// (and is retried up to the store's retry.max_attempts)
    #[arg(long, default_value = "120", value_name = "SECS", help_heading = "Performance")]
    pub request_timeout: f64,

    /// Log level: error, warn, info, debug, trace (RUST_LOG overrides)
    #[arg(long, default_value = "warn", value_name = "LEVEL", help_heading = "Logging and metrics")]
    pub log_level: String,
    /// Where the background process appends its log; default
    /// $XDG_STATE_HOME/rstore-mount/rstore-mount.log (~/.local/state/...), or
    /// /var/log/rstore-mount/rstore-mount.log for root. With -f the log goes to stderr
    #[arg(long, value_name = "FILE", help_heading = "Logging and metrics")]
    pub log_file: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9100)
    #[arg(long, value_name = "ADDR", help_heading = "Logging and metrics")]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl Args {
    pub fn request_timeout(&self) -> Duration {
        Duration::try_from_secs_f64(self.request_timeout).unwrap_or(Duration::from_secs(120))
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::try_from_secs_f64(self.drain_timeout).unwrap_or(Duration::from_secs(60))
    }
}

pub fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(&args);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            for line in msg.lines() {
                eprintln!("rstore-mount: error: {line}");
            }
            ExitCode::FAILURE
        }
    }
}

/// The terminal gets our own lines only: other crates' logs (the AWS SDK, hyper, rustls,
/// fuser) are off unless RUST_LOG asks for them; colour only on a terminal.
fn init_logging(args: &Args) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("off,rstore_mount={}", args.log_level)));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

fn run(args: Args) -> Result<(), Failure> {
    let path = crate::config::locate(args.config.as_deref())?;
    let registry = Registry::load(&path)?;
    for w in &registry.warnings {
        eprintln!("rstore-mount: warning: {w}");
    }
    if args.list {
        print_stores(&registry, &path);
        return Ok(());
    }
    let targets = targets(&args, &registry)?;
    mount::check_fuse_available()?;
    let opts = fs_options(&args)?;
    let settings = MountSettings {
        allow_other: args.allow_other,
        allow_root: args.allow_root,
        metrics_addr: args.metrics_addr,
        request_timeout: args.request_timeout(),
        drain_timeout: args.drain_timeout(),
        // Absolute: the background process does not run in this directory.
        cache: args.cache.as_deref().map(std::path::absolute).transpose().map_err(|e| format!("--cache: {e}"))?,
        passthrough: !args.no_passthrough,
        log: match &args.log_file {
            Some(path) => LogFile { path: path.clone(), explicit: true },
            None => LogFile { path: default_log_file(), explicit: false },
        },
    };
    let request = MountRequest { targets, opts, settings };
    if args.foreground {
        mount::run_foreground(request)
    } else {
        mount::run_background(request)
    }
}

/// The stores to mount and where: `STORE DIR`, or with `--all`/`--stores`, each named
/// store at `DIR/<store>` (created when missing; an existing one must be empty).
fn targets(args: &Args, registry: &Registry) -> Result<Vec<Target>, Failure> {
    let Some(names) = (match (&args.stores, args.all) {
        (Some(names), _) => Some(names.clone()),
        (None, true) => Some(registry.stores.keys().cloned().collect::<Vec<_>>()),
        (None, false) => None,
    }) else {
        let (store, mountpoint) = (args.store.clone().unwrap_or_default(), args.mountpoint.clone().unwrap_or_default());
        let store = registry.resolve(&store)?;
        check_mountpoint(&mountpoint)?;
        return Ok(vec![Target { store, mountpoint }]);
    };
    let root = match (&args.store, &args.mountpoint) {
        (Some(dir), None) => PathBuf::from(dir),
        (None, _) => return Err("--all and --stores need the directory to mount the stores under".into()),
        (Some(_), Some(_)) => {
            return Err("--all and --stores take one directory (each store is mounted at DIR/<store>)".into())
        }
    };
    if names.is_empty() {
        return Err("the config has no stores to mount".into());
    }
    // Every store must resolve before anything is created or mounted.
    let resolved: Vec<ResolvedStore> = names.iter().map(|n| registry.resolve(n)).collect::<Result<_, _>>()?;
    let mut seen = std::collections::BTreeSet::new();
    if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
        return Err(format!("--stores names '{dup}' twice").into());
    }
    match std::fs::metadata(&root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(format!("{} (the directory for the stores) is not a directory", root.display()).into()),
        Err(_) => {
            let shown = root.display();
            return Err(
                format!("{shown} (the directory for the stores) does not exist (create it with mkdir -p)").into()
            );
        }
    }
    // Every mount point is checked before any is created (mount creates the missing ones
    // once every store has been checked), so a refusal leaves nothing behind.
    let mut targets = Vec::new();
    for store in resolved {
        if store.name.contains('/') || store.name.starts_with('.') {
            return Err(format!("store '{}' cannot be a directory name under {}", store.name, root.display()).into());
        }
        let mountpoint = root.join(&store.name);
        if mountpoint.exists() {
            check_mountpoint(&mountpoint)?;
        }
        targets.push(Target { store, mountpoint });
    }
    Ok(targets)
}

/// `--list`: a table of the stores, one row each: backend, type, where the data is,
/// root_path, and whether it can be mounted (with the reason when not).
fn print_stores(reg: &Registry, path: &Path) {
    let prefix = format!("{}: ", path.display());
    if reg.stores.is_empty() {
        eprintln!("rstore-mount: {} defines no stores yet (add [stores.NAME] sections)", path.display());
    }
    let mut rows = vec![["STORE", "BACKEND", "TYPE", "LOCATION", "ROOT_PATH", "MOUNTABLE"].map(String::from)];
    for name in reg.stores.keys() {
        let backend = reg.stores[name].backend.clone();
        let ty = reg.backends.get(&backend).and_then(|b| b.get("type")).and_then(|t| t.as_str()).unwrap_or("?");
        let row = match reg.resolve(name) {
            Ok(s) => {
                let root = if s.root_path.is_empty() { "/".to_string() } else { s.root_path.clone() };
                [name.clone(), backend, ty.to_string(), s.location(), root, "yes".to_string()]
            }
            Err(e) => {
                let why = e.strip_prefix(&prefix).unwrap_or(&e);
                [name.clone(), backend, ty.to_string(), "-".into(), "-".into(), format!("no: {why}")]
            }
        };
        rows.push(row);
    }
    let widths: Vec<usize> = (0..5).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    for r in &rows {
        let mut line = String::new();
        for (cell, w) in r.iter().zip(&widths) {
            line.push_str(&format!("{cell:<w$}  "));
        }
        line.push_str(&r[5]);
        println!("{line}");
    }
}

fn check_mountpoint(p: &Path) -> Result<(), Failure> {
    let shown = p.display();
    let meta = std::fs::metadata(p).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("mount point {shown} does not exist (create it with mkdir -p)")
        }
        _ => format!("mount point {shown}: {e}"),
    })?;
    if !meta.is_dir() {
        return Err(format!("mount point {shown} is not a directory").into());
    }
    let mut entries = std::fs::read_dir(p).map_err(|e| format!("mount point {shown}: {e}"))?;
    if entries.next().is_some() {
        return Err(format!("mount point {shown} is not empty").into());
    }
    Ok(())
}

fn parse_bytes(flag: &str, v: &str) -> Result<u64, Failure> {
    parse_size::Config::new().with_binary().parse_size(v).map_err(|e| Failure(format!("--{flag} {v}: {e}")))
}

fn parse_ttl(flag: &str, v: &str) -> Result<Option<Duration>, Failure> {
    if v == "indefinite" {
        return Ok(None);
    }
    let secs: f64 = v.parse().map_err(|_| format!("--{flag} {v}: expected seconds or \"indefinite\""))?;
    if !(0.0..=1e9).contains(&secs) {
        return Err(format!("--{flag} {v}: out of range").into());
    }
    Ok(Some(Duration::from_secs_f64(secs)))
}

fn parse_mode(flag: &str, v: &str) -> Result<u16, Failure> {
    u16::from_str_radix(v, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| Failure(format!("--{flag} {v}: expected octal permission bits like 644")))
}

fn fs_options(a: &Args) -> Result<FsOptions, Failure> {
    let defaults = Ownership::default();
    let owner = Ownership {
        uid: a.uid.unwrap_or(defaults.uid),
        gid: a.gid.unwrap_or(defaults.gid),
        file_mode: parse_mode("file-mode", &a.file_mode)?,
        dir_mode: parse_mode("dir-mode", &a.dir_mode)?,
    };
    let negative = parse_ttl("negative-metadata-ttl", &a.negative_metadata_ttl)?;
    let meta = MetaConfig {
        ttl: parse_ttl("metadata-ttl", &a.metadata_ttl)?,
        negative_ttl: negative.unwrap_or(Duration::from_secs(u32::MAX as u64)),
        metadata_on_list: match a.read_metadata_on_list {
            true => crate::meta::MetadataOnList::Always,
            false => a.metadata_on_list,
        },
        ..MetaConfig::default()
    };
    let part = parse_bytes("write-part-size", &a.write_part_size)?;
    if !(5 * MIB..=5 * 1024 * MIB).contains(&part) {
        return Err("--write-part-size must be between 5MiB and 5GiB (S3 limits)".into());
    }
    let read_part = parse_bytes("read-part-size", &a.read_part_size)?.max(64 * 1024);
    let prefetch = PrefetchConfig {
        part_size: read_part,
        max_window: parse_bytes("max-prefetch-window", &a.max_prefetch_window)?.max(read_part),
        ..PrefetchConfig::default()
    };
    let max_memory = a.max_memory.as_deref().map(|m| parse_bytes("max-memory", m)).transpose()?.unwrap_or(0);
    if max_memory != 0 && max_memory < 32 * MIB {
        return Err("--max-memory must be at least 32MiB".into());
    }
    let staging = StagingConfig {
        dir: a.cache_dir.clone().unwrap_or_else(default_cache_dir),
        max_bytes: parse_bytes("max-cache-size", &a.max_cache_size)?,
    };
    Ok(FsOptions {
        store_name: String::new(), // set per store when mounting
        read_only: a.read_only,
        owner,
        meta,
        prefetch,
        upload: UploadConfig { part_size: part, ..UploadConfig::default() },
        staging,
        max_memory,
        conditional_writes: false, // probed per store when mounting
        known_file: None,          // set per store when mounting
        data_cache: None,          // opened when mounting (--cache)
    })
}

fn default_cache_dir() -> PathBuf {
    xdg_dir("XDG_CACHE_HOME", ".cache", "/var/cache/rstore")
}

/// Where a background mount logs unless told: a file a user finds (as mount-s3 keeps
/// its log rather than dropping it), under the XDG state directory.
fn default_log_file() -> PathBuf {
    xdg_dir("XDG_STATE_HOME", ".local/state", "/var/log/rstore-mount").join("rstore-mount.log")
}

/// Our directory: `$VAR/rstore-mount` when the XDG variable is set; else `system` for root; else
/// `$HOME/home_sub/rstore-mount` (the XDG default).
fn xdg_dir(var: &str, home_sub: &str, system: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(x) if !x.is_empty() => PathBuf::from(x).join("rstore-mount"),
        // SAFETY: getuid cannot fail.
        _ if unsafe { libc::getuid() } == 0 => PathBuf::from(system),
        _ => {
            std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from).join(home_sub).join("rstore-mount")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_sizes_ttls_and_modes() {
        assert_eq!(parse_bytes("x", "8M").unwrap(), 8 * MIB);
        assert_eq!(parse_bytes("x", "1GiB").unwrap(), 1024 * MIB);
        assert!(parse_bytes("x", "lots").is_err());
        assert_eq!(parse_ttl("x", "indefinite").unwrap(), None);
        assert_eq!(parse_ttl("x", "0.5").unwrap(), Some(Duration::from_millis(500)));
        assert!(parse_ttl("x", "-1").is_err());
        assert_eq!(parse_mode("x", "640").unwrap(), 0o640);
        assert!(parse_mode("x", "999").is_err());
    }

    #[test]
    fn mountpoint_must_exist_be_a_dir_and_be_empty() {
        let d = tempfile::tempdir().unwrap();
        assert!(check_mountpoint(d.path()).is_ok());
        assert!(check_mountpoint(&d.path().join("missing")).unwrap_err().0.contains("does not exist"));
        std::fs::write(d.path().join("f"), "x").unwrap();
        assert!(check_mountpoint(d.path()).unwrap_err().0.contains("not empty"));
        assert!(check_mountpoint(&d.path().join("f")).unwrap_err().0.contains("not a directory"));
    }
}
