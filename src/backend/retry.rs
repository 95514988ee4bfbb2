//! One retry policy for every backend: throttling (503 SlowDown, 429) and transient
//! failures (timeouts, resets, 5xx) are retried with exponential backoff and jitter
//! up to the store's `retry.max_attempts`; client errors (4xx) are not. Each attempt
//! has a deadline, so a stalled connection cannot hang a FUSE request forever.

use std::future::Future;
use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;

use super::{
    BackendError, CompletedPart, Condition, DynStore, ListPage, ObjectMeta, ObjectStore, PartSource, Result, UserMeta,
};
use crate::config::RetryConfig;

#[derive(Debug)]
pub struct Retrying {
    inner: DynStore,
    policy: RetryConfig,
    attempt_timeout: Duration,
}

impl Retrying {
    /// `max_attempts` attempts with this mount's default waits.
    pub fn new(inner: DynStore, max_attempts: u32, attempt_timeout: Duration) -> Self {
        Self::with_policy(inner, RetryConfig { max_attempts, ..RetryConfig::default() }, attempt_timeout)
    }

    /// The store's `retry` table (remote-store's RetryPolicy): unset waits keep this
    /// mount's defaults (50 ms doubling to 5 s, with jitter).
    pub fn with_policy(inner: DynStore, policy: RetryConfig, attempt_timeout: Duration) -> Self {
        let policy = RetryConfig { max_attempts: policy.max_attempts.max(1), ..policy };
        Self { inner, policy, attempt_timeout }
    }

    fn backoff(&self) -> ExponentialBuilder {
        let secs =
            |s: Option<f64>, default: Duration| s.and_then(|s| Duration::try_from_secs_f64(s).ok()).unwrap_or(default);
        let p = &self.policy;
        let b = ExponentialBuilder::default()
            .with_min_delay(secs(p.backoff_base, Duration::from_millis(50)))
            .with_max_delay(secs(p.backoff_max, Duration::from_secs(5)))
            .with_max_times(p.max_attempts as usize - 1)
            .with_total_delay(p.timeout.and_then(|t| Duration::try_from_secs_f64(t).ok()));
        // backon's jitter is relative to each wait; jitter = 0 turns it off, as in remote-store.
        if p.jitter == Some(0.0) {
            b
        } else {
            b.with_jitter()
        }
    }

    async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut f = f;
        let deadline = self.attempt_timeout;
        let attempt = move || {
            let fut = f();
            async move {
                match tokio::time::timeout(deadline, fut).await {
                    Ok(r) => r,
                    Err(_) => Err(BackendError::Transient(format!("no answer within {deadline:?}"))),
                }
            }
        };
        let tries = std::sync::atomic::AtomicU32::new(1);
        let r = attempt
            .retry(self.backoff())
            .when(retryable)
            .notify(|e, wait| {
                tries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(op, error = %e, ?wait, "retrying")
            })
            .await;
        // A request that gave up says after how many attempts, so one line tells a
        // throttled server from a single failure.
        let n = tries.into_inner();
        r.map_err(|e| match e {
            BackendError::Throttled(m) if n > 1 => BackendError::Throttled(format!("{m} (gave up after {n} attempts)")),
            BackendError::Transient(m) if n > 1 => BackendError::Transient(format!("{m} (gave up after {n} attempts)")),
            e => e,
        })
    }
}

fn retryable(e: &BackendError) -> bool {
    matches!(e, BackendError::Throttled(_) | BackendError::Transient(_))
}

#[async_trait]
impl ObjectStore for Retrying {
    /// The start-up check goes through the same policy as every other request: a
    /// throttled server is tried `max_attempts` times before the mount gives up.
    async fn check(&self) -> Result<()> {
        self.run("head_bucket", || self.inner.check()).await
    }
    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        self.run("head", || self.inner.head(key)).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>, if_match: Option<&str>) -> Result<Bytes> {
        self.run("get", || self.inner.get_range(key, range.clone(), if_match)).await
    }
    async fn list_page(&self, p: &str, d: Option<&str>, t: Option<String>, m: Option<i32>) -> Result<ListPage> {
        self.run("list", || self.inner.list_page(p, d, t.clone(), m)).await
    }
    async fn put_if(&self, key: &str, body: Bytes, user: &UserMeta, cond: &Condition) -> Result<ObjectMeta> {
        // A conditional PUT whose success reply was lost fails its retry with 412: the
        // caller then keeps its data locally and reports a conflict (see SEMANTICS.md).
        self.run("put", || self.inner.put_if(key, body.clone(), user, cond)).await
    }
    async fn create_multipart_with(&self, key: &str, user: &UserMeta) -> Result<String> {
        self.run("create_multipart", || self.inner.create_multipart_with(key, user)).await
    }
    async fn upload_part(&self, key: &str, id: &str, number: i32, body: Bytes) -> Result<CompletedPart> {
        self.run("upload_part", || self.inner.upload_part(key, id, number, body.clone())).await
    }
    async fn upload_part_copy(&self, key: &str, id: &str, number: i32, src: &PartSource) -> Result<CompletedPart> {
        self.run("upload_part_copy", || self.inner.upload_part_copy(key, id, number, src)).await
    }
    async fn complete_multipart_if(
        &self,
        key: &str,
        id: &str,
        parts: Vec<CompletedPart>,
        cond: &Condition,
    ) -> Result<ObjectMeta> {
        // An attempt may succeed on the server and still fail here (timeout, reset);
        // its retry then finds no such upload. The object is there: say so.
        let retried = std::sync::atomic::AtomicBool::new(false);
        self.run("complete_multipart", || async {
            let again = retried.swap(true, std::sync::atomic::Ordering::SeqCst);
            match self.inner.complete_multipart_if(key, id, parts.clone(), cond).await {
                Err(BackendError::NotFound) if again => self.inner.head(key).await,
                r => r,
            }
        })
        .await
    }
    async fn abort_multipart(&self, key: &str, id: &str) -> Result<()> {
        self.run("abort_multipart", || self.inner.abort_multipart(key, id)).await
    }
    async fn copy(&self, src: &str, dst: &str) -> Result<Option<String>> {
        self.run("copy", || self.inner.copy(src, dst)).await
    }
    async fn set_user_meta(&self, key: &str, user: &UserMeta) -> Result<ObjectMeta> {
        self.run("set_metadata", || self.inner.set_user_meta(key, user)).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.run("delete", || self.inner.delete(key)).await
    }

    async fn rename(&self, src: &str, dst: &str) -> Result<()> {
        self.run("rename", || self.inner.rename(src, dst)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::probe::Probe;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A store whose first `fail` HEADs answer `err`.
    async fn flaky(fail: usize, err: BackendError, attempts: u32) -> (Arc<Probe>, Retrying) {
        let p = Arc::new(Probe::default());
        *p.fail_heads.lock().unwrap() = (fail, Some(err));
        p.inner.put("k", Bytes::from_static(b"v")).await.unwrap();
        let r = Retrying::new(p.clone(), attempts, Duration::from_secs(5));
        (p, r)
    }

    #[tokio::test]
    async fn throttling_and_transient_errors_are_retried_up_to_max_attempts() {
        let (f, r) = flaky(2, BackendError::Throttled("SlowDown".into()), 3).await;
        assert_eq!(r.head("k").await.unwrap().size, 1);
        assert_eq!(Probe::count(&f.heads), 3);
        let (f, r) = flaky(5, BackendError::Transient("reset".into()), 3).await;
        assert!(matches!(r.head("k").await, Err(BackendError::Transient(_))), "gives up after 3 attempts");
        assert_eq!(Probe::count(&f.heads), 3);
    }

    #[tokio::test]
    async fn client_errors_are_not_retried() {
        let (f, r) = flaky(5, BackendError::AccessDenied("no".into()), 5).await;
        assert!(matches!(r.head("k").await, Err(BackendError::AccessDenied(_))));
        assert_eq!(Probe::count(&f.heads), 1);
    }

    #[tokio::test]
    async fn a_stalled_attempt_times_out_and_is_retried() {
        #[derive(Debug)]
        struct Stall(AtomicUsize);
        let (f, _) = flaky(0, BackendError::NotFound, 1).await;
        let stall = Arc::new(Stall(AtomicUsize::new(0)));
        let r = Retrying::new(f, 2, Duration::from_millis(100));
        let s = stall.clone();
        let got = r
            .run("test", || {
                let first = s.0.fetch_add(1, Ordering::SeqCst) == 0;
                async move {
                    if first {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    Ok(7)
                }
            })
            .await;
        assert_eq!(got.unwrap(), 7);
        assert_eq!(stall.0.load(Ordering::SeqCst), 2);
    }
}
