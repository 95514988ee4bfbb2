//! Fuzzes the config reader: random and mutated TOML, YAML and pyproject
//! texts go through parsing, `${VAR}` interpolation and store resolution; every input
//! must give a registry or one readable error, never a panic. Runs FUZZ_SECS seconds
//! (default 5 here; `scripts/fuzz-config.sh` runs it for a minute or more).

use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use rstore_mount::config::{read_tree, Registry};

const VALID: &str = r#"
[backends.s3main]
type = "s3"
options = { bucket = "b", endpoint_url = "${ENDPOINT:-http://127.0.0.1:9000}", key = "${KEY}", secret = "s", region_name = "eu" }
retry = { max_attempts = 4 }
[backends.s3main.options.client_options.config_kwargs.s3]
addressing_style = "virtual"
[backends.disk]
type = "local"
options = { root = "/tmp" }
[stores.data]
backend = "s3main"
root_path = "raw/2024"
[stores.files]
backend = "disk"
"#;

/// Pieces that reach the parser's corners: tables, odd keys, placeholders, paths.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("[backends.x]\n".to_string()),
        Just("[stores.y]\nbackend = \"x\"\n".to_string()),
        Just("type = \"s3\"\n".to_string()),
        Just("type = \"local\"\noptions = { root = \"/\" }\n".to_string()),
        Just("root_path = \"../..\"\n".to_string()),
        Just("root_path = \"a\\u0000b\"\n".to_string()),
        Just("retry = { max_attempts = -1 }\n".to_string()),
        Just("retry = { max_attempts = 1e300 }\n".to_string()),
        Just("options = { bucket = \"${\" }\n".to_string()),
        Just("options = { bucket = \"$${X}${Y:-${Z}}\" }\n".to_string()),
        Just("options = { tls_ca_bundle = \"/nonexistent\" }\n".to_string()),
        Just("[tool.remote-store.stores.z]\n".to_string()),
        Just("stores: {a: {backend: b}}\nbackends: {b: {type: memory}}\n".to_string()),
        Just("- [1, 2]\n".to_string()),
        "[a-z.\\[\\]=\"{},$:\\- \n]{0,40}",
        any::<String>(),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(fragment(), 0..12).prop_map(|v| v.concat()),
        // A valid config with bytes cut out and noise put in.
        (0..VALID.len(), 0..VALID.len(), "[\\PC]{0,8}").prop_map(|(a, b, noise)| {
            let (lo, hi) = (a.min(b), a.max(b));
            let cut = |i: usize| (0..=i).rev().find(|j| VALID.is_char_boundary(*j)).unwrap_or(0);
            format!("{}{noise}{}", &VALID[..cut(lo)], &VALID[cut(hi)..])
        }),
    ]
}

fn exercise(dir: &std::path::Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    let env = |k: &str| (k != "UNSET").then(|| format!("v-{k}"));
    let Ok(tree) = read_tree(&path) else { return };
    let Ok(reg) = Registry::from_tree(&path, tree, &env) else { return };
    let _ = format!("{reg:?}");
    for store in reg.store_names() {
        if let Ok(r) = reg.resolve(store) {
            let _ = format!("{r:?}");
        }
    }
}

#[test]
fn the_config_reader_never_panics() {
    let secs: u64 = std::env::var("FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let dir = tempfile::tempdir().unwrap();
    let mut runner = TestRunner::default();
    let strategy = text();
    let mut cases = 0u64;
    while Instant::now() < deadline {
        let body = strategy.new_tree(&mut runner).unwrap().current();
        for name in ["rstore.toml", "rstore.yaml", "pyproject.toml"] {
            let shown = body.clone();
            let r = std::panic::catch_unwind(|| exercise(dir.path(), name, &body));
            assert!(r.is_ok(), "panic on {name}:\n{shown:?}");
        }
        cases += 1;
    }
    eprintln!("fuzz_config: {cases} inputs x 3 formats in {secs} s, no panic");
    assert!(cases > 100);
}
