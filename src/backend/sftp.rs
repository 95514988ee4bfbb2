//! A directory on an SSH server (remote-store's `sftp` type), on russh and russh-sftp.
//! Only this file imports them.
//!
//! SFTP is hierarchical, so this store uses what it offers instead of emulating S3:
//! - directories are real (`mkdir`, `rmdir`); a marker `dir/` is the directory itself;
//! - a listing is `readdir`, whose entries carry mode, owner, size and mtime;
//! - mode, owner and times are the file's own attributes (`setstat`), not metadata
//!   headers; other metadata has nowhere to go and is dropped;
//! - a file is written to a temporary name in its directory and renamed over the
//!   target at the end (`posix-rename@openssh.com`: atomic replace), so readers never
//!   see a partial file; an exclusive create uses plain SFTP rename, which refuses an
//!   existing target;
//! - rename is the server's rename: atomic, for files and whole directories;
//! - reads and writes keep many requests in flight on one channel (pipelining):
//!   a request is at most 255 KiB (OpenSSH's limit), 16 in flight.
//!
//! An ETag is `size-mtime` (seconds): a change within the same second to the same size
//! is not seen by it.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};

mod session;

use session::{posix_rename, Conn};

use super::{BackendError, CompletedPart, Condition, ListPage, ObjectMeta, ObjectStore, Result, UserMeta};
use crate::config::SftpOptions;

/// Bytes per SFTP read or write request (OpenSSH's sftp-server takes up to 256 KiB).
const CHUNK: usize = 255 * 1024;
/// Requests in flight per read or write.
const IN_FLIGHT: usize = 16;
const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

pub struct SftpStore {
    o: SftpOptions,
    /// Known host keys given inline, as a known_hosts file for russh to read.
    inline_keys: Option<tempfile::NamedTempFile>,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
    uploads: Mutex<HashMap<String, Arc<Upload>>>,
}

/// A multipart upload: parts are written in place into one temporary file, each at the
/// sum of the sizes of the parts before it.
struct Upload {
    tmp: String,
    handle: String,
    user: UserMeta,
    sizes: Mutex<BTreeMap<i32, u64>>,
    arrived: tokio::sync::Notify,
}

impl std::fmt::Debug for SftpStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpStore")
            .field("host", &self.o.host)
            .field("port", &self.o.port)
            .field("base", &self.o.base_path)
            .finish()
    }
}

fn status(e: &SftpError) -> Option<StatusCode> {
    match e {
        SftpError::Status(s) => Some(s.status_code),
        _ => None,
    }
}

/// An SFTP error as a `BackendError`.
fn classify(e: SftpError) -> BackendError {
    match status(&e) {
        Some(StatusCode::NoSuchFile) => BackendError::NotFound,
        Some(StatusCode::PermissionDenied) => BackendError::AccessDenied(e.to_string()),
        Some(StatusCode::OpUnsupported) => BackendError::Unsupported(e.to_string()),
        Some(_) => BackendError::Other(e.to_string()),
        None => BackendError::Transient(format!("sftp: {e}")),
    }
}

fn etag(a: &FileAttributes) -> String {
    format!("\"{}-{}\"", a.size.unwrap_or(0), a.mtime.unwrap_or(0))
}

/// A file's attributes as the object metadata the layers above read (mode, uid, gid,
/// mtime as s3fs stores them).
fn meta(key: String, a: &FileAttributes) -> ObjectMeta {
    let mut user = UserMeta::new();
    if let Some(m) = a.permissions {
        user.insert("mode".into(), m.to_string());
    }
    if let Some(u) = a.uid {
        user.insert("uid".into(), u.to_string());
    }
    if let Some(g) = a.gid {
        user.insert("gid".into(), g.to_string());
    }
    if let Some(t) = a.mtime {
        user.insert("mtime".into(), t.to_string());
    }
    ObjectMeta {
        key,
        size: a.size.unwrap_or(0),
        last_modified: SystemTime::UNIX_EPOCH + Duration::from_secs(a.mtime.unwrap_or(0).into()),
        etag: Some(etag(a)),
        user: Some(user),
    }
}

/// The attributes to set for stored metadata: permission bits, owner, times.
fn attrs_from(user: &UserMeta) -> FileAttributes {
    let num = |k: &str| user.get(k).and_then(|v| v.split('.').next()).and_then(|v| v.parse::<u64>().ok());
    let mut a = FileAttributes::empty();
    a.permissions = num("mode").map(|m| m as u32 & 0o7777);
    a.mtime = num("mtime").map(|t| t as u32);
    a.atime = num("atime").map(|t| t as u32).or(a.mtime);
    a
}

fn is_dir(a: &FileAttributes) -> bool {
    a.permissions.is_some_and(|m| m & S_IFMT == S_IFDIR)
}

impl SftpStore {
    /// Connects on first use (`check` does at start). Errors: an inline known-hosts text
    /// that cannot be kept in a temporary file.
    pub fn new(o: &SftpOptions) -> std::result::Result<Self, String> {
        let inline_keys = match &o.known_host_keys {
            Some(text) => {
                let mut f = tempfile::NamedTempFile::new().map_err(|e| format!("known_host_keys: {e}"))?;
                std::io::Write::write_all(&mut f, format!("{text}\n").as_bytes())
                    .map_err(|e| format!("known_host_keys: {e}"))?;
                Some(f)
            }
            None => None,
        };
        Ok(Self { o: o.clone(), inline_keys, conn: tokio::sync::Mutex::new(None), uploads: Mutex::new(HashMap::new()) })
    }

    /// The server path of `key` (a marker `dir/` is the directory `dir`).
    fn path(&self, key: &str) -> String {
        let key = key.trim_end_matches('/');
        match (self.o.base_path.as_str(), key) {
            (base, "") => base.to_string(),
            ("/", k) => format!("/{k}"),
            (base, k) => format!("{base}/{k}"),
        }
    }

    fn known_hosts_file(&self) -> Option<PathBuf> {
        if let Some(f) = &self.inline_keys {
            return Some(f.path().to_path_buf());
        }
        self.o
            .host_keys_path
            .clone()
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ssh/known_hosts")))
    }

    async fn connect(&self) -> Result<Conn> {
        // Inline keys are never written back (tofu records only into a known_hosts file).
        let learn = if self.inline_keys.is_some() { None } else { self.known_hosts_file() };
        session::connect(&self.o, self.known_hosts_file(), learn).await
    }

    /// The live connection, made on first use and again after one failed.
    async fn conn(&self) -> Result<Arc<Conn>> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = Arc::new(self.connect().await?);
        *slot = Some(c.clone());
        Ok(c)
    }

    /// `e` as a `BackendError`; a transport failure drops the connection, so that the
    /// retry reconnects.
    async fn fail(&self, e: SftpError) -> BackendError {
        let b = classify(e);
        if matches!(b, BackendError::Transient(_)) {
            *self.conn.lock().await = None;
        }
        b
    }

    async fn lstat(&self, c: &Conn, path: &str) -> Result<FileAttributes> {
        match c.sftp.lstat(path).await {
            Ok(a) => Ok(a.attrs),
            Err(e) => Err(self.fail(e).await),
        }
    }

    /// Makes `path`'s directory and its missing parents (keys may imply directories).
    async fn make_parents(&self, c: &Conn, path: &str) -> Result<()> {
        let Some((parent, _)) = path.rsplit_once('/') else { return Ok(()) };
        if parent.is_empty() || parent.len() <= self.o.base_path.len() {
            return Ok(());
        }
        if c.sftp.stat(parent).await.is_ok() {
            return Ok(());
        }
        Box::pin(self.make_parents(c, parent)).await?;
        match c.sftp.mkdir(parent, FileAttributes::empty()).await {
            Ok(_) => Ok(()),
            // Made meanwhile by another writer.
            Err(e) if c.sftp.stat(parent).await.is_ok_and(|a| is_dir(&a.attrs)) => {
                tracing::debug!(parent, "mkdir raced: {e}");
                Ok(())
            }
            Err(e) => Err(self.fail(e).await),
        }
    }

    /// Writes `body` at `offset` of an open handle, IN_FLIGHT requests at a time.
    async fn write_at(&self, c: &Conn, handle: &str, offset: u64, body: &Bytes) -> Result<()> {
        let writes = (0..body.len()).step_by(CHUNK).map(|at| {
            let data = body.slice(at..(at + CHUNK).min(body.len())).to_vec();
            c.sftp.write(handle.to_string(), offset + at as u64, data)
        });
        let r: std::result::Result<Vec<_>, _> =
            futures::stream::iter(writes).buffer_unordered(IN_FLIGHT).try_collect().await;
        match r {
            Ok(_) => Ok(()),
            Err(e) => Err(self.fail(e).await),
        }
    }

    /// A temporary name beside `path`, hidden (dot) and unique.
    fn temp_beside(path: &str) -> String {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        format!("{dir}/.{name}.rstore-{}", super::random_hex(6))
    }

    /// Sets owner, mode and times on `path` as far as the server lets us (a chown to
    /// another user is refused to non-root users, and then skipped).
    async fn set_attrs(&self, c: &Conn, path: &str, user: &UserMeta) -> Result<()> {
        let a = attrs_from(user);
        if let Err(e) = c.sftp.setstat(path, a).await {
            return Err(self.fail(e).await);
        }
        let id = |k: &str| user.get(k).and_then(|v| v.parse::<u32>().ok());
        if let (Some(uid), Some(gid)) = (id("uid"), id("gid")) {
            let mut own = FileAttributes::empty();
            (own.uid, own.gid) = (Some(uid), Some(gid));
            if let Err(e) = c.sftp.setstat(path, own).await {
                tracing::debug!(path, uid, gid, "owner not set: {e}");
            }
        }
        Ok(())
    }

    /// Moves the finished temporary file `tmp` to `path` if `cond` holds.
    async fn commit(&self, c: &Conn, tmp: &str, path: &str, key: &str, cond: &Condition) -> Result<ObjectMeta> {
        let fail_clean = |e: BackendError| async move {
            let _ = c.sftp.remove(tmp).await;
            e
        };
        let now = match c.sftp.lstat(path).await {
            Ok(a) => Some(meta(key.into(), &a.attrs)),
            Err(e) if status(&e) == Some(StatusCode::NoSuchFile) => None,
            Err(e) => return Err(fail_clean(self.fail(e).await).await),
        };
        if !cond.holds(now.as_ref()) {
            return Err(fail_clean(BackendError::PreconditionFailed).await);
        }
        let renamed = match (cond, c.posix_rename) {
            // Plain SFTP rename refuses an existing target: an exact "if absent".
            (Condition::IfAbsent, _) | (_, false) if now.is_none() => c.sftp.rename(tmp, path).await.map(drop),
            (_, true) => posix_rename(c, tmp, path).await,
            (_, false) => {
                // No atomic replace on this server: remove, then rename.
                let _ = c.sftp.remove(path).await;
                c.sftp.rename(tmp, path).await.map(drop)
            }
        };
        if let Err(e) = renamed {
            let exists = c.sftp.lstat(path).await.is_ok();
            let err = if *cond == Condition::IfAbsent && exists {
                BackendError::PreconditionFailed
            } else {
                self.fail(e).await
            };
            return Err(fail_clean(err).await);
        }
        let a = self.lstat(c, path).await?;
        Ok(meta(key.into(), &a))
    }

    /// Every key under directory `dir` (recursive), for listings without a delimiter.
    async fn walk(&self, c: &Conn, dir_key: &str, out: &mut Vec<ObjectMeta>) -> Result<()> {
        for (name, a) in self.read_dir(c, &self.path(dir_key)).await? {
            let key = format!("{dir_key}{name}");
            if is_dir(&a) {
                out.push(meta(format!("{key}/"), &a));
                Box::pin(self.walk(c, &format!("{key}/"), out)).await?;
            } else {
                out.push(meta(key, &a));
            }
        }
        Ok(())
    }

    /// The entries of a directory with their attributes, `.`, `..` and our temporary
    /// files left out. A missing directory has none.
    async fn read_dir(&self, c: &Conn, path: &str) -> Result<Vec<(String, FileAttributes)>> {
        let handle = match c.sftp.opendir(path).await {
            Ok(h) => h.handle,
            Err(e) if matches!(status(&e), Some(StatusCode::NoSuchFile)) => return Ok(Vec::new()),
            Err(e) => return Err(self.fail(e).await),
        };
        let mut out = Vec::new();
        loop {
            match c.sftp.readdir(handle.as_str()).await {
                Ok(name) => {
                    for f in name.files {
                        let n = f.filename;
                        if n == "." || n == ".." || (n.starts_with('.') && n.contains(".rstore-")) {
                            continue;
                        }
                        out.push((n, f.attrs));
                    }
                }
                Err(e) if status(&e) == Some(StatusCode::Eof) => break,
                Err(e) => {
                    let _ = c.sftp.close(handle.as_str()).await;
                    return Err(self.fail(e).await);
                }
            }
        }
        let _ = c.sftp.close(handle.as_str()).await;
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

#[async_trait]
impl ObjectStore for SftpStore {
    /// Connects and stats `base_path`, as remote-store's health check does.
    async fn check(&self) -> Result<()> {
        let c = self.conn().await?;
        match c.sftp.stat(self.o.base_path.as_str()).await {
            Ok(a) if is_dir(&a.attrs) => Ok(()),
            Ok(_) => Err(BackendError::NoSuchBucket(format!("base_path {} is not a directory", self.o.base_path))),
            Err(e) if status(&e) == Some(StatusCode::NoSuchFile) => Err(BackendError::NoSuchBucket(format!(
                "base_path {} does not exist on {}",
                self.o.base_path, self.o.host
            ))),
            Err(e) => Err(self.fail(e).await),
        }
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let c = self.conn().await?;
        let mut a = self.lstat(&c, &self.path(key)).await?;
        match (key.ends_with('/'), is_dir(&a)) {
            (true, true) => Ok(meta(key.into(), &a)),
            (false, false) => {
                if a.permissions.is_some_and(|m| m & S_IFMT == S_IFLNK) {
                    // A symlink's object is its target text, as s3fs stores one.
                    let target = c.sftp.readlink(self.path(key)).await.map_err(classify)?;
                    a.size = target.files.first().map(|f| f.filename.len() as u64);
                }
                Ok(meta(key.into(), &a))
            }
            _ => Err(BackendError::NotFound),
        }
    }

    async fn get_range(&self, key: &str, range: Range<u64>, if_match: Option<&str>) -> Result<Bytes> {
        let c = self.conn().await?;
        let path = self.path(key);
        let a = self.lstat(&c, &path).await?;
        if if_match.is_some_and(|e| e != etag(&a)) {
            return Err(BackendError::PreconditionFailed);
        }
        if a.permissions.is_some_and(|m| m & S_IFMT == S_IFLNK) {
            let target = c.sftp.readlink(path.as_str()).await.map_err(classify)?;
            let t = Bytes::from(target.files.first().map(|f| f.filename.clone()).unwrap_or_default().into_bytes());
            let r = super::clamp(range, t.len() as u64);
            return Ok(t.slice(r.start as usize..r.end as usize));
        }
        let range = super::clamp(range, a.size.unwrap_or(0));
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let handle = match c.sftp.open(path.as_str(), OpenFlags::READ, FileAttributes::empty()).await {
            Ok(h) => h.handle,
            Err(e) => return Err(self.fail(e).await),
        };
        // A server may answer a read with fewer bytes than asked (its own limit): each
        // chunk asks again for the rest until it is whole or the file ends.
        let reads = (range.start..range.end).step_by(CHUNK).map(|at| {
            let len = CHUNK.min((range.end - at) as usize);
            let (sftp, handle) = (&c.sftp, handle.clone());
            async move {
                let mut buf = Vec::with_capacity(len);
                while buf.len() < len {
                    match sftp.read(handle.clone(), at + buf.len() as u64, (len - buf.len()) as u32).await {
                        Ok(d) if d.data.is_empty() => break,
                        Ok(d) => buf.extend_from_slice(&d.data),
                        Err(e) if status(&e) == Some(StatusCode::Eof) => break,
                        Err(e) => return Err(e),
                    }
                }
                Ok((at, buf))
            }
        });
        let parts: std::result::Result<Vec<(u64, Vec<u8>)>, _> =
            futures::stream::iter(reads).buffered(IN_FLIGHT).try_collect().await;
        let _ = c.sftp.close(handle.as_str()).await;
        let parts = match parts {
            Ok(p) => p,
            Err(e) => return Err(self.fail(e).await),
        };
        let mut out = Vec::with_capacity((range.end - range.start) as usize);
        for (at, data) in parts {
            // A file that shrank meanwhile ends early: what is there is returned (the
            // caller sees a short body and asks again).
            if at != range.start + out.len() as u64 {
                break;
            }
            out.extend_from_slice(&data);
        }
        Ok(Bytes::from(out))
    }

    async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        _token: Option<String>,
        _max_keys: Option<i32>,
    ) -> Result<ListPage> {
        // Directories are listed whole (readdir has no pages); prefixes that are not a
        // directory path (`dir/` or the root) match nothing here.
        if !(prefix.is_empty() || prefix.ends_with('/')) {
            return Ok(ListPage::default());
        }
        let c = self.conn().await?;
        let mut page = ListPage::default();
        // The directory itself, as S3 lists a marker `dir/` under its own prefix.
        if !prefix.is_empty() {
            match c.sftp.stat(self.path(prefix)).await {
                Ok(a) if is_dir(&a.attrs) => page.objects.push(meta(prefix.into(), &a.attrs)),
                _ => return Ok(page),
            }
        }
        if delimiter.is_none() {
            self.walk(&c, prefix, &mut page.objects).await?;
            return Ok(page);
        }
        for (name, a) in self.read_dir(&c, &self.path(prefix)).await? {
            match is_dir(&a) {
                true => page.prefixes.push(format!("{prefix}{name}/")),
                false => page.objects.push(meta(format!("{prefix}{name}"), &a)),
            }
        }
        Ok(page)
    }

    async fn put_if(&self, key: &str, body: Bytes, user: &UserMeta, cond: &Condition) -> Result<ObjectMeta> {
        let c = self.conn().await?;
        let path = self.path(key);
        self.make_parents(&c, &path).await?;
        let mode = user.get("mode").and_then(|m| m.parse::<u32>().ok());
        let kind = mode.map(|m| m & S_IFMT).filter(|k| *k != 0);
        if key.ends_with('/') || kind == Some(S_IFDIR) {
            if let Err(e) = c.sftp.mkdir(path.as_str(), FileAttributes::empty()).await {
                if !c.sftp.stat(path.as_str()).await.is_ok_and(|a| is_dir(&a.attrs)) {
                    return Err(self.fail(e).await);
                }
            }
            self.set_attrs(&c, &path, user).await?;
            let a = self.lstat(&c, &path).await?;
            return Ok(meta(key.into(), &a));
        }
        match kind {
            None | Some(S_IFREG) => {}
            Some(S_IFLNK) => {
                let now = c.sftp.lstat(path.as_str()).await.ok().map(|a| meta(key.into(), &a.attrs));
                if !cond.holds(now.as_ref()) {
                    return Err(BackendError::PreconditionFailed);
                }
                if now.is_some() {
                    let _ = c.sftp.remove(path.as_str()).await;
                }
                let target = String::from_utf8_lossy(&body).into_owned();
                // OpenSSH's sftp-server takes SYMLINK's two paths in the other order
                // than the draft (target first); russh-sftp sends them as drafted.
                if let Err(e) = c.sftp.symlink(target, path.as_str()).await {
                    return Err(self.fail(e).await);
                }
                return self.head(key).await;
            }
            Some(_) => return Err(BackendError::Unsupported("SFTP cannot make fifos, sockets or device nodes".into())),
        }
        let tmp = Self::temp_beside(&path);
        let flags = OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE;
        let handle = match c.sftp.open(tmp.as_str(), flags, attrs_from(user)).await {
            Ok(h) => h.handle,
            Err(e) => return Err(self.fail(e).await),
        };
        let written = self.write_at(&c, &handle, 0, &body).await;
        let _ = c.sftp.close(handle.as_str()).await;
        if let Err(e) = written {
            let _ = c.sftp.remove(tmp.as_str()).await;
            return Err(e);
        }
        self.set_attrs(&c, &tmp, user).await?;
        self.commit(&c, &tmp, &path, key, cond).await
    }

    async fn create_multipart_with(&self, key: &str, user: &UserMeta) -> Result<String> {
        let c = self.conn().await?;
        let path = self.path(key);
        self.make_parents(&c, &path).await?;
        let tmp = Self::temp_beside(&path);
        let flags = OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE;
        let handle = match c.sftp.open(tmp.as_str(), flags, attrs_from(user)).await {
            Ok(h) => h.handle,
            Err(e) => return Err(self.fail(e).await),
        };
        let id = tmp.rsplit('-').next().unwrap_or_default().to_string();
        let up = Upload {
            tmp,
            handle,
            user: user.clone(),
            sizes: Mutex::new(BTreeMap::new()),
            arrived: tokio::sync::Notify::new(),
        };
        self.uploads.lock().expect("poisoned").insert(id.clone(), Arc::new(up));
        Ok(id)
    }

    /// Part `number` goes at the sum of the sizes of parts 1..number, so it waits (up to
    /// 120 s) until each of those has at least been handed in: the uploader sends parts
    /// in order, several at once.
    async fn upload_part(&self, _key: &str, upload_id: &str, number: i32, body: Bytes) -> Result<CompletedPart> {
        let up = self.uploads.lock().expect("poisoned").get(upload_id).cloned().ok_or(BackendError::NotFound)?;
        up.sizes.lock().expect("poisoned").insert(number, body.len() as u64);
        up.arrived.notify_waiters();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        let offset = loop {
            let notified = up.arrived.notified();
            {
                let sizes = up.sizes.lock().expect("poisoned");
                let before: Vec<u64> = sizes.range(1..number).map(|(_, s)| *s).collect();
                if before.len() == (number - 1) as usize {
                    break before.iter().sum::<u64>();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(BackendError::Other(format!("part {number} waited 120 s for the parts before it")));
            }
        };
        let c = self.conn().await?;
        self.write_at(&c, &up.handle, offset, &body).await?;
        Ok(CompletedPart { number, etag: format!("{upload_id}-{number}") })
    }

    async fn complete_multipart_if(
        &self,
        key: &str,
        upload_id: &str,
        _parts: Vec<CompletedPart>,
        cond: &Condition,
    ) -> Result<ObjectMeta> {
        let up = self.uploads.lock().expect("poisoned").get(upload_id).cloned().ok_or(BackendError::NotFound)?;
        let c = self.conn().await?;
        let _ = c.sftp.close(up.handle.as_str()).await;
        self.set_attrs(&c, &up.tmp, &up.user).await?;
        let r = self.commit(&c, &up.tmp, &self.path(key), key, cond).await;
        if !matches!(r, Err(BackendError::PreconditionFailed)) {
            self.uploads.lock().expect("poisoned").remove(upload_id);
        }
        r
    }

    async fn abort_multipart(&self, _key: &str, upload_id: &str) -> Result<()> {
        let up = self.uploads.lock().expect("poisoned").remove(upload_id);
        if let Some(up) = up {
            let c = self.conn().await?;
            let _ = c.sftp.close(up.handle.as_str()).await;
            let _ = c.sftp.remove(up.tmp.as_str()).await;
        }
        Ok(())
    }

    /// SFTP has no copy: the bytes go through this process, streamed.
    async fn copy(&self, src: &str, dst: &str) -> Result<Option<String>> {
        let c = self.conn().await?;
        let a = self.lstat(&c, &self.path(src)).await?;
        let size = a.size.unwrap_or(0);
        let id = self.create_multipart_with(dst, &meta(src.into(), &a).user.unwrap_or_default()).await?;
        let step = (CHUNK * IN_FLIGHT) as u64;
        let mut number = 1;
        let mut at = 0;
        while at < size || number == 1 {
            let body = self.get_range(src, at..(at + step).min(size), None).await?;
            self.upload_part(dst, &id, number, body).await?;
            at += step;
            number += 1;
        }
        Ok(self.complete_multipart_if(dst, &id, Vec::new(), &Condition::Always).await?.etag)
    }

    async fn set_user_meta(&self, key: &str, user: &UserMeta) -> Result<ObjectMeta> {
        let c = self.conn().await?;
        let path = self.path(key);
        self.lstat(&c, &path).await?;
        self.set_attrs(&c, &path, user).await?;
        self.head(key).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let c = self.conn().await?;
        let path = self.path(key);
        let r = if key.ends_with('/') { c.sftp.rmdir(path.as_str()).await } else { c.sftp.remove(path.as_str()).await };
        match r {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(StatusCode::NoSuchFile) => Ok(()),
            Err(e) => Err(self.fail(e).await),
        }
    }

    /// The server's own rename (atomic), for a file or a whole directory (`dir/`).
    async fn rename(&self, src: &str, dst: &str) -> Result<()> {
        let c = self.conn().await?;
        let (from, to) = (self.path(src), self.path(dst));
        self.make_parents(&c, &to).await?;
        let r =
            if c.posix_rename { posix_rename(&c, &from, &to).await } else { c.sftp.rename(from, to).await.map(drop) };
        match r {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e).await),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_become_metadata_and_back() {
        let mut a = FileAttributes::empty();
        (a.size, a.permissions, a.uid, a.gid, a.mtime) =
            (Some(5), Some(S_IFREG | 0o640), Some(1000), Some(100), Some(1_700_000_000));
        let m = meta("k".into(), &a);
        let user = m.user.unwrap();
        assert_eq!(user["mode"], (S_IFREG | 0o640).to_string());
        let back = attrs_from(&user);
        assert_eq!((back.permissions, back.mtime), (Some(0o640), Some(1_700_000_000)));
        assert_eq!(m.etag.as_deref(), Some("\"5-1700000000\""));
    }
}
