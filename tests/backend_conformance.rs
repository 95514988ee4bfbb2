//! One suite of object-store behaviour, run against memory, local, two real S3 servers
//! over HTTP (s3s-fs in-process, moto), Azurite, SQLite and PostgreSQL (sql-blob); and
//! the read-only http store against a real HTTP server.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{MotoServer, S3sServer};
use rstore_mount::backend::{
    list_all, BackendError, DynStore, LocalStore, MemoryStore, ObjectStore, PartSource, Prefixed, UserMeta,
};
use rstore_mount::config::{
    AddressingStyle, AzureOptions, HostKeyPolicy, HttpOptions, S3Options, Secret, SftpOptions, SqlOptions,
};

/// What a server cannot do (documented quirks), so the suite skips only those checks.
#[derive(Clone, Copy)]
struct Quirks {
    /// s3s-fs cannot hold a key `a` and a key `a/b` at once.
    file_and_dir_coexist: bool,
    /// s3s-fs cannot store an empty `dir/` marker object.
    markers: bool,
    /// s3s-fs and moto ignore x-amz-copy-source-if-match on UploadPartCopy.
    part_copy_if_match: bool,
    /// SFTP keeps POSIX attributes, not arbitrary metadata: mode and whole-second mtime
    /// round-trip, other keys do not.
    posix_attrs_only: bool,
    /// SFTP reads a directory whole (readdir has no pages to resume from).
    one_page: bool,
}

const FULL: Quirks = Quirks {
    file_and_dir_coexist: true,
    markers: true,
    part_copy_if_match: true,
    posix_attrs_only: false,
    one_page: false,
};

async fn s3_store(endpoint: &str, bucket: &str) -> DynStore {
    let o = S3Options {
        bucket: bucket.into(),
        endpoint_url: Some(endpoint.into()),
        key: Some(Secret::new(common::ACCESS_KEY)),
        secret: Some(Secret::new(common::SECRET_KEY)),
        region: Some("us-east-1".into()),
        tls_ca_bundle: None,
        addressing_style: AddressingStyle::Path,
        ..S3Options::default()
    };
    Arc::new(rstore_mount::backend::S3Store::new(&o).await.unwrap())
}

async fn conformance(s: DynStore, q: Quirks) {
    s.check().await.unwrap();
    // put / head / get_range
    let body = Bytes::from(common::pattern(100_000, 1));
    let meta = s.put("dir/obj.bin", body.clone()).await.unwrap();
    assert_eq!(meta.size, 100_000);
    let head = s.head("dir/obj.bin").await.unwrap();
    assert_eq!((head.key.as_str(), head.size), ("dir/obj.bin", 100_000));
    let age = std::time::SystemTime::now().duration_since(head.last_modified).unwrap_or_default();
    assert!(age.as_secs() < 120, "last_modified is recent: {age:?}");
    assert_eq!(s.get_range("dir/obj.bin", 0..100_000, None).await.unwrap(), body);
    assert_eq!(s.get_range("dir/obj.bin", 10..20, None).await.unwrap(), body.slice(10..20));
    assert_eq!(s.get_range("dir/obj.bin", 99_990..200_000, None).await.unwrap(), body.slice(99_990..));
    assert!(s.get_range("dir/obj.bin", 100_000..100_010, None).await.unwrap().is_empty());
    assert_eq!(s.head("missing").await.unwrap_err(), BackendError::NotFound);
    assert_eq!(s.get_range("missing", 0..1, None).await.unwrap_err(), BackendError::NotFound);
    // If-Match guards reads across versions.
    if let Some(etag) = head.etag.as_deref() {
        assert!(s.get_range("dir/obj.bin", 0..10, Some(etag)).await.is_ok());
        let err = s.get_range("dir/obj.bin", 0..10, Some("\"not-the-etag\"")).await.unwrap_err();
        assert_eq!(err, BackendError::PreconditionFailed);
    }
    // empty object, overwrite
    s.put("dir/empty", Bytes::new()).await.unwrap();
    assert_eq!(s.head("dir/empty").await.unwrap().size, 0);
    s.put("dir/empty", Bytes::from_static(b"now full")).await.unwrap();
    assert_eq!(s.get_range("dir/empty", 0..100, None).await.unwrap(), &b"now full"[..]);
    // delimited listing with pagination
    for i in 0..7 {
        s.put(&format!("list/f{i}"), Bytes::from_static(b"x")).await.unwrap();
    }
    s.put("list/sub/a", Bytes::from_static(b"x")).await.unwrap();
    s.put("list/sub2/b", Bytes::from_static(b"x")).await.unwrap();
    let mut names = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let page = s.list_page("list/", Some("/"), token, Some(3)).await.unwrap();
        pages += 1;
        names.extend(page.objects.iter().map(|o| o.key.clone()));
        names.extend(page.prefixes.iter().cloned());
        match page.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    // A store of real directories lists the directory itself (as S3 lists a marker).
    names.retain(|n| n != "list/");
    names.sort();
    let want = ["list/f0", "list/f1", "list/f2", "list/f3", "list/f4", "list/f5", "list/f6", "list/sub/", "list/sub2/"];
    assert_eq!(names, want);
    assert!(pages >= 3 || q.one_page, "paginated: {pages} pages");
    let all = list_all(&*s, "list/", None).await.unwrap();
    let files: Vec<_> = all.objects.iter().filter(|o| !o.key.ends_with('/')).collect();
    assert_eq!(files.len(), 9);
    assert!(all.prefixes.is_empty());
    // multipart: complete makes the object, abort leaves nothing
    let id = s.create_multipart("mp/obj").await.unwrap();
    let p1 = Bytes::from(common::pattern(5 * 1024 * 1024, 2));
    let p2 = Bytes::from_static(b"tail");
    let c1 = s.upload_part("mp/obj", &id, 1, p1.clone()).await.unwrap();
    let c2 = s.upload_part("mp/obj", &id, 2, p2.clone()).await.unwrap();
    assert_eq!(s.head("mp/obj").await.unwrap_err(), BackendError::NotFound, "invisible until complete");
    let m = s.complete_multipart("mp/obj", &id, vec![c1, c2]).await.unwrap();
    assert_eq!(m.size, p1.len() as u64 + 4);
    assert_eq!(s.get_range("mp/obj", 5 * 1024 * 1024..6 * 1024 * 1024, None).await.unwrap(), p2);
    let id = s.create_multipart("mp/aborted").await.unwrap();
    s.upload_part("mp/aborted", &id, 1, Bytes::from_static(b"x")).await.unwrap();
    s.abort_multipart("mp/aborted", &id).await.unwrap();
    assert_eq!(s.head("mp/aborted").await.unwrap_err(), BackendError::NotFound);
    // copy and delete
    s.copy("dir/obj.bin", "copied/obj.bin").await.unwrap();
    assert_eq!(s.get_range("copied/obj.bin", 0..100_000, None).await.unwrap(), body);
    s.delete("copied/obj.bin").await.unwrap();
    assert_eq!(s.head("copied/obj.bin").await.unwrap_err(), BackendError::NotFound);
    s.delete("copied/obj.bin").await.unwrap(); // idempotent
    if q.posix_attrs_only {
        posix_attrs(&s).await;
    } else {
        user_metadata(&s).await;
    }
    part_copy(&s, q).await;
    if q.markers {
        markers(&s).await;
    }
    if q.file_and_dir_coexist {
        s.put("both", Bytes::from_static(b"f")).await.unwrap();
        s.put("both/inner", Bytes::from_static(b"i")).await.unwrap();
        assert_eq!(s.head("both").await.unwrap().size, 1);
    }
}

/// x-amz-meta-* round trips through PUT, multipart, copy and a metadata-only update.
async fn user_metadata(s: &DynStore) {
    let user: UserMeta = [("mode", "33261"), ("mtime", "1700000000.5")].map(|(k, v)| (k.into(), v.into())).into();
    s.put_with("meta/put", Bytes::from_static(b"body"), &user).await.unwrap();
    assert_eq!(s.head("meta/put").await.unwrap().user.as_ref(), Some(&user));
    let id = s.create_multipart_with("meta/mp", &user).await.unwrap();
    let part = s.upload_part("meta/mp", &id, 1, Bytes::from_static(b"mp")).await.unwrap();
    s.complete_multipart("meta/mp", &id, vec![part]).await.unwrap();
    assert_eq!(s.head("meta/mp").await.unwrap().user.as_ref(), Some(&user));
    s.copy("meta/put", "meta/copied").await.unwrap();
    assert_eq!(s.head("meta/copied").await.unwrap().user.as_ref(), Some(&user), "copy keeps metadata");
    let changed: UserMeta = [("mode", "33188")].map(|(k, v)| (k.into(), v.into())).into();
    let m = s.set_user_meta("meta/put", &changed).await.unwrap();
    assert_eq!(m.user.as_ref(), Some(&changed));
    assert_eq!(s.head("meta/put").await.unwrap().user.as_ref(), Some(&changed));
    assert_eq!(s.get_range("meta/put", 0..10, None).await.unwrap(), &b"body"[..], "body kept");
    assert!(s.head("meta/plain").await.is_err());
    s.put("meta/plain", Bytes::from_static(b"p")).await.unwrap();
    assert_eq!(s.head("meta/plain").await.unwrap().user, Some(UserMeta::new()));
}

/// What a POSIX store keeps: the mode's permission bits and the whole-second mtime,
/// through PUT, multipart, copy and a metadata-only update.
async fn posix_attrs(s: &DynStore) {
    let user: UserMeta = [("mode", "33261"), ("mtime", "1700000000")].map(|(k, v)| (k.into(), v.into())).into();
    let kept = |m: &rstore_mount::backend::ObjectMeta| {
        let u = m.user.clone().unwrap_or_default();
        (u.get("mode").cloned(), u.get("mtime").cloned())
    };
    let want = (Some("33261".to_string()), Some("1700000000".to_string()));
    s.put_with("meta/put", Bytes::from_static(b"body"), &user).await.unwrap();
    assert_eq!(kept(&s.head("meta/put").await.unwrap()), want);
    let id = s.create_multipart_with("meta/mp", &user).await.unwrap();
    let part = s.upload_part("meta/mp", &id, 1, Bytes::from_static(b"mp")).await.unwrap();
    s.complete_multipart("meta/mp", &id, vec![part]).await.unwrap();
    assert_eq!(kept(&s.head("meta/mp").await.unwrap()), want);
    s.copy("meta/put", "meta/copied").await.unwrap();
    assert_eq!(kept(&s.head("meta/copied").await.unwrap()), want, "copy keeps the attributes");
    let changed: UserMeta = [("mode", "33188"), ("mtime", "1700000001")].map(|(k, v)| (k.into(), v.into())).into();
    s.set_user_meta("meta/put", &changed).await.unwrap();
    assert_eq!(kept(&s.head("meta/put").await.unwrap()), (Some("33188".into()), Some("1700000001".into())));
    assert_eq!(s.get_range("meta/put", 0..10, None).await.unwrap(), &b"body"[..], "body kept");
}

/// UploadPartCopy: a part taken from a range of another object, checked by ETag.
async fn part_copy(s: &DynStore, q: Quirks) {
    let src = Bytes::from(common::pattern(6 << 20, 9));
    let etag = s.put("pc/src", src.clone()).await.unwrap().etag;
    let id = s.create_multipart("pc/dst").await.unwrap();
    let from = PartSource { key: "pc/src".into(), range: 0..(5 << 20), if_match: etag };
    let p1 = s.upload_part_copy("pc/dst", &id, 1, &from).await.unwrap();
    let p2 = s.upload_part("pc/dst", &id, 2, Bytes::from_static(b"tail")).await.unwrap();
    s.complete_multipart("pc/dst", &id, vec![p1, p2]).await.unwrap();
    let got = s.get_range("pc/dst", 0..(6 << 20), None).await.unwrap();
    assert_eq!(got.len(), (5 << 20) + 4);
    assert!(got[..5 << 20] == src[..5 << 20] && &got[5 << 20..] == b"tail");
    let id = s.create_multipart("pc/stale").await.unwrap();
    let stale = PartSource { if_match: Some("\"0000\"".into()), ..from };
    if q.part_copy_if_match {
        assert!(s.upload_part_copy("pc/stale", &id, 1, &stale).await.is_err(), "a changed source is refused");
    }
    s.abort_multipart("pc/stale", &id).await.unwrap();
}

async fn markers(s: &DynStore) {
    s.put("marker/", Bytes::new()).await.unwrap();
    assert!(s.head("marker/").await.is_ok());
    let root = s.list_page("", Some("/"), None, None).await.unwrap();
    assert!(root.prefixes.contains(&"marker/".to_string()), "{:?}", root.prefixes);
    s.delete("marker/").await.unwrap();
    assert_eq!(s.head("marker/").await.unwrap_err(), BackendError::NotFound);
}

#[tokio::test]
async fn memory_backend_conforms() {
    conformance(Arc::new(MemoryStore::new()), FULL).await;
}

#[tokio::test]
async fn local_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let q = Quirks { file_and_dir_coexist: false, ..FULL };
    conformance(Arc::new(LocalStore::new(dir.path()).unwrap()), q).await;
}

#[tokio::test]
async fn prefixed_backend_conforms_and_hides_the_outside() {
    let inner: DynStore = Arc::new(MemoryStore::new());
    inner.put("outside", Bytes::from_static(b"o")).await.unwrap();
    let scoped: DynStore = Arc::new(Prefixed::new(inner.clone(), "data/raw"));
    conformance(scoped.clone(), FULL).await;
    assert!(inner.head("data/raw/dir/obj.bin").await.is_ok());
    let root = scoped.list_page("", Some("/"), None, None).await.unwrap();
    assert!(root.objects.iter().all(|o| o.key != "outside"));
}

#[test]
fn s3s_fs_server_conforms() {
    let server = S3sServer::start(&["bkt"]);
    let q = Quirks {
        file_and_dir_coexist: false,
        markers: false,
        part_copy_if_match: false,
        posix_attrs_only: false,
        one_page: false,
    };
    common::rt().block_on(async { conformance(s3_store(&server.endpoint, "bkt").await, q).await });
}

#[test]
fn moto_server_conforms() {
    let server = MotoServer::start(&["bkt"]);
    let q = Quirks { part_copy_if_match: false, ..FULL };
    common::rt().block_on(async {
        let store = s3_store(&server.endpoint, "bkt").await;
        conformance(store.clone(), q).await;
        // Uploads carry a CRC32 checksum the server stores (and verified).
        store.put("sum/obj", Bytes::from_static(b"checked bytes")).await.unwrap();
        let raw = common::raw_client(&server.endpoint);
        let head = raw
            .head_object()
            .bucket("bkt")
            .key("sum/obj")
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert!(head.checksum_crc32().is_some(), "PUT sent a CRC32 checksum: {head:?}");
    });
}

#[test]
fn s3_errors_are_classified() {
    let server = S3sServer::start(&["bkt"]);
    common::rt().block_on(async {
        let missing = s3_store(&server.endpoint, "no-such-bucket").await;
        assert!(matches!(missing.check().await.unwrap_err(), BackendError::NoSuchBucket(_)));
        let mut o = S3Options {
            bucket: "bkt".into(),
            endpoint_url: Some(server.endpoint.clone()),
            key: Some(Secret::new("wrong")),
            secret: Some(Secret::new("wrong-secret")),
            region: None,
            tls_ca_bundle: None,
            addressing_style: AddressingStyle::Path,
            ..S3Options::default()
        };
        let bad = rstore_mount::backend::S3Store::new(&o).await.unwrap();
        let err = bad.check().await.unwrap_err();
        assert!(matches!(err, BackendError::AccessDenied(_)), "{err:?}");
        assert!(!format!("{err} {bad:?}").contains("wrong-secret"), "secret leaked");
        o.endpoint_url = Some(format!("http://127.0.0.1:{}", common::free_port()));
        let down = rstore_mount::backend::S3Store::new(&o).await.unwrap();
        assert!(matches!(down.check().await.unwrap_err(), BackendError::Transient(_)));
    });
}

fn azure_options(server: &common::azurite::Azurite, container: &str) -> AzureOptions {
    AzureOptions {
        container: container.into(),
        account_url: Some(server.url.clone()),
        account_key: Some(Secret::new(common::azurite::KEY)),
        ..AzureOptions::default()
    }
}

fn azure_store(server: &common::azurite::Azurite, container: &str) -> DynStore {
    Arc::new(rstore_mount::backend::AzureStore::new(&azure_options(server, container)).unwrap())
}

/// A flat account stores no directory markers (see backend/azure.rs).
const AZURE_FLAT: Quirks = Quirks { markers: false, ..FULL };

#[test]
fn azurite_conforms() {
    let server = common::azurite::Azurite::start(&["ctr"]);
    common::rt().block_on(async {
        let s = azure_store(&server, "ctr");
        conformance(s.clone(), AZURE_FLAT).await;
        // Azure enforces If-Match / If-None-Match on writes, and says so to the probe.
        assert!(rstore_mount::backend::enforces_conditions(&*s).await.unwrap());
        // Unlike S3, a listing carries each blob's metadata.
        let user: UserMeta = [("mode", "33261")].map(|(k, v)| (k.into(), v.into())).into();
        s.put_with("listed/x", Bytes::from_static(b"x"), &user).await.unwrap();
        let page = s.list_page("listed/", Some("/"), None, None).await.unwrap();
        assert_eq!(page.objects[0].user.as_ref(), Some(&user));
        // A folder blob (`hdi_isfolder`, as ADLS Gen2 and adlfs make them) is a directory.
        server.python("svc.get_blob_client('ctr', 'folder').upload_blob(b'', metadata={'hdi_isfolder': 'true'})");
        assert!(s.head("folder/").await.is_ok());
        assert_eq!(s.head("folder").await.unwrap_err(), BackendError::NotFound, "a folder is not a file");
        let root = s.list_page("", Some("/"), None, None).await.unwrap();
        assert!(root.prefixes.contains(&"folder/".to_string()) && root.objects.iter().all(|o| o.key != "folder"));
        let own = s.list_page("folder/", Some("/"), None, Some(1)).await.unwrap();
        assert_eq!(own.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), ["folder/"], "its own marker");
        // A flat account stores no marker (remote-store would list it as a file); with
        // hns = true a marker is a folder blob, a real directory there.
        s.put("flat/", Bytes::new()).await.unwrap();
        assert_eq!(server.python("print(list(svc.get_container_client('ctr').list_blobs('flat')))").trim(), "[]");
        let o = AzureOptions { hns: true, ..azure_options(&server, "ctr") };
        let hns: DynStore = Arc::new(rstore_mount::backend::AzureStore::new(&o).unwrap());
        markers(&hns).await;
        hns.put("deep/", Bytes::new()).await.unwrap();
        let meta = server.python("print(svc.get_blob_client('ctr', 'deep').get_blob_properties().metadata)");
        assert!(meta.contains("hdi_isfolder"), "{meta}");
        // Deleting a marker never deletes a file of the same name.
        s.put("same", Bytes::from_static(b"file")).await.unwrap();
        s.delete("same/").await.unwrap();
        assert!(s.head("same").await.is_ok());
    });
}

#[test]
fn azure_errors_name_the_cause() {
    let server = common::azurite::Azurite::start(&["ctr"]);
    common::rt().block_on(async {
        let missing = azure_store(&server, "no-such-container");
        assert!(matches!(missing.check().await, Err(BackendError::NoSuchBucket(_))));
        let o = AzureOptions {
            container: "ctr".into(),
            account_url: Some(server.url.clone()),
            account_key: Some(Secret::new("d3JvbmcK")),
            ..AzureOptions::default()
        };
        let wrong = rstore_mount::backend::AzureStore::new(&o).unwrap();
        assert!(matches!(wrong.check().await, Err(BackendError::AccessDenied(_))), "{:?}", wrong.check().await);
    });
}

#[test]
fn http_store_reads_and_refuses_writes() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("a/b")).unwrap();
    let body = common::pattern(300_000, 4);
    std::fs::write(root.path().join("a/b/data.bin"), &body).unwrap();
    let server = common::http_server::HttpServer::start(root.path());
    let o = HttpOptions {
        base_url: server.url.clone(),
        headers: Default::default(),
        timeout: 10.0,
        verify_ssl: true,
        max_redirects: 5,
    };
    common::rt().block_on(async {
        let s: DynStore = Arc::new(rstore_mount::backend::HttpStore::new(&o).unwrap());
        s.check().await.unwrap();
        let head = s.head("a/b/data.bin").await.unwrap();
        assert_eq!(head.size, 300_000);
        assert_eq!(s.get_range("a/b/data.bin", 0..300_000, None).await.unwrap(), &body[..]);
        assert_eq!(s.get_range("a/b/data.bin", 1000..1010, head.etag.as_deref()).await.unwrap(), &body[1000..1010]);
        assert_eq!(s.get_range("a/b/data.bin", 299_990..400_000, None).await.unwrap(), &body[299_990..]);
        assert_eq!(s.head("a/b/missing").await.unwrap_err(), BackendError::NotFound);
        // A directory (redirected to its index page) is not a file, and lists its own marker.
        assert_eq!(s.head("a").await.unwrap_err(), BackendError::NotFound);
        let own = s.list_page("a/", Some("/"), None, Some(1)).await.unwrap();
        assert_eq!(own.objects.len(), 1);
        assert!(s.list_page("a/b/data.bin/", Some("/"), None, Some(1)).await.unwrap().objects.is_empty());
        assert!(matches!(s.put("x", Bytes::from_static(b"x")).await, Err(BackendError::Unsupported(_))));
        assert!(matches!(s.delete("a/b/data.bin").await, Err(BackendError::Unsupported(_))));
        let gone = HttpOptions { base_url: format!("{}no-such-dir/", server.url), ..o.clone() };
        let gone = rstore_mount::backend::HttpStore::new(&gone).unwrap();
        assert!(matches!(gone.check().await, Err(BackendError::NoSuchBucket(_))));
    });
}

/// The other two ways remote-store configs sign: a SAS token (copies then carry it on
/// the source URL) and a connection string.
#[test]
fn azurite_conforms_with_a_sas_token_and_with_a_connection_string() {
    let server = common::azurite::Azurite::start(&["sastest", "cstest"]);
    let sas = server.python(&format!(
        "from azure.storage.blob import generate_container_sas, ContainerSasPermissions\n\
         from datetime import datetime, timedelta, timezone\n\
         print(generate_container_sas({:?}, 'sastest', account_key={:?}, permission=ContainerSasPermissions(read=True, \
         write=True, delete=True, list=True, add=True, create=True), expiry=datetime.now(timezone.utc) + timedelta(hours=1)))",
        common::azurite::ACCOUNT,
        common::azurite::KEY
    ));
    let with_sas = AzureOptions {
        container: "sastest".into(),
        account_url: Some(server.url.clone()),
        sas_token: Some(Secret::new(sas.trim())),
        ..AzureOptions::default()
    };
    let with_cs = AzureOptions {
        container: "cstest".into(),
        connection_string: Some(Secret::new(server.connection_string())),
        ..AzureOptions::default()
    };
    common::rt().block_on(async {
        for o in [with_sas, with_cs] {
            let s: DynStore = Arc::new(rstore_mount::backend::AzureStore::new(&o).unwrap());
            conformance(s, AZURE_FLAT).await;
        }
    });
}

fn sql_store(url: &str, max_blob_size: Option<u64>) -> DynStore {
    let o = SqlOptions { url: Secret::new(url), table_name: "objects".into(), create_table: true, max_blob_size };
    Arc::new(rstore_mount::backend::SqlStore::new(&o).unwrap())
}

/// sql-blob keeps no directory rows (remote-store has none), so no markers.
const SQL: Quirks = Quirks { markers: false, ..FULL };

#[test]
fn sqlite_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:///{}", dir.path().join("objects.db").display());
    common::rt().block_on(async {
        let s = sql_store(&url, None);
        s.check().await.unwrap();
        conformance(s.clone(), SQL).await;
        assert!(rstore_mount::backend::enforces_conditions(&*s).await.unwrap(), "conditions checked in a transaction");
        // max_blob_size: a bigger object is refused (EFBIG at the mount), whole or in parts.
        let small = sql_store(&url, Some(10));
        assert!(matches!(small.put("big", Bytes::from_static(b"eleven bytes")).await, Err(BackendError::TooLarge(_))));
        let id = small.create_multipart("big").await.unwrap();
        small.upload_part("big", &id, 1, Bytes::from_static(b"123456")).await.unwrap();
        let over = small.upload_part("big", &id, 2, Bytes::from_static(b"789012")).await;
        assert!(matches!(over, Err(BackendError::TooLarge(_))), "{over:?}");
        assert_eq!(small.head("big").await.unwrap_err(), BackendError::NotFound);
    });
}

#[test]
fn postgresql_conforms() {
    let pg = common::postgres::Postgres::start();
    common::rt().block_on(async {
        let s = sql_store(&pg.url("+psycopg"), None);
        s.check().await.unwrap();
        conformance(s, SQL).await;
        let missing = SqlOptions {
            url: Secret::new(pg.url("")),
            table_name: "absent".into(),
            create_table: false,
            max_blob_size: None,
        };
        let missing = rstore_mount::backend::SqlStore::new(&missing).unwrap();
        assert!(matches!(missing.check().await, Err(BackendError::NoSuchBucket(_))));
    });
}

fn sftp_options(sshd: &common::sshd::Sshd) -> SftpOptions {
    SftpOptions {
        host: "127.0.0.1".into(),
        port: sshd.port,
        username: Some(common::sshd::USER.into()),
        password: Some(Secret::new(common::sshd::PASSWORD)),
        base_path: sshd.data.display().to_string(),
        host_key_policy: HostKeyPolicy::Strict,
        known_host_keys: Some(sshd.known_host.clone()),
        host_keys_path: None,
        timeout: 10.0,
        io_timeout: Some(60.0),
        key_files: Vec::new(),
        allow_agent: false,
        look_for_keys: false,
    }
}

/// SFTP directories are real: `a` and `a/b` cannot both be files.
const SFTP: Quirks = Quirks { file_and_dir_coexist: false, posix_attrs_only: true, one_page: true, ..FULL };

#[test]
fn sftp_server_conforms() {
    let sshd = common::sshd::Sshd::start();
    common::rt().block_on(async {
        let s: DynStore = Arc::new(rstore_mount::backend::SftpStore::new(&sftp_options(&sshd)).unwrap());
        s.check().await.unwrap_or_else(|e| panic!("{e}: {}", sshd.log()));
        conformance(s.clone(), SFTP).await;
        // The server's rename, for a file and for a whole directory.
        s.put("r/d/x", Bytes::from_static(b"x")).await.unwrap();
        s.rename("r/d/x", "r/d/y").await.unwrap();
        s.rename("r/d/", "r/e/").await.unwrap();
        assert_eq!(s.get_range("r/e/y", 0..1, None).await.unwrap(), &b"x"[..]);
        assert_eq!(s.head("r/d/x").await.unwrap_err(), BackendError::NotFound);
        // An exclusive create of an existing name is refused by the server's rename.
        let err = s
            .put_if("r/e/y", Bytes::from_static(b"z"), &UserMeta::new(), &rstore_mount::backend::Condition::IfAbsent)
            .await;
        assert_eq!(err.unwrap_err(), BackendError::PreconditionFailed);
        // Symlinks are the server's own; fifos and devices cannot be made over SFTP.
        let link: UserMeta = [("mode".to_string(), 0o120777.to_string())].into();
        s.put_with("r/link", Bytes::from_static(b"e/y"), &link).await.unwrap();
        assert_eq!(std::fs::read_link(sshd.data.join("r/link")).unwrap(), std::path::Path::new("e/y"));
        let h = s.head("r/link").await.unwrap();
        assert_eq!((h.size, h.user.unwrap()["mode"].as_str()), (3, "41471"));
        assert_eq!(s.get_range("r/link", 0..100, None).await.unwrap(), &b"e/y"[..]);
        let fifo: UserMeta = [("mode".to_string(), 0o010644.to_string())].into();
        assert!(matches!(s.put_with("r/fifo", Bytes::new(), &fifo).await, Err(BackendError::Unsupported(_))));
        // Key authentication, with the host key from a known_hosts file.
        let kh = sshd.path().join("known_hosts");
        std::fs::write(&kh, format!("{}\n", sshd.known_host)).unwrap();
        let by_key = SftpOptions {
            password: None,
            key_files: vec![sshd.client_key.clone()],
            known_host_keys: None,
            host_keys_path: Some(kh),
            ..sftp_options(&sshd)
        };
        let by_key = rstore_mount::backend::SftpStore::new(&by_key).unwrap();
        by_key.check().await.unwrap();
        assert_eq!(by_key.get_range("r/e/y", 0..1, None).await.unwrap(), &b"x"[..]);
    });
}

/// remote-store also takes a table of only `key` and `data` (create_table = false):
/// files read and write, size comes from the data, nothing else is stored.
#[test]
fn a_sqlite_table_of_only_key_and_data_works() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("min.db");
    let made = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg("CREATE TABLE bare (key TEXT PRIMARY KEY, data BLOB NOT NULL); INSERT INTO bare VALUES ('old/a.txt', X'616263');")
        .status()
        .unwrap();
    assert!(made.success(), "sqlite3");
    let o = SqlOptions {
        url: Secret::new(format!("sqlite:///{}", db.display())),
        table_name: "bare".into(),
        create_table: false,
        max_blob_size: None,
    };
    common::rt().block_on(async {
        let s: DynStore = Arc::new(rstore_mount::backend::SqlStore::new(&o).unwrap());
        s.check().await.unwrap();
        assert_eq!(s.head("old/a.txt").await.unwrap().size, 3);
        assert_eq!(s.get_range("old/a.txt", 1..3, None).await.unwrap(), &b"bc"[..]);
        let page = s.list_page("", Some("/"), None, None).await.unwrap();
        assert_eq!(page.prefixes, ["old/"]);
        s.put("new/b.bin", Bytes::from_static(b"12345")).await.unwrap();
        s.copy("new/b.bin", "new/c.bin").await.unwrap();
        assert_eq!(s.get_range("new/c.bin", 0..10, None).await.unwrap(), &b"12345"[..]);
        let user: UserMeta = [("mode".to_string(), "33188".to_string())].into();
        assert!(matches!(s.set_user_meta("new/b.bin", &user).await, Err(BackendError::Unsupported(_))));
        s.delete("new/b.bin").await.unwrap();
        assert_eq!(s.head("new/b.bin").await.unwrap_err(), BackendError::NotFound);
    });
}
