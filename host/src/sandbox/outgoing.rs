//! The HTTP client of one loaded plugin: its tasks' outgoing requests go
//! out over connections kept open and reused across tasks, instead of a
//! new TCP (and TLS) connection per request.
//!
//! Each load of a plugin has a client of its own, so no plugin's requests
//! ride a connection another plugin opened, and a redeployed plugin starts
//! with no connections. Which hosts a plugin may reach is decided before a
//! request gets here (see `HttpHooks` in `host.rs`); this module only
//! sends, under the grant's timeouts: to connect, for the response head,
//! and between the response body's frames.

use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use wasmtime_wasi_http::Error;

/// What a plugin's request body is, by the time it is sent.
pub type RequestBody = UnsyncBoxBody<Bytes, Error>;

/// Idle connections kept per host, per plugin: enough for a worker's
/// concurrency against one API without holding thousands of descriptors.
const MAX_IDLE_PER_HOST: usize = 1024;

/// How long an idle connection is kept before it is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A plugin's pooled HTTP/1.1 client (plain and TLS), cheap to clone.
#[derive(Clone)]
pub struct OutgoingHttp {
    client: Client<HttpsConnector<HttpConnector>, RequestBody>,
    timeout: Duration,
}

impl OutgoingHttp {
    /// A client whose every wait (connect, response head, each body
    /// frame) is bounded by `timeout`. Servers' certificates are checked
    /// against the Mozilla roots, as wasmtime's own client does.
    pub fn new(timeout: Duration) -> Self {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(timeout));
        tcp.set_nodelay(true);
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .build(connector);
        OutgoingHttp { client, timeout }
    }

    /// Sends one request (its URI absolute) and waits for the response
    /// head; the body arrives through the returned response, each frame
    /// within the timeout of the one before.
    pub async fn send(
        &self,
        request: http::Request<RequestBody>,
    ) -> Result<http::Response<TimedBody>, Error> {
        let response = tokio::time::timeout(self.timeout, self.client.request(request))
            .await
            .map_err(|_| Error::ConnectionReadTimeout)?
            .map_err(|err| sending_error(&err))?;
        let timeout = self.timeout;
        Ok(response.map(|incoming| TimedBody {
            incoming,
            timeout,
            wait: Box::pin(tokio::time::sleep(timeout)),
        }))
    }
}

impl std::fmt::Debug for OutgoingHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingHttp")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The error the guest sees for a request that got no response: the
/// nearest cause wasi:http has a name for. I/O errors wrap their cause
/// (`get_ref`, which `source` skips), so the walk looks inside them.
fn sending_error(err: &hyper_util::client::legacy::Error) -> Error {
    let mut innermost_io: Option<&std::io::Error> = None;
    let mut cause: Option<&(dyn StdError + 'static)> = err.source();
    while let Some(current) = cause {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Error::Tls(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                tls.to_string(),
            ));
        }
        if let Some(hyper) = current.downcast_ref::<hyper::Error>() {
            return if hyper.is_timeout() {
                Error::HttpResponseTimeout
            } else if hyper.is_incomplete_message() || hyper.is_closed() || hyper.is_canceled() {
                Error::ConnectionTerminated
            } else if hyper.is_parse() {
                Error::HttpProtocolError
            } else {
                // A body error of the plugin's own (a request over its
                // limit) was recorded where it happened.
                Error::InternalError(Some(hyper.to_string()))
            };
        }
        cause = match current.downcast_ref::<std::io::Error>() {
            Some(io) => {
                innermost_io = Some(io);
                io.get_ref().map(|inner| inner as &(dyn StdError + 'static))
            }
            None => current.source(),
        };
    }
    let Some(io) = innermost_io else {
        return Error::InternalError(Some(err.to_string()));
    };
    match io.kind() {
        std::io::ErrorKind::ConnectionRefused => Error::ConnectionRefused,
        std::io::ErrorKind::TimedOut => Error::ConnectionTimeout,
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => {
            Error::ConnectionTerminated
        }
        kind => Error::Connect(std::io::Error::new(kind, io.to_string())),
    }
}

/// A response body that fails with a read timeout when the server goes
/// quiet for longer than the grant's timeout between frames.
pub struct TimedBody {
    incoming: hyper::body::Incoming,
    timeout: Duration,
    wait: Pin<Box<tokio::time::Sleep>>,
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(err))) if err.is_timeout() => {
                Poll::Ready(Some(Err(Error::HttpResponseTimeout)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(Error::from(err)))),
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + self.timeout;
                self.wait.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => match self.wait.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}
