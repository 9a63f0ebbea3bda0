//! The sidecar's HTTP/1.1 upstream connections: a pool of hyper `client::conn::http1`
//! senders, one per idle keep-alive connection.
//!
//! hyper-util's legacy client costs, per request, a pool checkout through its keyed pool, a
//! lazily built connect future raced against the checkout, and a task spawned to give the
//! connection back once it is ready again. Here a request takes the most recently used idle
//! sender (one uncontended lock), and the sender goes back when the upstream's response body
//! has been read to its end — by then the connection is ready for the next request, so no task
//! is spawned. A sender whose connection closed is dropped at checkout; a request that could
//! not even be started on a reused connection (the upstream closed it while idle) is sent again
//! on a fresh one, as hyper-util's client does. HTTP/2 upstreams keep hyper-util's client
//! (one multiplexed connection).

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use super::proxy::{BoxError, NoTrailers};

/// Idle connections kept at most (more are closed when they come back).
const MAX_IDLE: usize = 1024;

/// An idle connection older than this is closed when the pool is next touched.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Idle HTTP/1.1 connections to one upstream (see the module docs). Shared by every worker.
pub(crate) struct Pool {
    /// `host:port` to connect to (IPv6 literals without brackets are fine for tokio).
    addr: String,
    connect_timeout: Duration,
    /// Most recently used last.
    idle: Mutex<Vec<(SendRequest<NoTrailers>, Instant)>>,
}

impl Pool {
    pub(crate) fn new(host: &str, port: u16, connect_timeout: Duration) -> Self {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Self {
            addr: match host.contains(':') {
                true => format!("[{host}]:{port}"),
                false => format!("{host}:{port}"),
            },
            connect_timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends `req` on an idle connection or a new one; the response's body gives the
    /// connection back when it has been read to its end.
    pub(crate) async fn send(
        self: &Arc<Self>,
        mut req: Request<NoTrailers>,
    ) -> Result<Response<PooledBody>, BoxError> {
        loop {
            let (mut sender, reused) = match self.checkout().await {
                Some(sender) => (sender, true),
                None => (self.connect().await?, false),
            };
            match sender.try_send_request(req).await {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    let body = PooledBody {
                        inner: body,
                        sender: Some(sender),
                        pool: Arc::clone(self),
                    };
                    return Ok(Response::from_parts(parts, body));
                }
                Err(mut err) => match err.take_message() {
                    // Not started on a connection the upstream had closed: once more, fresh.
                    Some(back) if reused => req = back,
                    _ => return Err(err.into_error().into()),
                },
            }
        }
    }

    /// The most recently used idle connection that is still open, ready for a request.
    async fn checkout(&self) -> Option<SendRequest<NoTrailers>> {
        loop {
            let (mut sender, _) = self.lock().pop()?;
            if sender.is_closed() {
                continue;
            }
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    async fn connect(&self) -> Result<SendRequest<NoTrailers>, BoxError> {
        let stream = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect(self.addr.as_str()),
        )
        .await
        .map_err(|_| format!("connect to {} timed out", self.addr))??;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream connection ended");
            }
        });
        // Ready once the connection's task has started polling for requests.
        let mut sender = sender;
        sender.ready().await?;
        Ok(sender)
    }

    /// Back to the idle list: at once when ready (the usual case after a response body's
    /// end), else once it is (a request body still being sent), unless it closed.
    fn checkin(self: &Arc<Self>, mut sender: SendRequest<NoTrailers>) {
        if sender.is_ready() {
            self.push(sender);
        } else if !sender.is_closed() {
            let pool = Arc::clone(self);
            tokio::spawn(async move {
                if sender.ready().await.is_ok() {
                    pool.push(sender);
                }
            });
        }
    }

    fn push(&self, sender: SendRequest<NoTrailers>) {
        let now = Instant::now();
        let mut idle = self.lock();
        let stale = idle
            .iter()
            .take_while(|(_, since)| now.saturating_duration_since(*since) > IDLE_TIMEOUT)
            .count();
        if stale > 0 {
            idle.drain(..stale);
        }
        if idle.len() < MAX_IDLE {
            idle.push((sender, now));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(SendRequest<NoTrailers>, Instant)>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The upstream's response body, streamed; gives its connection back to the pool at its end.
pub(crate) struct PooledBody {
    inner: Incoming,
    sender: Option<SendRequest<NoTrailers>>,
    pool: Arc<Pool>,
}

impl hyper::body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            if let Some(sender) = self.sender.take() {
                self.pool.checkin(sender);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // A body nobody polled to its end (an empty one, or HEAD) is complete all the same; a
        // body dropped half-read leaves its connection unusable, and it closes.
        if let Some(sender) = self.sender.take() {
            if self.inner.is_end_stream() {
                self.pool.checkin(sender);
            }
        }
    }
}
