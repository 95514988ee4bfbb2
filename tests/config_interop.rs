//! The config read as remote-store 0.33 reads it: for each difference, our
//! verdict on a file (it mounts / one-line error) is compared with remote-store's own
//! on the same file, and the S3 client settings are checked where they show: on the
//! wire (a capturing server) or on the objects (moto).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{python::venv_bin, MotoServer, Mounted, ACCESS_KEY, SECRET_KEY};
use rstore_mount::config::Registry;

/// remote-store's verdict: the store opens (`ok`) or the first line of its error.
const VERDICT: &str = r#"
import sys, os
from remote_store import Registry, RegistryConfig
from remote_store._config import resolve_env
path, store = sys.argv[1], sys.argv[2]
try:
    if path.endswith((".yaml", ".yml")):
        import yaml
        with open(path) as f:
            cfg = RegistryConfig.from_dict(resolve_env(yaml.safe_load(f)))
    else:
        cfg = RegistryConfig.from_toml(path, resolve_env_vars=True)
    with Registry(cfg) as reg:
        reg.get_store(store)
    print("ok")
except Exception as e:
    print("error: " + str(e).splitlines()[0])
"#;

fn theirs(cfg: &Path, store: &str) -> String {
    let out = Command::new(venv_bin("python")).arg("-c").arg(VERDICT).arg(cfg).arg(store).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Ours: the config loads and the store resolves, as `--list` and a mount do.
fn ours(cfg: &Path, store: &str) -> Result<(), String> {
    Registry::load(cfg)?.resolve(store).map(drop)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const S3: &str = "[backends.b]\ntype = \"s3\"\n[backends.b.options]\nbucket = \"bkt\"\nendpoint_url = \"http://127.0.0.1:9\"\nkey = \"k\"\nsecret = \"s\"\n";

#[test]
fn our_verdict_on_each_config_difference_is_remote_stores() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, &str, String)> = vec![
        ("good", "c.toml", format!("{S3}[stores.s]\nbackend = \"b\"\n")),
        (
            "yaml merge key",
            "c.yaml",
            "base: &base {endpoint_url: 'http://127.0.0.1:9', key: k, secret: s}\n\
             backends:\n  b: {type: s3, options: {<<: *base, bucket: two}}\nstores:\n  s: {backend: b}\n"
                .into(),
        ),
        (
            "yaml 1.1 booleans",
            "c.yaml",
            "backends:\n  b:\n    type: s3\n    options:\n      bucket: b\n      endpoint_url: 'http://127.0.0.1:9'\n\
             \x20     reject_write_under_file_ancestor: yes\n      client_options: {anon: on, use_listings_cache: off}\n\
             stores:\n  s: {backend: b, root_path: ~}\n"
                .into(),
        ),
        (
            "retry jitter off",
            "c.yaml",
            "backends:\n  b:\n    type: s3\n    options: {bucket: b, endpoint_url: 'http://127.0.0.1:9'}\n    retry: {jitter: off, max_attempts: 3}\nstores:\n  s: {backend: b}\n".into(),
        ),
        ("unknown option", "c.toml", format!("{S3}regoin_name = \"x\"\n[stores.s]\nbackend = \"b\"\n")),
        ("retry keys", "c.toml", format!("{S3}[backends.b.retry]\nmax_attempts = 4\nbackoff_base = 0.2\njitter = 0\ntimeout = 30\n[stores.s]\nbackend = \"b\"\n")),
        ("unknown retry key", "c.toml", format!("{S3}[backends.b.retry]\nattempts = 4\n[stores.s]\nbackend = \"b\"\n")),
        ("bad retry value", "c.toml", format!("{S3}[backends.b.retry]\nmax_attempts = 0\n[stores.s]\nbackend = \"b\"\n")),
        ("missing backend", "c.toml", format!("{S3}[stores.s]\nbackend = \"b\"\n[stores.t]\nbackend = \"nope\"\n")),
        ("backend without type", "c.toml", "[backends.b]\n[backends.b.options]\nroot = \"/tmp\"\n[stores.s]\nbackend = \"b\"\n".into()),
        ("missing bucket", "c.toml", "[backends.b]\ntype = \"s3\"\n[stores.s]\nbackend = \"b\"\n".into()),
        ("retry on local", "c.toml", "[backends.b]\ntype = \"local\"\n[backends.b.options]\nroot = \"/tmp\"\n[backends.b.retry]\nmax_attempts = 2\n[stores.s]\nbackend = \"b\"\n".into()),
        ("missing ca bundle", "c.toml", format!("{S3}tls_ca_bundle = \"/no/such.pem\"\n[stores.s]\nbackend = \"b\"\n")),
        ("literal ${} and ${A", "c.toml", format!("{S3}[stores.s]\nbackend = \"b\"\nroot_path = \"x${{}}y${{A\"\n")),
        ("env default", "c.toml", format!("{S3}[stores.s]\nbackend = \"b\"\nroot_path = \"${{RSTORE_UNSET_VAR:-deflt}}\"\n")),
        ("local root created", "c.toml", format!("[backends.b]\ntype = \"local\"\n[backends.b.options]\nroot = \"{}/made/here\"\n[stores.s]\nbackend = \"b\"\n", dir.path().display())),
    ];
    let mut table = Vec::new();
    for (what, file, text) in &cases {
        let sub = dir.path().join(what.replace(' ', "_"));
        std::fs::create_dir_all(&sub).unwrap();
        let cfg = write(&sub, file, text);
        let (them, us) = (theirs(&cfg, "s"), ours(&cfg, "s"));
        table.push(format!("{what}: remote-store {them} | rstore-mount {us:?}"));
        assert_eq!(them == "ok", us.is_ok(), "{what}: remote-store says {them}, we say {us:?}");
        if let Err(e) = us {
            assert!(!e.contains('\n'), "{what}: one line: {e}");
        }
    }
    eprintln!("{}", table.join("\n"));
}

/// One HTTP request as a server sees it; answers 200 with an empty body.
fn capture_one(listener: TcpListener) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 16384];
        let n = s.read(&mut buf).unwrap();
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        String::from_utf8_lossy(&buf[..n]).to_lowercase()
    })
}

fn s3_store_for(text: &str, dir: &Path) -> rstore_mount::backend::S3Store {
    let cfg = write(dir, "c.toml", text);
    let store = Registry::load(&cfg).unwrap().resolve("s").unwrap();
    match store.backend.kind {
        rstore_mount::config::BackendKind::S3(o) => {
            common::rt().block_on(rstore_mount::backend::S3Store::new(&o)).unwrap()
        }
        _ => unreachable!(),
    }
}

/// Region from AWS_REGION, region from a profile in AWS_CONFIG_FILE, the session
/// token and requester-pays on the wire. (One test: it sets process environment.)
#[test]
fn region_chain_profile_token_and_requester_pays_are_honoured() {
    use rstore_mount::backend::ObjectStore;
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let base = format!(
        "[backends.b]\ntype = \"s3\"\n[backends.b.options]\nbucket = \"bkt\"\nendpoint_url = \"http://127.0.0.1:{port}\"\n\
         key = \"{ACCESS_KEY}\"\nsecret = \"{SECRET_KEY}\"\n"
    );
    std::env::set_var("AWS_REGION", "eu-central-1");
    let store = s3_store_for(&format!("{base}[stores.s]\nbackend = \"b\"\n"), dir.path());
    assert_eq!(store.region().as_deref(), Some("eu-central-1"), "no region_name: the AWS chain");
    std::env::remove_var("AWS_REGION");
    let aws_config = write(dir.path(), "aws-config", "[profile other]\nregion = ap-south-1\n");
    std::env::set_var("AWS_CONFIG_FILE", &aws_config);
    let with_profile =
        format!("{base}[backends.b.options.client_options]\nprofile = \"other\"\n[stores.s]\nbackend = \"b\"\n");
    assert_eq!(s3_store_for(&with_profile, dir.path()).region().as_deref(), Some("ap-south-1"));
    std::env::remove_var("AWS_CONFIG_FILE");
    let store = s3_store_for(&format!("{base}[stores.s]\nbackend = \"b\"\n"), dir.path());
    assert_eq!(store.region().as_deref(), Some("us-east-1"), "nothing set: us-east-1");

    let wire = format!(
        "{base}[backends.b.options.client_options]\ntoken = \"session-token-value\"\nrequester_pays = true\n\
         [stores.s]\nbackend = \"b\"\n"
    );
    let seen = capture_one(listener);
    let store = s3_store_for(&wire, dir.path());
    let _ = common::rt().block_on(store.head("k"));
    let request = seen.join().unwrap();
    assert!(request.contains("x-amz-security-token: session-token-value"), "{request}");
    assert!(request.contains("x-amz-request-payer: requester"), "{request}");

    // anon: unsigned requests, although a key is configured.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let anon = wire
        .replace(&format!("127.0.0.1:{port}"), &format!("127.0.0.1:{}", listener.local_addr().unwrap().port()))
        .replace("requester_pays = true", "anon = true");
    let seen = capture_one(listener);
    let _ = common::rt().block_on(s3_store_for(&anon, dir.path()).head("k"));
    let request = seen.join().unwrap();
    assert!(request.starts_with("head /bkt/k"), "{request}");
    assert!(!request.contains("authorization:") && !request.contains("x-amz-security-token"), "{request}");
    assert_eq!(theirs(&write(dir.path(), "anon.toml", &anon), "s"), "ok", "remote-store takes anon too");
}

/// `s3_additional_kwargs`: SSE and ACL reach every object written through the mount.
#[test]
fn sse_and_acl_are_set_on_objects_written_through_the_mount() {
    let server = MotoServer::start(&["bkt"]);
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[backends.b]\ntype = \"s3\"\n[backends.b.options]\nbucket = \"bkt\"\nendpoint_url = \"{}\"\n\
         key = \"{ACCESS_KEY}\"\nsecret = \"{SECRET_KEY}\"\nregion_name = \"us-east-1\"\n\
         [backends.b.options.client_options.s3_additional_kwargs]\nServerSideEncryption = \"AES256\"\nACL = \"public-read\"\n\
         [stores.data]\nbackend = \"b\"\n",
        server.endpoint
    );
    let cfg = write(dir.path(), "c.toml", &text);
    let m = Mounted::start(&cfg, "data", &[]);
    std::fs::write(m.join("small.txt"), "hello").unwrap();
    std::fs::write(m.join("big.bin"), vec![1u8; 9 << 20]).unwrap();
    let c = common::raw_client(&server.endpoint);
    common::rt().block_on(async {
        for key in ["small.txt", "big.bin"] {
            let head = c.head_object().bucket("bkt").key(key).send().await.unwrap();
            assert_eq!(head.server_side_encryption().map(|s| s.as_str()), Some("AES256"), "{key}");
            let acl = c.get_object_acl().bucket("bkt").key(key).send().await.unwrap();
            let public = acl.grants().iter().any(|g| {
                g.grantee().and_then(|u| u.uri()).is_some_and(|u| u.ends_with("AllUsers"))
                    && g.permission().map(|p| p.as_str()) == Some("READ")
            });
            assert!(public, "{key}: public-read ACL: {acl:?}");
        }
    });
    // remote-store opens the same file.
    assert_eq!(theirs(&cfg, "data"), "ok");
    drop(m);
}
