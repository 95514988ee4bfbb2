//! Prometheus metrics of the whole mount (requests by S3 operation and result, bytes,
//! cache and prefetch hits, uploads in flight, memory reserved, errors by errno),
//! served as text on `--metrics-addr`. Process-wide: one mount per process.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::data::MemoryBudget;

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    bytes_read: Family<Labels, Counter>,
    bytes_written: Family<Labels, Counter>,
    cache: Family<Labels, Counter>,
    prefetch: Family<Labels, Counter>,
    pub parts_in_flight: Gauge,
    memory_reserved: Gauge,
    errors: Family<Labels, Counter>,
    /// The persistent data cache (`--cache`), process-wide.
    pub data_cache: DataCacheMetrics,
    stores: std::sync::Mutex<std::collections::HashMap<String, Arc<StoreMetrics>>>,
}

const CACHES: [&str; 4] = ["entry", "negative", "listing", "attr"];

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("rstore");
        let m = Self {
            requests: Family::default(),
            bytes_read: Family::default(),
            bytes_written: Family::default(),
            cache: Family::default(),
            prefetch: Family::default(),
            parts_in_flight: Gauge::default(),
            memory_reserved: Gauge::default(),
            errors: Family::default(),
            data_cache: DataCacheMetrics::default(),
            registry: Registry::default(),
            stores: Default::default(),
        };
        registry.register("s3_requests", "Object-store requests by store, operation and result", m.requests.clone());
        registry.register("bytes_read", "Bytes received from the object store, by store", m.bytes_read.clone());
        registry.register("bytes_written", "Bytes sent to the object store, by store", m.bytes_written.clone());
        registry.register("cache_lookups", "Metadata cache lookups by store, cache and result", m.cache.clone());
        registry.register(
            "prefetch_reads",
            "File reads by store: ready in the prefetch window, or waited",
            m.prefetch.clone(),
        );
        registry.register("upload_parts_in_flight", "Upload parts being sent now", m.parts_in_flight.clone());
        registry.register("memory_reserved_bytes", "Bytes reserved from --max-memory", m.memory_reserved.clone());
        registry.register("fuse_errors", "Errors returned to programs, by store and errno", m.errors.clone());
        m.data_cache.register(&mut registry);
        Self { registry, ..m }
    }

    pub fn render(&self, budget: &MemoryBudget) -> String {
        self.memory_reserved.set(budget.reserved() as i64);
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// What the persistent data cache (`--cache`) did: `rstore_cache_*`.
#[derive(Debug, Default)]
pub struct DataCacheMetrics {
    /// Reads of object data served from cached blocks.
    pub hits: Counter,
    /// Reads of object data not (wholly) cached: fetched from the store.
    pub misses: Counter,
    /// Bytes the daemon served from cached blocks (passthrough reads never reach it).
    pub served_bytes: Counter,
    /// Bytes written into the cache.
    pub stored_bytes: Counter,
    /// Blocks evicted to stay under `--max-cache-size`.
    pub evictions: Counter,
    /// Cached blocks whose bytes failed their checksum (then fetched again).
    pub corrupt_blocks: Counter,
    /// Opens answered with the cached file as the kernel's backing file.
    pub passthrough_opens: Counter,
    /// Read-only opens (with `--cache`) whose reads come to the daemon: not wholly
    /// cached, passthrough off or not allowed (see the log at debug).
    pub daemon_opens: Counter,
    /// Bytes on disk: cached data, its index and staged files.
    pub disk_bytes: Gauge,
}

impl DataCacheMetrics {
    fn register(&self, r: &mut Registry) {
        let counters = [
            ("cache_hits", "Object data reads served from the data cache", &self.hits),
            ("cache_misses", "Object data reads the data cache could not serve", &self.misses),
            ("cache_served_bytes", "Bytes the daemon served from the data cache", &self.served_bytes),
            ("cache_stored_bytes", "Bytes written into the data cache", &self.stored_bytes),
            ("cache_evictions", "Data cache blocks evicted for space", &self.evictions),
            ("cache_corrupt_blocks", "Data cache blocks that failed their checksum", &self.corrupt_blocks),
            (
                "cache_passthrough_opens",
                "Opens served by FUSE passthrough from the data cache",
                &self.passthrough_opens,
            ),
            ("cache_daemon_opens", "Read-only opens served by the daemon, not passthrough", &self.daemon_opens),
        ];
        for (name, help, c) in counters {
            r.register(name, help, c.clone());
        }
        r.register("cache_disk_bytes", "Bytes of cached data and staged files on disk", self.disk_bytes.clone());
    }
}

/// The series of one mounted store (label `store`), with the counters bumped on every
/// lookup and read made once, so the hot paths allocate no labels.
#[derive(Debug)]
pub struct StoreMetrics {
    store: String,
    requests: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    pub bytes_read: Counter,
    pub bytes_written: Counter,
    hot_cache: Vec<(&'static str, Counter, Counter)>,
    hot_prefetch: [Counter; 2],
}

impl StoreMetrics {
    pub fn request(&self, op: &'static str, result: &'static str) {
        let labels = vec![("store", self.store.clone()), ("op", op.into()), ("result", result.into())];
        self.requests.get_or_create(&labels).inc();
    }

    pub fn cache(&self, cache: &'static str, hit: bool) {
        if let Some((_, h, m)) = self.hot_cache.iter().find(|(c, ..)| *c == cache) {
            if hit { h } else { m }.inc();
        }
    }

    pub fn prefetch(&self, ready: bool) {
        self.hot_prefetch[usize::from(!ready)].inc();
    }

    pub fn error(&self, errno: i32) {
        self.errors.get_or_create(&vec![("store", self.store.clone()), ("errno", errno_name(errno).into())]).inc();
    }
}

/// The series of store `name` (made once per name and process).
pub fn for_store(name: &str) -> Arc<StoreMetrics> {
    let m = get();
    let mut stores = m.stores.lock().unwrap();
    if let Some(s) = stores.get(name) {
        return s.clone();
    }
    let store = || ("store", name.to_string());
    let counter = |f: &Family<Labels, Counter>, labels: Labels| f.get_or_create(&labels).clone();
    let cache_pair = |c: &'static str| {
        let (hit, miss) = (("result", "hit".to_string()), ("result", "miss".to_string()));
        let labels = |r| vec![store(), ("cache", c.to_string()), r];
        (c, counter(&m.cache, labels(hit)), counter(&m.cache, labels(miss)))
    };
    let s = Arc::new(StoreMetrics {
        store: name.to_string(),
        requests: m.requests.clone(),
        errors: m.errors.clone(),
        bytes_read: counter(&m.bytes_read, vec![store()]),
        bytes_written: counter(&m.bytes_written, vec![store()]),
        hot_cache: CACHES.into_iter().map(cache_pair).collect(),
        hot_prefetch: ["ready", "waited"].map(|r| counter(&m.prefetch, vec![store(), ("result", r.into())])),
    });
    stores.insert(name.to_string(), s.clone());
    s
}

pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

fn errno_name(e: i32) -> &'static str {
    match e {
        libc::ENOENT => "ENOENT",
        libc::EEXIST => "EEXIST",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::EINVAL => "EINVAL",
        libc::EROFS => "EROFS",
        libc::ENOTSUP => "ENOTSUP",
        libc::EBUSY => "EBUSY",
        libc::ETXTBSY => "ETXTBSY",
        libc::ESTALE => "ESTALE",
        libc::EBADF => "EBADF",
        libc::EIO => "EIO",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::ENOSPC => "ENOSPC",
        libc::ETIMEDOUT => "ETIMEDOUT",
        _ => "other",
    }
}

/// Binds `addr` now (so a taken port fails the mount with one clear line), then
/// serves `GET /metrics` until the runtime stops.
pub async fn serve(addr: SocketAddr, budget: MemoryBudget) -> std::io::Result<SocketAddr> {
    use http_body_util::Full;
    use hyper::{body::Bytes, Request, Response, StatusCode};
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            let budget = budget.clone();
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (status, body) = match req.uri().path() {
                    "/metrics" => (StatusCode::OK, get().render(&budget)),
                    _ => (StatusCode::NOT_FOUND, "try /metrics\n".to_string()),
                };
                let mut resp = Response::new(Full::new(Bytes::from(body)));
                *resp.status_mut() = status;
                resp.headers_mut()
                    .insert("content-type", "text/plain; version=0.0.4".parse().expect("a valid header value"));
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    Ok(bound)
}
