//! An HTTP proxy in front of a real S3 server that answers a share of requests with
//! `503 SlowDown` (seeded, so runs repeat) or holds them without an answer: a throttled
//! or stalled server for the tests, on 127.0.0.1.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

pub struct ThrottleProxy {
    pub endpoint: String,
    state: Arc<State>,
    /// Serves the proxy; dropped with it.
    _rt: tokio::runtime::Runtime,
}

struct State {
    upstream: String,
    /// Percent of requests answered with 503.
    fail_percent: AtomicU32,
    /// Hold every request without answering (a stalled server).
    stall: AtomicBool,
    rng: Mutex<u64>,
    /// Requests seen and requests failed.
    seen: AtomicU32,
    failed: AtomicU32,
}

impl State {
    fn fail_now(&self) -> bool {
        let mut x = self.rng.lock().unwrap();
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        (*x % 100) < self.fail_percent.load(Ordering::SeqCst) as u64
    }
}

impl ThrottleProxy {
    /// A proxy to `upstream` (http://host:port) failing `fail_percent`% of requests.
    pub fn start(upstream: &str, fail_percent: u32, seed: u64) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_string(),
            fail_percent: AtomicU32::new(fail_percent),
            stall: AtomicBool::new(false),
            rng: Mutex::new(seed | 1),
            seen: AtomicU32::new(0),
            failed: AtomicU32::new(0),
        });
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let st = state.clone();
        rt.spawn(async move {
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let _ = stream.set_nodelay(true);
                let (st, client) = (st.clone(), client.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(req, st.clone(), client.clone()));
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Self { endpoint, state, _rt: rt }
    }

    pub fn set_fail_percent(&self, p: u32) {
        self.state.fail_percent.store(p, Ordering::SeqCst);
    }

    pub fn set_stall(&self, on: bool) {
        self.state.stall.store(on, Ordering::SeqCst);
    }

    /// (requests seen, requests answered 503).
    pub fn counts(&self) -> (u32, u32) {
        (self.state.seen.load(Ordering::SeqCst), self.state.failed.load(Ordering::SeqCst))
    }
}

impl Drop for ThrottleProxy {
    /// Stalled requests are let go; the runtime, and every connection with it, then
    /// ends with the proxy.
    fn drop(&mut self) {
        self.state.stall.store(false, Ordering::SeqCst);
    }
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn handle(
    req: Request<Incoming>,
    st: Arc<State>,
    client: HttpClient,
) -> Result<Response<Full<Bytes>>, Infallible> {
    st.seen.fetch_add(1, Ordering::SeqCst);
    while st.stall.load(Ordering::SeqCst) {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    if st.fail_now() {
        st.failed.fetch_add(1, Ordering::SeqCst);
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>\
                    <Message>Please reduce your request rate.</Message></Error>";
        return Ok(Response::builder()
            .status(503)
            .header("content-type", "application/xml")
            .body(Full::new(Bytes::from(body)))
            .unwrap());
    }
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut fwd = Request::builder().method(parts.method).uri(format!("{}{path}", st.upstream));
    // The Host header the client signed goes through unchanged.
    for (k, v) in &parts.headers {
        fwd = fwd.header(k, v);
    }
    let answer = match client.request(fwd.body(Full::new(body)).unwrap()).await {
        Ok(r) => r,
        Err(e) => return Ok(Response::builder().status(502).body(Full::new(Bytes::from(e.to_string()))).unwrap()),
    };
    let (mut parts, body) = answer.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    parts.headers.remove("transfer-encoding"); // the whole body goes back at once
    Ok(Response::from_parts(parts, Full::new(body)))
}
