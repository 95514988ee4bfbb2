//! The SDK's HTTP client for plain `http://` endpoints, with sockets that ACK at once.
//!
//! Servers that answer without TCP_NODELAY (Garage, for one) write the response head and
//! then hold the first body bytes back (Nagle) until the head is ACKed. On a reused
//! connection Linux delays that ACK by ~40 ms, so every small GET, and the first bytes of
//! every large one, waited 40 ms. Re-arming TCP_QUICKACK after each read sends the ACK
//! at once. HTTPS endpoints keep the SDK's own client (see `S3Store::new`).

use std::error::Error as _;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use aws_sdk_s3::config::{RuntimeComponents, SharedHttpClient};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_types::body::SdkBody;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector as TcpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An HTTP/1.1 client over TCP connections that send every ACK without delay.
pub fn client() -> SharedHttpClient {
    let mut tcp = TcpConnector::new();
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(Duration::from_secs(5)));
    let client =
        Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(90)).build(QuickAckConnector(tcp));
    SharedHttpClient::new(QuickAckClient { client })
}

#[derive(Clone, Debug)]
struct QuickAckClient {
    client: Client<QuickAckConnector, SdkBody>,
}

impl HttpClient for QuickAckClient {
    fn http_connector(&self, _: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

impl HttpConnector for QuickAckClient {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.client.clone();
        HttpConnectorFuture::new(async move {
            let request = request.try_into_http1x().map_err(|e| ConnectorError::user(e.into()))?;
            let response = client.request(request).await.map_err(connector_error)?;
            let response = response.map(SdkBody::from_body_1_x);
            HttpResponse::try_from(response).map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// Connection-level failures are I/O (the request may not have reached the server); the
/// retry layer treats every dispatch failure as transient either way.
fn connector_error(e: hyper_util::client::legacy::Error) -> ConnectorError {
    let mut source = e.source();
    let io = e.is_connect()
        || std::iter::from_fn(|| {
            let s = source?;
            source = s.source();
            Some(s)
        })
        .any(|s| s.is::<io::Error>() || s.downcast_ref::<hyper::Error>().is_some_and(|h| h.is_incomplete_message()));
    if io {
        ConnectorError::io(e.into())
    } else {
        ConnectorError::other(e.into(), None)
    }
}

#[derive(Clone, Debug)]
struct QuickAckConnector(TcpConnector);

impl tower_service::Service<Uri> for QuickAckConnector {
    type Response = QuickAckStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<QuickAckStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move { Ok(QuickAckStream(connecting.await?)) })
    }
}

struct QuickAckStream(TokioIo<TcpStream>);

impl QuickAckStream {
    /// Quick-ACK mode is not sticky (the kernel drops back to delayed ACKs once the
    /// exchange looks interactive), so it is re-armed after every read.
    fn ack_now(&self) {
        let _ = socket2::SockRef::from(self.0.inner()).set_tcp_quickack(true);
    }
}

impl Connection for QuickAckStream {
    fn connected(&self) -> Connected {
        self.0.connected()
    }
}

impl Read for QuickAckStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.0).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) {
            self.ack_now();
        }
        polled
    }
}

impl Write for QuickAckStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
