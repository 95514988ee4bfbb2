//! POSIX semantics over an object store: inodes, handles, errno. No fuser or SDK types.

pub mod attr;
pub mod error;
pub mod file;
pub mod handle;
pub mod inode;
mod metadata;
pub mod open_file;
pub mod rename;
mod write;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use bytes::Bytes;

pub use attr::{Attr, Kind, Ownership, Posix};
pub use error::{FsError, FsResult};
use handle::{Handle, OpenHandle};
use inode::{Found, Inode, InodeTable};
use open_file::OpenFiles;

use crate::backend::{BackendError, DynStore};
use crate::data::{MemoryBudget, PrefetchConfig, StagingArea, StagingConfig, UploadConfig, Uploader};
use crate::meta::{
    list_dir, read_metadata, valid_name, DirCache, DirEntry, Entries, MetaConfig, MetadataOnList, NegativeCache,
    PosixCache, AUTO_LIMIT,
};

#[derive(Clone, Debug, Default)]
pub struct FsOptions {
    /// The store's name, for the `store` label of its metrics.
    pub store_name: String,
    pub read_only: bool,
    pub owner: Ownership,
    pub meta: MetaConfig,
    pub prefetch: PrefetchConfig,
    pub upload: UploadConfig,
    pub staging: StagingConfig,
    pub max_memory: u64,
    /// Commits are conditional on the version they started from (`If-Match`, and
    /// `If-None-Match: *` for O_EXCL creates), so a writer on another machine is never
    /// overwritten silently. On only where the server enforces the conditions (probed
    /// at mount: `backend::enforces_conditions`).
    pub conditional_writes: bool,
    /// Where the object metadata HEADs learned is kept across mounts, and the
    /// identity of the store it describes (see `PosixCache::open`); `None`: memory only.
    pub known_file: Option<(std::path::PathBuf, String)>,
    /// The persistent data cache (`--cache`) as this store sees it; `None`: off.
    pub data_cache: Option<crate::data::StoreCache>,
}

/// What `setattr` asks to change.
#[derive(Clone, Copy, Debug, Default)]
pub struct SetAttr {
    pub size: Option<u64>,
    /// The handle an ftruncate(2) came through: its opener's close then commits the
    /// new size, as it would a write.
    pub fh: Option<u64>,
    pub mtime: Option<SystemTime>,
    pub atime: Option<SystemTime>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

#[derive(Clone, Copy, Debug)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
}

/// The largest file (bytes) that handles only reading it keep whole when its name is
/// unlinked: it is copied to the staging area first. Larger ones are not downloaded.
const ORPHAN_COPY_LIMIT: u64 = 64 * 1024 * 1024;

/// The version a directory's remembered metadata is filed under: common prefixes
/// have no ETag, and a directory's mode changes only through chmod.
const DIR_VERSION: &str = "dir";

type SharedHandle = Arc<tokio::sync::Mutex<OpenHandle>>;

/// What the kernel caches of file contents, as far as the fs layer must manage it:
/// implemented by the FUSE adapter with invalidation notifications; nothing to do
/// without a kernel (unit tests).
pub trait KernelCache: Send + Sync {
    /// Drops the kernel's cached pages of inode `ino` that overlap bytes
    /// `offset..offset + len`. Must not be called on the FUSE session's thread nor with
    /// a lock held that a FUSE request may wait for: the kernel may wait for a read in
    /// flight before it answers.
    fn invalidate(&self, ino: u64, offset: u64, len: u64);
}

/// The kernel cache hook, set once the session exists.
#[derive(Default)]
struct KernelCacheSlot(std::sync::OnceLock<Box<dyn KernelCache>>);

impl KernelCacheSlot {
    fn invalidate(&self, ino: u64, offset: u64, len: u64) {
        if let Some(k) = self.0.get() {
            k.invalidate(ino, offset, len);
        }
    }
}

pub struct Fs {
    store: DynStore,
    opts: FsOptions,
    inodes: Mutex<InodeTable>,
    negative: NegativeCache,
    listings: DirCache,
    known: PosixCache,
    handles: Mutex<HashMap<u64, (u64, SharedHandle)>>,
    /// The shared state of every file with an open handle, by inode.
    files: OpenFiles,
    kernel_cache: KernelCacheSlot,
    metrics: Arc<crate::metrics::StoreMetrics>,
    next_fh: AtomicU64,
    /// Read-only opens of wholly cached files may be passthrough (see `enable_passthrough`).
    passthrough: std::sync::atomic::AtomicBool,
    budget: MemoryBudget,
    uploader: Uploader,
    staging: StagingArea,
    mount_time: SystemTime,
}

impl Fs {
    /// A file system over `store` with its own memory budget (`opts.max_memory`, or the
    /// default) and staging area.
    pub fn new(store: DynStore, opts: FsOptions) -> Self {
        let max_memory =
            if opts.max_memory == 0 { crate::data::mem_limit::default_budget_bytes() } else { opts.max_memory };
        let staging = StagingArea::new(&opts.staging);
        Self::sharing(store, opts, MemoryBudget::new(max_memory), staging)
    }

    /// A file system over `store` that draws buffers from `budget` and stages files in
    /// `staging`, both shared with the other stores mounted by this process.
    pub fn sharing(store: DynStore, opts: FsOptions, budget: MemoryBudget, staging: StagingArea) -> Self {
        let mount_time = SystemTime::now();
        let metrics = crate::metrics::for_store(&opts.store_name);
        Self {
            uploader: Uploader::new(store.clone(), opts.upload.clone(), budget.clone()),
            staging,
            store,
            negative: NegativeCache::new(opts.meta.negative_ttl, opts.meta.negative_capacity),
            listings: DirCache::new(opts.meta, opts.meta.listing_capacity),
            known: match &opts.known_file {
                Some((path, identity)) => PosixCache::open(opts.meta.posix_capacity, path, identity),
                None => PosixCache::new(opts.meta.posix_capacity),
            },
            budget,
            opts,
            inodes: Mutex::new(InodeTable::new(mount_time)),
            handles: Mutex::new(HashMap::new()),
            files: OpenFiles::default(),
            kernel_cache: KernelCacheSlot::default(),
            metrics,
            next_fh: AtomicU64::new(1),
            passthrough: Default::default(),
            mount_time,
        }
    }

    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// This store's metrics (the `store` label).
    /// The store's name in the config (`[stores.NAME]`), as logs and metrics label it.
    pub fn store_name(&self) -> &str {
        &self.opts.store_name
    }

    pub fn metrics(&self) -> &crate::metrics::StoreMetrics {
        &self.metrics
    }

    /// Lets the fs drop pages the kernel caches (see `KernelCache`); set once, by the
    /// adapter, when the session exists.
    pub fn set_kernel_cache(&self, k: Box<dyn KernelCache>) {
        if self.kernel_cache.0.set(k).is_err() {
            tracing::warn!("the kernel cache hook was set twice; keeping the first");
        }
    }

    fn attr_of(&self, i: &Inode) -> Attr {
        let (o, p) = (&self.opts.owner, &i.posix);
        let default_perm = match i.kind {
            Kind::Dir => o.dir_mode,
            Kind::Symlink => 0o777,
            _ => o.file_mode,
        };
        // A directory's entries changing here moves its times (kept in memory).
        let mtime = i.touched.or(p.mtime).unwrap_or(i.mtime);
        // The stored change time (written with every upload and metadata change made
        // here or by s3fs) or, for objects written without one, the Last-Modified;
        // a directory's entries changing here moves it too. The Last-Modified is not
        // compared with a stored ctime: after our own PUT it is the client's clock,
        // after a HEAD the server's in whole seconds.
        let ctime = [p.ctime.or(Some(i.mtime)), i.touched].into_iter().flatten().max().unwrap_or(mtime);
        Attr {
            ino: i.ino,
            kind: i.kind,
            size: i.size,
            mtime,
            ctime,
            atime: p.atime.unwrap_or(mtime),
            perm: p.mode.map_or(default_perm, |m| (m & 0o7777) as u16),
            uid: p.uid.unwrap_or(o.uid),
            gid: p.gid.unwrap_or(o.gid),
            rdev: if i.kind.is_special() { p.rdev.unwrap_or(0) } else { 0 },
            nlink: if i.kind == Kind::Dir { 2 } else { 1 },
        }
    }

    /// Remembers the POSIX metadata a HEAD returned (kept on disk, with its version).
    fn learn(&self, m: &crate::backend::ObjectMeta) {
        if let Some(user) = &m.user {
            self.known.insert_seen(&m.key, m.etag.as_deref(), m.last_modified, Posix::from_user(user));
        }
    }

    /// Remembers the POSIX metadata our own upload stored.
    fn learn_written(&self, m: &crate::backend::ObjectMeta) {
        if let Some(user) = &m.user {
            self.known.insert(&m.key, m.etag.as_deref(), Posix::from_user(user));
        }
    }

    /// The key and the version under which the metadata of a listed entry is known.
    fn version_of<'a>(prefix: &str, e: &'a DirEntry) -> (String, Option<&'a str>) {
        match e.found.kind {
            Kind::Dir => (format!("{prefix}{}/", e.name), Some(DIR_VERSION)),
            _ => (format!("{prefix}{}", e.name), e.found.etag.as_deref()),
        }
    }

    /// Gives listed entries the metadata known for their exact version (a listing
    /// carries none).
    fn recall(&self, prefix: &str, entries: &mut [DirEntry]) {
        if self.known.is_empty() {
            return; // nothing known yet: a plain listing stays cheap
        }
        for e in entries.iter_mut().filter(|e| e.found.posix.is_none()) {
            let (key, etag) = Self::version_of(prefix, e);
            let modified = (e.found.kind != Kind::Dir).then_some(e.found.mtime);
            if let Some(p) = self.known.get(&key, etag, modified) {
                e.found.posix = Some(p);
                if e.found.kind != Kind::Dir {
                    e.found.kind = p.kind().filter(|k| *k != Kind::Dir).unwrap_or(Kind::File);
                }
            }
        }
    }

    /// HEADs the listed entries whose metadata is not known, as `--metadata-on-list`
    /// says, and remembers what they said.
    async fn complete_listing(&self, prefix: &str, entries: &mut [DirEntry]) -> FsResult<()> {
        let head = match self.opts.meta.metadata_on_list {
            MetadataOnList::Always => true,
            MetadataOnList::Auto => entries.len() <= AUTO_LIMIT,
            MetadataOnList::Never => false,
        };
        match head {
            true => self.head_unknown(prefix, entries).await,
            false => Ok(()),
        }
    }

    /// HEADs the entries whose metadata is not known and remembers what they said.
    async fn head_unknown(&self, prefix: &str, entries: &mut [DirEntry]) -> FsResult<()> {
        if entries.iter().all(|e| e.found.posix.is_some()) {
            return Ok(());
        }
        let unknown: std::collections::HashSet<String> =
            entries.iter().filter(|e| e.found.posix.is_none()).map(|e| e.name.clone()).collect();
        read_metadata(&*self.store, prefix, entries, |e| e.found.posix.is_none()).await?;
        for e in entries.iter().filter(|e| unknown.contains(&e.name)) {
            let (key, etag) = Self::version_of(prefix, e);
            match (e.found.posix, e.found.kind) {
                (Some(p), Kind::Dir) => self.known.insert(&key, etag, p),
                (Some(p), _) => self.known.insert_seen(&key, etag, e.found.mtime, p),
                (None, _) => {}
            }
        }
        Ok(())
    }

    /// Remembers a directory's metadata (listings show directories without an ETag).
    fn learn_dir(&self, key: &str, posix: Posix) {
        self.known.insert(key, Some(DIR_VERSION), posix);
    }

    fn inode(&self, ino: u64) -> FsResult<Inode> {
        self.inodes.lock().unwrap().get(ino).cloned().ok_or(FsError::NotFound)
    }

    fn dir(&self, ino: u64) -> FsResult<Inode> {
        let i = self.inode(ino)?;
        match i.kind {
            Kind::Dir => Ok(i),
            _ => Err(FsError::NotDir),
        }
    }

    fn check_writable(&self) -> FsResult<()> {
        if self.opts.read_only {
            return Err(FsError::ReadOnly);
        }
        Ok(())
    }

    fn check_name(name: &str) -> FsResult<()> {
        if name.len() > 255 {
            return Err(FsError::NameTooLong);
        }
        if !valid_name(name) {
            return Err(FsError::InvalidName);
        }
        Ok(())
    }

    /// A cached child that is still fresh (or being written here).
    fn cached_child(&self, parent: u64, name: &str) -> Option<Inode> {
        let table = self.inodes.lock().unwrap();
        let c = table.child(parent, name)?;
        let fresh = c.writing || c.kind == Kind::Dir || self.opts.meta.fresh(c.validated);
        fresh.then(|| c.clone())
    }

    /// Asks the backend what `path` is: a directory if anything lies below `path/`,
    /// else a file if the object exists. Both requests run in parallel.
    async fn probe(&self, path: &str) -> FsResult<Option<Found>> {
        let dir_prefix = format!("{path}/");
        let (head, list) =
            tokio::join!(self.store.head(path), self.store.list_page(&dir_prefix, Some("/"), None, Some(1)));
        let list = list?;
        if !list.objects.is_empty() || !list.prefixes.is_empty() {
            // A marker object (`path/`, listed first) carries the directory's metadata.
            let marker = list.objects.first().is_some_and(|o| o.key == dir_prefix);
            return Ok(Some(self.dir_found(path, marker).await?));
        }
        match head {
            Ok(m) => {
                self.learn(&m);
                Ok(Some(Found::object(&m)))
            }
            Err(BackendError::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// What a lookup found of directory `path`: with the metadata its marker stores
    /// (known, or read by a HEAD) unless `--metadata-on-list never`; an implicit
    /// directory (no marker) stores none.
    async fn dir_found(&self, path: &str, marker: bool) -> FsResult<Found> {
        let mut found = Found::dir(self.mount_time);
        if !marker {
            found.posix = Some(Posix::default());
            return Ok(found);
        }
        let key = format!("{path}/");
        if let Some(p) = self.known.get(&key, Some(DIR_VERSION), None) {
            found.posix = Some(p);
            return Ok(found);
        }
        if self.opts.meta.metadata_on_list == MetadataOnList::Never {
            return Ok(found);
        }
        let (prefix, name) = match path.rsplit_once('/') {
            Some((parent, name)) => (format!("{parent}/"), name),
            None => (String::new(), path),
        };
        let mut one = [DirEntry { name: name.to_string(), found }];
        self.head_unknown(&prefix, &mut one).await?;
        let [e] = one;
        Ok(e.found)
    }

    /// A directory whose listing expired is listed again rather than probed name by
    /// name once that is cheaper (`DirCache::worth_relisting`), so `cp -r` into it
    /// keeps costing one PUT per file, not a HEAD and a LIST more. The new listing then
    /// answers as any fresh one does. `None`: probe instead.
    async fn relist_lookup(&self, parent: u64, dir: &Inode, name: &str) -> FsResult<Option<Option<Found>>> {
        // When a listing costs a HEAD per entry, it is never cheaper than a probe.
        // (Under `auto` a listing HEADs only entries it does not know, which a `cp -r`
        // into the directory wrote itself.)
        if self.opts.meta.metadata_on_list == MetadataOnList::Always || !self.listings.worth_relisting(parent) {
            return Ok(None);
        }
        let entries = self.fetch_listing(parent, dir).await?;
        let at = entries.binary_search_by(|e| e.name.as_str().cmp(name));
        Ok(Some(at.ok().map(|i| entries[i].found.clone())))
    }

    /// Lists `dir` from the store, with each entry's metadata as `--metadata-on-list`
    /// says, and caches the listing.
    async fn fetch_listing(&self, ino: u64, dir: &Inode) -> FsResult<Entries> {
        let started = Instant::now();
        let prefix = dir.key();
        let mut listed = list_dir(&*self.store, &prefix, self.mount_time).await?;
        for e in listed.iter_mut() {
            e.found.seen = started;
        }
        self.recall(&prefix, &mut listed);
        self.complete_listing(&prefix, &mut listed).await?;
        let listed = Arc::new(listed);
        self.listings.put_listed(ino, listed.clone(), started);
        Ok(listed)
    }

    /// What a listing said of an entry, with its metadata read by a HEAD if the
    /// listing did not have it: a path looked up on its own never shows a default
    /// where something is stored (`--metadata-on-list never` skips this).
    async fn complete_found(&self, dir: &Inode, name: &str, found: Option<Found>) -> FsResult<Option<Found>> {
        let f = match found {
            Some(f) if f.posix.is_none() => f,
            other => return Ok(other),
        };
        if self.opts.meta.metadata_on_list == MetadataOnList::Never {
            return Ok(Some(f));
        }
        let mut one = [DirEntry { name: name.to_string(), found: f }];
        self.head_unknown(&dir.key(), &mut one).await?;
        let [e] = one;
        Ok(Some(e.found))
    }

    /// Resolves `parent/name` without taking a kernel reference.
    async fn resolve(&self, parent: u64, name: &str) -> FsResult<Inode> {
        Self::check_name(name).map_err(|e| match e {
            FsError::InvalidName => FsError::NotFound,
            e => e,
        })?;
        let dir = self.dir(parent)?;
        let m = &self.metrics;
        if let Some(c) = self.cached_child(parent, name) {
            m.cache("entry", true);
            return Ok(c);
        }
        if self.negative.contains(parent, name) {
            m.cache("negative", true);
            return Err(FsError::NotFound);
        }
        let asked = Instant::now();
        let found = match self.listings.lookup(parent, name) {
            Some(listed) => {
                m.cache("listing", true);
                self.complete_found(&dir, name, listed).await?
            }
            None => {
                m.cache("entry", false);
                match self.relist_lookup(parent, &dir, name).await? {
                    Some(listed) => self.complete_found(&dir, name, listed).await?,
                    None => self.probe(&dir.child_path(name)).await?.map(|f| Found { seen: asked, ..f }),
                }
            }
        };
        let mut table = self.inodes.lock().unwrap();
        // What the store said while this mount created or changed the name (a create
        // racing this lookup) is older than what the mount knows: the mount's wins.
        if let Some(c) = table.child(parent, name).filter(|c| c.writing || c.validated > asked) {
            return Ok(c.clone());
        }
        match found {
            Some(found) => {
                let ino = table.upsert(parent, name, found);
                Ok(table.get(ino).cloned().expect("just inserted"))
            }
            None => {
                table.unlink(parent, name);
                drop(table);
                self.negative.insert(parent, name);
                Err(FsError::NotFound)
            }
        }
    }

    pub async fn lookup(&self, parent: u64, name: &str) -> FsResult<Attr> {
        let i = self.resolve(parent, name).await?;
        self.inodes.lock().unwrap().add_lookup(i.ino);
        Ok(self.attr_of(&i))
    }

    pub fn forget(&self, ino: u64, n: u64) {
        self.inodes.lock().unwrap().forget(ino, n);
    }

    pub async fn getattr(&self, ino: u64) -> FsResult<Attr> {
        let (i, orphan) = {
            let table = self.inodes.lock().unwrap();
            let i = table.get(ino).cloned().ok_or(FsError::NotFound)?;
            // Unlinked (or renamed over) while open: its name now means another object,
            // or none; fstat of the open file must not ask the store about that name.
            let orphan = ino != inode::ROOT_INO && table.child(i.parent, &i.name).map(|c| c.ino) != Some(ino);
            (i, orphan)
        };
        if orphan {
            return Ok(Attr { nlink: 0, ..self.attr_of(&i) });
        }
        let fresh = i.kind == Kind::Dir || i.writing || self.opts.meta.fresh(i.validated);
        self.metrics.cache("attr", fresh);
        if fresh {
            return Ok(self.attr_of(&i));
        }
        let m = self.store.head(&i.key()).await?;
        self.learn(&m);
        let mut table = self.inodes.lock().unwrap();
        let cur = table.get_mut(ino).ok_or(FsError::NotFound)?;
        if !cur.writing {
            if let Some(user) = &m.user {
                cur.posix = Posix::from_user(user);
            }
            (cur.size, cur.mtime, cur.etag, cur.validated) = (m.size, m.last_modified, m.etag, Instant::now());
        }
        Ok(self.attr_of(cur))
    }

    /// The path a new entry `parent/name` will have, once sure nothing is there yet.
    async fn vacant(&self, parent: u64, name: &str) -> FsResult<String> {
        self.check_writable()?;
        Self::check_name(name)?;
        let dir = self.dir(parent)?;
        match self.resolve(parent, name).await {
            Ok(_) => Err(FsError::Exists),
            Err(FsError::NotFound) => Ok(dir.child_path(name)),
            Err(e) => Err(e),
        }
    }

    pub async fn mkdir(&self, parent: u64, name: &str, mode: u32) -> FsResult<Attr> {
        let path = self.vacant(parent, name).await?;
        let posix = self.initial_posix(Kind::Dir, mode);
        let mut user = crate::backend::UserMeta::new();
        posix.merge_into(&mut user);
        self.store.put_with(&format!("{path}/"), Bytes::new(), &user).await?;
        self.learn_dir(&format!("{path}/"), posix);
        self.touch_dir(parent);
        self.negative.remove(parent, name);
        let found = Found { posix: Some(posix), ..Found::dir(SystemTime::now()) };
        self.listings.upsert(parent, name, found.clone());
        let mut table = self.inodes.lock().unwrap();
        let ino = table.upsert(parent, name, found);
        table.add_lookup(ino);
        if let Some(d) = table.get_mut(ino) {
            d.touched = posix.mtime; // its times are the creation's until an entry changes
        }
        self.listings.put(ino, Arc::default()); // a new directory is empty: lookups in it cost nothing
        Ok(self.attr_of(table.get(ino).expect("just inserted")))
    }

    pub async fn unlink(&self, parent: u64, name: &str) -> FsResult<()> {
        self.check_writable()?;
        let i = self.resolve(parent, name).await?;
        if i.kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        self.prepare_orphans(i.ino).await?;
        self.orphaning(i.ino, async { Ok(self.store.delete(&i.key()).await?) }).await?;
        self.forget_name(parent, name);
        Ok(())
    }

    /// Runs `op`, the request that removes or replaces the object of `ino` (unlink,
    /// rename over it), with the file's open state locked, and marks the state orphaned
    /// when it succeeds: its handles keep working but never bring the name back. A
    /// commit racing it (the release of a handle closed just before) lands either
    /// before `op`, or after the mark, and then uploads nothing: a deleted lock file
    /// never comes back as an empty object.
    pub(super) async fn orphaning<T>(
        &self,
        ino: u64,
        op: impl std::future::Future<Output = FsResult<T>>,
    ) -> FsResult<T> {
        let file = self.files.get(ino);
        let mut state = match &file {
            Some(f) => Some(f.lock().await),
            None => None,
        };
        let r = op.await;
        if let (Ok(_), Some(s)) = (&r, state.as_mut()) {
            s.unlinked = true;
            s.base = None; // the object it built on is gone
        }
        r
    }

    /// Before the object goes (unlink, rename over it): an open file fetches what it
    /// still needs from it, so the programs holding it keep reading and writing a
    /// whole file. A file only read is kept when at most `ORPHAN_COPY_LIMIT` bytes;
    /// beyond that its readers keep what they fetched and later reads fail (ESTALE).
    pub(super) async fn prepare_orphans(&self, ino: u64) -> FsResult<()> {
        let Some(file) = self.files.get(ino) else { return Ok(()) };
        let mut s = file.lock().await;
        let keep = s.writers > 0 || s.is_local() || s.size() <= ORPHAN_COPY_LIMIT;
        let streamed = s.upload.as_ref().is_some_and(|u| u.sent_any());
        if keep && !streamed {
            self.staged(ino, &mut s).await?.detach().await?;
        }
        Ok(())
    }

    /// `parent/name` is gone (our unlink/rmdir, a failed first upload).
    fn forget_name(&self, parent: u64, name: &str) {
        self.touch_dir(parent);
        self.inodes.lock().unwrap().unlink(parent, name);
        self.listings.remove(parent, name);
        self.negative.insert(parent, name);
    }

    pub async fn rmdir(&self, parent: u64, name: &str) -> FsResult<()> {
        self.check_writable()?;
        let i = self.resolve(parent, name).await?;
        if i.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        if !self.dir_is_empty(&i).await? {
            return Err(FsError::NotEmpty);
        }
        self.store.delete(&i.key()).await?;
        self.known.forget(&i.key());
        self.listings.invalidate(i.ino);
        self.forget_name(parent, name);
        Ok(())
    }

    pub fn statfs(&self) -> StatFs {
        // Object stores have no fixed capacity: report a large, mostly free volume.
        StatFs { blocks: 1 << 38, bfree: 1 << 38, files: 1 << 32, ffree: 1 << 32, bsize: 4096, namelen: 255 }
    }

    pub async fn opendir(&self, ino: u64) -> FsResult<u64> {
        let dir = self.dir(ino)?;
        let cached = self.listings.get(ino);
        self.metrics.cache("listing", cached.is_some());
        let mut entries = match cached {
            Some(cached) => cached,
            None => self.fetch_listing(ino, &dir).await?,
        };
        // Files still being written here exist for this mount before they reach the store.
        let local: Vec<DirEntry> = {
            let listed = |name: &str| entries.binary_search_by(|e| e.name.as_str().cmp(name)).is_ok();
            let table = self.inodes.lock().unwrap();
            let writing = table.children(ino).filter(|c| c.writing && !listed(&c.name));
            writing.map(|c| DirEntry { name: c.name.clone(), found: Found { etag: None, ..c.found() } }).collect()
        };
        if !local.is_empty() {
            let all = Arc::make_mut(&mut entries);
            all.extend(local);
            all.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(self.add_handle(ino, Handle::Dir(entries)))
    }

    /// Feeds entries from `offset` to `add(next_offset, name, attr)` until it reports a
    /// full buffer. With `plus`, every entry handed over counts as a kernel lookup.
    pub async fn readdir(
        &self,
        fh: u64,
        offset: u64,
        plus: bool,
        add: impl FnMut(u64, &str, &Attr) -> bool,
    ) -> FsResult<()> {
        let h = self.handle(fh)?;
        let h = h.lock().await;
        self.fill_dir(&h, offset, plus, add)
    }

    /// `readdir` on the caller's thread when the handle is free: the entries are in
    /// memory since opendir, so a task per call (hundreds per big listing) buys nothing.
    pub fn try_readdir_now(
        &self,
        fh: u64,
        offset: u64,
        plus: bool,
        add: impl FnMut(u64, &str, &Attr) -> bool,
    ) -> Option<FsResult<()>> {
        let h = self.handle(fh).ok()?;
        let h = h.try_lock().ok()?;
        Some(self.fill_dir(&h, offset, plus, add))
    }

    fn fill_dir(
        &self,
        h: &OpenHandle,
        offset: u64,
        plus: bool,
        mut add: impl FnMut(u64, &str, &Attr) -> bool,
    ) -> FsResult<()> {
        let Handle::Dir(entries) = &h.handle else {
            return Err(FsError::BadHandle);
        };
        let dir = self.inode(h.ino)?;
        let dots = [(".", self.attr_of(&dir)), ("..", self.attr_of(&self.inode(dir.parent).unwrap_or(dir.clone())))];
        for (idx, (name, attr)) in dots.iter().enumerate().skip(offset as usize) {
            if add(idx as u64 + 1, name, attr) {
                return Ok(());
            }
        }
        for (idx, e) in entries.iter().enumerate().skip((offset as usize).saturating_sub(2)) {
            let attr = {
                let mut table = self.inodes.lock().unwrap();
                let ino = table.upsert(h.ino, &e.name, e.found.clone());
                self.attr_of(table.get(ino).expect("just inserted"))
            };
            if add(idx as u64 + 3, &e.name, &attr) {
                self.inodes.lock().unwrap().collect(attr.ino);
                return Ok(());
            }
            let mut table = self.inodes.lock().unwrap();
            if plus {
                table.add_lookup(attr.ino);
            } else {
                table.collect(attr.ino); // plain readdir takes no reference
            }
        }
        Ok(())
    }

    pub fn releasedir(&self, fh: u64) {
        self.remove_handle(fh);
    }

    fn add_handle(&self, ino: u64, handle: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let h = Arc::new(tokio::sync::Mutex::new(OpenHandle { ino, handle }));
        self.handles.lock().unwrap().insert(fh, (ino, h));
        if let Some(i) = self.inodes.lock().unwrap().get_mut(ino) {
            i.open_handles += 1;
        }
        fh
    }

    fn handle(&self, fh: u64) -> FsResult<SharedHandle> {
        self.handles.lock().unwrap().get(&fh).map(|(_, h)| h.clone()).ok_or(FsError::BadHandle)
    }

    fn remove_handle(&self, fh: u64) -> Option<SharedHandle> {
        let (ino, h) = self.handles.lock().unwrap().remove(&fh)?;
        let mut table = self.inodes.lock().unwrap();
        if let Some(i) = table.get_mut(ino) {
            i.open_handles = i.open_handles.saturating_sub(1);
        }
        table.collect(ino);
        Some(h)
    }
}

#[cfg(test)]
mod conflict_tests;
#[cfg(test)]
mod handles_tests;
#[cfg(test)]
mod metadata_tests;
#[cfg(test)]
mod posix_tests;
#[cfg(test)]
mod rename_tests;
#[cfg(test)]
mod tests;
