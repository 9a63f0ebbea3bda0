//! Serving HTTP over a [`TlsListener`] — or, behind a TLS-terminating proxy, a
//! [`PlainListener`] — with the timeouts a public server needs and the client's
//! [`PeerCertificate`] on every request.
//!
//! [`serve`] is the one-liner for axum routers and any other tower service; [`HttpConfig`] holds
//! the HTTP timeouts, and [`HttpConfig::serve_connection`] serves one connection for those who
//! write their own hyper-util accept loop. Both take either kind of listener or connection
//! (the sealed traits [`Accept`] and [`Connection`]).
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use axum::{routing::get, Router};
//! use certbound_tls::{load_certs, load_private_key, server_config, ClientAuth, TlsListener};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tls = server_config(
//!     load_certs("server.pem")?,
//!     load_private_key("server.key")?,
//!     ClientAuth::self_signed(),
//! )?;
//! let app = Router::new().route("/", get(|| async { "hello" }));
//! let listener = TlsListener::bind("0.0.0.0:8443", tls).await?;
//! certbound_tls::serve(listener, app)
//!     .header_read_timeout(Duration::from_secs(10)) // the defaults, spelled out
//!     .idle_timeout(Duration::from_secs(60))
//!     .with_graceful_shutdown(async {
//!         let _ = tokio::signal::ctrl_c().await;
//!     })
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! # What the timeouts mean
//!
//! * **Header read** ([`HttpConfig::header_read_timeout`], default 10 s): from the moment a
//!   connection is ready for a request until that request's head (request line and headers)
//!   has arrived. It bounds the first request of every connection, HTTP/1.1 and HTTP/2 alike —
//!   a client that completes TLS and then sends nothing, or trickles its headers (slowloris),
//!   is disconnected. On HTTP/1.1 hyper also applies it to every later request, and starts the
//!   timer as soon as the previous response is sent, so on HTTP/1.1 the wait for the next
//!   request counts too: an idle HTTP/1.1 connection is closed after the *shorter* of the
//!   header-read and idle timeouts.
//! * **Idle** ([`HttpConfig::idle_timeout`], default 60 s): a connection with no request in
//!   flight — no handler running, no response body being sent — for this long is closed
//!   (HTTP/1.1 at once; HTTP/2 with a GOAWAY, then closed within a second). HTTP/2
//!   PING frames and other control frames do not count as activity. hyper has no idle timeout
//!   of its own; this one is a per-connection watchdog.
//! * **HTTP/2 keep-alive** ([`HttpConfig::h2_keep_alive_interval`], default every 30 s, 20 s
//!   to answer): while requests are in flight, a peer that stops answering PINGs is
//!   disconnected.
//!
//! Both timeouts are counted in the listener's [`ListenerStats`]
//! (`header_read_timeouts`, `idle_timeouts`). Slow request *bodies* are not bounded here: a
//! handler that reads a body can time out itself (for example with tower-http's
//! `TimeoutLayer` or `RequestBodyTimeoutLayer`).

use std::error::Error as StdError;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower_service::Service;

use crate::listener::{deadline, IpSlot, ListenerStats, TlsConnection, TlsListener};
use crate::plain::{PlainConnection, PlainListener};
use crate::PeerCertificate;

/// A boxed error, as hyper and tower use them.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// The default of [`HttpConfig::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The default of [`HttpConfig::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The default of [`HttpConfig::h2_keep_alive_interval`].
pub const DEFAULT_H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// The default of [`HttpConfig::h2_keep_alive_timeout`].
pub const DEFAULT_H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// After the idle timeout, how long an HTTP/2 client gets to acknowledge the GOAWAY before
/// the connection is dropped anyway.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The HTTP timeouts for connections served by [`serve`] or [`HttpConfig::serve_connection`].
///
/// `Default` is the safe configuration: header read 10 s, idle 60 s, HTTP/2 keep-alive PING
/// every 30 s with 20 s to answer. See the [module documentation](self) for what each means.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    header_read_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    h2_keep_alive_interval: Option<Duration>,
    h2_keep_alive_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Some(DEFAULT_HEADER_READ_TIMEOUT),
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            h2_keep_alive_interval: Some(DEFAULT_H2_KEEP_ALIVE_INTERVAL),
            h2_keep_alive_timeout: DEFAULT_H2_KEEP_ALIVE_TIMEOUT,
        }
    }
}

impl HttpConfig {
    /// The defaults (same as `HttpConfig::default()`).
    pub fn new() -> Self {
        Self::default()
    }

    /// How long a client may take to send a request head (default
    /// [`DEFAULT_HEADER_READ_TIMEOUT`]); `None` disables it. See the
    /// [module documentation](self) for when the clock runs. Connections closed by it are
    /// counted in [`ListenerStats::header_read_timeouts`].
    pub fn header_read_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.header_read_timeout = timeout.into();
        self
    }

    /// How long a connection may stay open with no request in flight (default
    /// [`DEFAULT_IDLE_TIMEOUT`]); `None` disables it. Connections closed by it are counted in
    /// [`ListenerStats::idle_timeouts`].
    pub fn idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.idle_timeout = timeout.into();
        self
    }

    /// How often an HTTP/2 connection sends a keep-alive PING (default
    /// [`DEFAULT_H2_KEEP_ALIVE_INTERVAL`]); `None` disables keep-alive PINGs.
    pub fn h2_keep_alive_interval(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.h2_keep_alive_interval = interval.into();
        self
    }

    /// How long an HTTP/2 client has to answer a keep-alive PING before the connection is
    /// closed (default [`DEFAULT_H2_KEEP_ALIVE_TIMEOUT`]).
    pub fn h2_keep_alive_timeout(mut self, timeout: Duration) -> Self {
        self.h2_keep_alive_timeout = timeout;
        self
    }

    /// A hyper-util server builder (HTTP/1.1 and HTTP/2) with a Tokio timer, the header-read
    /// timeout and HTTP/2 keep-alive set — for a connection loop of your own.
    ///
    /// It cannot apply the idle timeout, the header-read timeout to the first HTTP/2 request,
    /// or attach the [`PeerCertificate`]: [`serve_connection`](Self::serve_connection) does
    /// all of that and is what to use unless you need a builder setting it does not expose.
    pub fn hyper_builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // hyper adds these to `Instant::now()` unchecked: keep them addable.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout.map(addable));
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(self.h2_keep_alive_interval.map(addable))
            .keep_alive_timeout(addable(self.h2_keep_alive_timeout));
        builder
    }

    /// Serves HTTP/1.1 or HTTP/2 (as the client chose by ALPN and preface) on one connection
    /// from [`TlsListener::accept`] or [`PlainListener::accept`], until the client closes it or
    /// a timeout does.
    ///
    /// Every request gets the connection's [`PeerCertificate`] as an extension — and, with
    /// feature `axum`, `ConnectInfo<PeerCertificate>` and `ConnectInfo<SocketAddr>` too — which
    /// is where the certbound layer and axum extractors find it. On a plain connection the
    /// `PeerCertificate` has the client's address and no certificate, and the connection
    /// leaves the [`PlainListener`]'s per-address count when its first request head arrives.
    /// `service` is any tower service taking `Request<hyper::body::Incoming>`, such as an axum
    /// `Router`. HTTP upgrades (WebSocket) are supported.
    ///
    /// `Ok(())` when the client closed the connection or it was idle too long; an error for a
    /// request head that did not arrive in time or an HTTP protocol error (which are the
    /// client's, and usually only worth a debug log).
    pub async fn serve_connection<C, S, B>(
        &self,
        connection: C,
        service: S,
    ) -> Result<(), ConnectionError>
    where
        C: Connection,
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        self.serve_connection_with_shutdown(connection, service, std::future::pending())
            .await
    }

    /// [`serve_connection`](Self::serve_connection), and when `shutdown` completes, closes the
    /// connection gracefully: HTTP/1.1 after the response in progress, HTTP/2 with a GOAWAY
    /// once its streams are done. Returns when the connection is closed.
    pub async fn serve_connection_with_shutdown<C, S, B>(
        &self,
        mut connection: C,
        service: S,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ConnectionError>
    where
        C: Connection,
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let stats = connection.stats().clone();
        let remote_addr = connection.peer().remote_addr();
        let activity = Arc::new(Activity::new(connection.take_pending()));
        let service = TowerToHyperService::new(Attach {
            inner: service,
            peer: connection.peer().clone(),
            activity: activity.clone(),
        });
        let builder = self.hyper_builder();
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(connection), service);
        let watchdog = activity.expiry(self.header_read_timeout, self.idle_timeout);
        tokio::pin!(conn, watchdog, shutdown);

        let expired = tokio::select! {
            result = conn.as_mut() => return self.finished(result, &stats),
            expired = &mut watchdog => Some(expired),
            () = &mut shutdown => None,
        };
        match expired {
            None => {
                conn.as_mut().graceful_shutdown();
                self.finished(conn.await, &stats)
            }
            Some(Expired::Idle(timeout)) => {
                stats.count_idle_timeout();
                tracing::debug!(%remote_addr, ?timeout, "idle connection; closing");
                // Nothing is in flight: HTTP/1.1 closes at once; HTTP/2 once its GOAWAY is
                // acknowledged, or after a short grace for a client that never does.
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(IDLE_CLOSE_GRACE, conn).await;
                Ok(())
            }
            Some(Expired::FirstRequest(timeout)) => {
                // Like hyper's own header timeout: no courtesy for a client that has not sent
                // a request; the connection is dropped here.
                stats.count_header_read_timeout();
                tracing::debug!(%remote_addr, ?timeout, "no request head in time; closed");
                Err(ConnectionError::HeaderReadTimeout(timeout))
            }
        }
    }

    /// Maps hyper's result for a connection that ended by itself, counting header timeouts.
    fn finished(
        &self,
        result: Result<(), BoxError>,
        stats: &ListenerStats,
    ) -> Result<(), ConnectionError> {
        let err = match result {
            Ok(()) => return Ok(()),
            Err(err) => err,
        };
        let timed_out = err
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout);
        match (timed_out, self.header_read_timeout) {
            (true, Some(timeout)) => {
                stats.count_header_read_timeout();
                Err(ConnectionError::HeaderReadTimeout(timeout))
            }
            _ => Err(ConnectionError::Http(err)),
        }
    }
}

/// A listener [`serve`] serves: [`TlsListener`] or [`PlainListener`].
///
/// Sealed: it cannot be implemented outside this crate. It lets code be generic over both
/// listeners (`fn run<L: Accept>(listener: L)` can call `serve(listener, app)`).
pub trait Accept: sealed::Accept {}

/// A connection [`HttpConfig::serve_connection`] serves: [`TlsConnection`] or
/// [`PlainConnection`].
///
/// Sealed: it cannot be implemented outside this crate.
pub trait Connection: sealed::Connection {}

impl Accept for TlsListener {}
impl Accept for PlainListener {}
impl Connection for TlsConnection {}
impl Connection for PlainConnection {}

/// What `serve` needs from listeners and connections, out of reach of other crates.
pub(crate) mod sealed {
    use super::*;

    pub trait Accept: fmt::Debug + Send + 'static {
        type Conn: super::Connection;

        /// The next connection; an error only when the listener can never accept again.
        fn accept_connection(&mut self) -> impl Future<Output = io::Result<Self::Conn>> + Send;

        fn local_addr(&self) -> SocketAddr;

        fn stats(&self) -> ListenerStats;
    }

    pub trait Connection: AsyncRead + AsyncWrite + Unpin + Send + 'static {
        fn peer(&self) -> &PeerCertificate;

        fn stats(&self) -> &ListenerStats;

        /// A slot to give back once the first request head has arrived (plain connections).
        fn take_pending(&mut self) -> PendingSlot;
    }

    /// A connection's place in its listener's per-address count, if it still has one; given
    /// back when dropped. Opaque outside this crate.
    pub struct PendingSlot(pub(crate) Option<IpSlot>);

    impl Accept for TlsListener {
        type Conn = TlsConnection;

        async fn accept_connection(&mut self) -> io::Result<TlsConnection> {
            TlsListener::accept(self)
                .await
                .map(|(connection, _peer)| connection)
        }

        fn local_addr(&self) -> SocketAddr {
            TlsListener::local_addr(self)
        }

        fn stats(&self) -> ListenerStats {
            TlsListener::stats(self)
        }
    }

    impl Accept for PlainListener {
        type Conn = PlainConnection;

        async fn accept_connection(&mut self) -> io::Result<PlainConnection> {
            Ok(PlainListener::accept(self).await.0)
        }

        fn local_addr(&self) -> SocketAddr {
            PlainListener::local_addr(self)
        }

        fn stats(&self) -> ListenerStats {
            PlainListener::stats(self)
        }
    }

    impl Connection for TlsConnection {
        fn peer(&self) -> &PeerCertificate {
            TlsConnection::peer(self)
        }

        fn stats(&self) -> &ListenerStats {
            TlsConnection::stats(self)
        }

        fn take_pending(&mut self) -> PendingSlot {
            // A TLS connection left the per-address count when its handshake completed.
            PendingSlot(None)
        }
    }

    impl Connection for PlainConnection {
        fn peer(&self) -> &PeerCertificate {
            PlainConnection::peer(self)
        }

        fn stats(&self) -> &ListenerStats {
            PlainConnection::stats(self)
        }

        fn take_pending(&mut self) -> PendingSlot {
            PendingSlot(PlainConnection::take_pending(self))
        }
    }
}

/// At most a year: any longer setting means "never" in practice, and stays addable to an
/// `Instant` (hyper's timers would panic on `Duration::MAX`).
fn addable(timeout: Duration) -> Duration {
    timeout.min(Duration::from_secs(365 * 86_400))
}

/// Why [`HttpConfig::serve_connection`] ended with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// A request head did not arrive within the header-read timeout.
    #[error("no complete request head within {0:?}")]
    HeaderReadTimeout(Duration),
    /// hyper ended the connection with an error (a malformed request, a client that hung up
    /// mid-request, an HTTP/2 protocol error, …).
    #[error("HTTP connection error: {0}")]
    Http(#[source] BoxError),
}

/// Serves `service` — an axum `Router` or any tower service taking
/// `Request<hyper::body::Incoming>` — on every connection of `listener` (a [`TlsListener`], or
/// a [`PlainListener`] behind a TLS-terminating proxy), with the safe HTTP timeouts of
/// [`HttpConfig::default`] and the client's [`PeerCertificate`] on every request (as an
/// extension, and with feature `axum` as `ConnectInfo<PeerCertificate>` too, exactly as
/// `into_make_service_with_connect_info::<PeerCertificate>()` provides it, and as
/// `ConnectInfo<SocketAddr>`). On a plain listener the `PeerCertificate` carries the client's
/// address and no certificate.
///
/// Await the returned [`Serve`] to run the server; before that, its methods change the
/// timeouts and add a graceful shutdown. It only returns (with an error) if a TLS listener's
/// accept task stops, or after a graceful shutdown. Dropping the future closes every
/// connection.
///
/// ```no_run
/// # async fn run(listener: certbound_tls::TlsListener, app: axum::Router) -> std::io::Result<()> {
/// certbound_tls::serve(listener, app).await
/// # }
/// # async fn plain(app: axum::Router) -> std::io::Result<()> {
/// // Behind a TLS-terminating proxy:
/// let listener = certbound_tls::PlainListener::bind("10.0.0.10:8080").await?;
/// certbound_tls::serve(listener, app).await
/// # }
/// ```
pub fn serve<L: Accept, S>(listener: L, service: S) -> Serve<S, L> {
    Serve {
        listener,
        service,
        http: HttpConfig::default(),
        shutdown: None,
        drain_timeout: None,
    }
}

/// A server being configured; created by [`serve`], run by `.await`.
///
/// `L` is the listener: [`TlsListener`] (the default) or [`PlainListener`].
#[must_use = "a server does nothing until it is awaited"]
pub struct Serve<S, L = TlsListener> {
    listener: L,
    service: S,
    http: HttpConfig,
    shutdown: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    drain_timeout: Option<Duration>,
}

impl<S, L: fmt::Debug> fmt::Debug for Serve<S, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("http", &self.http)
            .field("graceful_shutdown", &self.shutdown.is_some())
            .field("drain_timeout", &self.drain_timeout)
            .finish_non_exhaustive()
    }
}

impl<S, L: Accept> Serve<S, L> {
    /// Sets [`HttpConfig::header_read_timeout`] (default 10 s; `None` disables).
    pub fn header_read_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.http = self.http.header_read_timeout(timeout);
        self
    }

    /// Sets [`HttpConfig::idle_timeout`] (default 60 s; `None` disables).
    pub fn idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.http = self.http.idle_timeout(timeout);
        self
    }

    /// Replaces all HTTP settings at once.
    pub fn http_config(mut self, http: HttpConfig) -> Self {
        self.http = http;
        self
    }

    /// When `signal` completes: stop accepting (the port closes, handshakes in progress are
    /// abandoned), let every open connection finish the requests it has in flight (HTTP/1.1
    /// closes after its response, HTTP/2 sends GOAWAY), and return `Ok(())` once all are
    /// closed — or once the [`drain_timeout`](Self::drain_timeout) has passed.
    pub fn with_graceful_shutdown(
        mut self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        self.shutdown = Some(Box::pin(signal));
        self
    }

    /// After the shutdown signal, how long to wait for open connections before closing the rest
    /// abruptly (default: no limit; idle connections close at once, so only requests in
    /// flight are waited for).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = Some(timeout);
        self
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        sealed::Accept::local_addr(&self.listener)
    }

    /// A live view of the listener's and the HTTP server's counters.
    pub fn stats(&self) -> ListenerStats {
        sealed::Accept::stats(&self.listener)
    }
}

impl<S, B, L> IntoFuture for Serve<S, L>
where
    L: Accept,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

impl<S, B, L> Serve<S, L>
where
    L: Accept,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    async fn run(self) -> io::Result<()> {
        let Serve {
            mut listener,
            service,
            http,
            shutdown,
            drain_timeout,
        } = self;
        let http = Arc::new(http);
        let mut shutdown = shutdown.unwrap_or_else(|| Box::pin(std::future::pending()));
        let (draining, drain_signal) = watch::channel(());
        let mut connections = JoinSet::new();
        let local_addr = sealed::Accept::local_addr(&listener);
        tracing::debug!(%local_addr, ?http, "serving HTTP");

        let result = loop {
            tokio::select! {
                accepted = listener.accept_connection() => {
                    let connection = match accepted {
                        Ok(accepted) => accepted,
                        Err(err) => break Err(err),
                    };
                    let (http, service) = (http.clone(), service.clone());
                    let mut drain_signal = drain_signal.clone();
                    connections.spawn(async move {
                        let remote_addr = sealed::Connection::peer(&connection).remote_addr();
                        let shutdown = async move {
                            // Err: the server future is gone, and this task with it.
                            let _ = drain_signal.changed().await;
                        };
                        if let Err(err) = http
                            .serve_connection_with_shutdown(connection, service, shutdown)
                            .await
                        {
                            tracing::debug!(%remote_addr, "connection ended: {err}");
                        }
                    });
                }
                Some(joined) = connections.join_next(), if !connections.is_empty() => {
                    log_panic(joined);
                }
                () = &mut shutdown => break Ok(()),
            }
        };

        // Stop accepting, then tell every connection to finish.
        drop(listener);
        let _ = draining.send(());
        tracing::debug!(
            %local_addr,
            open = connections.len(),
            "stopped accepting; draining connections"
        );
        let drain = async {
            while let Some(joined) = connections.join_next().await {
                log_panic(joined);
            }
        };
        match drain_timeout {
            None => drain.await,
            Some(timeout) => {
                if tokio::time::timeout(timeout, drain).await.is_err() {
                    tracing::warn!(
                        %local_addr,
                        open = connections.len(),
                        ?timeout,
                        "drain timeout; closing the remaining connections"
                    );
                    connections.shutdown().await;
                }
            }
        }
        result
    }
}

fn log_panic(joined: Result<(), tokio::task::JoinError>) {
    if let Err(err) = joined {
        if err.is_panic() {
            tracing::error!("connection task panicked: {err}");
        }
    }
}

/// Requests in flight on one connection, and since when it has had none.
struct Activity {
    state: Mutex<ActivityState>,
    changed: Notify,
    /// A plain connection's place in its listener's per-address count, given back when the
    /// first request head arrives (or with the connection).
    pending: Mutex<sealed::PendingSlot>,
}

impl fmt::Debug for Activity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Activity")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct ActivityState {
    /// Requests whose handler runs or whose response body is being sent.
    in_flight: usize,
    /// Requests begun on this connection (only "none yet" matters).
    begun: bool,
    /// When `in_flight` last became 0 (or the connection started).
    idle_since: Instant,
}

/// Which deadline passed.
#[derive(Debug, Clone, Copy)]
enum Expired {
    /// No request head within the header-read timeout of the connection's start.
    FirstRequest(Duration),
    /// No request in flight for the idle timeout.
    Idle(Duration),
}

impl Activity {
    fn new(pending: sealed::PendingSlot) -> Self {
        Self {
            state: Mutex::new(ActivityState {
                in_flight: 0,
                begun: false,
                idle_since: Instant::now(),
            }),
            changed: Notify::new(),
            pending: Mutex::new(pending),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Completes when the connection has had no request in flight for too long: before its
    /// first request, the shorter of the two timeouts; after, the idle timeout.
    async fn expiry(&self, header_read: Option<Duration>, idle: Option<Duration>) -> Expired {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the state is read, so no change is missed.
            changed.as_mut().enable();
            let next = {
                let state = self.lock();
                if state.in_flight > 0 {
                    None
                } else if !state.begun {
                    let first = header_read.map(Expired::FirstRequest);
                    let idle = idle.map(Expired::Idle);
                    [first, idle]
                        .into_iter()
                        .flatten()
                        .min_by_key(|expired| expired.timeout())
                        .map(|expired| (deadline(state.idle_since, expired.timeout()), expired))
                } else {
                    idle.map(|timeout| {
                        (deadline(state.idle_since, timeout), Expired::Idle(timeout))
                    })
                }
            };
            match next {
                None => changed.await,
                Some((at, expired)) => tokio::select! {
                    () = tokio::time::sleep_until(at) => {
                        // A request may have begun at the last moment.
                        let state = self.lock();
                        if state.in_flight == 0 && deadline(state.idle_since, expired.timeout()) <= Instant::now() {
                            return expired;
                        }
                    }
                    () = &mut changed => {}
                },
            }
        }
    }
}

impl Expired {
    fn timeout(self) -> Duration {
        match self {
            Expired::FirstRequest(timeout) | Expired::Idle(timeout) => timeout,
        }
    }
}

/// One request in flight; ends when dropped (with the response body, or with the handler's
/// future if the client went away first).
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: &Arc<Activity>) -> Self {
        let first = {
            let mut state = activity.lock();
            state.in_flight = state.in_flight.saturating_add(1);
            !std::mem::replace(&mut state.begun, true)
        };
        activity.changed.notify_waiters();
        if first {
            // A request head has arrived: no longer a connection without a request.
            drop(
                activity
                    .pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
                    .take(),
            );
        }
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        {
            let mut state = self.0.lock();
            state.in_flight = state.in_flight.saturating_sub(1);
            if state.in_flight == 0 {
                state.idle_since = Instant::now();
            }
        }
        self.0.changed.notify_waiters();
    }
}

/// Puts the connection's certificate where the certbound layer and axum extractors look for it.
fn attach<B>(request: &mut Request<B>, peer: &PeerCertificate) {
    #[cfg(feature = "axum")]
    {
        use axum::extract::ConnectInfo;
        let extensions = request.extensions_mut();
        extensions.insert(ConnectInfo(peer.clone()));
        extensions.insert(ConnectInfo(peer.remote_addr()));
    }
    request.extensions_mut().insert(peer.clone());
}

/// The per-connection service: attaches the certificate and tracks requests in flight.
#[derive(Clone)]
struct Attach<S> {
    inner: S,
    peer: PeerCertificate,
    activity: Arc<Activity>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Attach<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<TrackedBody<ResBody>>;
    type Error = S::Error;
    type Future = AttachFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let in_flight = InFlight::begin(&self.activity);
        attach(&mut request, &self.peer);
        AttachFuture {
            inner: self.inner.call(request),
            in_flight: Some(in_flight),
        }
    }
}

pin_project! {
    /// The handler's future; hands the in-flight marker on to the response body.
    struct AttachFuture<F> {
        #[pin]
        inner: F,
        in_flight: Option<InFlight>,
    }
}

impl<F, ResBody, E> Future for AttachFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<TrackedBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.inner.poll(cx))?;
        let in_flight = this.in_flight.take();
        Poll::Ready(Ok(response.map(|inner| TrackedBody { inner, in_flight })))
    }
}

pin_project! {
    /// A response body that keeps its request "in flight" until it is sent (or dropped).
    struct TrackedBody<B> {
        #[pin]
        inner: B,
        in_flight: Option<InFlight>,
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        if frame.is_none() {
            this.in_flight.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
