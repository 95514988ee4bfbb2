use std::sync::Arc;

use super::*;
use crate::backend::probe::Probe;
use crate::backend::{ObjectStore, UserMeta};
use crate::data::{MemoryBudget, UploadConfig};

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

async fn setup(max: u64, object: Option<&[u8]>) -> (Arc<Probe>, Uploader, StagingArea, Option<ObjectMeta>) {
    let probe = Arc::new(Probe::default());
    let up = Uploader::new(
        probe.clone(),
        UploadConfig { part_size: 5 * MIB, max_in_flight: 2 },
        MemoryBudget::new(64 * MIB),
    );
    let dir = std::env::temp_dir().join("rstore-staging-tests");
    let area = StagingArea::new(&StagingConfig { dir, max_bytes: max });
    let meta = match object {
        Some(body) => Some(probe.inner.put("obj", Bytes::copy_from_slice(body)).await.unwrap()),
        None => None,
    };
    (probe, up, area, meta)
}

#[tokio::test]
async fn a_small_pwrite_in_a_large_object_sends_one_part_and_copies_the_rest() {
    let mut expect = pattern(41 * MIB as usize, 1);
    let (probe, up, area, meta) = setup(1 << 30, Some(&expect)).await;
    let mut s = area.stage(&up, meta).unwrap();
    let at = 20 * MIB as usize + 123;
    s.write(at as u64, &[0xAB; 4096]).await.unwrap();
    expect[at..at + 4096].fill(0xAB);
    s.upload("obj", &UserMeta::new(), &Condition::Always).await.unwrap();
    let whole = probe.inner.get_range("obj", 0..u64::MAX, None).await.unwrap();
    assert!(whole == expect, "content after the re-upload");
    assert_eq!(probe.sent(), 5 * MIB, "only the block holding the change was sent");
    assert_eq!(Probe::count(&probe.part_copies), 8, "the other 8 parts were copied server-side");
    assert!(area.used() <= 5 * MIB, "only the touched block was staged locally: {}", area.used());
}

#[tokio::test]
async fn append_truncate_and_regrow_read_back_like_a_local_file() {
    let base = pattern(7 * MIB as usize, 2);
    let (probe, up, area, meta) = setup(1 << 30, Some(&base)).await;
    let mut s = area.stage(&up, meta).unwrap();
    let mut expect = base.clone();
    s.write(expect.len() as u64, b"tail").await.unwrap();
    expect.extend_from_slice(b"tail");
    assert_eq!(s.read(expect.len() as u64 - 10, 10).await.unwrap(), expect[expect.len() - 10..]);
    s.truncate(6 * MIB + 5).unwrap();
    expect.truncate(6 * MIB as usize + 5);
    s.truncate(6 * MIB + 50).unwrap();
    expect.resize(6 * MIB as usize + 50, 0);
    assert_eq!(s.read(0, u64::MAX / 2).await.unwrap(), expect);
    s.upload("obj", &UserMeta::new(), &Condition::Always).await.unwrap();
    assert_eq!(probe.inner.get_range("obj", 0..u64::MAX, None).await.unwrap(), expect);
    // The handle stays usable and now builds on the new object.
    s.write(0, b"head").await.unwrap();
    expect[..4].copy_from_slice(b"head");
    s.upload("obj", &UserMeta::new(), &Condition::Always).await.unwrap();
    assert_eq!(probe.inner.get_range("obj", 0..u64::MAX, None).await.unwrap(), expect);
}

#[tokio::test]
async fn a_full_staging_area_fails_writes_with_no_space_and_keeps_earlier_data() {
    let (probe, up, area, _) = setup(10 * MIB, None).await;
    let mut s = area.stage(&up, None).unwrap();
    let block = pattern(5 * MIB as usize, 3);
    s.write(0, &block).await.unwrap();
    s.write(5 * MIB, &block).await.unwrap();
    assert_eq!(s.write(10 * MIB, b"more").await, Err(BackendError::NoSpace));
    let mut other = area.stage(&up, None).unwrap();
    assert_eq!(other.write(0, b"x").await, Err(BackendError::NoSpace), "a second file shares the limit");
    s.upload("obj", &UserMeta::new(), &Condition::Always).await.unwrap();
    assert_eq!(probe.inner.get_range("obj", 0..u64::MAX, None).await.unwrap().len() as u64, 10 * MIB);
    drop((s, other));
    assert_eq!(area.used(), 0, "space returns when the files close");
}

#[tokio::test]
async fn a_changed_object_is_not_mixed_into_the_staged_file() {
    let (probe, up, area, meta) = setup(1 << 30, Some(&pattern(MIB as usize, 4))).await;
    let mut s = area.stage(&up, meta).unwrap();
    probe.inner.put("obj", Bytes::from_static(b"someone else")).await.unwrap();
    assert_eq!(s.read(0, 10).await, Err(BackendError::PreconditionFailed));
}

#[tokio::test]
async fn staged_blocks_come_from_the_data_cache_and_fill_it() {
    let body = pattern(12 * MIB as usize, 9);
    let (probe, up, area, meta) = setup(1 << 30, Some(&body)).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = crate::data::DataCache::open(dir.path(), area.disk().clone()).unwrap().store("probe");
    let etag = meta.as_ref().unwrap().etag.clone().unwrap();
    // A first staged copy fetches the blocks it reads, and caches them behind.
    let mut s = area.stage(&up, meta.clone()).unwrap().with_cache(Some(cache.clone()));
    assert_eq!(&s.read(0, 100).await.unwrap()[..], &body[..100]);
    for _ in 0..100 {
        if cache.read("obj", &etag, body.len() as u64, 0, 5 * MIB).is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let fetched = Probe::count(&probe.gets);
    // A second one reads the same block without the store.
    let mut t = area.stage(&up, meta).unwrap().with_cache(Some(cache));
    assert_eq!(&t.read(100, 1000).await.unwrap()[..], &body[100..1100]);
    assert_eq!(Probe::count(&probe.gets), fetched, "served by the data cache");
}
