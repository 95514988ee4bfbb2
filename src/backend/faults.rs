//! Injected failures, for tests only (cargo feature `fault-injection`; release builds
//! do not contain this file). Set by `RSTORE_FAULTS` in the mount's environment, e.g.
//! `throttle=0.2,truncate_get=0.1,fail_nth=7,stall_nth=9,seed=42`:
//! - `throttle=P`: a request fails as a 503 SlowDown with probability P;
//! - `truncate_get=P`: a GET returns only the first half of its body with probability P;
//! - `fail_nth=N`: the Nth request fails as a transient error (connection reset);
//! - `stall_nth=N`: the Nth request never answers (until the request timeout).

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    BackendError, CompletedPart, Condition, DynStore, ListPage, ObjectMeta, ObjectStore, PartSource, Result, UserMeta,
};

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FaultConfig {
    pub throttle: f64,
    pub truncate_get: f64,
    pub fail_nth: Option<u64>,
    pub stall_nth: Option<u64>,
    pub seed: u64,
}

impl FaultConfig {
    pub fn parse(spec: &str) -> std::result::Result<Self, String> {
        let mut c = FaultConfig { seed: 1, ..Default::default() };
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = item.split_once('=').ok_or_else(|| format!("RSTORE_FAULTS: `{item}` is not key=value"))?;
            let bad = || format!("RSTORE_FAULTS: bad value in `{item}`");
            match k {
                "throttle" => c.throttle = v.parse().map_err(|_| bad())?,
                "truncate_get" => c.truncate_get = v.parse().map_err(|_| bad())?,
                "fail_nth" => c.fail_nth = Some(v.parse().map_err(|_| bad())?),
                "stall_nth" => c.stall_nth = Some(v.parse().map_err(|_| bad())?),
                "seed" => c.seed = v.parse().map_err(|_| bad())?,
                _ => return Err(format!("RSTORE_FAULTS: unknown fault `{k}`")),
            }
        }
        Ok(c)
    }
}

#[derive(Debug)]
pub struct Faults {
    inner: DynStore,
    cfg: FaultConfig,
    requests: AtomicU64,
    rng: Mutex<u64>,
}

impl Faults {
    pub fn new(inner: DynStore, cfg: FaultConfig) -> Self {
        Self { inner, rng: Mutex::new(cfg.seed.max(1)), cfg, requests: AtomicU64::new(0) }
    }

    /// Wraps `inner` when `RSTORE_FAULTS` is set.
    pub fn from_env(inner: DynStore) -> std::result::Result<DynStore, String> {
        match std::env::var("RSTORE_FAULTS") {
            Ok(spec) => {
                let cfg = FaultConfig::parse(&spec)?;
                tracing::warn!(?cfg, "fault injection is on");
                Ok(std::sync::Arc::new(Self::new(inner, cfg)))
            }
            Err(_) => Ok(inner),
        }
    }

    fn chance(&self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        let mut x = self.rng.lock().unwrap();
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        (*x % 1_000_000) as f64 / 1_000_000.0 < p
    }

    /// Decides the fate of the next request before it reaches the store.
    async fn before(&self) -> Result<()> {
        let n = self.requests.fetch_add(1, Ordering::SeqCst) + 1;
        if self.cfg.stall_nth == Some(n) {
            std::future::pending::<()>().await;
        }
        if self.cfg.fail_nth == Some(n) {
            return Err(BackendError::Transient("injected: connection reset".into()));
        }
        if self.chance(self.cfg.throttle) {
            return Err(BackendError::Throttled("injected: 503 SlowDown".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for Faults {
    async fn check(&self) -> Result<()> {
        self.inner.check().await
    }
    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        self.before().await?;
        self.inner.head(key).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>, if_match: Option<&str>) -> Result<Bytes> {
        self.before().await?;
        let body = self.inner.get_range(key, range, if_match).await?;
        if body.len() > 1 && self.chance(self.cfg.truncate_get) {
            return Ok(body.slice(..body.len() / 2));
        }
        Ok(body)
    }
    async fn list_page(&self, p: &str, d: Option<&str>, t: Option<String>, m: Option<i32>) -> Result<ListPage> {
        self.before().await?;
        self.inner.list_page(p, d, t, m).await
    }
    async fn put_if(&self, key: &str, body: Bytes, user: &UserMeta, cond: &Condition) -> Result<ObjectMeta> {
        self.before().await?;
        self.inner.put_if(key, body, user, cond).await
    }
    async fn create_multipart_with(&self, key: &str, user: &UserMeta) -> Result<String> {
        self.before().await?;
        self.inner.create_multipart_with(key, user).await
    }
    async fn upload_part(&self, key: &str, id: &str, number: i32, body: Bytes) -> Result<CompletedPart> {
        self.before().await?;
        self.inner.upload_part(key, id, number, body).await
    }
    async fn upload_part_copy(&self, key: &str, id: &str, number: i32, src: &PartSource) -> Result<CompletedPart> {
        self.before().await?;
        self.inner.upload_part_copy(key, id, number, src).await
    }
    async fn complete_multipart_if(
        &self,
        key: &str,
        id: &str,
        parts: Vec<CompletedPart>,
        cond: &Condition,
    ) -> Result<ObjectMeta> {
        self.before().await?;
        self.inner.complete_multipart_if(key, id, parts, cond).await
    }
    async fn abort_multipart(&self, key: &str, id: &str) -> Result<()> {
        self.before().await?;
        self.inner.abort_multipart(key, id).await
    }
    async fn copy(&self, src: &str, dst: &str) -> Result<Option<String>> {
        self.before().await?;
        self.inner.copy(src, dst).await
    }
    async fn set_user_meta(&self, key: &str, user: &UserMeta) -> Result<ObjectMeta> {
        self.before().await?;
        self.inner.set_user_meta(key, user).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.before().await?;
        self.inner.delete(key).await
    }

    async fn rename(&self, src: &str, dst: &str) -> Result<()> {
        self.before().await?;
        self.inner.rename(src, dst).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_parses_and_refuses_unknown_faults() {
        let c = FaultConfig::parse("throttle=0.2, truncate_get=0.5,fail_nth=3,stall_nth=4,seed=9").unwrap();
        assert_eq!(c, FaultConfig { throttle: 0.2, truncate_get: 0.5, fail_nth: Some(3), stall_nth: Some(4), seed: 9 });
        assert!(FaultConfig::parse("explode=1").unwrap_err().contains("unknown fault"));
        assert!(FaultConfig::parse("throttle").is_err());
    }
}
