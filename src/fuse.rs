//! The thin adapter between the kernel (fuser) and `fs`: decode, call, reply. Requests
//! run as tasks on the tokio runtime so a slow GET never stalls other requests.

use std::ffi::OsStr;
use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, BsdFileFlags, CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};

use crate::fs::file::{OpenMode, Opened};
use crate::fs::rename;
use crate::fs::{Attr, Fs, FsError, KernelCache, Kind, SetAttr};

const MAX_WRITE: u32 = 1024 * 1024;
pub(crate) const MAX_READAHEAD: u32 = 1024 * 1024;

pub struct FuseAdapter {
    fs: Arc<Fs>,
    rt: tokio::runtime::Handle,
    /// How long the kernel may cache entries and attributes.
    ttl: Duration,
    /// How long unmounting waits for uploads still open.
    drain: Duration,
    /// `store{name=…}` around every request, so a line in a log shared by several stores
    /// (`--all`) says which store it is about. Error level: present whatever the filter.
    span: tracing::Span,
    /// Ask the kernel for FUSE passthrough (`--cache` without `--no-passthrough`).
    want_passthrough: bool,
    backings: Arc<Backings>,
}

/// The cached files registered with the kernel for passthrough handles. The kernel
/// wants one backing file per inode for all its passthrough handles, and the
/// registration must outlive every handle opened with it (fuser's `BackingId` docs), so
/// each is kept, counted, until the last of its handles is released.
#[derive(Default)]
struct Backings {
    /// (inode, cache entry id) → the registration and its open handles.
    by_file: std::sync::Mutex<std::collections::HashMap<(u64, u64), (fuser::BackingId, u32)>>,
    /// Passthrough handle → (inode, cache entry id).
    by_handle: std::sync::Mutex<std::collections::HashMap<u64, (u64, u64)>>,
}

impl Backings {
    /// Answers open of passthrough handle `fh` with its cached file as the backing file;
    /// gives `reply` back when the kernel refuses the registration (not root, say).
    fn reply(
        &self,
        ino: u64,
        fh: u64,
        (id, file): (u64, std::fs::File),
        flags: FopenFlags,
        reply: ReplyOpen,
    ) -> Result<(), (ReplyOpen, io::Error)> {
        let mut by_file = self.by_file.lock().unwrap();
        let entry = match by_file.entry((ino, id)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => match reply.open_backing(&file) {
                Ok(b) => v.insert((b, 0)),
                Err(e) => return Err((reply, e)),
            },
        };
        entry.1 += 1;
        self.by_handle.lock().unwrap().insert(fh, (ino, id));
        // Counted before the answer: a program's open returns as soon as it is sent.
        crate::metrics::get().data_cache.passthrough_opens.inc();
        reply.opened_passthrough(FileHandle(fh), flags, &entry.0);
        Ok(())
    }

    /// Handle `fh` was released: its registration goes with the last handle using it.
    fn release(&self, fh: u64) {
        let Some(k) = self.by_handle.lock().unwrap().remove(&fh) else { return };
        let mut by_file = self.by_file.lock().unwrap();
        if let Some(e) = by_file.get_mut(&k) {
            e.1 -= 1;
            if e.1 == 0 {
                by_file.remove(&k);
            }
        }
    }
}

impl FuseAdapter {
    /// `drain`: how long unmounting waits for uploads still open (`--drain-timeout`).
    /// `passthrough`: ask the kernel to read wholly cached files itself (FUSE
    /// passthrough, Linux ≥ 6.9; registering a file needs CAP_SYS_ADMIN).
    pub fn new(fs: Arc<Fs>, rt: tokio::runtime::Handle, ttl: Duration, drain: Duration, passthrough: bool) -> Self {
        let span = tracing::error_span!("store", name = %fs.store_name());
        Self { fs, rt, ttl, drain, span, want_passthrough: passthrough, backings: Arc::default() }
    }

    /// Runs one request as a task, inside the store's span and a debug-level span named
    /// after the request.
    fn spawn<F, Fut>(&self, op: &'static str, f: F)
    where
        F: FnOnce(Arc<Fs>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        use tracing::Instrument;
        let fs = self.fs.clone();
        // The request span's parent is given: it is created on the FUSE thread, outside
        // the store span that is entered only when the task runs.
        let task = async move { f(fs).await }.instrument(tracing::debug_span!(parent: &self.span, "fuse", op));
        self.rt.spawn(task.instrument(self.span.clone()));
    }
}

/// The errno for `e`, counted in the store's metrics.
fn errno(fs: &Fs, e: &FsError) -> Errno {
    fs.metrics().error(e.errno());
    if matches!(e, FsError::NotFound) {
        tracing::trace!("ENOENT");
    } else {
        tracing::debug!(error = %e, "request failed");
    }
    Errno::from_i32(e.errno())
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDevice => FileType::CharDevice,
        Kind::BlockDevice => FileType::BlockDevice,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.mtime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: 128 * 1024,
        flags: 0,
    }
}

fn name_str(name: &OsStr) -> Result<String, Errno> {
    name.to_str().map(str::to_owned).ok_or(Errno::EINVAL)
}

fn time_of(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

macro_rules! name_or_reply {
    ($name:expr, $reply:expr) => {
        match name_str($name) {
            Ok(n) => n,
            Err(e) => return $reply.error(e),
        }
    };
}

impl Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        let caps = [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_ATOMIC_O_TRUNC,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
        ];
        for cap in caps {
            if config.add_capabilities(cap).is_err() {
                tracing::debug!(?cap, "kernel lacks capability");
            }
        }
        let _ = config.set_max_write(MAX_WRITE);
        let _ = config.set_max_readahead(MAX_READAHEAD);
        // Passthrough needs the capability and a stacking depth of 1 (the cache
        // directory is on a plain file system); the kernel turns it off if it cannot.
        if self.want_passthrough {
            match config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok() && config.set_max_stack_depth(1).is_ok()
            {
                true => self.fs.enable_passthrough(),
                false => tracing::info!(
                    "the kernel offers no FUSE passthrough (Linux ≥ 6.9); cached files are served by this process"
                ),
            }
        }
        Ok(())
    }

    /// Unmounted: commit what is still open, for at most `--drain-timeout`; then the
    /// uploads that could not finish are aborted (or named in the log as left).
    fn destroy(&mut self) {
        let (fs, drain) = (self.fs.clone(), self.drain);
        let _store = self.span.enter();
        self.rt.block_on(async move {
            match tokio::time::timeout(drain, fs.drain()).await {
                Ok(0) => {}
                Ok(failed) => tracing::error!(failed, "uploads failed while unmounting"),
                Err(_) => {
                    tracing::error!(?drain, "uploads still running after --drain-timeout; abandoning them");
                    let _ = tokio::time::timeout(Duration::from_secs(3), fs.abandon()).await;
                }
            }
        });
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name_or_reply!(name, reply);
        let ttl = self.ttl;
        self.spawn("lookup", move |fs| async move {
            match fs.lookup(parent.0, &name).await {
                Ok(a) => reply.entry(&ttl, &file_attr(&a), Generation(0)),
                Err(e) => reply.error(errno(&fs, &e)),
            }
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let ttl = self.ttl;
        self.spawn("getattr", move |fs| async move {
            match fs.getattr(ino.0).await {
                Ok(a) => reply.attr(&ttl, &file_attr(&a)),
                Err(e) => reply.error(errno(&fs, &e)),
            }
        });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set =
            SetAttr { size, fh: fh.map(|f| f.0), mtime: mtime.map(time_of), atime: atime.map(time_of), mode, uid, gid };
        let ttl = self.ttl;
        self.spawn("setattr", move |fs| async move {
            match fs.setattr(ino.0, set).await {
                Ok(a) => reply.attr(&ttl, &file_attr(&a)),
                Err(e) => reply.error(errno(&fs, &e)),
            }
        });
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, _umask: u32, reply: ReplyEntry) {
        let name = name_or_reply!(name, reply);
        let (ttl, uid, gid) = (self.ttl, req.uid(), req.gid());
        self.spawn("mkdir", move |fs| async move {
            let made = match fs.mkdir(parent.0, &name, mode).await {
                Ok(a) => fs.owned_by(parent.0, a, uid, gid).await,
                Err(e) => Err(e),
            };
            match made {
                Ok(a) => reply.entry(&ttl, &file_attr(&a), Generation(0)),
                Err(e) => reply.error(errno(&fs, &e)),
            }
        });
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let name = name_or_reply!(link_name, reply);
        let target = name_or_reply!(target.as_os_str(), reply);
        let (ttl, uid, gid) = (self.ttl, req.uid(), req.gid());
        self.spawn("symlink", move |fs| async move {
            let made = match fs.symlink(parent.0, &name, &target).await {
                Ok(a) => fs.owned_by(parent.0, a, uid, gid).await,
                Err(e) => Err(e),
            };
            match made {
                Ok(a) => reply.entry(&ttl, &file_attr(&a), Generation(0)),
                Err(e) => reply.error(errno(&fs, &e)),
            }
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.spawn("readlink", move |fs| async move {
            match fs.readlink(ino.0).await {
                Ok(target) => reply.data(&target),
                Err(e) => reply.error(errno(&fs, &e)),
            }
        });
    }

    fn link(&self, _req: &Request, _ino: INodeNo, _newparent: INodeNo, _newname: &OsStr, reply: ReplyEntry) {
        reply.error(Errno::EPERM); // object stores have no hard links (what Linux answers for such filesystems)
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let name = name_or_reply!(name, reply);
        let (ttl, uid, gid) = (self.ttl, req.uid(), req.gid());
        self.spawn("mknod", move |fs| async move {
            let made = match fs.mknod(parent.0, &name, mode, rdev).await {
                Ok(a) => fs.owned_by(parent.0, a, uid, gid).await,
                Err(e) => Err(e),
            };
            match made {
                Ok(a) => reply.entry(&ttl, &file_attr(&a), Generation(0)),
                Err(e) => reply.error(errno(&fs, &e)),
            }
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name_or_reply!(name, reply);
        self.spawn("unlink", move |fs| async move { empty(&fs, reply, fs.unlink(parent.0, &name).await) });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name_or_reply!(name, reply);
        self.spawn("rmdir", move |fs| async move { empty(&fs, reply, fs.rmdir(parent.0, &name).await) });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let name = name_or_reply!(name, reply);
        let newname = name_or_reply!(newname, reply);
        let flags = rename::RenameFlags {
            noreplace: flags.contains(RenameFlags::RENAME_NOREPLACE),
            exchange: flags.contains(RenameFlags::RENAME_EXCHANGE),
        };
        self.spawn("rename", move |fs| async move {
            empty(&fs, reply, fs.rename(parent.0, &name, newparent.0, &newname, flags).await)
        });
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        _ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        self.spawn("copy_file_range", move |fs| async move {
            match fs.copy_file_range(fh_in.0, offset_in, fh_out.0, offset_out, len).await {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(errno(&fs, &e)),
            }
        });
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let (mode, pid) = (OpenMode::from_flags(flags.0), req.pid());
        let backings = self.backings.clone();
        self.spawn("open", move |fs| async move {
            let o = match fs.open(ino.0, mode, pid).await {
                Ok(o) => o,
                Err(e) => return reply.error(errno(&fs, &e)),
            };
            let file = match o.passthrough {
                true => fs.passthrough_file(o.fh).await,
                false => None,
            };
            let Some(file) = file else {
                if o.passthrough {
                    fs.passthrough_refused(o.fh, false).await; // no descriptor (EMFILE, say)
                }
                return reply.opened(FileHandle(o.fh), fopen_flags(&o));
            };
            if let Err((reply, e)) = backings.reply(ino.0, o.fh, file, fopen_flags(&o), reply) {
                tracing::warn!(error = %e, "the kernel refused a passthrough file (needs root); cached files are served by this process");
                fs.passthrough_refused(o.fh, true).await;
                reply.opened(FileHandle(o.fh), fopen_flags(&o));
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        // Read-ahead may start fetches from this thread, so it must see the runtime.
        let _runtime = self.rt.enter();
        if let Some(r) = self.fs.try_read_now(fh.0, offset, size) {
            return match r {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(errno(&self.fs, &e)),
            };
        }
        self.spawn("read", move |fs| async move {
            match fs.read(fh.0, offset, size).await {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(errno(&fs, &e)),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if let Some(n) = self.fs.try_write_now(fh.0, offset, data) {
            return reply.written(n);
        }
        let data = data.to_vec();
        self.spawn("write", move |fs| async move {
            match fs.write(fh.0, offset, &data).await {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(errno(&fs, &e)),
            }
        });
    }

    fn flush(&self, req: &Request, _ino: INodeNo, fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        let pid = req.pid();
        self.spawn("flush", move |fs| async move { empty(&fs, reply, fs.flush(fh.0, pid).await) });
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let backings = self.backings.clone();
        self.spawn("release", move |fs| async move {
            let result = fs.release(fh.0).await;
            backings.release(fh.0);
            empty(&fs, reply, result)
        });
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        self.spawn("fsync", move |fs| async move { empty(&fs, reply, fs.fsync(fh.0).await) });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.spawn("opendir", move |fs| async move {
            match fs.opendir(ino.0).await {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(errno(&fs, &e)),
            }
        });
    }

    fn readdir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let add = |reply: &mut ReplyDirectory, next, name: &str, a: &Attr| {
            reply.add(INodeNo(a.ino), next, file_type(a.kind), name)
        };
        if let Some(r) = self.fs.try_readdir_now(fh.0, offset, false, |next, name, a| add(&mut reply, next, name, a)) {
            return reply.done(&self.fs, r);
        }
        self.spawn("readdir", move |fs| async move {
            let r = fs.readdir(fh.0, offset, false, |next, name, a| add(&mut reply, next, name, a)).await;
            reply.done(&fs, r)
        });
    }

    fn readdirplus(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let ttl = self.ttl;
        let add = move |reply: &mut ReplyDirectoryPlus, next, name: &str, a: &Attr| {
            reply.add(INodeNo(a.ino), next, name, &ttl, &file_attr(a), Generation(0))
        };
        if let Some(r) = self.fs.try_readdir_now(fh.0, offset, true, |next, name, a| add(&mut reply, next, name, a)) {
            return reply.done(&self.fs, r);
        }
        self.spawn("readdirplus", move |fs| async move {
            let r = fs.readdir(fh.0, offset, true, |next, name, a| add(&mut reply, next, name, a)).await;
            reply.done(&fs, r)
        });
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply.ok(); // directory entries are written through at once
    }

    fn getxattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, _size: u32, reply: fuser::ReplyXattr) {
        reply.error(Errno::ENOSYS); // the kernel then stops asking (e.g. security.capability)
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: fuser::ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.fs.statfs();
        reply.statfs(s.blocks, s.bfree, s.bfree, s.files, s.ffree, s.bsize, s.namelen, s.bsize);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        reply.ok(); // permissions are checked by the kernel (default_permissions)
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let name = name_or_reply!(name, reply);
        let (ttl, pid, uid, gid) = (self.ttl, req.pid(), req.uid(), req.gid());
        let how = OpenMode::from_flags(flags);
        self.spawn("create", move |fs| async move {
            let made = match fs.create_with(parent.0, &name, mode, how, pid).await {
                Ok((a, o)) => match fs.owned_by(parent.0, a, uid, gid).await {
                    Ok(a) => Ok((a, o)),
                    Err(e) => {
                        let _ = fs.release(o.fh).await; // the kernel never saw this handle
                        Err(e)
                    }
                },
                Err(e) => Err(e),
            };
            match made {
                Ok((a, o)) => reply.created(&ttl, &file_attr(&a), Generation(0), FileHandle(o.fh), fopen_flags(&o)),
                Err(e) => reply.error(errno(&fs, &e)),
            }
        });
    }
}

fn fopen_flags(o: &Opened) -> FopenFlags {
    let mut flags = FopenFlags::empty();
    if o.keep_cache {
        flags |= FopenFlags::FOPEN_KEEP_CACHE;
    }
    if o.direct_io {
        flags |= FopenFlags::FOPEN_DIRECT_IO;
    }
    flags
}

/// Drops the kernel's cached pages of a file through a FUSE notification
/// (FUSE_NOTIFY_INVAL_INODE), when the fs layer changed bytes behind the page cache.
pub struct KernelPages(pub fuser::Notifier);

impl KernelCache for KernelPages {
    fn invalidate(&self, ino: u64, offset: u64, len: u64) {
        // ENOENT: the kernel no longer has the inode, so it caches nothing of it either.
        if let Err(e) = self.0.inval_inode(INodeNo(ino), offset as i64, len as i64) {
            tracing::debug!(ino, error = %e, "page cache invalidation not delivered");
        }
    }
}

/// ReplyDirectory and ReplyDirectoryPlus end the same way.
trait DirReply {
    fn done(self, fs: &Fs, r: Result<(), FsError>);
}

macro_rules! dir_reply {
    ($($reply:ty),*) => {$(
        impl DirReply for $reply {
            fn done(self, fs: &Fs, r: Result<(), FsError>) {
                match r {
                    Ok(()) => self.ok(),
                    Err(e) => self.error(errno(fs, &e)),
                }
            }
        }
    )*};
}

dir_reply!(ReplyDirectory, ReplyDirectoryPlus);

fn empty(fs: &Fs, reply: ReplyEmpty, r: Result<(), FsError>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(fs, &e)),
    }
}
