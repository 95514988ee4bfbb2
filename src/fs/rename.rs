//! rename(2) on an object store: CopyObject then DeleteObject for a file, every object
//! under the prefix for a directory. Not atomic; see docs/SEMANTICS.md.

use futures::{StreamExt, TryStreamExt};

use super::inode::Inode;
use super::{Fs, FsError, FsResult, Kind};
use crate::backend::{list_all, BackendError};

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
                (Kind::File | Kind::Symlink, Kind::Dir) => return Err(FsError::IsDir),
                (Kind::Dir, Kind::File | Kind::Symlink) => return Err(FsError::NotDir),
                (Kind::Dir, Kind::Dir) if !self.dir_is_empty(d).await? => return Err(FsError::NotEmpty),
                _ => {}
            }
        }
        if let Some(d) = dst.as_ref().filter(|d| d.kind != Kind::Dir) {
            self.prepare_orphans(d.ino).await?;
        }
        let new_etag = match src.kind {
            Kind::File | Kind::Symlink => self.rename_file(&src, &new_path).await?,
            Kind::Dir if new_path.starts_with(&format!("{}/", src.path)) => return Err(FsError::InvalidArgument),
            Kind::Dir => self.rename_dir(&src, &new_path).await.map(|()| None)?,
        };
        if let Some(d) = dst.as_ref().filter(|d| d.kind != Kind::Dir) {
            self.orphan_writers(d.ino).await; // the replaced file's writers must not come back
        }
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
        // then keeps its data and handles under the new name.
        let file = self.files.get(src.ino);
        let mut state = match &file {
            Some(file) => {
                self.commit(src.ino, file).await?;
                let mut s = file.lock().await;
                // Everything that can fail comes before the file changes its name.
                if let Some(st) = &mut s.staged {
                    st.detach().await?;
                }
                Some(s)
            }
            None => None,
        };
        let etag = self.store.copy(&src.key(), new_key).await?;
        self.store.delete(&src.key()).await?;
        self.known.moved(&src.key(), new_key, etag.as_deref());
        if let Some(s) = &mut state {
            s.key = new_key.to_string();
            if let Some(b) = &mut s.base {
                // The copy is the file now: its handles read it (same bytes, new ETag).
                (b.key, b.etag) = (new_key.to_string(), etag.clone());
            }
        }
        Ok(etag)
    }

    async fn rename_dir(&self, src: &Inode, new_path: &str) -> FsResult<()> {
        // Open write handles below would still name the old keys: refuse, as for a
        // mount point in use.
        let below: Vec<u64> = {
            let table = self.inodes.lock().unwrap();
            let prefix = format!("{}/", src.path);
            let inos = table.iter().filter(|i| i.path.starts_with(&prefix)).map(|i| i.ino).collect();
            inos
        };
        let mut writing = false;
        for ino in below {
            if let Some(file) = self.files.get(ino) {
                writing |= file.lock().await.writers > 0;
            }
        }
        if writing {
            return Err(FsError::Busy("a file below the directory is open for writing"));
        }
        let old_prefix = src.key();
        let new_prefix = format!("{new_path}/");
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
