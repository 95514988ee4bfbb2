//! One directory's listing: ListObjectsV2 with `/` delimiter, every page, turned into
//! entries. Keys that cannot be file names are skipped with a debug log.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::Found;
use super::{Kind, Posix};
use crate::backend::{list_all, BackendError, ObjectStore, Result};

#[derive(Clone, Debug)]
pub struct DirEntry {
    pub name: String,
    pub found: Found,
}

/// Whether `name` can be one path component.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0') && name.len() <= 255
}

/// Lists the directory whose prefix is `prefix` ("" or ending in `/`). A name that is
/// both a file and a directory shows as the directory (its contents stay reachable).
pub async fn list_dir(store: &dyn ObjectStore, prefix: &str, dir_mtime: SystemTime) -> Result<Vec<DirEntry>> {
    let page = list_all(store, prefix, Some("/")).await?;
    let mut entries = BTreeMap::new();
    for obj in page.objects {
        let name = &obj.key[prefix.len().min(obj.key.len())..];
        if name.is_empty() {
            continue; // the directory's own marker
        }
        if !valid_name(name) {
            tracing::debug!(key = %obj.key, "skipping key that is not a valid file name");
            continue;
        }
        let found = Found::file(obj.size, obj.last_modified, obj.etag);
        entries.insert(name.to_string(), found);
    }
    for p in page.prefixes {
        let name = p[prefix.len().min(p.len())..].trim_end_matches('/');
        if !valid_name(name) {
            tracing::debug!(prefix = %p, "skipping prefix that is not a valid directory name");
            continue;
        }
        let found = Found::dir(dir_mtime);
        entries.insert(name.to_string(), found);
    }
    Ok(entries.into_iter().map(|(name, found)| DirEntry { name, found }).collect())
}

/// How many HEADs run at once when a listing reads every entry's metadata.
const HEAD_PARALLELISM: usize = 32;

/// Reads the metadata (mode, owner, times, kind) of the entries `want` picks with one
/// HEAD each, 32 at a time, as s3fs does on every listing: listings then show what
/// chmod, utimes, symlink, mknod or s3fs stored. A directory without a marker object
/// (an implicit one) is known to carry nothing. A HEAD that fails (after the store's
/// retries) leaves its entry as listed, with the defaults: metadata never makes a
/// listing fail (some servers answer a HEAD of `dir/` with an error, not 404).
pub async fn read_metadata(
    store: &dyn ObjectStore,
    prefix: &str,
    entries: &mut [DirEntry],
    want: impl Fn(&DirEntry) -> bool,
) -> Result<()> {
    use futures::StreamExt;
    let picked: Vec<usize> = (0..entries.len()).filter(|i| want(&entries[*i])).collect();
    let heads: Vec<_> = picked
        .iter()
        .map(|i| {
            let e = &entries[*i];
            let key = match e.found.kind {
                Kind::Dir => format!("{prefix}{}/", e.name),
                _ => format!("{prefix}{}", e.name),
            };
            async move { store.head(&key).await }
        })
        .collect();
    let answers: Vec<_> = futures::stream::iter(heads).buffered(HEAD_PARALLELISM).collect().await;
    for (i, answer) in picked.into_iter().zip(answers) {
        let e = &mut entries[i];
        match answer {
            Ok(m) if e.found.kind == Kind::Dir => {
                e.found.posix = Some(m.user.as_ref().map(Posix::from_user).unwrap_or_default())
            }
            Ok(m) => e.found = Found { seen: e.found.seen, ..Found::object(&m) },
            Err(BackendError::NotFound) if e.found.kind == Kind::Dir => e.found.posix = Some(Posix::default()),
            Err(BackendError::NotFound) => {} // deleted meanwhile: the next lookup finds out
            Err(err) => tracing::debug!(name = %e.name, error = %err, "metadata not read; the entry shows defaults"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryStore;
    use bytes::Bytes;

    #[tokio::test]
    async fn lists_files_dirs_and_skips_odd_keys() {
        let s = MemoryStore::new();
        for k in ["d/", "d/f", "d/sub/x", "d//y", "d/./z", "d/g", "d/g/h", "top"] {
            s.put(k, Bytes::from_static(b"1")).await.unwrap();
        }
        let long = format!("d/{}", "n".repeat(300));
        s.put(&long, Bytes::new()).await.unwrap();
        let e = list_dir(&s, "d/", SystemTime::UNIX_EPOCH).await.unwrap();
        let names: Vec<(&str, Kind)> = e.iter().map(|e| (e.name.as_str(), e.found.kind)).collect();
        assert_eq!(names, [("f", Kind::File), ("g", Kind::Dir), ("sub", Kind::Dir)]);
        let root = list_dir(&s, "", SystemTime::UNIX_EPOCH).await.unwrap();
        assert_eq!(root.len(), 2);
    }
}
