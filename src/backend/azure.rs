//! Azure Blob Storage (remote-store's `azure` type), on the Azure SDK for Rust's
//! `azure_storage_blobs`. Only this file imports it.
//!
//! How S3's operations map onto the Blob REST API
//! (<https://learn.microsoft.com/rest/api/storageservices/blob-service-rest-api>):
//! - HEAD → Get Blob Properties; GET with Range → Get Blob with `x-ms-range`.
//! - LIST with a delimiter → List Blobs with `include=metadata`: unlike S3, a listing
//!   carries each blob's metadata, so a directory listing shows stored modes at no cost.
//! - PutObject → Put Blob; a multipart upload → Put Block per part (the block ID names
//!   the upload and the part number) and Put Block List at completion, which carries the
//!   metadata and the condition. Blocks never committed expire after 7 days (there is no
//!   abort request).
//! - CopyObject → Copy Blob (the copy keeps the source's metadata); CopyObject onto
//!   itself for metadata → Set Blob Metadata.
//! - Conditions → `If-Match` / `If-None-Match: *`, which Azure and Azurite enforce.
//!
//! ETags: Azure quotes them in headers and not in listings; they are kept unquoted here
//! (so the two compare equal) and quoted again when sent.
//!
//! Directory markers: Azure's own directory convention is an empty blob `dir` with
//! metadata `hdi_isfolder=true` (ADLS Gen2 shows its real directories so through the
//! Blob API; Hadoop's WASB and adlfs write them on flat accounts). Such blobs are read as
//! S3's `dir/` markers. They are written only with `hns = true`, where they are real
//! directories: on a flat account remote-store lists a folder blob as an empty file, so
//! there an empty directory made through the mount is not stored (as remote-store has
//! no directories but key prefixes; the SDK cannot name a blob `dir/` either).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use azure_core::error::ErrorKind;
use azure_core::prelude::{IfMatchCondition, Metadata};
use azure_core::RetryOptions;
use azure_storage::{CloudLocation, ConnectionString, StorageCredentials};
use azure_storage_blobs::prelude::{BlobBlockType, BlobClient, BlockId, BlockList, ClientBuilder, ContainerClient};
use bytes::Bytes;
use futures::StreamExt;

use super::{BackendError, CompletedPart, Condition, ListPage, ObjectMeta, ObjectStore, Result, UserMeta};
use crate::config::AzureOptions;

/// One container of one storage account.
pub struct AzureStore {
    container: ContainerClient,
    /// The SAS token the requests are signed with, if any: Copy Blob needs it on the
    /// source URL too (Azure authorizes a copy source only by SAS or in-account keys).
    sas: Option<String>,
    /// `hns = true`: directory markers are stored as folder blobs (real directories).
    hns: bool,
    /// Metadata of each multipart upload in progress, set on the blob at completion
    /// (Azure has no create-upload request to carry it).
    uploads: Mutex<HashMap<String, UserMeta>>,
}

impl std::fmt::Debug for AzureStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureStore").field("container", &self.container.container_name()).finish()
    }
}

impl AzureStore {
    /// A client for the container the options name. Credentials, in remote-store's order:
    /// a connection string; else `account_key`, then `sas_token`; else the default Azure
    /// credential chain (environment, managed identity, Azure CLI). Errors: a connection
    /// string that does not parse, an account name that cannot be found.
    pub fn new(o: &AzureOptions) -> std::result::Result<Self, String> {
        let (location, credentials, sas) = match &o.connection_string {
            Some(cs) => from_connection_string(cs.expose())?,
            None => {
                let account = account_name(o)?;
                let location = match &o.account_url {
                    Some(url) => CloudLocation::Custom { account: account.clone(), uri: url.clone() },
                    None => CloudLocation::Public { account: account.clone() },
                };
                let sas = o.sas_token.as_ref().filter(|_| o.account_key.is_none());
                (location, credentials(o, &account)?, sas.map(|s| s.expose().trim_start_matches('?').to_string()))
            }
        };
        // Retries are ours (backend::retry): one policy, one budget for every store type.
        let builder = ClientBuilder::with_location(location, credentials).retry(RetryOptions::none());
        let container = builder.container_client(o.container.clone());
        Ok(Self { container, sas, hns: o.hns, uploads: Mutex::new(HashMap::new()) })
    }

    fn blob(&self, key: &str) -> BlobClient {
        self.container.blob_client(key)
    }

    /// The folder blob `name` as the marker `name/`, if there is one.
    async fn folder_blob(&self, name: &str) -> Option<ObjectMeta> {
        let r = self.blob(name).get_properties().await.ok()?;
        let m = blob_meta(name, &r.blob);
        m.key.ends_with('/').then_some(m)
    }
}

/// The account a URL names: `acct` of `https://acct.blob.core.windows.net`, or the first
/// path segment of an emulator URL (`http://127.0.0.1:10000/devstoreaccount1`).
fn account_name(o: &AzureOptions) -> std::result::Result<String, String> {
    if let Some(a) = &o.account_name {
        return Ok(a.clone());
    }
    let url = o.account_url.as_deref().unwrap_or_default();
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = host.split(':').next().unwrap_or(host);
    let from_host = host.split_once('.').map(|(a, _)| a).filter(|_| host.parse::<std::net::IpAddr>().is_err());
    let from_path = path.split('/').next().filter(|s| !s.is_empty());
    match (host, from_host, from_path) {
        ("localhost", _, Some(p)) | (_, None, Some(p)) => Ok(p.to_string()),
        (_, Some(a), _) => Ok(a.to_string()),
        _ => Err(format!("cannot tell the storage account from account_url '{url}': set account_name")),
    }
}

fn credentials(o: &AzureOptions, account: &str) -> std::result::Result<StorageCredentials, String> {
    if let Some(key) = &o.account_key {
        return Ok(StorageCredentials::access_key(account.to_string(), key.expose().to_string()));
    }
    if let Some(sas) = &o.sas_token {
        return StorageCredentials::sas_token(sas.expose().trim_start_matches('?'))
            .map_err(|e| format!("sas_token does not parse: {}", e.kind()));
    }
    let chain = azure_identity::create_default_credential()
        .map_err(|e| format!("no account_key or sas_token, and the default Azure credential chain failed: {e}"))?;
    Ok(StorageCredentials::token_credential(chain))
}

/// Where the account is, how to sign, and the SAS token when that is how.
type Endpoint = (CloudLocation, StorageCredentials, Option<String>);

fn from_connection_string(cs: &str) -> std::result::Result<Endpoint, String> {
    // The parser's errors quote the string, which may hold a key: say only where.
    let parsed = ConnectionString::new(cs).map_err(|_| "connection_string does not parse".to_string())?;
    if parsed.use_development_storage == Some(true) {
        let (address, port) = ("127.0.0.1".to_string(), 10000);
        return Ok((CloudLocation::Emulator { address, port }, StorageCredentials::emulator(), None));
    }
    let account = parsed.account_name.ok_or("connection_string has no AccountName")?.to_string();
    let credentials =
        parsed.storage_credentials().map_err(|_| "connection_string has no AccountKey or SharedAccessSignature")?;
    let location = match (parsed.blob_endpoint, parsed.endpoint_suffix) {
        (Some(uri), _) => CloudLocation::Custom { account, uri: uri.trim_end_matches('/').to_string() },
        (None, Some(suffix)) => {
            let uri = format!("https://{account}.blob.{suffix}");
            CloudLocation::Custom { account, uri }
        }
        (None, None) => CloudLocation::Public { account },
    };
    let sas = parsed.sas.filter(|_| parsed.account_key.is_none()).map(|s| s.trim_start_matches('?').to_string());
    Ok((location, credentials, sas))
}

/// An SDK error as a `BackendError`, by HTTP status and Azure error code
/// (<https://learn.microsoft.com/rest/api/storageservices/blob-service-error-codes>).
fn classify(e: azure_core::Error) -> BackendError {
    match e.kind() {
        ErrorKind::HttpResponse { status, error_code } => {
            let code = error_code.clone().unwrap_or_default();
            match u16::from(*status) {
                404 if code == "ContainerNotFound" => BackendError::NoSuchBucket(code),
                404 => BackendError::NotFound,
                412 => BackendError::PreconditionFailed,
                // Put Blob with If-None-Match: * onto an existing blob.
                409 if code == "BlobAlreadyExists" => BackendError::PreconditionFailed,
                401 | 403 => BackendError::AccessDenied(if code.is_empty() { status.to_string() } else { code }),
                429 | 503 if code == "ServerBusy" || *status == 429 => BackendError::Throttled(code),
                408 | 500..=599 => BackendError::Transient(format!("HTTP {status} {code}")),
                400 | 416 => BackendError::InvalidInput(format!("HTTP {status} {code}")),
                _ => BackendError::Other(format!("HTTP {status} {code}")),
            }
        }
        ErrorKind::Io => BackendError::Transient(super::redact::urls(&e.to_string())),
        ErrorKind::Credential => BackendError::AccessDenied(super::redact::urls(&e.to_string())),
        _ => BackendError::Other(super::redact::urls(&e.to_string())),
    }
}

fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_string()
}

fn quoted(etag: &str) -> String {
    format!("\"{}\"", etag.trim_matches('"'))
}

fn condition(cond: &Condition) -> Option<IfMatchCondition> {
    match cond {
        Condition::Always => None,
        Condition::IfMatch(e) => Some(IfMatchCondition::Match(quoted(e))),
        Condition::IfAbsent => Some(IfMatchCondition::NotMatch("*".into())),
    }
}

fn metadata(user: &UserMeta) -> Metadata {
    let mut m = Metadata::new();
    for (k, v) in user {
        m.insert(k.clone(), v.clone());
    }
    m
}

/// The metadata key of Azure's directory convention.
const FOLDER: &str = "hdi_isfolder";

/// The blob that holds `key`: a marker `dir/` lives in the folder blob `dir`.
fn blob_name(key: &str) -> &str {
    key.strip_suffix('/').unwrap_or(key)
}

/// What is stored on the blob for `key`: a marker's blob also says it is a folder.
fn metadata_for(key: &str, user: &UserMeta) -> Metadata {
    let mut m = metadata(user);
    if key.ends_with('/') {
        m.insert(FOLDER, "true");
    }
    m
}

/// User metadata with lower-case names (Azure keeps the case it was given; S3 and our
/// headers use lower case), without the folder flag.
fn user_meta(m: Option<&HashMap<String, String>>) -> UserMeta {
    m.map(|m| m.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).filter(|(k, _)| k != FOLDER).collect())
        .unwrap_or_default()
}

fn is_folder(m: Option<&HashMap<String, String>>) -> bool {
    m.is_some_and(|m| m.iter().any(|(k, v)| k.eq_ignore_ascii_case(FOLDER) && v.eq_ignore_ascii_case("true")))
}

fn system_time(t: time::OffsetDateTime) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(t.unix_timestamp_nanos()).unwrap_or(0))
}

/// A blob as the layers above see it: a folder blob `dir` is the marker `dir/`.
fn blob_meta(name: &str, b: &azure_storage_blobs::blob::Blob) -> ObjectMeta {
    let key = if is_folder(b.metadata.as_ref()) { format!("{name}/") } else { name.to_string() };
    ObjectMeta {
        key,
        size: b.properties.content_length,
        last_modified: system_time(b.properties.last_modified),
        etag: Some(unquote(b.properties.etag.as_ref())),
        user: Some(user_meta(b.metadata.as_ref())),
    }
}

/// The block ID of part `number` of upload `id`: Azure wants every block ID of a blob to
/// have the same length, hence the fixed width.
fn block_id(id: &str, number: i32) -> BlockId {
    BlockId::new(Bytes::from(format!("{id}-{number:06}")))
}

#[async_trait]
impl ObjectStore for AzureStore {
    /// One List Blobs of at most one entry: it proves the container exists and the
    /// credentials may list, which is what a mount needs. (remote-store asks for the
    /// container's properties, which a container SAS may not read.)
    async fn check(&self) -> Result<()> {
        match self.list_page("", None, None, Some(1)).await {
            Ok(_) => Ok(()),
            Err(BackendError::NotFound | BackendError::NoSuchBucket(_)) => {
                Err(BackendError::NoSuchBucket(self.container.container_name().to_string()))
            }
            Err(e) => Err(e),
        }
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        if key.ends_with('/') && !self.hns {
            // A folder blob if there is one (the listing asks for it beside its first
            // page), else a directory exists while blobs lie under it: one round trip.
            return match self.list_page(key, None, None, Some(1)).await?.objects.into_iter().next() {
                Some(m) if m.key == key => Ok(m),
                Some(_) => Ok(ObjectMeta::unstored_marker(key, SystemTime::UNIX_EPOCH, None)),
                None => Err(BackendError::NotFound),
            };
        }
        let r = self.blob(blob_name(key)).get_properties().await.map_err(classify)?;
        let m = blob_meta(blob_name(key), &r.blob);
        // A folder blob answers only as a marker, a file only as a file.
        if m.key != key {
            return Err(BackendError::NotFound);
        }
        Ok(m)
    }

    async fn get_range(&self, key: &str, range: Range<u64>, if_match: Option<&str>) -> Result<Bytes> {
        if range.is_empty() || key.ends_with('/') {
            return Ok(Bytes::new());
        }
        let mut get = self.blob(key).get().range(range.clone()).chunk_size(range.end - range.start);
        if let Some(e) = if_match {
            get = get.if_match(IfMatchCondition::Match(quoted(e)));
        }
        let mut pages = get.into_stream();
        match pages.next().await {
            None => Ok(Bytes::new()),
            Some(Ok(r)) => r.data.collect().await.map_err(classify),
            // A range that starts at or past the end: nothing there, as S3 clamps.
            Some(Err(e)) if matches!(e.kind(), ErrorKind::HttpResponse { status, .. } if u16::from(*status) == 416) => {
                Ok(Bytes::new())
            }
            Some(Err(e)) => Err(classify(e)),
        }
    }

    async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: Option<i32>,
    ) -> Result<ListPage> {
        let mut list = self.container.list_blobs().include_metadata(true);
        if !prefix.is_empty() {
            list = list.prefix(prefix.to_string());
        }
        if let Some(d) = delimiter {
            list = list.delimiter(d.to_string());
        }
        if let Some(n) = max_keys.and_then(|n| u32::try_from(n).ok()).and_then(std::num::NonZeroU32::new) {
            list = list.max_results(azure_core::prelude::MaxResults::new(n));
        }
        let first = token.is_none();
        if let Some(t) = token {
            list = list.marker(t);
        }
        // S3 lists a directory's own marker `dir/` under prefix `dir/`; its folder blob
        // `dir` lies outside that prefix, so it is asked for beside the first page.
        let own_marker = async {
            match prefix.strip_suffix('/').filter(|_| first) {
                Some(name) => self.folder_blob(name).await,
                None => None,
            }
        };
        let mut pages = list.into_stream();
        let (page, own) = tokio::join!(pages.next(), own_marker);
        let page = match page {
            None => return Ok(ListPage::default()),
            Some(r) => r.map_err(classify)?,
        };
        let mut out = ListPage {
            objects: own.into_iter().collect(),
            prefixes: page.blobs.prefixes().map(|p| p.name.clone()).collect(),
            next_token: page.next_marker.map(|m| m.as_str().to_string()).filter(|m| !m.is_empty()),
        };
        for b in page.blobs.blobs() {
            let m = blob_meta(&b.name, b);
            // A folder blob `p/d` under prefix `p/` with delimiter `/` is S3's common
            // prefix `p/d/`.
            let is_prefix = m.key.ends_with('/') && delimiter.is_some_and(|d| m.key[prefix.len()..].contains(d));
            if is_prefix {
                out.prefixes.push(m.key);
            } else {
                out.objects.push(m);
            }
        }
        out.prefixes.sort();
        out.prefixes.dedup();
        Ok(out)
    }

    async fn put_if(&self, key: &str, body: Bytes, user: &UserMeta, cond: &Condition) -> Result<ObjectMeta> {
        if key.ends_with('/') && !self.hns {
            // Not stored on a flat account (see above).
            return Ok(ObjectMeta::unstored_marker(key, SystemTime::now(), Some(user.clone())));
        }
        let size = body.len() as u64;
        let mut put = self.blob(blob_name(key)).put_block_blob(body).metadata(metadata_for(key, user));
        if let Some(c) = condition(cond) {
            put = put.if_match(c);
        }
        let r = put.await.map_err(classify)?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size,
            last_modified: system_time(r.last_modified),
            etag: Some(unquote(&r.etag)),
            user: Some(user.clone()),
        })
    }

    async fn create_multipart_with(&self, _key: &str, user: &UserMeta) -> Result<String> {
        // Fixed width, unique per process and upload: block IDs of one blob must all be
        // the same length, and a blob's uncommitted blocks from other uploads must not mix.
        let id = super::random_hex(8);
        self.uploads.lock().expect("poisoned").insert(id.clone(), user.clone());
        Ok(id)
    }

    async fn upload_part(&self, key: &str, upload_id: &str, number: i32, body: Bytes) -> Result<CompletedPart> {
        let id = block_id(upload_id, number);
        self.blob(key).put_block(id, body).await.map_err(classify)?;
        Ok(CompletedPart { number, etag: format!("{upload_id}-{number:06}") })
    }

    async fn complete_multipart_if(
        &self,
        key: &str,
        upload_id: &str,
        mut parts: Vec<CompletedPart>,
        cond: &Condition,
    ) -> Result<ObjectMeta> {
        parts.sort_by_key(|p| p.number);
        let blocks = parts.iter().map(|p| BlobBlockType::Uncommitted(block_id(upload_id, p.number))).collect();
        let user = self.uploads.lock().expect("poisoned").get(upload_id).cloned().unwrap_or_default();
        let mut put = self.blob(key).put_block_list(BlockList { blocks }).metadata(metadata(&user));
        if let Some(c) = condition(cond) {
            put = put.if_match(c);
        }
        let r = put.await.map_err(classify)?;
        self.uploads.lock().expect("poisoned").remove(upload_id);
        drop(r);
        // Put Block List does not tell the size: ask once, so the cache is exact (as on S3).
        self.head(key).await
    }

    async fn abort_multipart(&self, _key: &str, upload_id: &str) -> Result<()> {
        // Uncommitted blocks cannot be deleted; Azure drops them after 7 days.
        self.uploads.lock().expect("poisoned").remove(upload_id);
        Ok(())
    }

    async fn copy(&self, src: &str, dst: &str) -> Result<Option<String>> {
        if src.ends_with('/') && !self.hns {
            return Ok(None);
        }
        let mut source = self.blob(blob_name(src)).url().map_err(classify)?;
        if let Some(sas) = &self.sas {
            source.set_query(Some(sas));
        }
        let r = self.blob(blob_name(dst)).copy(source).await.map_err(classify)?;
        // Within one account the copy is done when the reply comes; a pending one is
        // waited for, so a rename never deletes a source that is not yet copied.
        let mut etag = Some(unquote(&r.etag));
        if r.copy_status != azure_storage_blobs::blob::CopyStatus::Success {
            for _ in 0..600 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let p = self.blob(blob_name(dst)).get_properties().await.map_err(classify)?;
                match p.blob.properties.copy_status {
                    Some(azure_storage_blobs::blob::CopyStatus::Pending) => continue,
                    Some(azure_storage_blobs::blob::CopyStatus::Success) | None => {
                        etag = Some(unquote(p.blob.properties.etag.as_ref()));
                        return Ok(etag);
                    }
                    Some(s) => return Err(BackendError::Other(format!("copy of {src} ended as {s:?}"))),
                }
            }
            return Err(BackendError::Transient(format!("copy of {src} still pending after 60 s")));
        }
        Ok(etag.take())
    }

    async fn set_user_meta(&self, key: &str, user: &UserMeta) -> Result<ObjectMeta> {
        if key.ends_with('/') && !self.hns {
            return Err(BackendError::NotFound); // the caller then "puts" the marker: nothing
        }
        self.blob(blob_name(key)).set_metadata().metadata(metadata_for(key, user)).await.map_err(classify)?;
        self.head(key).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        // A marker is a folder blob or nothing: a file of the same name stays.
        if key.ends_with('/') && self.head(key).await.map(|m| m.etag.is_none()).unwrap_or(true) {
            return Ok(());
        }
        match self.blob(blob_name(key)).delete().await.map_err(classify) {
            Ok(_) | Err(BackendError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names_come_from_the_url() {
        let o = |url: &str| AzureOptions { account_url: Some(url.into()), ..AzureOptions::default() };
        assert_eq!(account_name(&o("https://acct.blob.core.windows.net")).unwrap(), "acct");
        assert_eq!(account_name(&o("http://127.0.0.1:10000/devstoreaccount1")).unwrap(), "devstoreaccount1");
        assert_eq!(account_name(&o("http://localhost:10000/dev1")).unwrap(), "dev1");
        assert!(account_name(&o("http://127.0.0.1:10000")).is_err());
    }
}
