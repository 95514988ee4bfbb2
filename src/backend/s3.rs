//! S3 and S3-compatible servers through aws-sdk-s3: the only file that knows the SDK.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation, SharedHttpClient,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart as SdkPart, MetadataDirective};
use aws_sdk_s3::Client;
use bytes::Bytes;

use super::buffers::BufferPool;
use super::{BackendError, CompletedPart, Condition, ListPage, ObjectMeta, ObjectStore, PartSource, Result, UserMeta};
use crate::config::{AddressingStyle, PutHeaders, S3Options};
use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;

mod quickack;
pub use quickack::client as quickack_http_client;

#[derive(Debug)]
pub struct S3Store {
    client: Client,
    bucket: String,
    /// Object settings sent on every PUT, multipart create and copy.
    put: PutHeaders,
    buffers: Arc<BufferPool>,
    /// The reachability check must answer within the CLI's time budget.
    check_timeout: Duration,
}

impl S3Store {
    pub async fn new(o: &S3Options) -> std::result::Result<Self, String> {
        let secs = |s: Option<f64>, default: u64| {
            s.and_then(|s| Duration::try_from_secs_f64(s).ok()).unwrap_or(Duration::from_secs(default))
        };
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(secs(o.connect_timeout, 5))
            .read_timeout(secs(o.read_timeout, 60))
            .operation_attempt_timeout(Duration::from_secs(120))
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            // Retries happen in one place for every backend (backend/retry.rs).
            .retry_config(RetryConfig::standard().with_max_attempts(1))
            .timeout_config(timeouts);
        // No region_name: the AWS default chain (AWS_REGION, the profile); us-east-1
        // only when that finds none (below), as boto3 under remote-store does.
        if let Some(r) = &o.region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some(p) = &o.profile {
            loader = loader.profile_name(p);
        }
        if let Some(ep) = &o.endpoint_url {
            loader = loader.endpoint_url(ep);
        }
        // anon: unsigned requests. A key means static credentials (an empty secret then
        // fails loudly at the check, as in remote-store); else the AWS default chain.
        if o.anon {
            loader = loader.no_credentials();
        } else if let Some(k) = &o.key {
            let secret = o.secret.as_ref().map_or("", |s| s.expose());
            let token = o.session_token.as_ref().map(|t| t.expose().to_string());
            let creds = Credentials::new(k.expose(), secret, token, None, "remote-store-config");
            loader = loader.credentials_provider(creds);
        }
        // A CA bundle (often set machine-wide by AWS_CA_BUNDLE) only matters for TLS.
        if o.endpoint_url.as_deref().is_some_and(|e| e.starts_with("http://")) {
            loader = loader.http_client(quickack::client());
        } else if let Some(ca) = &o.tls_ca_bundle {
            loader = loader.http_client(https_with_ca(ca)?);
        }
        let sdk = loader.load().await;
        // Every PUT and part carries a CRC32 checksum the server verifies, and whole-object
        // GETs are checked against the stored one (the SDK's "when supported" mode).
        let mut conf = aws_sdk_s3::config::Builder::from(&sdk)
            .request_checksum_calculation(RequestChecksumCalculation::WhenSupported)
            .response_checksum_validation(ResponseChecksumValidation::WhenSupported)
            .force_path_style(o.addressing_style == AddressingStyle::Path);
        if sdk.region().is_none() {
            conf = conf.region(Region::new("us-east-1"));
        }
        if o.requester_pays {
            conf = conf.interceptor(RequesterPays);
        }
        Ok(Self {
            client: Client::from_conf(conf.build()),
            bucket: o.bucket.clone(),
            put: o.put_headers.clone(),
            // Enough for a reader's parts to cycle through; idle ones are freed past this.
            buffers: BufferPool::new(4),
            check_timeout: Duration::from_secs(8),
        })
    }

    /// The region requests are signed for (for tests of the region chain).
    pub fn region(&self) -> Option<String> {
        self.client.config().region().map(|r| r.to_string())
    }
}

/// `requester_pays`: every request says the requester pays (`x-amz-request-payer`).
#[derive(Debug)]
struct RequesterPays;

impl Intercept for RequesterPays {
    fn name(&self) -> &'static str {
        "RequesterPays"
    }

    fn modify_before_signing(
        &self,
        ctx: &mut BeforeTransmitInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        ctx.request_mut().headers_mut().insert("x-amz-request-payer", "requester");
        Ok(())
    }
}

/// Sets `s3_additional_kwargs` (SSE, KMS key, ACL, storage class) on a PutObject,
/// CreateMultipartUpload or CopyObject request builder: they share these setters.
macro_rules! with_put_headers {
    ($req:expr, $h:expr) => {{
        use aws_sdk_s3::types::{ObjectCannedAcl, ServerSideEncryption, StorageClass};
        let h: &PutHeaders = $h;
        $req.set_server_side_encryption(h.server_side_encryption.as_deref().map(ServerSideEncryption::from))
            .set_ssekms_key_id(h.sse_kms_key_id.as_ref().map(|k| k.expose().to_string()))
            .set_acl(h.acl.as_deref().map(ObjectCannedAcl::from))
            .set_storage_class(h.storage_class.as_deref().map(StorageClass::from))
    }};
}

/// An HTTPS client trusting the PEM bundle at `path` (TCP_NODELAY stays on, as in the
/// SDK's default client).
fn https_with_ca(path: &std::path::Path) -> std::result::Result<SharedHttpClient, String> {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("tls_ca_bundle {shown}: {e}"))?;
    // The SDK parses the bundle lazily and panics on bad PEM: check it here.
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(format!("tls_ca_bundle {shown}: no PEM certificate in the file"));
    }
    let ctx = TlsContext::builder()
        .with_trust_store(TrustStore::default().with_pem_certificate(pem))
        .build()
        .map_err(|e| format!("tls_ca_bundle {shown}: {e}"))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(ctx)
        .build_https())
}

/// Classifies an SDK failure. HEAD responses carry no body, so the status decides there.
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(err: SdkError<E, HttpResponse>) -> BackendError {
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().map(str::to_owned);
    let detail = || {
        let msg = err.message().map(str::to_owned);
        let mut s = code.clone().unwrap_or_else(|| status.map_or("error".into(), |s| format!("HTTP {s}")));
        if let Some(m) = msg {
            s = format!("{s}: {m}");
        }
        s
    };
    match &err {
        SdkError::TimeoutError(_) => return BackendError::Transient("request timed out".into()),
        SdkError::DispatchFailure(d) if d.is_timeout() => return BackendError::Transient("request timed out".into()),
        SdkError::DispatchFailure(d) => {
            let cause = std::error::Error::source(&err).map(|s| s.to_string()).unwrap_or_default();
            let what = if d.is_io() { "connection failed" } else { "request failed" };
            return BackendError::Transient(format!("{what}: {cause}"));
        }
        _ => {}
    }
    match (code.as_deref(), status) {
        (Some("NoSuchBucket"), _) => BackendError::NoSuchBucket(detail()),
        (Some("NoSuchKey" | "NotFound" | "NoSuchUpload"), _) | (_, Some(404)) => BackendError::NotFound,
        (Some("AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch"), _) | (_, Some(401 | 403)) => {
            BackendError::AccessDenied(detail())
        }
        // 409 ConditionalRequestConflict: a concurrent conditional write won (AWS docs,
        // "Conditional writes").
        (Some("PreconditionFailed" | "ConditionalRequestConflict"), _) | (_, Some(412)) => {
            BackendError::PreconditionFailed
        }
        (Some("SlowDown" | "Throttling" | "RequestLimitExceeded"), _) | (_, Some(429 | 503)) => {
            BackendError::Throttled(detail())
        }
        // A server without conditional writes may refuse the headers: not worth a retry.
        (Some("NotImplemented"), _) | (_, Some(501)) => BackendError::Unsupported(detail()),
        (_, Some(s)) if s >= 500 => BackendError::Transient(detail()),
        (_, Some(400..=499)) => BackendError::InvalidInput(detail()),
        _ => BackendError::Other(format!("{}", aws_sdk_s3::error::DisplayErrorContext(&err))),
    }
}

/// `If-Match` and `If-None-Match` header values for `cond`.
fn condition_headers(cond: &Condition) -> (Option<String>, Option<String>) {
    match cond {
        Condition::Always => (None, None),
        Condition::IfMatch(etag) => (Some(etag.clone()), None),
        Condition::IfAbsent => (None, Some("*".into())),
    }
}

fn to_time(t: Option<&aws_sdk_s3::primitives::DateTime>) -> SystemTime {
    t.and_then(|d| SystemTime::try_from(*d).ok()).unwrap_or(SystemTime::UNIX_EPOCH)
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn check(&self) -> Result<()> {
        let req = self.client.head_bucket().bucket(&self.bucket).send();
        match tokio::time::timeout(self.check_timeout, req).await {
            Err(_) => Err(BackendError::Transient(format!("no answer within {:?}", self.check_timeout))),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(match classify(e) {
                BackendError::NotFound => {
                    BackendError::NoSuchBucket(format!("bucket '{}' does not exist", self.bucket))
                }
                other => other,
            }),
        }
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let out = self.client.head_object().bucket(&self.bucket).key(key).send().await.map_err(classify)?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            last_modified: to_time(out.last_modified()),
            etag: out.e_tag().map(str::to_owned),
            user: Some(
                out.metadata()
                    .map(|m| m.iter().map(|(k, v)| (k.to_lowercase(), v.clone())).collect())
                    .unwrap_or_default(),
            ),
        })
    }

    async fn get_range(&self, key: &str, range: Range<u64>, if_match: Option<&str>) -> Result<Bytes> {
        if range.end <= range.start {
            return Ok(Bytes::new());
        }
        let mut req = self.client.get_object().bucket(&self.bucket).key(key).range(format!(
            "bytes={}-{}",
            range.start,
            range.end - 1
        ));
        if let Some(e) = if_match {
            req = req.if_match(e);
        }
        let out = match req.send().await.map_err(classify) {
            // A range starting at or past the end: S3 answers 416.
            Err(BackendError::InvalidInput(m)) if m.contains("InvalidRange") || m.contains("416") => {
                return Ok(Bytes::new())
            }
            other => other?,
        };
        // Some servers (s3s-fs) ignore If-Match: check the answer's ETag as well.
        if let (Some(want), Some(got)) = (if_match, out.e_tag()) {
            if want != got {
                return Err(BackendError::PreconditionFailed);
            }
        }
        // Straight into one buffer of the final size: collecting the chunks first and then
        // joining them would hold every part twice and copy it once more.
        let want = (range.end - range.start) as usize;
        let mut buf = self.buffers.take(out.content_length().map_or(want, |n| (n.max(0) as usize).min(want)));
        let mut body = out.body;
        while let Some(chunk) =
            body.try_next().await.map_err(|e| BackendError::Transient(format!("reading body: {e}")))?
        {
            buf.extend_from_slice(&chunk);
        }
        Ok(self.buffers.freeze(buf))
    }

    async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: Option<i32>,
    ) -> Result<ListPage> {
        let mut req = self.client.list_objects_v2().bucket(&self.bucket).prefix(prefix);
        if let Some(d) = delimiter {
            req = req.delimiter(d);
        }
        if let Some(t) = token {
            req = req.continuation_token(t);
        }
        if let Some(m) = max_keys {
            req = req.max_keys(m);
        }
        let out = req.send().await.map_err(classify)?;
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(ObjectMeta {
                    key: o.key()?.to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    last_modified: to_time(o.last_modified()),
                    etag: o.e_tag().map(str::to_owned),
                    user: None,
                })
            })
            .collect();
        let prefixes = out.common_prefixes().iter().filter_map(|p| p.prefix().map(str::to_owned)).collect();
        let next_token =
            if out.is_truncated() == Some(true) { out.next_continuation_token().map(str::to_owned) } else { None };
        Ok(ListPage { objects, prefixes, next_token })
    }

    async fn put_if(&self, key: &str, body: Bytes, user: &UserMeta, cond: &Condition) -> Result<ObjectMeta> {
        let size = body.len() as u64;
        let (if_match, if_none_match) = condition_headers(cond);
        let req = self.client.put_object().bucket(&self.bucket).key(key).set_metadata(sdk_meta(user));
        let out = with_put_headers!(req, &self.put)
            .set_if_match(if_match)
            .set_if_none_match(if_none_match)
            .body(ByteStream::from(body))
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(classify)?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size,
            last_modified: SystemTime::now(),
            etag: out.e_tag().map(str::to_owned),
            user: Some(user.clone()),
        })
    }

    async fn create_multipart_with(&self, key: &str, user: &UserMeta) -> Result<String> {
        let req = self.client.create_multipart_upload().bucket(&self.bucket).key(key).set_metadata(sdk_meta(user));
        let out = with_put_headers!(req, &self.put).send().await.map_err(classify)?;
        out.upload_id().map(str::to_owned).ok_or_else(|| BackendError::Other("server returned no upload id".into()))
    }

    async fn upload_part(&self, key: &str, id: &str, number: i32, body: Bytes) -> Result<CompletedPart> {
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(id)
            .part_number(number)
            .body(ByteStream::from(body))
            // The CRC32 checksum guards the bytes; a SHA-256 of every body for the
            // signature cost a third of the mount's CPU on http endpoints.
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(classify)?;
        let etag = out.e_tag().map(str::to_owned).ok_or_else(|| BackendError::Other("part without ETag".into()))?;
        Ok(CompletedPart { number, etag })
    }

    async fn upload_part_copy(&self, key: &str, id: &str, number: i32, src: &PartSource) -> Result<CompletedPart> {
        let out = self
            .client
            .upload_part_copy()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(id)
            .part_number(number)
            .copy_source(self.copy_source(&src.key))
            .copy_source_range(format!("bytes={}-{}", src.range.start, src.range.end - 1))
            .set_copy_source_if_match(src.if_match.clone())
            .send()
            .await
            .map_err(classify)?;
        let etag = out.copy_part_result().and_then(|r| r.e_tag()).map(str::to_owned);
        let etag = etag.ok_or_else(|| BackendError::Other("copied part without ETag".into()))?;
        Ok(CompletedPart { number, etag })
    }

    async fn complete_multipart_if(
        &self,
        key: &str,
        id: &str,
        parts: Vec<CompletedPart>,
        cond: &Condition,
    ) -> Result<ObjectMeta> {
        let (if_match, if_none_match) = condition_headers(cond);
        let parts: Vec<SdkPart> =
            parts.iter().map(|p| SdkPart::builder().part_number(p.number).e_tag(&p.etag).build()).collect();
        let upload = CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(id)
            .multipart_upload(upload)
            .set_if_match(if_match)
            .set_if_none_match(if_none_match)
            .send()
            .await
            .map_err(classify)?;
        // The completion answer has no size or date: ask once, so the cache is exact.
        self.head(key).await
    }

    async fn abort_multipart(&self, key: &str, id: &str) -> Result<()> {
        let r = self.client.abort_multipart_upload().bucket(&self.bucket).key(key).upload_id(id).send().await;
        match r.map_err(classify) {
            Ok(_) | Err(BackendError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn copy(&self, src: &str, dst: &str) -> Result<Option<String>> {
        let req = self.client.copy_object().bucket(&self.bucket).key(dst).copy_source(self.copy_source(src));
        let r = with_put_headers!(req, &self.put).send().await;
        match r.map_err(classify) {
            Ok(out) => Ok(out.copy_object_result().and_then(|c| c.e_tag()).map(str::to_owned)),
            // CopyObject stops at 5 GiB; larger objects are copied part by part.
            Err(BackendError::InvalidInput(_)) if self.head(src).await?.size > MAX_SINGLE_COPY => {
                self.copy_multipart(src, dst).await
            }
            Err(e) => Err(e),
        }
    }

    async fn set_user_meta(&self, key: &str, user: &UserMeta) -> Result<ObjectMeta> {
        let req = self.client.copy_object().bucket(&self.bucket).key(key).copy_source(self.copy_source(key));
        with_put_headers!(req, &self.put)
            .metadata_directive(MetadataDirective::Replace)
            .set_metadata(sdk_meta(user))
            .send()
            .await
            .map_err(classify)?;
        self.head(key).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match self.client.delete_object().bucket(&self.bucket).key(key).send().await.map_err(classify) {
            Ok(_) | Err(BackendError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn sdk_meta(user: &UserMeta) -> Option<std::collections::HashMap<String, String>> {
    (!user.is_empty()).then(|| user.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

const MAX_SINGLE_COPY: u64 = 5 << 30;
const COPY_PART: u64 = 512 << 20;

impl S3Store {
    fn copy_source(&self, key: &str) -> String {
        format!("{}/{}", self.bucket, urlencode_key(key))
    }

    async fn copy_multipart(&self, src: &str, dst: &str) -> Result<Option<String>> {
        use futures::{StreamExt, TryStreamExt};
        let meta = self.head(src).await?;
        let id = self.create_multipart_with(dst, &meta.user.clone().unwrap_or_default()).await?;
        let ranges: Vec<_> =
            (0..meta.size.div_ceil(COPY_PART)).map(|i| i * COPY_PART..meta.size.min((i + 1) * COPY_PART)).collect();
        let parts = futures::stream::iter(ranges.into_iter().enumerate())
            .map(|(i, range)| {
                let source = PartSource { key: src.to_string(), range, if_match: meta.etag.clone() };
                let (id, dst) = (id.clone(), dst.to_string());
                async move { self.upload_part_copy(&dst, &id, i as i32 + 1, &source).await }
            })
            .buffered(4)
            .try_collect::<Vec<_>>()
            .await;
        match parts {
            Ok(parts) => self.complete_multipart(dst, &id, parts).await.map(|m| m.etag),
            Err(e) => {
                let _ = self.abort_multipart(dst, &id).await;
                Err(e)
            }
        }
    }
}

/// CopySource must be URL-encoded; `/` stays as the path separator.
fn urlencode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn copy_source_is_encoded() {
        assert_eq!(super::urlencode_key("a b/c+d%é"), "a%20b/c%2Bd%25%C3%A9");
    }
}
