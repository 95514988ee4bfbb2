//! Many machines, one bucket, on a real distributed S3 store: a 3-node Garage cluster
//! (replication factor 3) started by `scripts/cluster.sh`, and mounts in separate
//! processes that talk to different nodes, as mounts on different machines would.
//! docs/SEMANTICS.md, "Many machines, one bucket", states what is checked here.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use common::cluster::GarageCluster;
use common::{pattern, sha256, sha256_file, Mounted};

/// Polls `f` every 50 ms until it returns Some, for at most `limit`.
fn within<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One cluster at a time: three Garage nodes per test already share the machine's cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The TTL both mounts use, and the slack a poll gets beyond it.
const TTL: &str = "1";
const SLACK: Duration = Duration::from_secs(3);

fn mounts(c: &GarageCluster) -> (Mounted, Mounted) {
    let flags = ["--metadata-ttl", TTL, "--negative-metadata-ttl", TTL];
    (Mounted::start(&c.config, "n1", &flags), Mounted::start(&c.config, "n2", &flags))
}

#[test]
fn close_to_open_across_nodes_within_the_ttl_and_never_a_partial_object() {
    let _one = serial();
    let c = GarageCluster::start();
    let (a, b) = mounts(&c);
    // B looks up the name first, so a stale "missing" must expire too.
    assert!(!b.join("small.txt").exists());
    std::fs::write(a.join("small.txt"), b"closed on A\n").unwrap();
    let seen = within(Duration::from_secs(1) + SLACK, || std::fs::read(b.join("small.txt")).ok());
    assert_eq!(seen.as_deref(), Some(&b"closed on A\n"[..]), "B reads it within the TTL");

    // 200 MiB written on A while B polls: whenever B sees the name, it sees all of it.
    let data = pattern(200 << 20, 9);
    let want = sha256(&data);
    let path = a.join("big.bin");
    let writer = std::thread::spawn(move || std::fs::write(path, &data));
    let mut looks = 0;
    while !writer.is_finished() {
        if let Ok(m) = std::fs::metadata(b.join("big.bin")) {
            assert_eq!(m.len(), 200 << 20, "B saw a partial object");
        }
        looks += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    writer.join().unwrap().unwrap();
    assert!(looks > 5, "B polled while A wrote ({looks} looks)");
    let whole = within(Duration::from_secs(1) + SLACK, || {
        std::fs::metadata(b.join("big.bin")).ok().filter(|m| m.len() == 200 << 20)
    });
    assert!(whole.is_some(), "B sees the whole file within the TTL");
    assert_eq!(sha256_file(&b.join("big.bin")), want);

    // A rename and a delete on A show on B within the TTL.
    std::fs::rename(a.join("small.txt"), a.join("renamed.txt")).unwrap();
    let moved = within(Duration::from_secs(1) + SLACK, || {
        (!b.join("small.txt").exists() && b.join("renamed.txt").exists()).then_some(())
    });
    assert!(moved.is_some(), "the rename shows on B");
    std::fs::remove_file(a.join("renamed.txt")).unwrap();
    assert!(within(Duration::from_secs(1) + SLACK, || (!b.join("renamed.txt").exists()).then_some(())).is_some());
    let names: Vec<String> =
        std::fs::read_dir(&b.path).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names, ["big.bin"], "B lists what A left");
}

#[test]
fn a_reader_on_one_node_keeps_its_version_across_an_overwrite_on_another() {
    let _one = serial();
    let c = GarageCluster::start();
    let (a, b) = mounts(&c);
    let (old, new) = (pattern(32 << 20, 1), pattern(32 << 20, 2));
    std::fs::write(a.join("v.bin"), &old).unwrap();
    let reader = within(Duration::from_secs(1) + SLACK, || std::fs::File::open(b.join("v.bin")).ok()).unwrap();
    common::read_across_an_overwrite(reader, &old, || std::fs::write(a.join("v.bin"), &new).unwrap());
    let fresh = within(Duration::from_secs(1) + SLACK, || std::fs::read(b.join("v.bin")).ok().filter(|d| *d == new));
    assert!(fresh.is_some(), "a new open on B reads the new version");
}

/// Garage 2.5 takes If-Match / If-None-Match and ignores them: the mount says so once
/// and falls back to unconditional writes, where the last close wins (documented).
#[test]
fn on_garage_the_last_close_wins_as_documented() {
    let _one = serial();
    let c = GarageCluster::start();
    let (a, b) = mounts(&c);
    assert!(a.log_text().contains("the server ignores conditional writes"), "{}", a.log_text());
    std::fs::write(a.join("doc.txt"), b"0123456789").unwrap();
    let open = |m: &Mounted| {
        within(Duration::from_secs(1) + SLACK, || {
            std::fs::OpenOptions::new().read(true).write(true).open(m.join("doc.txt")).ok()
        })
        .unwrap()
    };
    let (mut fa, mut fb) = (open(&a), open(&b));
    fa.write_all(b"AA").unwrap();
    fb.write_all(b"BBB").unwrap();
    fa.sync_all().unwrap();
    fb.sync_all().unwrap();
    drop((fa, fb));
    let last = within(Duration::from_secs(1) + SLACK, || {
        std::fs::read(a.join("doc.txt")).ok().filter(|d| d.as_slice() == b"BBB3456789")
    });
    assert!(last.is_some(), "B's close came last and its version is the object");
}

/// Copies that run while a node dies: a file whose close succeeded is intact.
fn copy_while(m: &Mounted, tag: &str, during: impl FnOnce()) -> (Vec<(String, String)>, bool) {
    let src = tempfile::tempdir().unwrap();
    let big = pattern(500 << 20, 5);
    let mut want = vec![(format!("{tag}-big.bin"), sha256(&big))];
    std::fs::write(src.path().join("big.bin"), &big).unwrap();
    drop(big);
    std::fs::create_dir(src.path().join("small")).unwrap();
    for i in 0..500 {
        let body = pattern(1000 + i * 37, i as u64);
        want.push((format!("{tag}-small/f{i}"), sha256(&body)));
        std::fs::write(src.path().join(format!("small/f{i}")), body).unwrap();
    }
    let dst = m.path.clone();
    let (s, t) = (src.path().to_path_buf(), tag.to_string());
    let big_copy = std::thread::spawn({
        let (s, dst, t) = (s.clone(), dst.clone(), t.clone());
        move || std::process::Command::new("cp").arg(s.join("big.bin")).arg(dst.join(format!("{t}-big.bin"))).status()
    });
    let small_copy = std::thread::spawn(move || {
        std::process::Command::new("cp").arg("-r").arg(s.join("small")).arg(dst.join(format!("{t}-small"))).status()
    });
    // The failure comes mid-copy: once 64 MiB of the big file are written, not before.
    let target = m.join(&format!("{tag}-big.bin"));
    let started = within(Duration::from_secs(60), || {
        std::fs::metadata(&target).ok().filter(|md| md.len() >= 64 << 20).map(|_| ())
    });
    assert!(started.is_some() && !big_copy.is_finished(), "the copy is under way when the node dies");
    during();
    // Both are waited for (no short circuit): the sources must outlive both copies.
    let big_ok = big_copy.join().unwrap().unwrap().success();
    let small_ok = small_copy.join().unwrap().unwrap().success();
    let ok = big_ok && small_ok;
    (want, ok)
}

/// Every file of `want` that exists under `root` has the sha256 it was written with.
fn intact(root: &Path, want: &[(String, String)]) -> usize {
    let mut present = 0;
    for (name, sha) in want {
        if root.join(name).exists() {
            assert_eq!(&sha256_file(&root.join(name)), sha, "{name} is corrupt");
            present += 1;
        }
    }
    present
}

/// Node 3 is neither mount's endpoint: killing it mid-copy changes nothing for the mounts.
#[test]
fn a_node_that_is_no_mounts_endpoint_can_die_mid_copy() {
    let _one = serial();
    let c = GarageCluster::start();
    let (a, b) = mounts(&c);
    let (want, ok) = copy_while(&a, "a", || c.kill(3));
    assert!(ok, "both copies succeed with one of three nodes down");
    // Read back through the other mount (another node), while node 3 is still down.
    let all = within(Duration::from_secs(1) + SLACK, || (b.join("a-big.bin").exists()).then_some(()));
    assert!(all.is_some());
    assert_eq!(intact(&b.path, &want), want.len(), "every file is whole on the other node");
    c.revive(3);
}

/// Node 2 is B's endpoint: B's requests fail with EIO after its retry budget (it does
/// not hang), A keeps working, and B recovers once the node is back, without a remount.
/// A file whose close succeeded on B before the failure is intact.
#[test]
fn a_mount_whose_node_dies_fails_with_eio_and_recovers_when_it_returns() {
    let _one = serial();
    let c = GarageCluster::start();
    let (a, b) = mounts(&c);
    std::fs::write(b.join("before.txt"), b"written through node 2\n").unwrap();
    let (want, ok) = copy_while(&b, "b", || c.kill(2));
    assert!(!ok, "B's copies fail once its node is gone");
    let started = Instant::now();
    let err = std::fs::read(b.join("never-seen.txt")).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(30), "failed in {:?}, not hung", started.elapsed());
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    let on_b = (|| {
        let mut f = std::fs::File::create(b.join("during.txt"))?;
        f.write_all(b"x")?;
        f.sync_all()
    })();
    assert!(on_b.is_err(), "a write through B cannot succeed while its node is down");
    // A, on node 1, keeps working.
    std::fs::write(a.join("a-during.txt"), b"A still works\n").unwrap();
    assert_eq!(std::fs::read(a.join("a-during.txt")).unwrap(), b"A still works\n");
    c.revive(2);
    let back = within(Duration::from_secs(30), || std::fs::read(b.join("a-during.txt")).ok());
    assert_eq!(back.as_deref(), Some(&b"A still works\n"[..]), "B recovers without a remount");
    assert_eq!(std::fs::read(b.join("before.txt")).unwrap(), b"written through node 2\n");
    // Whatever B's copies managed to close is whole (seen from A, through node 1).
    intact(&a.path, &want);
    let mut f = std::fs::File::create(b.join("after.txt")).unwrap();
    f.write_all(b"B writes again\n").unwrap();
    drop(f);
    assert_eq!(std::fs::read(b.join("after.txt")).unwrap(), b"B writes again\n");
}
