use super::*;
use std::os::unix::fs::FileExt;

const MIB: u64 = super::MIB;

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u64 * 31 + seed as u64) as u8).collect()
}

fn open(dir: &Path, max: u64) -> (DataCache, StoreCache) {
    let cache = DataCache::open(dir, DiskBudget::new(max)).unwrap();
    let store = cache.store("s3://b at here, root ''");
    (cache, store)
}

/// Bytes the cache directory takes on disk (as `du` counts them).
fn du(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir.join("objects")).unwrap().flatten().map(|e| e.metadata().unwrap().blocks() * 512).sum()
}

#[test]
fn cached_bytes_come_back_identical_after_a_restart_and_never_for_another_version() {
    let dir = tempfile::tempdir().unwrap();
    let body = data(3 * BLOCK as usize + 1234, 1);
    let size = body.len() as u64;
    {
        let (_c, s) = open(dir.path(), 1 << 30);
        assert!(s.read("k", "e1", size, 0, 10).is_none(), "empty cache");
        // A part that starts inside block 0 caches only the whole blocks it holds.
        s.write("k", "e1", size, 100, &body[100..]);
        assert!(s.read("k", "e1", size, 0, 10).is_none(), "block 0 was not whole in the part");
        s.write("k", "e1", size, 0, &body[..BLOCK as usize]);
        let got = s.read("k", "e1", size, 5, size).unwrap();
        assert_eq!(&got[..], &body[5..]);
    }
    let (_c, s) = open(dir.path(), 1 << 30);
    let got = s.read("k", "e1", size, 0, size).expect("rebuilt from the directory");
    assert_eq!(&got[..], &body[..]);
    assert!(s.open_whole("k", "e1", size).is_some(), "complete");
    // Another version of the key: a miss, and the old blocks are gone.
    assert!(s.read("k", "e2", size, 0, 10).is_none());
    assert!(s.read("k", "e1", size, 0, 10).is_none(), "the old version was dropped");
    assert_eq!(du(dir.path()), 0);
}

#[test]
fn a_corrupted_or_torn_block_is_a_miss_and_is_refilled() {
    let dir = tempfile::tempdir().unwrap();
    let body = data(2 * BLOCK as usize, 2);
    let size = body.len() as u64;
    let stem = dir.path().join("objects").join(stem_of("s3://b at here, root ''", "k"));
    {
        let (_c, s) = open(dir.path(), 1 << 30);
        s.write("k", "e", size, 0, &body);
        assert!(s.open_whole("k", "e", size).is_some());
    }
    // A flipped byte in block 1, as a disk error or another program would leave it.
    let f = std::fs::OpenOptions::new().write(true).open(stem.with_extension("data")).unwrap();
    f.write_all_at(&[body[BLOCK as usize + 7] ^ 0xff], BLOCK + 7).unwrap();
    {
        let (_c, s) = open(dir.path(), 1 << 30);
        assert!(s.open_whole("k", "e", size).is_none(), "the changed file is verified, not handed out");
        assert_eq!(&s.read("k", "e", size, 0, 10).unwrap()[..], &body[..10], "block 0 is fine");
        assert!(s.read("k", "e", size, BLOCK, BLOCK + 10).is_none(), "block 1 was dropped");
        s.write("k", "e", size, BLOCK, &body[BLOCK as usize..]);
        assert_eq!(&s.read("k", "e", size, 0, size).unwrap()[..], &body[..]);
        assert!(s.open_whole("k", "e", size).is_some(), "whole again, and sealed again");
    }
    // Bytes changed under a block after a restart: its checksum no longer matches.
    let (_c, s) = open(dir.path(), 1 << 30);
    f.write_all_at(&[0; 16], 0).unwrap();
    assert!(s.read("k", "e", size, 0, 10).is_none(), "block 0 no longer matches its checksum");
}

#[test]
fn eviction_keeps_the_directory_under_the_limit_and_spares_pinned_files() {
    let dir = tempfile::tempdir().unwrap();
    let limit = 8 * BLOCK + 64 * 1024;
    let (c, s) = open(dir.path(), limit);
    let small = data(2 * BLOCK as usize, 3);
    s.write("pinned", "e", small.len() as u64, 0, &small);
    let pin = s.open_whole("pinned", "e", small.len() as u64).unwrap();
    // A read of 3× the limit, part by part.
    let big = data(24 * BLOCK as usize, 4);
    for part in 0..12 {
        let start = part * 2 * BLOCK as usize;
        s.write("big", "e", big.len() as u64, start as u64, &big[start..start + 2 * BLOCK as usize]);
        assert!(c.disk_used() <= limit, "charged {} > {limit}", c.disk_used());
        assert!(du(dir.path()) <= limit, "directory {} > {limit}", du(dir.path()));
    }
    assert!(s.read("big", "e", big.len() as u64, 0, 10).is_none(), "the oldest blocks went");
    let last = 22 * BLOCK;
    assert_eq!(&s.read("big", "e", big.len() as u64, last, last + 10).unwrap()[..], &big[last as usize..][..10]);
    let mut back = vec![0; small.len()];
    pin.file().read_exact_at(&mut back, 0).unwrap();
    assert_eq!(back, small, "a pinned file keeps every block");
    drop(pin);
    s.write("big", "e", big.len() as u64, 0, &big[..4 * BLOCK as usize]);
    assert!(s.open_whole("pinned", "e", small.len() as u64).is_none(), "unpinned: evicted in turn");
}

#[test]
fn staged_files_take_space_from_cached_blocks_before_they_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let disk = DiskBudget::new(6 * BLOCK);
    let cache = DataCache::open(dir.path(), disk.clone()).unwrap();
    let s = cache.store("x");
    let body = data(4 * BLOCK as usize, 5);
    s.write("k", "e", body.len() as u64, 0, &body);
    assert!(disk.used() > 4 * BLOCK);
    assert!(disk.charge(4 * BLOCK), "a staged file's charge evicts cached blocks");
    assert!(disk.used() <= 6 * BLOCK);
    assert!(!disk.charge(4 * BLOCK), "nothing cached is left to give way");
}

#[test]
fn one_directory_serves_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let _first = DataCache::open(dir.path(), DiskBudget::new(1 << 30)).unwrap();
    // flock is per open file description: a second open in this process conflicts as a
    // second process would.
    let err = DataCache::open(dir.path(), DiskBudget::new(1 << 30)).unwrap_err();
    assert!(err.contains("in use by another rstore-mount process") && err.contains("pid"), "{err}");
}

#[test]
fn forget_drops_a_key_so_a_rewrite_under_an_equal_etag_never_meets_the_old_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let (_c, s) = open(dir.path(), 1 << 30);
    let (v1, v2) = (data(MIB as usize + 10, 1), data(MIB as usize + 10, 2));
    s.write("k", "same", v1.len() as u64, 0, &v1);
    s.forget("k");
    assert!(s.read("k", "same", v1.len() as u64, 0, 10).is_none());
    s.write("k", "same", v2.len() as u64, 0, &v2);
    assert_eq!(&s.read("k", "same", v2.len() as u64, 0, v2.len() as u64).unwrap()[..], &v2[..]);
}

#[test]
fn an_entry_left_without_blocks_gives_its_space_back() {
    let dir = tempfile::tempdir().unwrap();
    // Room for an index file but not for a block.
    let (c, s) = open(dir.path(), 64 * 1024);
    s.write("k", "e", 2 * MIB, 0, &data(2 * MIB as usize, 3));
    assert_eq!((c.disk_used(), du(dir.path())), (0, 0), "nothing cached, nothing charged");
    drop((c, s));
    // An index file with no block (a crash before the first block landed) is dropped at start.
    let stem = dir.path().join("objects").join(stem_of("s3://b at here, root ''", "k"));
    let header = Header {
        format: file::FORMAT,
        identity: "s3://b at here, root ''".into(),
        key: "k".into(),
        etag: "e".into(),
        size: 10,
        block: BLOCK,
    };
    CacheFile::create(&stem, header).unwrap();
    let (c, _s) = open(dir.path(), 1 << 30);
    assert_eq!((c.disk_used(), du(dir.path())), (0, 0));
}
