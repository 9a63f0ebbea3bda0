//! A TLS listener that completes handshakes concurrently and hands out each connection with
//! its [`PeerCertificate`].
//!
//! One accept task takes TCP connections and spawns one task per handshake, each bounded by
//! [`TlsListener::handshake_timeout`]; a client that connects and then sends nothing delays
//! nobody else. Right after a handshake the client's leaf certificate is hashed — once per
//! connection — and the connection is queued for [`TlsListener::accept`].
//!
//! With axum (feature `axum`, on by default), every request carries
//! `ConnectInfo<PeerCertificate>`:
//!
//! ```no_run
//! use axum::{extract::ConnectInfo, routing::get, Router};
//! use certbound_tls::{
//!     load_certs, load_private_key, server_config, ClientAuth, PeerCertificate, TlsListener,
//! };
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = server_config(
//!     load_certs("server.pem")?,
//!     load_private_key("server.key")?,
//!     ClientAuth::self_signed(),
//! )?;
//! let app = Router::new().route(
//!     "/whoami",
//!     get(|ConnectInfo(peer): ConnectInfo<PeerCertificate>| async move {
//!         match peer.thumbprint() {
//!             Some(thumbprint) => format!("x5t#S256 = {thumbprint}"),
//!             None => "no client certificate".to_owned(),
//!         }
//!     }),
//! );
//! let listener = TlsListener::bind("0.0.0.0:8443", config).await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<PeerCertificate>()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! With hyper-util directly, put the [`PeerCertificate`] into each request's extensions:
//!
//! ```no_run
//! use std::convert::Infallible;
//!
//! use certbound_tls::{
//!     load_certs, load_private_key, server_config, ClientAuth, PeerCertificate, TlsListener,
//! };
//! use hyper::{body::Incoming, service::service_fn, Request, Response};
//! use hyper_util::rt::{TokioExecutor, TokioIo};
//! use hyper_util::server::conn::auto;
//!
//! async fn whoami(req: Request<Incoming>) -> Result<Response<String>, Infallible> {
//!     let peer = req.extensions().get::<PeerCertificate>();
//!     let body = match peer.and_then(PeerCertificate::thumbprint) {
//!         Some(thumbprint) => format!("x5t#S256 = {thumbprint}"),
//!         None => "no client certificate".to_owned(),
//!     };
//!     Ok(Response::new(body))
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let config = server_config(
//! #     load_certs("server.pem")?,
//! #     load_private_key("server.key")?,
//! #     ClientAuth::self_signed(),
//! # )?;
//! let mut listener = TlsListener::bind("0.0.0.0:8443", config).await?;
//! loop {
//!     let (stream, peer) = listener.accept().await?;
//!     tokio::spawn(async move {
//!         // The same PeerCertificate (hashed once) goes into every request on this connection.
//!         let service = service_fn(move |mut req: Request<Incoming>| {
//!             req.extensions_mut().insert(peer.clone());
//!             whoami(req)
//!         });
//!         if let Err(err) = auto::Builder::new(TokioExecutor::new())
//!             .serve_connection(TokioIo::new(stream), service)
//!             .await
//!         {
//!             tracing::debug!("connection ended: {err}");
//!         }
//!     });
//! }
//! # }
//! ```

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::PeerCertificate;

/// How long a client may take to complete the TLS handshake, unless changed with
/// [`TlsListener::handshake_timeout`].
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many handshakes may be in progress at once, unless changed with
/// [`TlsListener::max_pending_handshakes`].
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 1024;

/// Completed handshakes waiting for `accept()`. Small: waiting connections also count against
/// the pending-handshake limit, which is the real bound.
const READY_QUEUE: usize = 64;

type Accepted = (TlsStream<TcpStream>, PeerCertificate);

/// Accepts TLS connections, running handshakes concurrently, and yields each with the
/// client's [`PeerCertificate`].
///
/// See the [module documentation](self) for use with `axum::serve` and with hyper-util.
/// Dropping the listener stops accepting and abandons handshakes in progress.
pub struct TlsListener {
    local_addr: SocketAddr,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    max_pending: usize,
    stats: ListenerStats,
    state: State,
}

enum State {
    /// Not accepting yet: the accept task starts on the first `accept()`, so settings made
    /// after construction apply.
    Idle(TcpListener),
    Running {
        ready: mpsc::Receiver<Accepted>,
        _task: AbortOnDrop,
    },
    /// Transient, while switching from `Idle` to `Running`.
    Starting,
}

impl TlsListener {
    /// Binds a TCP listener to `addr` and serves TLS with `config` on it.
    pub async fn bind(addr: impl ToSocketAddrs, config: Arc<ServerConfig>) -> io::Result<Self> {
        Self::new(TcpListener::bind(addr).await?, config)
    }

    /// Serves TLS with `config` on an existing TCP listener.
    ///
    /// Fails only if the listener's local address cannot be read.
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> io::Result<Self> {
        Ok(Self {
            local_addr: listener.local_addr()?,
            acceptor: TlsAcceptor::from(config),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_pending: DEFAULT_MAX_PENDING_HANDSHAKES,
            stats: ListenerStats::default(),
            state: State::Idle(listener),
        })
    }

    /// Sets how long a client may take, from TCP accept, to complete the TLS handshake
    /// (default [`DEFAULT_HANDSHAKE_TIMEOUT`]). Slower clients are disconnected and counted in
    /// [`ListenerStats::handshakes_timed_out`].
    ///
    /// Takes effect if set before the first [`accept`](Self::accept).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets how many handshakes may be in progress at once (default
    /// [`DEFAULT_MAX_PENDING_HANDSHAKES`], at least 1). At the limit, new TCP connections wait
    /// in the kernel's backlog until a handshake finishes or times out.
    ///
    /// Takes effect if set before the first [`accept`](Self::accept).
    pub fn max_pending_handshakes(mut self, max: usize) -> Self {
        self.max_pending = max.max(1);
        self
    }

    /// The local address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A live view of this listener's counters; it stays valid after the listener is moved
    /// into a server.
    pub fn stats(&self) -> ListenerStats {
        self.stats.clone()
    }

    /// Waits for the next connection whose TLS handshake has completed.
    ///
    /// TCP accept errors and failed or timed-out handshakes are logged and counted, never
    /// returned. The only error is that the accept task has stopped (it panicked, or the Tokio
    /// runtime it ran on shut down); the listener is then unusable.
    ///
    /// Cancel-safe: if the future is dropped before it completes, no connection is lost.
    /// The accept task starts on the first call, on the current Tokio runtime.
    pub async fn accept(&mut self) -> io::Result<(TlsStream<TcpStream>, PeerCertificate)> {
        if matches!(self.state, State::Idle(_)) {
            self.start();
        }
        match &mut self.state {
            State::Running { ready, .. } => ready
                .recv()
                .await
                .ok_or_else(|| io::Error::other("the TLS listener's accept task has stopped")),
            State::Idle(_) | State::Starting => Err(io::Error::other(
                "the TLS listener's accept task did not start",
            )),
        }
    }

    fn start(&mut self) {
        let State::Idle(tcp) = std::mem::replace(&mut self.state, State::Starting) else {
            return;
        };
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let task = tokio::spawn(accept_loop(AcceptLoop {
            tcp,
            acceptor: self.acceptor.clone(),
            handshake_timeout: self.handshake_timeout,
            max_pending: self.max_pending,
            stats: self.stats.clone(),
            ready: tx,
        }));
        tracing::debug!(
            local_addr = %self.local_addr,
            handshake_timeout = ?self.handshake_timeout,
            max_pending = self.max_pending,
            "TLS listener accepting"
        );
        self.state = State::Running {
            ready,
            _task: AbortOnDrop(task),
        };
    }
}

impl fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsListener")
            .field("local_addr", &self.local_addr)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_pending_handshakes", &self.max_pending)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Aborts the accept task — and with it, through its `JoinSet`, every handshake in progress —
/// when the listener is dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct AcceptLoop {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    max_pending: usize,
    stats: ListenerStats,
    ready: mpsc::Sender<Accepted>,
}

async fn accept_loop(cx: AcceptLoop) {
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            () = cx.ready.closed() => break,
            Some(joined) = handshakes.join_next(), if !handshakes.is_empty() => {
                if let Err(err) = joined {
                    if err.is_panic() {
                        tracing::error!("TLS handshake task panicked: {err}");
                    }
                }
            }
            accepted = cx.tcp.accept(), if handshakes.len() < cx.max_pending => match accepted {
                Ok((stream, remote_addr)) => {
                    cx.stats.0.tcp_accepted.fetch_add(1, Ordering::Relaxed);
                    handshakes.spawn(handshake(
                        cx.acceptor.clone(),
                        stream,
                        remote_addr,
                        cx.handshake_timeout,
                        cx.stats.clone(),
                        cx.ready.clone(),
                    ));
                }
                Err(err) => handle_accept_error(err).await,
            },
        }
    }
    tracing::debug!("TLS listener dropped; accept task stopping");
}

async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    remote_addr: SocketAddr,
    timeout: Duration,
    stats: ListenerStats,
    ready: mpsc::Sender<Accepted>,
) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::trace!(%remote_addr, "cannot set TCP_NODELAY: {err}");
    }
    let stream = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            stats.0.handshakes_failed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%remote_addr, "TLS handshake failed: {err}");
            return;
        }
        Err(_elapsed) => {
            stats.0.handshakes_timed_out.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%remote_addr, ?timeout, "TLS handshake timed out");
            return;
        }
    };
    // The one place the certificate is hashed for this connection.
    let peer = PeerCertificate::from_connection(remote_addr, stream.get_ref().1);
    stats.0.handshakes_completed.fetch_add(1, Ordering::Relaxed);
    match peer.thumbprint() {
        Some(thumbprint) => {
            stats.0.client_certificates.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                %remote_addr,
                thumbprint = %thumbprint.short(),
                "TLS handshake completed with a client certificate"
            );
        }
        None => {
            tracing::debug!(%remote_addr, "TLS handshake completed without a client certificate");
        }
    }
    if ready.send((stream, peer)).await.is_err() {
        tracing::debug!(%remote_addr, "TLS listener dropped; closing a completed connection");
    }
}

/// Like axum's and hyper's: per-connection errors are ignored; others (such as `EMFILE`, too
/// many open files) are logged, followed by a pause so a busy loop does not make it worse.
async fn handle_accept_error(err: io::Error) {
    if matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!("TCP accept error: {err}; retrying in 1s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Counters of a [`TlsListener`], read live; obtained from [`TlsListener::stats`].
///
/// Cloning gives another view of the same counters.
#[derive(Clone, Default)]
pub struct ListenerStats(Arc<Counters>);

#[derive(Default)]
struct Counters {
    tcp_accepted: AtomicU64,
    handshakes_completed: AtomicU64,
    handshakes_failed: AtomicU64,
    handshakes_timed_out: AtomicU64,
    client_certificates: AtomicU64,
}

impl ListenerStats {
    /// TCP connections accepted.
    pub fn tcp_accepted(&self) -> u64 {
        self.0.tcp_accepted.load(Ordering::Relaxed)
    }

    /// TLS handshakes that completed.
    pub fn handshakes_completed(&self) -> u64 {
        self.0.handshakes_completed.load(Ordering::Relaxed)
    }

    /// TLS handshakes that failed: a refused client certificate, a protocol error, a client
    /// that hung up.
    pub fn handshakes_failed(&self) -> u64 {
        self.0.handshakes_failed.load(Ordering::Relaxed)
    }

    /// TLS handshakes abandoned after the handshake timeout.
    pub fn handshakes_timed_out(&self) -> u64 {
        self.0.handshakes_timed_out.load(Ordering::Relaxed)
    }

    /// Client certificates taken from completed handshakes and hashed — one per connection
    /// whose client presented a certificate, however many requests it carries.
    pub fn client_certificates(&self) -> u64 {
        self.0.client_certificates.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for ListenerStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerStats")
            .field("tcp_accepted", &self.tcp_accepted())
            .field("handshakes_completed", &self.handshakes_completed())
            .field("handshakes_failed", &self.handshakes_failed())
            .field("handshakes_timed_out", &self.handshakes_timed_out())
            .field("client_certificates", &self.client_certificates())
            .finish()
    }
}

#[cfg(feature = "axum")]
mod axum_impl {
    use super::*;
    use axum::extract::connect_info::Connected;
    use axum::serve::{IncomingStream, Listener};

    impl Listener for TlsListener {
        type Io = TlsStream<TcpStream>;
        type Addr = PeerCertificate;

        async fn accept(&mut self) -> (Self::Io, Self::Addr) {
            match TlsListener::accept(self).await {
                Ok(accepted) => accepted,
                Err(err) => {
                    // axum's Listener cannot report errors; a listener whose accept task is
                    // gone will never yield a connection again.
                    tracing::error!(
                        local_addr = %self.local_addr,
                        "{err}; no more connections will be accepted"
                    );
                    std::future::pending().await
                }
            }
        }

        /// The local address, as a [`PeerCertificate`] without a certificate (axum's
        /// `Listener` uses one type for both ends).
        fn local_addr(&self) -> io::Result<Self::Addr> {
            Ok(PeerCertificate::new(self.local_addr, None))
        }
    }

    impl Connected<IncomingStream<'_, TlsListener>> for PeerCertificate {
        fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
            stream.remote_addr().clone()
        }
    }
}
