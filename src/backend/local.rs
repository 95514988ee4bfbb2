//! A directory tree as an object store: key `a/b/c` is the file `ROOT/a/b/c`, a
//! directory stands for a `dir/` marker. Writes land atomically (temp file + rename).

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use super::memory::list_sorted;
use super::{clamp, BackendError, CompletedPart, Condition, ListPage, ObjectMeta, ObjectStore, Result, UserMeta};

#[derive(Debug)]
pub struct LocalStore {
    root: PathBuf,
    uploads: tempfile::TempDir,
    next_id: AtomicU64,
}

impl LocalStore {
    /// A store over the directory `root`, created (with its parents) when missing, as
    /// remote-store's local backend does.
    pub fn new(root: &Path) -> std::result::Result<Self, String> {
        match fs::metadata(root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(format!("local root {} is not a directory", root.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(root).map_err(|e| format!("local root {}: {e}", root.display()))?
            }
            Err(e) => return Err(format!("local root {}: {e}", root.display())),
        }
        let uploads = tempfile::Builder::new()
            .prefix("rstore-local-uploads")
            .tempdir()
            .map_err(|e| format!("cannot create a temp dir for uploads: {e}"))?;
        Ok(Self { root: root.to_path_buf(), uploads, next_id: AtomicU64::new(1) })
    }

    /// Maps a key to a path, refusing keys that could escape the root.
    fn path(&self, key: &str) -> Result<PathBuf> {
        let trimmed = key.strip_suffix('/').unwrap_or(key);
        let mut path = self.root.clone();
        if trimmed.is_empty() {
            return Ok(path);
        }
        for seg in trimmed.split('/') {
            if seg.is_empty() || seg == "." || seg == ".." || seg.contains('\0') {
                return Err(BackendError::InvalidInput(format!("key {key:?} has no file path")));
            }
            path.push(seg);
        }
        Ok(path)
    }

    fn upload_dir(&self, id: &str) -> PathBuf {
        self.uploads.path().join(id)
    }
}

fn io_err(e: io::Error) -> BackendError {
    match e.kind() {
        io::ErrorKind::NotFound => BackendError::NotFound,
        io::ErrorKind::PermissionDenied => BackendError::AccessDenied(e.to_string()),
        io::ErrorKind::NotADirectory | io::ErrorKind::IsADirectory | io::ErrorKind::AlreadyExists => {
            BackendError::InvalidInput(e.to_string())
        }
        _ => BackendError::Other(e.to_string()),
    }
}

/// User metadata lives in extended attributes `user.rstore.<name>`.
const XATTR_PREFIX: &str = "user.rstore.";

fn xattr_err(e: io::Error) -> BackendError {
    match e.raw_os_error() {
        Some(libc::ENOTSUP) => BackendError::Unsupported("the local root's filesystem has no user xattrs".into()),
        _ => io_err(e),
    }
}

fn read_user(path: &Path) -> Result<UserMeta> {
    let mut user = UserMeta::new();
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(user),
        Err(e) => return Err(io_err(e)),
    };
    for name in names {
        let Some(short) = name.to_str().and_then(|n| n.strip_prefix(XATTR_PREFIX)) else { continue };
        if let Some(v) = xattr::get(path, &name).map_err(io_err)? {
            user.insert(short.to_string(), String::from_utf8_lossy(&v).into_owned());
        }
    }
    Ok(user)
}

fn write_user(path: &Path, user: &UserMeta) -> Result<()> {
    for (k, _) in read_user(path)? {
        if !user.contains_key(&k) {
            xattr::remove(path, format!("{XATTR_PREFIX}{k}")).map_err(xattr_err)?;
        }
    }
    for (k, v) in user {
        xattr::set(path, format!("{XATTR_PREFIX}{k}"), v.as_bytes()).map_err(xattr_err)?;
    }
    Ok(())
}

fn with_user(mut meta: ObjectMeta, path: &Path) -> Result<ObjectMeta> {
    meta.user = Some(read_user(path)?);
    Ok(meta)
}

fn meta_of(key: String, m: &fs::Metadata) -> ObjectMeta {
    let size = if m.is_dir() { 0 } else { m.len() };
    ObjectMeta {
        etag: Some(format!("\"{:x}-{:x}-{:x}\"", m.ino(), size, m.mtime_nsec() + m.mtime() * 1_000_000_000)),
        key,
        size,
        last_modified: m.modified().unwrap_or(std::time::UNIX_EPOCH),
        user: None,
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| BackendError::Other(format!("blocking task failed: {e}")))?
}

/// Fills a temp file (given as file and path) beside `dest`, then renames it over `dest`
/// if `cond` holds. `IfAbsent` is atomic (a link that fails on an existing name);
/// `IfMatch` compares the ETag just before the rename, so two processes writing one
/// directory at the same instant can still both pass it.
fn write_atomic(dest: &Path, cond: &Condition, fill: impl FnOnce(&mut File, &Path) -> io::Result<()>) -> Result<()> {
    let parent = dest.parent().ok_or_else(|| BackendError::InvalidInput("no parent".into()))?;
    fs::create_dir_all(parent).map_err(io_err)?;
    let mut tmp = tempfile::Builder::new().prefix(".rstore-tmp").tempfile_in(parent).map_err(io_err)?;
    let tmp_path = tmp.path().to_path_buf();
    fill(tmp.as_file_mut(), &tmp_path).map_err(io_err)?;
    // Temp files are created 0600; objects are ordinary files.
    let _ = tmp.as_file().set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    match cond {
        Condition::Always => tmp.persist(dest).map(drop).map_err(|e| io_err(e.error)),
        Condition::IfAbsent => match tmp.persist_noclobber(dest) {
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => Err(BackendError::PreconditionFailed),
            r => r.map(drop).map_err(|e| io_err(e.error)),
        },
        Condition::IfMatch(_) => {
            let current = fs::metadata(dest).ok().filter(|m| m.is_file()).map(|m| meta_of(String::new(), &m));
            if !cond.holds(current.as_ref()) {
                return Err(BackendError::PreconditionFailed);
            }
            tmp.persist(dest).map(drop).map_err(|e| io_err(e.error))
        }
    }
}

/// Every key under `dir` (files, and empty directories as `name/` markers), unsorted.
fn walk(dir: &Path, key_prefix: &str, recursive: bool, out: &mut Vec<(String, ObjectMeta)>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let m = entry.metadata()?;
        if m.is_dir() {
            let key = format!("{key_prefix}{name}/");
            let before = out.len();
            if recursive {
                walk(&entry.path(), &key, true, out)?;
            }
            if out.len() == before {
                out.push((key.clone(), meta_of(key, &m)));
            }
        } else if m.is_file() && !name.starts_with(".rstore-tmp") {
            let key = format!("{key_prefix}{name}");
            out.push((key.clone(), meta_of(key, &m)));
        }
    }
    Ok(())
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn check(&self) -> Result<()> {
        let root = self.root.clone();
        blocking(move || fs::read_dir(&root).map(|_| ()).map_err(io_err)).await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let (path, key) = (self.path(key)?, key.to_string());
        blocking(move || {
            let m = fs::metadata(&path).map_err(io_err)?;
            if m.is_dir() != key.ends_with('/') || key.is_empty() {
                return Err(BackendError::NotFound);
            }
            with_user(meta_of(key, &m), &path)
        })
        .await
    }

    async fn get_range(&self, key: &str, range: Range<u64>, if_match: Option<&str>) -> Result<Bytes> {
        let path = self.path(key)?;
        let if_match = if_match.map(str::to_string);
        blocking(move || {
            let mut f = File::open(&path).map_err(io_err)?;
            let m = f.metadata().map_err(io_err)?;
            if m.is_dir() {
                return Err(BackendError::NotFound);
            }
            if if_match.is_some_and(|e| meta_of(String::new(), &m).etag.as_deref() != Some(&e)) {
                return Err(BackendError::PreconditionFailed);
            }
            let r = clamp(range, m.len());
            let mut buf = vec![0; (r.end - r.start) as usize];
            f.seek(SeekFrom::Start(r.start)).map_err(io_err)?;
            f.read_exact(&mut buf).map_err(io_err)?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: Option<i32>,
    ) -> Result<ListPage> {
        // List the deepest directory that contains every key with this prefix.
        let dir_key = &prefix[..prefix.rfind('/').map_or(0, |i| i + 1)];
        let dir = self.path(dir_key)?;
        let (dir_key, prefix) = (dir_key.to_string(), prefix.to_string());
        let delimiter = delimiter.map(str::to_string);
        let recursive = delimiter.as_deref() != Some("/");
        blocking(move || {
            let mut keys = Vec::new();
            match walk(&dir, &dir_key, recursive, &mut keys) {
                Ok(()) => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => {}
                Err(e) => return Err(io_err(e)),
            }
            keys.sort_by(|a, b| a.0.cmp(&b.0));
            let iter = keys.iter().map(|(k, m)| (k, m.clone()));
            // No S3 page limit here: re-reading a huge directory once per 1,000 keys
            // would cost O(n²).
            let max = max_keys.map_or(usize::MAX, |m| m.max(1) as usize);
            Ok(list_sorted(iter, &prefix, delimiter.as_deref(), token.as_deref(), max))
        })
        .await
    }

    async fn put_if(&self, key: &str, body: Bytes, user: &UserMeta, cond: &Condition) -> Result<ObjectMeta> {
        let (path, key, user, cond) = (self.path(key)?, key.to_string(), user.clone(), cond.clone());
        blocking(move || {
            if key.ends_with('/') {
                fs::create_dir_all(&path).map_err(io_err)?;
                write_user(&path, &user)?;
            } else {
                write_atomic(&path, &cond, |f, tmp| {
                    f.write_all(&body)?;
                    write_user(tmp, &user).map_err(io::Error::other)
                })?;
            }
            with_user(meta_of(key, &fs::metadata(&path).map_err(io_err)?), &path)
        })
        .await
    }

    async fn create_multipart_with(&self, key: &str, user: &UserMeta) -> Result<String> {
        self.path(key)?;
        let id = format!("u{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let dir = self.upload_dir(&id);
        let user = serde_json::to_vec(user).map_err(|e| BackendError::Other(e.to_string()))?;
        blocking(move || {
            fs::create_dir(&dir).map_err(io_err)?;
            fs::write(dir.join("user-meta.json"), user).map_err(io_err)
        })
        .await?;
        Ok(id)
    }

    async fn upload_part(&self, _key: &str, id: &str, number: i32, body: Bytes) -> Result<CompletedPart> {
        let dir = self.upload_dir(id);
        blocking(move || {
            if !dir.is_dir() {
                return Err(BackendError::NotFound);
            }
            fs::write(dir.join(number.to_string()), &body).map_err(io_err)?;
            Ok(CompletedPart { number, etag: format!("\"p{number}\"") })
        })
        .await
    }

    async fn complete_multipart_if(
        &self,
        key: &str,
        id: &str,
        parts: Vec<CompletedPart>,
        cond: &Condition,
    ) -> Result<ObjectMeta> {
        let (path, key, dir, cond) = (self.path(key)?, key.to_string(), self.upload_dir(id), cond.clone());
        blocking(move || {
            let user: UserMeta = serde_json::from_slice(&fs::read(dir.join("user-meta.json")).map_err(io_err)?)
                .map_err(|e| BackendError::Other(e.to_string()))?;
            write_atomic(&path, &cond, |out, tmp| {
                for p in &parts {
                    io::copy(&mut File::open(dir.join(p.number.to_string()))?, out)?;
                }
                write_user(tmp, &user).map_err(io::Error::other)
            })?;
            let _ = fs::remove_dir_all(&dir);
            with_user(meta_of(key, &fs::metadata(&path).map_err(io_err)?), &path)
        })
        .await
    }

    async fn abort_multipart(&self, _key: &str, id: &str) -> Result<()> {
        let dir = self.upload_dir(id);
        blocking(move || match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(e)),
            _ => Ok(()),
        })
        .await
    }

    async fn copy(&self, src: &str, dst: &str) -> Result<Option<String>> {
        let (src, dst, marker) = (self.path(src)?, self.path(dst)?, src.ends_with('/'));
        blocking(move || {
            if marker {
                fs::create_dir_all(&dst).map_err(io_err)?;
                write_user(&dst, &read_user(&src)?)?;
                return Ok(None);
            }
            let mut input = File::open(&src).map_err(io_err)?;
            let user = read_user(&src)?;
            write_atomic(&dst, &Condition::Always, |out, tmp| {
                io::copy(&mut input, out)?;
                write_user(tmp, &user).map_err(io::Error::other)
            })?;
            Ok(meta_of(String::new(), &fs::metadata(&dst).map_err(io_err)?).etag)
        })
        .await
    }

    async fn set_user_meta(&self, key: &str, user: &UserMeta) -> Result<ObjectMeta> {
        let (path, key, user) = (self.path(key)?, key.to_string(), user.clone());
        blocking(move || {
            write_user(&path, &user)?;
            with_user(meta_of(key, &fs::metadata(&path).map_err(io_err)?), &path)
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let (path, is_dir) = (self.path(key)?, key.ends_with('/'));
        blocking(move || {
            let r = if is_dir { fs::remove_dir(&path) } else { fs::remove_file(&path) };
            match r {
                // S3 deletes are idempotent; a non-empty dir keeps its implicit existence.
                Err(e) if !matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::DirectoryNotEmpty) => {
                    Err(io_err(e))
                }
                _ => Ok(()),
            }
        })
        .await
    }
}
