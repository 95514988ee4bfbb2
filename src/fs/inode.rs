//! The inode table: numbers stable while the kernel holds a reference, names to
//! object keys, and the cached attributes of each.

use std::collections::{BTreeMap, HashMap};
use std::time::{Instant, SystemTime};

use super::attr::{Kind, Posix};
pub use crate::meta::Found;

pub const ROOT_INO: u64 = 1;

#[derive(Clone, Debug)]
pub struct Inode {
    pub ino: u64,
    pub parent: u64,
    pub name: String,
    /// Path below the store root without a trailing `/` ("" for the root).
    pub path: String,
    pub kind: Kind,
    pub size: u64,
    pub mtime: SystemTime,
    pub etag: Option<String>,
    /// When size/mtime were last confirmed by the backend.
    pub validated: Instant,
    /// mode/uid/gid/mtime from the object's metadata (or set here); unset fields
    /// show the mount's defaults.
    pub posix: Posix,
    /// Kernel references (lookup count).
    pub lookups: u64,
    /// Open handles; the inode outlives `forget` while any are open.
    pub open_handles: u32,
    /// A write handle owns this file: its local size is the truth until upload.
    pub writing: bool,
    /// ETag of the data the kernel may hold in its page cache for this file.
    pub cached_etag: Option<String>,
    /// When entries were last created, removed or renamed in this directory by this
    /// mount: its mtime and ctime from then on. Held in memory only (a marker
    /// object would cost a request per change in the directory).
    pub touched: Option<SystemTime>,
}

impl Inode {
    /// The object key of a file, or the listing prefix of a directory.
    pub fn key(&self) -> String {
        match self.kind {
            Kind::Dir if self.path.is_empty() => String::new(),
            Kind::Dir => format!("{}/", self.path),
            _ => self.path.clone(),
        }
    }

    /// What a listing should now say about this entry.
    pub fn found(&self) -> Found {
        Found {
            kind: self.kind,
            size: self.size,
            mtime: self.mtime,
            etag: self.etag.clone(),
            posix: Some(self.posix),
            seen: self.validated,
        }
    }

    /// The next stat or open asks the store again (the object changed under us).
    pub fn make_stale(&mut self) {
        self.validated = Instant::now().checked_sub(std::time::Duration::from_secs(3600)).unwrap_or(self.validated);
        self.etag = None;
    }

    pub fn child_path(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.path)
        }
    }
}

pub struct InodeTable {
    by_ino: HashMap<u64, Inode>,
    /// Ordered so that one directory's children are a range, not a scan of every inode.
    by_name: BTreeMap<(u64, String), u64>,
    next_ino: u64,
}

impl InodeTable {
    pub fn new(mount_time: SystemTime) -> Self {
        let root = Inode {
            ino: ROOT_INO,
            parent: ROOT_INO,
            name: String::new(),
            path: String::new(),
            kind: Kind::Dir,
            size: 0,
            mtime: mount_time,
            etag: None,
            posix: Posix::default(),
            validated: Instant::now(),
            lookups: 1,
            open_handles: 0,
            writing: false,
            cached_etag: None,
            touched: None,
        };
        Self { by_ino: HashMap::from([(ROOT_INO, root)]), by_name: BTreeMap::new(), next_ino: ROOT_INO + 1 }
    }

    pub fn get(&self, ino: u64) -> Option<&Inode> {
        self.by_ino.get(&ino)
    }

    pub fn get_mut(&mut self, ino: u64) -> Option<&mut Inode> {
        self.by_ino.get_mut(&ino)
    }

    pub fn child(&self, parent: u64, name: &str) -> Option<&Inode> {
        self.by_name.get(&(parent, name.to_string())).and_then(|i| self.by_ino.get(i))
    }

    /// Children of `parent` currently known (used to show files still being written).
    pub fn children(&self, parent: u64) -> impl Iterator<Item = &Inode> {
        let range = (parent, String::new())..(parent + 1, String::new());
        self.by_name.range(range).filter_map(|(_, ino)| self.by_ino.get(ino)).filter(|i| i.ino != ROOT_INO)
    }

    /// Records `found` under `parent/name`, keeping the inode number when the kind is
    /// unchanged. Returns the inode number.
    pub fn upsert(&mut self, parent: u64, name: &str, found: Found) -> u64 {
        if let Some(existing) = self.by_name.get(&(parent, name.to_string())).copied() {
            let inode = self.by_ino.get_mut(&existing).expect("name maps to a live inode");
            // A listing cannot tell a symlink from a file, nor carries metadata: what we
            // learned before holds while the object's ETag is unchanged.
            let unchanged = found.posix.is_none() && found.etag.is_some() && found.etag == inode.etag;
            let kind =
                if unchanged || (found.posix.is_none() && inode.kind == Kind::Dir) { inode.kind } else { found.kind };
            if inode.kind == kind {
                // What a listing that began before our last commit says is older than
                // what we know: keep ours (else a reader would pin the old ETag).
                if found.seen < inode.validated {
                    return existing;
                }
                if !inode.writing {
                    (inode.size, inode.mtime, inode.etag) = (found.size, found.mtime, found.etag);
                    match found.posix {
                        Some(p) => inode.posix = p,
                        None if !unchanged && kind != Kind::Dir => inode.posix = Posix::default(),
                        None => {}
                    }
                }
                inode.validated = found.seen;
                return existing;
            }
            self.unlink(parent, name);
        }
        let path = self.by_ino.get(&parent).map(|p| p.child_path(name)).unwrap_or_default();
        let ino = self.next_ino;
        self.next_ino += 1;
        self.by_ino.insert(
            ino,
            Inode {
                ino,
                parent,
                name: name.to_string(),
                path,
                kind: found.kind,
                size: found.size,
                mtime: found.mtime,
                etag: found.etag,
                posix: found.posix.unwrap_or_default(),
                validated: found.seen,
                lookups: 0,
                open_handles: 0,
                writing: false,
                cached_etag: None,
                touched: None,
            },
        );
        self.by_name.insert((parent, name.to_string()), ino);
        ino
    }

    /// Drops the name; the inode lives on while referenced (open files keep working).
    pub fn unlink(&mut self, parent: u64, name: &str) {
        if let Some(ino) = self.by_name.remove(&(parent, name.to_string())) {
            self.collect(ino);
        }
    }

    pub fn add_lookup(&mut self, ino: u64) {
        if let Some(i) = self.by_ino.get_mut(&ino) {
            i.lookups += 1;
        }
    }

    pub fn forget(&mut self, ino: u64, n: u64) {
        if let Some(i) = self.by_ino.get_mut(&ino) {
            i.lookups = i.lookups.saturating_sub(n);
            self.collect(ino);
        }
    }

    /// Frees an inode nobody references; its name is freed with it.
    pub fn collect(&mut self, ino: u64) {
        let Some(i) = self.by_ino.get(&ino) else {
            return;
        };
        if ino == ROOT_INO || i.lookups > 0 || i.open_handles > 0 {
            return;
        }
        let key = (i.parent, i.name.clone());
        if self.by_name.get(&key) == Some(&ino) {
            self.by_name.remove(&key);
        }
        self.by_ino.remove(&ino);
    }

    pub fn iter(&self) -> impl Iterator<Item = &Inode> {
        self.by_ino.values()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Inode> {
        self.by_ino.values_mut()
    }

    /// Moves `parent/name` to `newparent/newname`, keeping its inode number; a
    /// directory's descendants get their new paths.
    pub fn rename(&mut self, parent: u64, name: &str, newparent: u64, newname: &str) {
        let Some(ino) = self.by_name.remove(&(parent, name.to_string())) else { return };
        self.unlink(newparent, newname);
        let new_path = self.by_ino.get(&newparent).map(|p| p.child_path(newname)).unwrap_or_default();
        let Some(i) = self.by_ino.get_mut(&ino) else { return };
        let old_below = format!("{}/", i.path);
        (i.parent, i.name, i.path) = (newparent, newname.to_string(), new_path.clone());
        if i.kind == Kind::Dir {
            for d in self.by_ino.values_mut().filter(|d| d.path.starts_with(&old_below)) {
                d.path = format!("{new_path}/{}", &d.path[old_below.len()..]);
            }
        }
        self.by_name.insert((newparent, newname.to_string()), ino);
    }

    pub fn len(&self) -> usize {
        self.by_ino.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ino.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(size: u64) -> Found {
        Found::file(size, SystemTime::UNIX_EPOCH, None)
    }

    #[test]
    fn numbers_are_stable_and_forget_frees() {
        let mut t = InodeTable::new(SystemTime::now());
        let a = t.upsert(ROOT_INO, "a", file(1));
        t.add_lookup(a);
        assert_eq!(t.upsert(ROOT_INO, "a", file(2)), a);
        assert_eq!(t.get(a).unwrap().size, 2);
        assert_eq!(t.get(a).unwrap().path, "a");
        t.forget(a, 1);
        assert!(t.get(a).is_none());
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn kind_change_gets_a_new_inode_and_paths_nest() {
        let mut t = InodeTable::new(SystemTime::now());
        let a = t.upsert(ROOT_INO, "a", file(1));
        t.add_lookup(a);
        let d = t.upsert(ROOT_INO, "a", Found { kind: Kind::Dir, ..file(0) });
        assert_ne!(a, d);
        assert_eq!(t.get(d).unwrap().key(), "a/");
        let b = t.upsert(d, "b", file(3));
        assert_eq!(t.get(b).unwrap().key(), "a/b");
        assert!(t.get(a).is_some(), "old inode lives while referenced");
    }

    #[test]
    fn rename_keeps_the_number_and_moves_descendants() {
        let mut t = InodeTable::new(SystemTime::now());
        let d = t.upsert(ROOT_INO, "d", Found { kind: Kind::Dir, ..file(0) });
        let e = t.upsert(d, "e", Found { kind: Kind::Dir, ..file(0) });
        let f = t.upsert(e, "f", file(1));
        for i in [d, e, f] {
            t.add_lookup(i);
        }
        let other = t.upsert(ROOT_INO, "x", Found { kind: Kind::Dir, ..file(0) });
        t.rename(ROOT_INO, "d", other, "moved");
        assert_eq!(t.child(other, "moved").unwrap().ino, d);
        assert!(t.child(ROOT_INO, "d").is_none());
        assert_eq!(t.get(f).unwrap().key(), "x/moved/e/f");
        assert_eq!(t.get(e).unwrap().key(), "x/moved/e/");
    }

    #[test]
    fn a_listing_older_than_our_commit_does_not_replace_it() {
        let mut t = InodeTable::new(SystemTime::now());
        let listed_at = Instant::now();
        let a = t.upsert(ROOT_INO, "a", Found { etag: Some("ours".into()), ..file(2) });
        t.add_lookup(a);
        let stale = Found { etag: Some("old".into()), seen: listed_at, ..file(1) };
        assert_eq!(t.upsert(ROOT_INO, "a", stale), a);
        assert_eq!((t.get(a).unwrap().etag.as_deref(), t.get(a).unwrap().size), (Some("ours"), 2));
        let newer = Found { etag: Some("theirs".into()), ..file(3) };
        t.upsert(ROOT_INO, "a", newer);
        assert_eq!(t.get(a).unwrap().etag.as_deref(), Some("theirs"), "newer information still wins");
    }

    #[test]
    fn unlinked_inode_lives_while_open() {
        let mut t = InodeTable::new(SystemTime::now());
        let a = t.upsert(ROOT_INO, "a", file(1));
        t.get_mut(a).unwrap().open_handles = 1;
        t.unlink(ROOT_INO, "a");
        assert!(t.child(ROOT_INO, "a").is_none());
        assert!(t.get(a).is_some());
        t.get_mut(a).unwrap().open_handles = 0;
        t.collect(a);
        assert!(t.get(a).is_none());
    }
}
