//! The README's "Mount your S3 bucket" steps, run as written: each shell block marked
//! `<!-- tested: tests/readme.rs ... -->` is taken from README.md and run by bash against
//! moto, with only the endpoint and the credentials replaced. A README edit that breaks
//! the steps breaks this test.

mod common;

use std::process::Command;

use common::mount::BIN;
use common::{put_object, MotoServer, Unmount};

const README: &str = include_str!("../README.md");

/// The shell blocks that follow a `tested: tests/readme.rs` marker, in order.
fn tested_blocks() -> Vec<String> {
    let mut blocks = Vec::new();
    let mut rest = README;
    while let Some(at) = rest.find("<!-- tested: tests/readme.rs") {
        rest = &rest[at..];
        let start = rest.find("```sh\n").expect("a ```sh block after the marker") + "```sh\n".len();
        let end = start + rest[start..].find("```").expect("the block ends");
        blocks.push(rest[start..end].to_string());
        rest = &rest[end..];
    }
    blocks
}

/// `block` with each line starting with `from` replaced by `to`, and each `(a, b)` of
/// `replace` applied; fails if a substitution matches nothing (the README changed).
fn substitute(block: &str, line_starts: &[(&str, &str)], replace: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for line in block.lines() {
        match line_starts.iter().find(|(from, _)| line.starts_with(from)) {
            Some((_, to)) => out.push_str(to),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    for (from, _) in line_starts {
        assert!(block.lines().any(|l| l.starts_with(from)), "README block has no line starting {from:?}:\n{block}");
    }
    for (a, b) in replace {
        assert!(out.contains(a), "README block has no {a:?}:\n{block}");
        out = out.replace(a, b);
    }
    out
}

/// Runs `script` with bash as a user with a fresh home whose PATH finds the binary
/// under test as `rstore-mount`; unmounts `mounts` (under the home) whatever happens.
fn run_as_new_user(script: &str, mounts: &[&str]) -> (i32, String, String) {
    let home = tempfile::tempdir().unwrap();
    let bin_dir = home.path().join("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    std::os::unix::fs::symlink(BIN, bin_dir.join("rstore-mount")).unwrap();
    let _guards: Vec<Unmount> = mounts.iter().map(|m| Unmount(home.path().join(m))).collect();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .env("HOME", home.path())
        .env("PATH", path)
        // Caches and logs inside the home, as for a non-root user, so the test leaves
        // nothing in /var.
        .env("XDG_CACHE_HOME", home.path().join(".cache"))
        .env("XDG_STATE_HOME", home.path().join(".local/state"))
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("RSTORE_CONFIG")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

fn moto_with_a_file() -> MotoServer {
    let moto = MotoServer::start(&["my-bucket"]);
    put_object(&moto.endpoint, "my-bucket", "reports/2026-11.csv", b"month,total\n11,42\n");
    moto
}

#[test]
fn the_readme_has_both_tested_blocks() {
    let blocks = tested_blocks();
    assert_eq!(blocks.len(), 2, "{blocks:#?}");
    assert!(blocks[0].contains("rstore-mount mybucket ~/mybucket"));
    assert!(blocks[1].contains("rstore-mount minio ~/minio"));
}

/// Plain AWS S3: the README's config has no endpoint, so the test adds the one line that
/// points it at moto, and sets moto's credentials where the README exports real ones.
#[test]
fn mount_your_s3_bucket_works_as_written() {
    let moto = moto_with_a_file();
    let block = &tested_blocks()[0];
    let script = substitute(
        block,
        &[("export AWS_ACCESS_KEY_ID=", "export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing")],
        &[("[backends.aws.options]\n", &format!("[backends.aws.options]\nendpoint_url = \"{}\"\n", moto.endpoint))],
    );
    let (code, out, err) = run_as_new_user(&script, &["mybucket"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}\nscript:\n{script}");
    assert!(out.contains("reports"), "ls -l shows the bucket's top level: {out}");
    assert!(!err.contains("error"), "{err}");
}

#[test]
fn mount_an_s3_compatible_server_works_as_written() {
    let moto = moto_with_a_file();
    let block = &tested_blocks()[1];
    let script = substitute(
        block,
        &[("export MINIO_ACCESS_KEY=", "export MINIO_ACCESS_KEY=testing MINIO_SECRET_KEY=testing")],
        &[("https://minio.example.net:9000", &moto.endpoint)],
    );
    let (code, out, err) = run_as_new_user(&script, &["minio"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}\nscript:\n{script}");
    assert!(out.contains("reports"), "ls -l shows the bucket's top level: {out}");
    assert!(!err.contains("error"), "{err}");
}
