//! Model-based random test (issues 6 and 12): thousands of random file operations
//! applied to a real mount and to a plain local directory; every result (value or
//! errno) must agree, the touched paths are compared after each step, the whole tree
//! every 250 steps, and once more after unmount + remount. Up to `SLOTS` files stay
//! open at once, several on one path, and are written, read, truncated and synced
//! through those fds between the path operations, as programs sharing a file do.

mod common;

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::{local_config, s3_config, MotoServer, Mounted};

/// xorshift64*: deterministic, no extra crate; the seed is printed on failure.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, max: u64) -> Vec<u8> {
        let len = self.below(max + 1) as usize;
        (0..len).map(|_| self.next() as u8).collect()
    }
}

const DIRS: [&str; 4] = ["", "d0", "d1", "d0/e"];

fn any_path(r: &mut Rng) -> String {
    let dir = DIRS[r.below(DIRS.len() as u64) as usize];
    let name = match r.below(10) {
        0 => format!("s{}", r.below(2)),
        1 => format!("d{}", r.below(2)),
        _ => format!("f{}", r.below(5)),
    };
    if dir.is_empty() {
        name
    } else {
        format!("{dir}/{name}")
    }
}

/// How many fds the test keeps open at once (on each tree).
const SLOTS: usize = 4;

/// How an fd is opened.
#[derive(Clone, Copy, Debug)]
enum How {
    ReadOnly,
    /// O_WRONLY | O_APPEND | O_CREAT: a log writer.
    Append,
    /// O_RDWR on an existing file.
    ReadWrite,
    /// O_RDWR | O_CREAT.
    CreateReadWrite,
    /// O_WRONLY | O_CREAT | O_TRUNC.
    Truncate,
}

impl How {
    fn options(self) -> OpenOptions {
        let mut o = OpenOptions::new();
        o.mode(0o644);
        match self {
            How::ReadOnly => o.read(true),
            How::Append => o.append(true).create(true),
            How::ReadWrite => o.read(true).write(true),
            How::CreateReadWrite => o.read(true).write(true).create(true),
            How::Truncate => o.write(true).create(true).truncate(true),
        };
        o
    }
}

/// The fds open on one tree: the file, how it was opened, and the path it was opened by.
type Fds = Vec<Option<(fs::File, How, String)>>;

/// One random operation, as data, so it can run on both trees.
#[derive(Clone)]
enum Op {
    Write(String, Vec<u8>),
    Pwrite(String, u64, Vec<u8>),
    Append(String, Vec<u8>),
    Truncate(String, u64),
    Rename(String, String),
    Unlink(String),
    Mkdir(String),
    Rmdir(String),
    Symlink(String, String),
    Chmod(String, u32),
    Read(String),
    /// Opens `path` into a slot (closing what the slot held).
    Open(usize, String, How),
    Close(usize),
    /// pwrite at the offset (an O_APPEND fd writes at the end, as the kernel does).
    FdWrite(usize, u64, Vec<u8>),
    FdRead(usize, u64, usize),
    FdTruncate(usize, u64),
    FdSync(usize),
}

impl std::fmt::Debug for Op {
    /// Data shows as its length: failures stay readable.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Write(p, d) => write!(f, "write {p} ({} bytes)", d.len()),
            Op::Pwrite(p, o, d) => write!(f, "pwrite {p} at {o} ({} bytes)", d.len()),
            Op::Append(p, d) => write!(f, "append {p} ({} bytes)", d.len()),
            Op::Truncate(p, n) => write!(f, "truncate {p} to {n}"),
            Op::Rename(a, b) => write!(f, "rename {a} -> {b}"),
            Op::Unlink(p) => write!(f, "unlink {p}"),
            Op::Mkdir(p) => write!(f, "mkdir {p}"),
            Op::Rmdir(p) => write!(f, "rmdir {p}"),
            Op::Symlink(p, t) => write!(f, "symlink {p} -> {t}"),
            Op::Chmod(p, m) => write!(f, "chmod {m:o} {p}"),
            Op::Read(p) => write!(f, "read {p}"),
            Op::Open(slot, p, how) => write!(f, "open #{slot} {p} {how:?}"),
            Op::Close(slot) => write!(f, "close #{slot}"),
            Op::FdWrite(slot, o, d) => write!(f, "write #{slot} at {o} ({} bytes)", d.len()),
            Op::FdRead(slot, o, n) => write!(f, "read #{slot} at {o} ({n} bytes)"),
            Op::FdTruncate(slot, n) => write!(f, "ftruncate #{slot} to {n}"),
            Op::FdSync(slot) => write!(f, "fsync #{slot}"),
        }
    }
}

/// A result as (length, checksum) or errno, so mismatches print short.
fn summary(r: &Result<Vec<u8>, i32>) -> Summary {
    r.as_ref()
        .map(|d| (d.len(), d.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100000001b3))))
        .map_err(|e| *e)
}

fn random_op(r: &mut Rng) -> Op {
    let p = any_path(r);
    let slot = r.below(SLOTS as u64) as usize;
    match r.below(32) {
        0..=3 => Op::Write(p, r.bytes(20_000)),
        4..=5 => Op::Pwrite(p, r.below(30_000), r.bytes(5_000)),
        6..=7 => Op::Append(p, r.bytes(3_000)),
        8 => Op::Truncate(p, r.below(25_000)),
        9..=10 => Op::Rename(p, any_path(r)),
        11 => Op::Unlink(p),
        12 => Op::Mkdir(p),
        13 => Op::Rmdir(p),
        14 => Op::Symlink(p, format!("f{}", r.below(5))),
        15 => Op::Chmod(p, [0o600, 0o644, 0o755][r.below(3) as usize]),
        16..=19 => Op::Read(p),
        20..=22 => {
            let hows = [How::ReadOnly, How::Append, How::ReadWrite, How::CreateReadWrite, How::Truncate];
            // Half the opens go to a path another slot holds: many handles on one file.
            Op::Open(slot, p, hows[r.below(hows.len() as u64) as usize])
        }
        23 => Op::Close(slot),
        24..=26 => Op::FdWrite(slot, r.below(25_000), r.bytes(4_000)),
        27..=28 => Op::FdRead(slot, r.below(25_000), 1 + r.below(8_000) as usize),
        29 => Op::FdTruncate(slot, r.below(25_000)),
        _ => Op::FdSync(slot),
    }
}

/// Keeps half the opens on a path already open in another slot, and sends most fd
/// operations to an fd that is open.
fn share_paths(op: Op, r: &mut Rng, open_paths: &[Option<String>]) -> Op {
    match op {
        Op::Open(slot, p, how) if r.below(2) == 0 => {
            let held: Vec<&String> = open_paths.iter().flatten().collect();
            match held.is_empty() {
                true => Op::Open(slot, p, how),
                false => Op::Open(slot, held[r.below(held.len() as u64) as usize].clone(), how),
            }
        }
        // fd operations mostly go to an open fd (an empty slot gives EBADF on both trees).
        Op::Close(_) | Op::FdWrite(..) | Op::FdRead(..) | Op::FdTruncate(..) | Op::FdSync(_) if r.below(8) != 0 => {
            let open: Vec<usize> = (0..SLOTS).filter(|i| open_paths[*i].is_some()).collect();
            if open.is_empty() {
                return op;
            }
            let slot = open[r.below(open.len() as u64) as usize];
            match op {
                Op::Close(_) => Op::Close(slot),
                Op::FdWrite(_, o, d) => Op::FdWrite(slot, o, d),
                Op::FdRead(_, o, n) => Op::FdRead(slot, o, n),
                Op::FdTruncate(_, n) => Op::FdTruncate(slot, n),
                Op::FdSync(_) => Op::FdSync(slot),
                op => op,
            }
        }
        op => op,
    }
}

/// Runs an fd operation on one tree's fds.
fn apply_fd(root: &Path, fds: &mut Fds, op: &Op) -> std::io::Result<Vec<u8>> {
    const EBADF: i32 = libc::EBADF;
    let missing = || std::io::Error::from_raw_os_error(EBADF);
    match op {
        Op::Open(slot, p, how) => {
            fds[*slot] = None;
            fds[*slot] = Some((how.options().open(root.join(p))?, *how, p.clone()));
        }
        Op::Close(slot) => drop(fds[*slot].take().ok_or_else(missing)?),
        Op::FdWrite(slot, off, data) => match fds[*slot].as_mut().ok_or_else(missing)? {
            (f, How::Append, _) => f.write_all(data)?,
            (f, ..) => f.write_all_at(data, *off)?,
        },
        Op::FdRead(slot, off, len) => {
            let (f, ..) = fds[*slot].as_ref().ok_or_else(missing)?;
            let mut buf = vec![0u8; *len];
            let mut got = 0;
            while got < *len {
                match f.read_at(&mut buf[got..], off + got as u64)? {
                    0 => break,
                    n => got += n,
                }
            }
            buf.truncate(got);
            return Ok(buf);
        }
        Op::FdTruncate(slot, len) => fds[*slot].as_ref().ok_or_else(missing)?.0.set_len(*len)?,
        Op::FdSync(slot) => fds[*slot].as_ref().ok_or_else(missing)?.0.sync_all()?,
        _ => unreachable!("not an fd operation"),
    }
    Ok(Vec::new())
}

/// Runs `op` under `root`; returns what a program would observe (data or errno).
fn apply(root: &Path, fds: &mut Fds, op: &Op) -> Result<Vec<u8>, i32> {
    let at = |p: &str| root.join(p);
    let errno = |e: std::io::Error| e.raw_os_error().unwrap_or(-1);
    let r: std::io::Result<Vec<u8>> = (|| {
        match op {
            Op::Open(..) | Op::Close(_) | Op::FdWrite(..) | Op::FdRead(..) | Op::FdTruncate(..) | Op::FdSync(_) => {
                return apply_fd(root, fds, op)
            }
            Op::Write(p, data) => fs::write(at(p), data)?,
            Op::Pwrite(p, off, data) => OpenOptions::new().write(true).open(at(p))?.write_all_at(data, *off)?,
            Op::Append(p, data) => {
                OpenOptions::new().append(true).create(true).mode(0o644).open(at(p))?.write_all(data)?
            }
            Op::Truncate(p, len) => OpenOptions::new().write(true).open(at(p))?.set_len(*len)?,
            Op::Rename(a, b) => fs::rename(at(a), at(b))?,
            Op::Unlink(p) => fs::remove_file(at(p))?,
            Op::Mkdir(p) => fs::create_dir(at(p))?,
            Op::Rmdir(p) => fs::remove_dir(at(p))?,
            Op::Symlink(p, target) => std::os::unix::fs::symlink(target, at(p))?,
            Op::Chmod(p, mode) => fs::set_permissions(at(p), fs::Permissions::from_mode(*mode))?,
            Op::Read(p) => {
                let mut f = fs::File::open(at(p))?;
                let mut out = Vec::new();
                f.seek(SeekFrom::Start(0))?;
                f.read_to_end(&mut out)?;
                return Ok(out);
            }
        }
        Ok(Vec::new())
    })();
    r.map_err(errno)
}

/// What a tree holds: per path, kind + mode + contents (or link target).
fn snapshot(root: &Path) -> BTreeMap<String, (char, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut names: Vec<_> = fs::read_dir(root.join(&rel)).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        for name in names {
            let rel = rel.join(&name);
            let full = root.join(&rel);
            let m = fs::symlink_metadata(&full).unwrap();
            let key = rel.to_string_lossy().into_owned();
            let mode = m.permissions().mode() & 0o777;
            if m.file_type().is_symlink() {
                out.insert(key, ('l', 0, fs::read_link(&full).unwrap().into_os_string().into_encoded_bytes()));
            } else if m.is_dir() {
                out.insert(key, ('d', mode, Vec::new()));
                stack.push(rel);
            } else {
                out.insert(key, ('f', mode, fs::read(&full).unwrap()));
            }
        }
    }
    out
}

/// What lstat (and a read of a file) shows at `p`, or the errno.
fn entry(root: &Path, p: &str) -> Result<(bool, u64, Vec<u8>), i32> {
    let errno = |e: std::io::Error| e.raw_os_error().unwrap_or(-1);
    let m = fs::symlink_metadata(root.join(p)).map_err(errno)?;
    let body = if m.is_file() { fs::read(root.join(p)).map_err(errno)? } else { Vec::new() };
    Ok((m.is_dir(), if m.is_dir() { 0 } else { m.len() }, body))
}

fn touched<'a>(op: &'a Op, fds: &'a Fds) -> Vec<&'a str> {
    let slot_path = |slot: &usize| fds[*slot].as_ref().map(|(_, _, p)| p.as_str());
    match op {
        Op::Open(_, p, _) => vec![p],
        Op::Close(slot) | Op::FdWrite(slot, ..) | Op::FdRead(slot, ..) | Op::FdTruncate(slot, _) | Op::FdSync(slot) => {
            slot_path(slot).into_iter().collect()
        }
        Op::Rename(a, b) | Op::Symlink(a, b) => vec![a, b],
        Op::Write(p, _)
        | Op::Pwrite(p, ..)
        | Op::Append(p, _)
        | Op::Truncate(p, _)
        | Op::Unlink(p)
        | Op::Mkdir(p)
        | Op::Rmdir(p)
        | Op::Chmod(p, _)
        | Op::Read(p) => vec![p],
    }
}

fn tail(s: &str) -> &str {
    &s[s.len().saturating_sub(3000)..]
}

/// Trees as sorted (path, kind, mode, length, checksum): short to print when they differ.
type Summary = Result<(usize, u64), i32>;

fn short_tree(root: &Path) -> Vec<(String, char, u32, Summary)> {
    snapshot(root).into_iter().map(|(p, (k, m, body))| (p, k, m, summary(&Ok(body)))).collect()
}

/// Asserts two trees are equal, printing only the entries that differ.
fn same_tree(mount: &Path, model: &Path, what: &str, history: &[String]) {
    let backend = std::env::var("MODEL_BACKEND_ROOT").ok();
    let (a, b) = (short_tree(mount), short_tree(model));
    if a != b {
        let only_a: Vec<_> = a.iter().filter(|e| !b.contains(e)).collect();
        let only_b: Vec<_> = b.iter().filter(|e| !a.contains(e)).collect();
        let dump = std::env::temp_dir().join("model-tree-mismatch.history");
        let _ = fs::write(&dump, history.join("\n"));
        let names: Vec<String> = only_a.iter().chain(&only_b).map(|e| e.0.clone()).collect();
        let related: Vec<&String> =
            history.iter().filter(|h| names.iter().any(|n| h.split(' ').any(|w| w.starts_with(n.as_str())))).collect();
        let stored: Vec<String> = names
            .iter()
            .filter_map(|n| {
                let p = Path::new(backend.as_deref()?).join(n);
                let attrs: Vec<_> =
                    xattr::list(&p).ok()?.map(|a| (a.clone(), xattr::get(&p, &a).ok().flatten())).collect();
                Some(format!("{n}: {attrs:?}"))
            })
            .collect();
        panic!(
            "{what}: mount has {only_a:?}\nmodel has {only_b:?}\nstored: {stored:?}\nops on these paths:\n{related:#?}"
        );
    }
}

fn run_model(config: &Path, ops: usize, seed: u64) {
    let limit: usize = std::env::var("MODEL_OPS").ok().and_then(|s| s.parse().ok()).unwrap_or(ops);
    let ops = ops.min(limit);
    // Set MODEL_CHECK_FROM=N to compare the whole tree after every step from N on.
    let check_from: usize = std::env::var("MODEL_CHECK_FROM").ok().and_then(|s| s.parse().ok()).unwrap_or(usize::MAX);
    let model = tempfile::tempdir().unwrap();
    let mut m = Mounted::start(config, "data", &[]);
    let mut r = Rng(seed);
    let mut history: Vec<String> = Vec::new();
    let (mut model_fds, mut mount_fds): (Fds, Fds) =
        ((0..SLOTS).map(|_| None).collect(), (0..SLOTS).map(|_| None).collect());
    // Per kind of op: (succeeded, failed), printed at the end so a run shows what it did.
    let mut kinds: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut max_shared = 0;
    for step in 0..ops {
        let open_paths: Vec<Option<String>> = model_fds.iter().map(|f| f.as_ref().map(|f| f.2.clone())).collect();
        let op = random_op(&mut r);
        let op = share_paths(op, &mut r, &open_paths);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        history.push(format!("{step}: {op:?} @{}.{:06}", now.as_secs() % 60, now.subsec_micros()));
        let paths: Vec<String> = touched(&op, &model_fds).into_iter().map(String::from).collect();
        let want = apply(model.path(), &mut model_fds, &op);
        if let Some(h) = history.last_mut() {
            h.push_str(&format!(" => {:?}", summary(&want).map(|s| s.0)));
        }
        let recent = history[history.len().saturating_sub(12)..].join("\n");
        let recent = format!("{recent}\n(all ops on the touched paths:)\n{}", {
            history
                .iter()
                .filter(|h| paths.iter().any(|p| h.split(' ').any(|w| w == *p)))
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        });
        let kind = format!("{op:?}").split(' ').next().unwrap_or_default().to_string();
        let tally = kinds.entry(kind).or_insert((0, 0));
        if want.is_ok() {
            tally.0 += 1;
        } else {
            tally.1 += 1;
        }
        let shared = mount_fds.iter().flatten().filter(|f| paths.contains(&f.2)).count();
        max_shared = max_shared.max(shared);
        let got = apply(&m.path, &mut mount_fds, &op);
        if summary(&got) != summary(&want) {
            let dump = std::env::temp_dir().join(format!("model-{seed}.history"));
            let _ = fs::write(&dump, history.join("\n"));
            let _ = fs::write(dump.with_extension("mountlog"), m.log_text());
            eprintln!("full history in {}", dump.display());
        }
        assert_eq!(summary(&got), summary(&want), "seed {seed}, last ops:\n{recent}\n{}", tail(&m.log_text()));
        for p in paths.iter().map(String::as_str) {
            let (a, b) = (entry(&m.path, p), entry(model.path(), p));
            let short = |e: Result<(bool, u64, Vec<u8>), i32>| e.map(|(d, n, body)| (d, n, summary(&Ok(body))));
            assert_eq!(short(a), short(b), "seed {seed}, path {p}, last ops:\n{recent}\n{}", tail(&m.log_text()));
        }
        if step % 250 == 249 || step >= check_from {
            same_tree(&m.path, model.path(), &format!("seed {seed} tree after step {step}"), &history);
        }
    }
    drop((model_fds, mount_fds)); // the last closes upload what is still open
    eprintln!("seed {seed}: {ops} ops, (ok, errno) by kind {kinds:?}; at most {max_shared} fds open on one path");
    same_tree(&m.path, model.path(), &format!("seed {seed} tree at the end"), &history);
    assert_eq!(m.unmount(), Some(0));
    m = Mounted::start(config, "data", &["--metadata-on-list", "always"]);
    same_tree(&m.path, model.path(), &format!("seed {seed} tree after remount"), &history);
}

/// The seeds to run: `MODEL_SEED` alone, else `MODEL_SEEDS` (default 1) seeds counted
/// up from a fixed one; `scripts/model-seeds.sh` runs 16.
fn seeds() -> Vec<u64> {
    if let Some(one) = std::env::var("MODEL_SEED").ok().and_then(|s| s.parse().ok()) {
        return vec![one];
    }
    let n: u64 = std::env::var("MODEL_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    (0..n).map(|i| 0x5EED_2026 + i).collect()
}

#[test]
fn ten_thousand_random_ops_agree_with_a_local_directory() {
    for seed in seeds() {
        let (root, cfg) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::env::set_var("MODEL_BACKEND_ROOT", root.path());
        run_model(&local_config(cfg.path(), root.path()), 10_000, seed);
    }
}

#[test]
fn two_thousand_random_ops_agree_on_an_s3_server() {
    let server = MotoServer::start(&["bkt"]);
    for (i, seed) in seeds().into_iter().enumerate() {
        let cfg = tempfile::tempdir().unwrap();
        run_model(&s3_config(cfg.path(), &server.endpoint, "bkt", &format!("model{i}")), 2_000, seed ^ 0xABCD);
    }
}
