//! rename(2) on an object store: CopyObject then DeleteObject for a file, every object
//! under the prefix for a directory. Not atomic; see docs/SEMANTICS.md. A store with a
//! rename of its own (SFTP) renames the file or the whole directory in one request.

use std::time::SystemTime;

use futures::{StreamExt, TryStreamExt};

use super::inode::Inode;
use super::open_file::{FileRef, OpenFile};
use super::{Fs, FsError, FsResult, Kind};
use crate::backend::{list_all, BackendError};

/// The open file's object was copied to `key` (whose ETag the copy returned): its
/// handles write and read there now (same bytes, so no new epoch).
fn moved_to(s: &mut OpenFile, key: &str, etag: Option<String>) {
    s.key = key.to_string();
    if let Some(b) = &mut s.base {
        (b.key, b.etag) = (key.to_string(), etag);
    }
}

/// How many objects a directory rename copies or deletes at once.
const DIR_PARALLELISM: usize = 16;

#[derive(Clone, Copy, Debug, Default)]
pub struct RenameFlags {
    pub noreplace: bool,
    pub exchange: bool,
}

impl Fs {
    pub async fn rename(
        &self,
        parent: u64,
        name: &str,
        newparent: u64,
        newname: &str,
        flags: RenameFlags,
    ) -> FsResult<()> {
        self.check_writable()?;
        Self::check_name(newname)?;
        if flags.exchange {
            return Err(FsError::Unsupported("RENAME_EXCHANGE"));
        }
        let src = self.resolve(parent, name).await?;
        let new_path = self.dir(newparent)?.child_path(newname);
        let dst = match self.resolve(newparent, newname).await {
            Ok(d) => Some(d),
            Err(FsError::NotFound) => None,
            Err(e) => return Err(e),
        };
        if let Some(d) = &dst {
            if d.ino == src.ino {
                return Ok(());
            }
            if flags.noreplace {
                return Err(FsError::Exists);
            }
            match (src.kind, d.kind) {
                (k, Kind::Dir) if k != Kind::Dir => return Err(FsError::IsDir),
                (Kind::Dir, k) if k != Kind::Dir => return Err(FsError::NotDir),
                (Kind::Dir, Kind::Dir) if !self.dir_is_empty(d).await? => return Err(FsError::NotEmpty),
                _ => {}
            }
        }
        if let Some(d) = dst.as_ref().filter(|d| d.kind != Kind::Dir) {
            self.prepare_orphans(d.ino).await?;
        }
        if src.kind == Kind::Dir && new_path.starts_with(&format!("{}/", src.path)) {
            return Err(FsError::InvalidArgument);
        }
        let moved = async {
            match src.kind {
                Kind::Dir => self.rename_dir(&src, &new_path).await.map(|()| None),
                _ => self.rename_file(&src, &new_path).await,
            }
        };
        // The replaced file's writers must not come back over the moved file.
        let new_etag = match dst.as_ref().filter(|d| d.kind != Kind::Dir) {
            Some(d) => self.orphaning(d.ino, moved).await?,
            None => moved.await?,
        };
        let (found, moved_dirs) = {
            let mut table = self.inodes.lock().unwrap();
            table.rename(parent, name, newparent, newname);
            // Objects below a moved directory are copies: their ETags changed, so what
            // is cached about them (and the listings holding them) must be asked again.
            let below = format!("{new_path}/");
            let mut moved_dirs = vec![src.ino];
            for i in table.iter_mut().filter(|i| src.kind == Kind::Dir && i.path.starts_with(&below)) {
                match i.kind {
                    Kind::Dir => moved_dirs.push(i.ino),
                    _ if !i.writing => i.make_stale(),
                    _ => {}
                }
            }
            let moved = table.get_mut(src.ino).ok_or(FsError::NotFound)?;
            moved.posix.ctime = Some(SystemTime::now()); // a rename is a change of the entry
            if moved.kind != Kind::Dir && !moved.writing {
                match new_etag {
                    Some(etag) => moved.etag = Some(etag),
                    None => moved.make_stale(), // the copy's ETag is unknown: ask at next use
                }
            }
            (moved.found(), moved_dirs)
        };
        if src.kind == Kind::Dir {
            for d in moved_dirs {
                self.listings.invalidate(d);
            }
        }
        self.touch_dir(parent);
        self.touch_dir(newparent);
        self.listings.remove(parent, name);
        self.listings.upsert(newparent, newname, found);
        self.negative.insert(parent, name);
        self.negative.remove(newparent, newname);
        Ok(())
    }

    /// Whether a directory holds nothing, here or on the store.
    pub(super) async fn dir_is_empty(&self, d: &Inode) -> FsResult<bool> {
        let prefix = d.key();
        let page = self.store.list_page(&prefix, None, None, Some(2)).await?;
        let has_local = self.inodes.lock().unwrap().children(d.ino).any(|c| c.writing);
        Ok(!has_local && page.objects.iter().all(|o| o.key == prefix) && page.prefixes.is_empty())
    }

    /// Returns the new object's ETag when the server tells it.
    async fn rename_file(&self, src: &Inode, new_key: &str) -> FsResult<Option<String>> {
        // An open file is uploaded first (what its handles wrote moves with it), and
        // then keeps its data and handles under the new name. Its state stays locked
        // until then, so no write slips in between.
        let file = self.files.get(src.ino);
        if let Some(file) = &file {
            self.commit(src.ino, file).await?;
        }
        let mut state = match &file {
            Some(file) => Some(self.hold_for_move(src.ino, file).await?),
            None => None,
        };
        // The store's own rename where it has one (SFTP: atomic); else copy and delete.
        let etag = match self.store.rename(&src.key(), new_key).await {
            Ok(()) => self.store.head(new_key).await.ok().and_then(|m| m.etag),
            Err(BackendError::Unsupported(_)) => {
                let etag = self.store.copy(&src.key(), new_key).await?;
                self.store.delete(&src.key()).await?;
                etag
            }
            Err(e) => return Err(e.into()),
        };
        self.known.moved(&src.key(), new_key, etag.as_deref());
        if let Some(s) = &mut state {
            moved_to(s, new_key, etag.clone());
        }
        Ok(etag)
    }

    /// Locks an open file that is about to move: anything written since the commit
    /// is uploaded, and the staged copy stops depending on the old object.
    async fn hold_for_move<'f>(&self, ino: u64, file: &'f FileRef) -> FsResult<tokio::sync::MutexGuard<'f, OpenFile>> {
        let mut s = file.lock().await;
        self.commit_locked(ino, &mut s).await?;
        if let Some(st) = &mut s.staged {
            st.detach().await?;
        }
        Ok(s)
    }

    async fn rename_dir(&self, src: &Inode, new_path: &str) -> FsResult<()> {
        // Open files below move with the directory: what they hold is uploaded first,
        // and they stay locked (in inode order, so two renames cannot deadlock) until
        // their keys follow.
        let mut below: Vec<u64> = {
            let table = self.inodes.lock().unwrap();
            let prefix = format!("{}/", src.path);
            let inos = table.iter().filter(|i| i.path.starts_with(&prefix)).map(|i| i.ino).collect();
            inos
        };
        below.sort_unstable();
        let open: Vec<FileRef> = below.iter().filter_map(|ino| self.files.get(*ino)).collect();
        for file in &open {
            self.commit(file.ino(), file).await?;
        }
        let mut held = Vec::with_capacity(open.len());
        for file in &open {
            held.push(self.hold_for_move(file.ino(), file).await?);
        }
        let old_prefix = src.key();
        let new_prefix = format!("{new_path}/");
        // The store's own rename moves the whole tree at once (SFTP: atomic), keeping
        // every file's bytes and attributes, so open files keep their versions.
        match self.store.rename(&old_prefix, &new_prefix).await {
            Ok(()) => {
                self.known.moved(&old_prefix, &new_prefix, Some(super::DIR_VERSION));
                for s in &mut held {
                    let Some(rest) = s.key.strip_prefix(&old_prefix) else { continue };
                    let to = format!("{new_prefix}{rest}");
                    let etag = s.base.as_ref().and_then(|b| b.etag.clone());
                    moved_to(s, &to, etag);
                }
                return Ok(());
            }
            Err(BackendError::Unsupported(_)) => {}
            Err(e) => return Err(e.into()),
        }
        // The directory's own marker carries its mode; a local store lists only what is
        // inside a directory, so ask for it by name.
        let marker = match self.store.head(&old_prefix).await {
            Ok(m) => Some(m.user.unwrap_or_default()),
            Err(BackendError::NotFound) => None,
            Err(e) => return Err(e.into()),
        };
        let listed = list_all(&*self.store, &old_prefix, None).await?.objects;
        let keys: Vec<String> = listed.into_iter().map(|o| o.key).filter(|k| *k != old_prefix).collect();
        if marker.is_some() || keys.is_empty() {
            self.store.put_with(&new_prefix, bytes::Bytes::new(), &marker.unwrap_or_default()).await?;
        }
        let copies: Vec<_> = keys
            .iter()
            .map(|k| {
                let (store, from, to) =
                    (self.store.clone(), k.clone(), format!("{new_prefix}{}", &k[old_prefix.len()..]));
                async move { store.copy(&from, &to).await.map(|etag| (from, to, etag)) }
            })
            .collect();
        let copied: Vec<_> = futures::stream::iter(copies).buffer_unordered(DIR_PARALLELISM).try_collect().await?;
        for (from, to, etag) in &copied {
            let version = if from.ends_with('/') { Some(super::DIR_VERSION) } else { etag.as_deref() };
            self.known.moved(from, to, version);
        }
        self.known.moved(&old_prefix, &new_prefix, Some(super::DIR_VERSION));
        for s in &mut held {
            let Some(rest) = s.key.strip_prefix(&old_prefix) else { continue };
            let to = format!("{new_prefix}{rest}");
            let etag = copied.iter().find(|(_, t, _)| *t == to).and_then(|(_, _, e)| e.clone());
            moved_to(s, &to, etag);
        }
        // Objects first, then directory markers deepest first: a store backed by real
        // directories (local) can only remove a directory once it is empty.
        let (markers, objects): (Vec<&String>, Vec<&String>) = keys.iter().partition(|k| k.ends_with('/'));
        let deletes: Vec<_> = objects
            .into_iter()
            .map(|k| {
                let (store, key) = (self.store.clone(), k.clone());
                async move { store.delete(&key).await }
            })
            .collect();
        futures::stream::iter(deletes).buffer_unordered(DIR_PARALLELISM).try_collect::<()>().await?;
        // Every directory level below, marker or not: a local store keeps real
        // directories that must go once empty (on S3 deleting a missing key is a no-op).
        let mut dirs: std::collections::BTreeSet<&str> = markers.into_iter().map(String::as_str).collect();
        for k in &keys {
            dirs.extend(k[old_prefix.len()..].match_indices('/').map(|(i, _)| &k[..old_prefix.len() + i + 1]));
        }
        let mut dirs: Vec<&str> = dirs.into_iter().collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.len()));
        for d in dirs {
            self.store.delete(d).await?;
        }
        self.store.delete(&old_prefix).await?;
        Ok(())
    }
}
