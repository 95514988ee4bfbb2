use super::*;
use std::collections::HashMap;

const EXAMPLE: &str = r#"
[backends.s3main]
type = "s3"
[backends.s3main.options]
bucket = "my-bucket"
endpoint_url = "http://127.0.0.1:9000"
key = "${AWS_ACCESS_KEY_ID}"
secret = "${AWS_SECRET_ACCESS_KEY:-}"
region_name = "us-east-1"
[backends.s3main.retry]
max_attempts = 5
[backends.files]
type = "local"
[backends.files.options]
root = "/srv/files"
[stores.data]
backend = "s3main"
root_path = "data/raw"
[stores.local]
backend = "files"
"#;

fn env() -> impl Fn(&str) -> Option<String> {
    let vars: HashMap<&str, &str> =
        [("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"), ("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")].into();
    move |k: &str| vars.get(k).map(|v| v.to_string())
}

fn load_str(name: &str, text: &str) -> Result<Registry, String> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    Registry::from_tree(&p, read_tree(&p)?, &env())
}

fn s3(reg: &Registry, store: &str) -> S3Options {
    match reg.resolve(store).unwrap().backend.kind {
        BackendKind::S3(o) => *o,
        other => panic!("not s3: {other:?}"),
    }
}

#[test]
fn example_toml_parses_every_field() {
    let reg = load_str("c.toml", EXAMPLE).unwrap();
    assert_eq!(reg.store_names(), ["data", "local"]);
    let store = reg.resolve("data").unwrap();
    assert_eq!(store.root_path, "data/raw");
    assert_eq!(store.backend.retry.max_attempts, 5);
    let o = s3(&reg, "data");
    assert_eq!(o.bucket, "my-bucket");
    assert_eq!(o.endpoint_url.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(o.key.as_ref().unwrap().expose(), "AKIDEXAMPLE");
    assert_eq!(o.secret.as_ref().unwrap().expose(), "s3cr3t-value");
    assert_eq!(o.region.as_deref(), Some("us-east-1"));
    assert_eq!(o.addressing_style, AddressingStyle::Path);
    match reg.resolve("local").unwrap().backend.kind {
        BackendKind::Local { root } => assert_eq!(root, PathBuf::from("/srv/files")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn yaml_and_pyproject_give_the_same_registry() {
    let yaml = r#"
backends:
  s3main:
    type: s3
    options: {bucket: my-bucket, endpoint_url: "http://127.0.0.1:9000", key: "${AWS_ACCESS_KEY_ID}"}
    retry: {max_attempts: 5}
stores:
  data: {backend: s3main, root_path: data/raw}
"#;
    for name in ["c.yaml", "c.yml"] {
        let reg = load_str(name, yaml).unwrap();
        assert_eq!(reg.resolve("data").unwrap().root_path, "data/raw");
        assert_eq!(s3(&reg, "data").key.unwrap().expose(), "AKIDEXAMPLE");
    }
    let py =
        EXAMPLE.replace("[backends.", "[tool.remote-store.backends.").replace("[stores.", "[tool.remote-store.stores.");
    let reg = load_str("pyproject.toml", &format!("[project]\nname = \"x\"\n{py}")).unwrap();
    assert_eq!(s3(&reg, "data").bucket, "my-bucket");
}

#[test]
fn unknown_keys_warn_at_top_and_are_ignored_below() {
    let text = format!("extra = 1\n{EXAMPLE}\n[stores.data2]\nbackend = \"files\"\nfancy = true\n");
    let reg = load_str("c.toml", &text.replace("region_name", "unknown_opt = 1\nregion_name")).unwrap();
    assert_eq!(reg.warnings.len(), 1);
    assert!(reg.warnings[0].contains("'extra'"));
    assert!(reg.resolve("data2").is_ok());
    // Backend options are checked when the store is opened, as remote-store does.
    let err = reg.resolve("data").unwrap_err();
    assert!(err.contains("'s3main'") && err.contains("'unknown_opt'"), "{err}");
}

#[test]
fn unsupported_backend_type_names_backend_type_and_supported() {
    let reg = load_str("c.toml", "[backends.b]\ntype = \"ftp\"\n[stores.s]\nbackend = \"b\"\n").unwrap();
    let err = reg.resolve("s").unwrap_err();
    assert!(err.contains("'b'") && err.contains("'ftp'") && err.contains(SUPPORTED_TYPES), "{err}");
    assert!(!err.contains('\n'));
}

#[test]
fn unknown_store_lists_known_ones() {
    let reg = load_str("c.toml", EXAMPLE).unwrap();
    let err = reg.resolve("nope").unwrap_err();
    assert!(err.contains("unknown store 'nope'") && err.contains("data, local"), "{err}");
}

#[test]
fn missing_required_options_name_the_path() {
    let reg = load_str("c.toml", "[backends.b]\ntype = \"s3\"\n[stores.s]\nbackend = \"b\"\n").unwrap();
    assert!(reg.resolve("s").unwrap_err().contains("backends.b.options.bucket is required"));
    let reg = load_str("c.toml", "[backends.b]\ntype = \"local\"\n[stores.s]\nbackend = \"b\"\n").unwrap();
    assert!(reg.resolve("s").unwrap_err().contains("backends.b.options.root is required"));
    // Every store must name a defined backend, checked at load (remote-store's Registry()).
    let err = load_str("c.toml", "[stores.s]\nbackend = \"zz\"\n").unwrap_err();
    assert!(err.contains("stores.s.backend") && err.contains("'zz'"), "{err}");
    let err = load_str("c.toml", "[backends.b]\n[backends.b.options]\nroot = \"/x\"\n").unwrap_err();
    assert!(err.contains("backends.b.type is required"), "{err}");
    let err = load_str("c.toml", "[backends.b]\ntype = 3\n").unwrap_err();
    assert!(err.contains("backends.b.type must be a string"), "{err}");
    let err = load_str("c.toml", "[backends.b]\ntype = \"memory\"\n[stores.s]\nbackend = \"b\"\nroot_path = 5\n");
    assert!(err.unwrap_err().contains("stores.s.root_path must be a string"));
    let err = load_str("c.toml", "[stores.s]\nroot_path = \"x\"\n").unwrap_err();
    assert!(err.contains("stores.s.backend is required"), "{err}");
}

#[test]
fn unset_variable_is_an_error_naming_the_path() {
    let err = load_str("c.toml", &EXAMPLE.replace("AWS_ACCESS_KEY_ID", "NOT_SET_ANYWHERE")).unwrap_err();
    assert!(err.contains("backends.s3main.options.key") && err.contains("NOT_SET_ANYWHERE"), "{err}");
}

#[test]
fn endpoint_without_scheme_gets_https_and_virtual_style_is_honoured() {
    let text = EXAMPLE.replace("http://127.0.0.1:9000", "minio.example:9000").replace(
        "[backends.s3main.retry]",
        "[backends.s3main.options.client_options.config_kwargs.s3]\naddressing_style = \"virtual\"\n[backends.s3main.retry]",
    );
    let o = s3(&load_str("c.toml", &text).unwrap(), "data");
    assert_eq!(o.endpoint_url.as_deref(), Some("https://minio.example:9000"));
    assert_eq!(o.addressing_style, AddressingStyle::Virtual);
    let no_endpoint = EXAMPLE.replace("endpoint_url = \"http://127.0.0.1:9000\"\n", "");
    let o = s3(&load_str("c.toml", &no_endpoint).unwrap(), "data");
    assert_eq!((o.endpoint_url, o.addressing_style), (None, AddressingStyle::Virtual));
}

#[test]
fn s3_pyarrow_is_the_same_backend() {
    let reg = load_str("c.toml", &EXAMPLE.replace("type = \"s3\"", "type = \"s3-pyarrow\"")).unwrap();
    assert_eq!(s3(&reg, "data").bucket, "my-bucket");
}

#[test]
fn retry_attempts_are_validated() {
    // Checked at load for every backend, as RetryPolicy(**table) is.
    let err = load_str("c.toml", &EXAMPLE.replace("max_attempts = 5", "max_attempts = 0")).unwrap_err();
    assert!(err.contains("backends.s3main.retry.max_attempts"), "{err}");
    let err =
        load_str("c.toml", &EXAMPLE.replace("max_attempts = 5", "max_attempts = 5\nbackof_base = 1")).unwrap_err();
    assert!(err.contains("backends.s3main.retry.backof_base"), "{err}");
    let reg =
        load_str("c.toml", &EXAMPLE.replace("max_attempts = 5", "max_attempts = 4\nbackoff_base = 0.5\njitter = 0"));
    let retry = reg.unwrap().resolve("data").unwrap().backend.retry;
    assert_eq!((retry.max_attempts, retry.backoff_base, retry.jitter), (4, Some(0.5), Some(0.0)));
}

#[test]
fn root_path_is_normalised_like_remote_store() {
    assert_eq!(normalize_root("/data//raw/./x/").unwrap(), "data/raw/x");
    assert_eq!(normalize_root("a\\b\\c").unwrap(), "a/b/c");
    assert_eq!(normalize_root("").unwrap(), "");
    assert_eq!(normalize_root("/").unwrap(), "");
    assert!(normalize_root("a/../b").unwrap_err().contains(".."));
    assert!(normalize_root("a\0b").unwrap_err().contains("NUL"));
    let err = load_str("c.toml", &EXAMPLE.replace("data/raw", "../up")).unwrap_err();
    assert!(err.contains("stores.data.root_path"), "{err}");
}

#[test]
fn secrets_never_show_in_debug() {
    let reg = load_str("c.toml", EXAMPLE).unwrap();
    let resolved = reg.resolve("data").unwrap();
    for shown in [format!("{reg:?}"), format!("{resolved:?}"), format!("{:#?}", resolved)] {
        assert!(!shown.contains("s3cr3t-value") && !shown.contains("AKIDEXAMPLE"), "{shown}");
    }
}

#[test]
fn explicit_ca_bundle_wins_and_must_be_a_file() {
    let ca = tempfile::NamedTempFile::new().unwrap();
    let shown = ca.path().display().to_string();
    let text = EXAMPLE.replace("region_name", &format!("tls_ca_bundle = \"{shown}\"\nregion_name"));
    assert_eq!(s3(&load_str("c.toml", &text).unwrap(), "data").tls_ca_bundle, Some(ca.path().to_path_buf()));
    for bad in ["/no/such/ca.pem", ""] {
        let text = EXAMPLE.replace("region_name", &format!("tls_ca_bundle = \"{bad}\"\nregion_name"));
        let err = load_str("c.toml", &text).unwrap().resolve("data").unwrap_err();
        assert!(err.contains("tls_ca_bundle"), "{bad:?}: {err}");
    }
}

#[test]
fn yaml_merge_keys_and_anchors_are_applied() {
    let yaml = r#"
base: &base
  endpoint_url: " http://127.0.0.1:9000 "
  key: k
  secret: s
backends:
  one: {type: s3, options: {<<: *base, bucket: one}}
  two:
    type: s3
    options:
      <<: *base
      bucket: two
      endpoint_url: http://other:1
stores:
  x: {backend: one}
  y: {backend: two}
"#;
    let reg = load_str("c.yaml", yaml).unwrap();
    let (x, y) = (s3(&reg, "x"), s3(&reg, "y"));
    assert_eq!((x.bucket.as_str(), x.endpoint_url.as_deref()), ("one", Some("http://127.0.0.1:9000")));
    assert_eq!((y.bucket.as_str(), y.endpoint_url.as_deref()), ("two", Some("http://other:1")), "own keys win");
    assert_eq!(y.key.unwrap().expose(), "k");
}

#[test]
fn types_remote_store_cannot_open_as_files_are_refused_with_a_reason() {
    let reg = load_str("c.toml", "[backends.q]\ntype = \"sql-query\"\n[stores.s]\nbackend = \"q\"\n").unwrap();
    assert!(reg.resolve("s").unwrap_err().contains("not a file store"));
    let reg = load_str(
        "c.toml",
        "[backends.m]\ntype = \"memory\"\n[backends.m.retry]\nmax_attempts = 2\n[stores.s]\nbackend = \"m\"\n",
    );
    assert!(reg.unwrap().resolve("s").unwrap_err().contains("no retry table"));
}

#[test]
fn weak_etags_turn_the_data_cache_off() {
    let mut text = String::new();
    for (name, ty, options) in [
        ("s", "s3", "bucket = \"b\""),
        ("a", "azure", "container = \"c\"\naccount_name = \"acct\"\naccount_key = \"a2V5\"\nhns = false"),
        ("f", "sftp", "host = \"example.org\"\nusername = \"u\"\npassword = \"p\""),
        ("h", "http", "base_url = \"http://example.org/data/\""),
        ("l", "local", "root = \"/tmp\""),
    ] {
        text += &format!("[backends.{name}]\ntype = \"{ty}\"\n[backends.{name}.options]\n{options}\n[stores.{name}]\nbackend = \"{name}\"\n");
    }
    let reg = load_str("rstore.toml", &text).unwrap();
    let weak = |s: &str| reg.resolve(s).unwrap().backend.kind.weak_etag().is_some();
    assert_eq!([weak("s"), weak("a"), weak("f"), weak("h"), weak("l")], [false, false, true, true, false]);
}
