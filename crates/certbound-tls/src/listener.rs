//! A TLS listener that completes handshakes concurrently and hands out each connection with
//! its [`PeerCertificate`].
//!
//! One accept task takes TCP connections and spawns one task per handshake. Right after a
//! handshake the client's leaf certificate is hashed — once per connection — and the connection
//! is queued for [`TlsListener::accept`]. Clients that connect and then say nothing, or say it
//! slowly, delay nobody else; every limit has a safe default and a setter:
//!
//! | limit | default | setter | what happens to a client over it |
//! |---|---|---|---|
//! | ClientHello deadline | 3 s | [`client_hello_timeout`](TlsListener::client_hello_timeout) | closed, counted in [`ListenerStats::client_hello_timeouts`] |
//! | whole handshake | 10 s | [`handshake_timeout`](TlsListener::handshake_timeout) | closed, counted in [`ListenerStats::handshakes_timed_out`] |
//! | handshakes in progress from one IP address (IPv6: one /64) | 64 | [`max_pending_handshakes_per_ip`](TlsListener::max_pending_handshakes_per_ip) | closed at once, counted in [`ListenerStats::per_ip_limit_rejections`] |
//! | handshakes in progress, all addresses | 1,024 | [`max_pending_handshakes`](TlsListener::max_pending_handshakes) | waits in the kernel's backlog |
//! | open connections (handshaking or established) | 10,000 | [`max_connections`](TlsListener::max_connections) | waits in the kernel's backlog; counted in [`ListenerStats::connection_limit_waits`] |
//!
//! After the handshake, HTTP timeouts (header read, idle keep-alive) belong to the HTTP server:
//! [`serve`](crate::serve) — or, in a hand-written hyper-util loop,
//! [`HttpConfig::serve_connection`](crate::HttpConfig::serve_connection) — apply them.
//!
//! With axum (feature `axum`, on by default), [`serve`](crate::serve) is all there is to it; every
//! request carries the [`PeerCertificate`] (and `ConnectInfo<PeerCertificate>`,
//! `ConnectInfo<SocketAddr>`):
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
//! certbound_tls::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```
//!
//! `axum::serve(listener, app.into_make_service_with_connect_info::<PeerCertificate>())` works
//! too, but without any HTTP timeout: axum cannot set them.
//!
//! With hyper-util directly, [`HttpConfig::serve_connection`](crate::HttpConfig::serve_connection)
//! serves one connection with the timeouts and puts its [`PeerCertificate`] into each request's
//! extensions:
//!
//! ```no_run
//! use std::convert::Infallible;
//!
//! use certbound_tls::{
//!     load_certs, load_private_key, server_config, ClientAuth, HttpConfig, PeerCertificate,
//!     TlsListener,
//! };
//! use hyper::{body::Incoming, Request, Response};
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
//! let http = HttpConfig::default(); // header read 10 s, idle 60 s
//! let mut listener = TlsListener::bind("0.0.0.0:8443", config).await?;
//! loop {
//!     let (connection, _peer) = listener.accept().await?;
//!     let http = http.clone();
//!     tokio::spawn(async move {
//!         // The same PeerCertificate (hashed once) goes into every request on this connection.
//!         let service = tower::service_fn(whoami);
//!         if let Err(err) = http.serve_connection(connection, service).await {
//!             tracing::debug!("connection ended: {err}");
//!         }
//!     });
//! }
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::server::Acceptor;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

use crate::PeerCertificate;

/// How long a client may take to complete the TLS handshake, from TCP accept, unless changed
/// with [`TlsListener::handshake_timeout`].
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to send its complete ClientHello, from TCP accept, unless
/// changed with [`TlsListener::client_hello_timeout`].
pub const DEFAULT_CLIENT_HELLO_TIMEOUT: Duration = Duration::from_secs(3);

/// How many handshakes may be in progress at once, unless changed with
/// [`TlsListener::max_pending_handshakes`].
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 1024;

/// How many handshakes one IP address may have in progress at once, unless changed with
/// [`TlsListener::max_pending_handshakes_per_ip`].
pub const DEFAULT_MAX_PENDING_HANDSHAKES_PER_IP: usize = 64;

/// How many connections — handshaking or established — may be open at once, unless changed
/// with [`TlsListener::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Completed handshakes waiting for `accept()`. Small: waiting connections also count against
/// the pending-handshake limits, which are the real bound.
const READY_QUEUE: usize = 64;

/// Accepts TLS connections, running handshakes concurrently, and yields each with the
/// client's [`PeerCertificate`].
///
/// See the [module documentation](self) for its limits and for use with
/// [`serve`](crate::serve), `axum::serve` and hyper-util. Dropping the listener stops accepting
/// and abandons handshakes in progress; connections already handed out stay open.
pub struct TlsListener {
    local_addr: SocketAddr,
    config: ServerConfigHandle,
    limits: Limits,
    stats: ListenerStats,
    state: State,
}

/// The listener's settings, copied into its accept task when it starts.
#[derive(Debug, Clone, Copy)]
struct Limits {
    handshake_timeout: Duration,
    client_hello_timeout: Duration,
    max_pending: usize,
    max_pending_per_ip: usize,
    max_connections: usize,
}

enum State {
    /// Not accepting yet: the accept task starts on the first `accept()`, so settings made
    /// after construction apply.
    Idle(TcpListener),
    Running {
        ready: mpsc::Receiver<TlsConnection>,
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
            config: ServerConfigHandle::new(config),
            limits: Limits {
                handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
                client_hello_timeout: DEFAULT_CLIENT_HELLO_TIMEOUT,
                max_pending: DEFAULT_MAX_PENDING_HANDSHAKES,
                max_pending_per_ip: DEFAULT_MAX_PENDING_HANDSHAKES_PER_IP,
                max_connections: DEFAULT_MAX_CONNECTIONS,
            },
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
        self.limits.handshake_timeout = timeout;
        self
    }

    /// Sets how long a client may take, from TCP accept, to send its whole ClientHello — the
    /// first message of the handshake (default [`DEFAULT_CLIENT_HELLO_TIMEOUT`]). A client that
    /// connects and sends nothing, or trickles its hello, is disconnected after this short
    /// deadline and counted in [`ListenerStats::client_hello_timeouts`], instead of holding a
    /// handshake slot for the whole [`handshake_timeout`](Self::handshake_timeout).
    ///
    /// The handshake timeout still bounds the whole handshake, this first part included.
    /// Takes effect if set before the first [`accept`](Self::accept).
    pub fn client_hello_timeout(mut self, timeout: Duration) -> Self {
        self.limits.client_hello_timeout = timeout;
        self
    }

    /// Sets how many handshakes may be in progress at once (default
    /// [`DEFAULT_MAX_PENDING_HANDSHAKES`], at least 1). At the limit, new TCP connections wait
    /// in the kernel's backlog until a handshake finishes or times out.
    ///
    /// Takes effect if set before the first [`accept`](Self::accept).
    pub fn max_pending_handshakes(mut self, max: usize) -> Self {
        self.limits.max_pending = max.max(1);
        self
    }

    /// Sets how many handshakes one IP address may have in progress at once (default
    /// [`DEFAULT_MAX_PENDING_HANDSHAKES_PER_IP`], at least 1), so that one address cannot take
    /// every slot of [`max_pending_handshakes`](Self::max_pending_handshakes). A connection
    /// from an address at its limit is closed at once, before any TLS, and counted in
    /// [`ListenerStats::per_ip_limit_rejections`].
    ///
    /// An IPv4-mapped IPv6 address (`::ffff:192.0.2.7`) counts as the IPv4 address it denotes.
    /// Behind a load balancer or NAT, many clients share one address: raise the limit there.
    /// Takes effect if set before the first [`accept`](Self::accept).
    pub fn max_pending_handshakes_per_ip(mut self, max: usize) -> Self {
        self.limits.max_pending_per_ip = max.max(1);
        self
    }

    /// Sets how many connections may be open at once — handshaking, waiting for
    /// [`accept`](Self::accept), or handed out and not yet dropped (default
    /// [`DEFAULT_MAX_CONNECTIONS`], at least 1). At the limit the listener stops taking TCP
    /// connections, which wait in the kernel's backlog until one closes; each time that
    /// happens is counted in [`ListenerStats::connection_limit_waits`].
    ///
    /// Keep it below the process's open-file limit (`ulimit -n`), with room for everything
    /// else the process opens. Takes effect if set before the first [`accept`](Self::accept).
    pub fn max_connections(mut self, max: usize) -> Self {
        self.limits.max_connections = max.clamp(1, Semaphore::MAX_PERMITS);
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

    /// A handle that replaces the server configuration — a renewed server certificate, a new
    /// client CA or CRL — without restarting: handshakes that start after
    /// [`ServerConfigHandle::store`] use the new configuration; connections already open (and
    /// handshakes in progress) keep the one they started with. It stays valid after the
    /// listener is moved into a server.
    ///
    /// ```no_run
    /// # async fn doc(listener: certbound_tls::TlsListener, renewed: std::sync::Arc<rustls::ServerConfig>) {
    /// let reload = listener.config_handle();
    /// tokio::spawn(async move { certbound_tls::serve(listener, axum::Router::new()).await });
    /// // … later, when the certificate files changed:
    /// reload.store(renewed);
    /// # }
    /// ```
    pub fn config_handle(&self) -> ServerConfigHandle {
        self.config.clone()
    }

    /// Waits for the next connection whose TLS handshake has completed.
    ///
    /// TCP accept errors and failed or timed-out handshakes are logged and counted, never
    /// returned. The only error is that the accept task has stopped (it panicked, or the Tokio
    /// runtime it ran on shut down); the listener is then unusable.
    ///
    /// The connection counts against [`max_connections`](Self::max_connections) until it is
    /// dropped. The [`PeerCertificate`] is also available as [`TlsConnection::peer`].
    ///
    /// Cancel-safe: if the future is dropped before it completes, no connection is lost.
    /// The accept task starts on the first call, on the current Tokio runtime.
    pub async fn accept(&mut self) -> io::Result<(TlsConnection, PeerCertificate)> {
        if matches!(self.state, State::Idle(_)) {
            self.start();
        }
        match &mut self.state {
            State::Running { ready, .. } => ready
                .recv()
                .await
                .map(|connection| {
                    let peer = connection.peer.clone();
                    (connection, peer)
                })
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
        let shared = Arc::new(Shared {
            config: self.config.clone(),
            limits: self.limits,
            stats: self.stats.clone(),
            pending_by_ip: Arc::new(PendingByIp::new(self.limits.max_pending_per_ip)),
        });
        let task = tokio::spawn(accept_loop(tcp, shared, tx));
        tracing::debug!(
            local_addr = %self.local_addr,
            limits = ?self.limits,
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
            .field("handshake_timeout", &self.limits.handshake_timeout)
            .field("client_hello_timeout", &self.limits.client_hello_timeout)
            .field("max_pending_handshakes", &self.limits.max_pending)
            .field(
                "max_pending_handshakes_per_ip",
                &self.limits.max_pending_per_ip,
            )
            .field("max_connections", &self.limits.max_connections)
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

/// What the accept task and its handshake tasks share.
struct Shared {
    config: ServerConfigHandle,
    limits: Limits,
    stats: ListenerStats,
    pending_by_ip: Arc<PendingByIp>,
}

async fn accept_loop(tcp: TcpListener, shared: Arc<Shared>, ready: mpsc::Sender<TlsConnection>) {
    let slots = Arc::new(Semaphore::new(shared.limits.max_connections));
    let mut handshakes = JoinSet::new();
    // Whether the last attempt found no free slot (so each wait is counted once, however
    // often the select below is re-entered).
    let mut at_limit = false;
    loop {
        tokio::select! {
            () = ready.closed() => break,
            Some(joined) = handshakes.join_next(), if !handshakes.is_empty() => {
                if let Err(err) = joined {
                    if err.is_panic() {
                        tracing::error!("TLS handshake task panicked: {err}");
                    }
                }
            }
            // A connection slot first, then the TCP connection: at the connection limit, new
            // clients wait in the backlog. Both steps are cancel-safe.
            accepted = next_connection(&tcp, &slots, &shared.stats, &mut at_limit),
                if handshakes.len() < shared.limits.max_pending =>
            {
                let Some((slot, accepted)) = accepted else { break };
                match accepted {
                    Ok((stream, remote_addr)) => {
                        shared.stats.0.tcp_accepted.fetch_add(1, Ordering::Relaxed);
                        match PendingByIp::take(&shared.pending_by_ip, remote_addr.ip()) {
                            Some(ip_slot) => {
                                handshakes.spawn(handshake(
                                    shared.clone(),
                                    stream,
                                    remote_addr,
                                    slot,
                                    ip_slot,
                                    ready.clone(),
                                ));
                            }
                            None => {
                                // Closed at once (the stream and the slot drop here), before
                                // any TLS work.
                                shared.stats.0.per_ip_limit_rejections.fetch_add(1, Ordering::Relaxed);
                                tracing::debug!(
                                    %remote_addr,
                                    limit = shared.limits.max_pending_per_ip,
                                    "too many handshakes in progress from this address; closed"
                                );
                            }
                        }
                    }
                    Err(err) => {
                        drop(slot);
                        handle_accept_error(err).await;
                    }
                }
            },
        }
    }
    tracing::debug!("TLS listener dropped; accept task stopping");
}

/// Takes a connection slot (waiting at the limit), then a TCP connection. `None` only if the
/// semaphore was closed, which never happens.
pub(crate) async fn next_connection(
    tcp: &TcpListener,
    slots: &Arc<Semaphore>,
    stats: &ListenerStats,
    at_limit: &mut bool,
) -> Option<(ConnectionSlot, io::Result<(TcpStream, SocketAddr)>)> {
    let permit = match slots.clone().try_acquire_owned() {
        Ok(permit) => permit,
        Err(_) => {
            if !*at_limit {
                *at_limit = true;
                stats
                    .0
                    .connection_limit_waits
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!("connection limit reached; new connections wait in the backlog");
            }
            slots.clone().acquire_owned().await.ok()?
        }
    };
    *at_limit = false;
    let slot = ConnectionSlot::new(permit, stats.clone());
    let accepted = tcp.accept().await;
    Some((slot, accepted))
}

/// One of the `max_connections` slots, held from TCP accept until the connection is dropped.
pub(crate) struct ConnectionSlot {
    _permit: OwnedSemaphorePermit,
    stats: ListenerStats,
}

impl ConnectionSlot {
    fn new(permit: OwnedSemaphorePermit, stats: ListenerStats) -> Self {
        stats.0.open_connections.fetch_add(1, Ordering::Relaxed);
        Self {
            _permit: permit,
            stats,
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.stats
            .0
            .open_connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Connections in progress — handshaking ([`TlsListener`]) or waiting for their first request
/// head ([`PlainListener`](crate::PlainListener)) — per (canonical) IP address, with the
/// per-address limit.
pub(crate) struct PendingByIp {
    max: usize,
    /// Entries at zero are removed, so the table only holds addresses with connections in
    /// progress.
    table: Mutex<HashMap<IpAddr, usize>>,
}

impl PendingByIp {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            table: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a slot for `ip`, or `None` when its network is at the limit. An IPv4 address
    /// (or IPv4-mapped IPv6 address) counts alone; an IPv6 address counts as its whole /64,
    /// because one host is usually given a whole /64 and could otherwise pick a fresh address
    /// for every connection.
    pub(crate) fn take(this: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let ip = client_network(ip);
        let mut table = this.lock();
        let count = table.entry(ip).or_insert(0);
        if *count >= this.max {
            return None;
        }
        *count = count.saturating_add(1);
        Some(IpSlot {
            pending: this.clone(),
            ip,
        })
    }
}

/// The key the per-address limits count under: the IPv4 address, or the IPv6 /64.
fn client_network(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !u128::from(u64::MAX);
            IpAddr::V6(std::net::Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

/// One connection in progress from one address; released on drop, however it ends.
pub(crate) struct IpSlot {
    pending: Arc<PendingByIp>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut table = self.pending.lock();
        if let Some(count) = table.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                table.remove(&self.ip);
            }
        }
    }
}

/// Why a handshake did not complete.
enum Failure {
    NoClientHello,
    TimedOut,
    Failed(io::Error),
}

async fn handshake(
    shared: Arc<Shared>,
    stream: TcpStream,
    remote_addr: SocketAddr,
    slot: ConnectionSlot,
    ip_slot: IpSlot,
    ready: mpsc::Sender<TlsConnection>,
) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::trace!(%remote_addr, "cannot set TCP_NODELAY: {err}");
    }
    let limits = shared.limits;
    let accepted_at = Instant::now();
    // One deadline for the whole handshake, and an earlier one for its first message.
    let handshake_deadline = deadline(accepted_at, limits.handshake_timeout);
    let hello_deadline = deadline(accepted_at, limits.client_hello_timeout).min(handshake_deadline);
    let result = async {
        let hello = LazyConfigAcceptor::new(Acceptor::default(), stream);
        let start = match tokio::time::timeout_at(hello_deadline, hello).await {
            Ok(Ok(start)) => start,
            Ok(Err(err)) => return Err(Failure::Failed(err)),
            Err(_elapsed) if hello_deadline < handshake_deadline => {
                return Err(Failure::NoClientHello)
            }
            Err(_elapsed) => return Err(Failure::TimedOut),
        };
        let rest = start.into_stream(shared.config.load());
        match tokio::time::timeout_at(handshake_deadline, rest).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(err)) => Err(Failure::Failed(err)),
            Err(_elapsed) => Err(Failure::TimedOut),
        }
    }
    .await;
    let stats = &shared.stats;
    let stream = match result {
        Ok(stream) => stream,
        Err(Failure::NoClientHello) => {
            stats
                .0
                .client_hello_timeouts
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                %remote_addr,
                timeout = ?limits.client_hello_timeout,
                "no TLS ClientHello in time; closed"
            );
            return;
        }
        Err(Failure::TimedOut) => {
            stats.0.handshakes_timed_out.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                %remote_addr,
                timeout = ?limits.handshake_timeout,
                "TLS handshake timed out"
            );
            return;
        }
        Err(Failure::Failed(err)) => {
            stats.0.handshakes_failed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%remote_addr, "TLS handshake failed: {err}");
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
    let connection = TlsConnection {
        stream,
        peer,
        stats: stats.clone(),
        _slot: slot,
    };
    // No longer a handshake in progress for this address once queued… or dropped.
    let sent = ready.send(connection).await;
    drop(ip_slot);
    if sent.is_err() {
        tracing::debug!(%remote_addr, "TLS listener dropped; closing a completed connection");
    }
}

/// `start + timeout`, or about a year from `start` for a timeout too large to add (such as
/// `Duration::MAX`).
pub(crate) fn deadline(start: Instant, timeout: Duration) -> Instant {
    start
        .checked_add(timeout)
        .or_else(|| start.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(start)
}

/// Like axum's and hyper's: per-connection errors are ignored; others (such as `EMFILE`, too
/// many open files) are logged, followed by a pause so a busy loop does not make it worse.
pub(crate) async fn handle_accept_error(err: io::Error) {
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

/// The server configuration a [`TlsListener`] hands to each new handshake, replaceable while it
/// runs ([`TlsListener::config_handle`]). Cheap to clone; every clone swaps the same one.
#[derive(Clone)]
pub struct ServerConfigHandle(Arc<ArcSwap<ServerConfig>>);

impl ServerConfigHandle {
    fn new(config: Arc<ServerConfig>) -> Self {
        Self(Arc::new(ArcSwap::new(config)))
    }

    /// Makes `config` the one every handshake from now on uses.
    pub fn store(&self, config: Arc<ServerConfig>) {
        self.0.store(config);
    }

    /// The configuration new handshakes use now.
    pub fn load(&self) -> Arc<ServerConfig> {
        self.0.load_full()
    }
}

impl fmt::Debug for ServerConfigHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfigHandle").finish_non_exhaustive()
    }
}

/// A TLS connection from [`TlsListener::accept`]: the stream, the client's
/// [`PeerCertificate`], and the connection's slot under
/// [`TlsListener::max_connections`], released when this is dropped.
///
/// Reads and writes go to the TLS stream; [`get_ref`](Self::get_ref) gives the TCP socket and
/// the rustls connection, as [`TlsStream::get_ref`] does.
pub struct TlsConnection {
    stream: TlsStream<TcpStream>,
    peer: PeerCertificate,
    stats: ListenerStats,
    _slot: ConnectionSlot,
}

impl TlsConnection {
    /// The client's certificate and address on this connection (hashed once, at the handshake).
    pub fn peer(&self) -> &PeerCertificate {
        &self.peer
    }

    /// The TCP socket and the rustls connection (for the negotiated ALPN protocol, TLS
    /// version, and so on).
    pub fn get_ref(&self) -> (&TcpStream, &rustls::ServerConnection) {
        self.stream.get_ref()
    }

    /// The TCP socket and the rustls connection, mutably.
    pub fn get_mut(&mut self) -> (&mut TcpStream, &mut rustls::ServerConnection) {
        self.stream.get_mut()
    }

    /// The TLS stream underneath.
    pub fn tls_stream(&self) -> &TlsStream<TcpStream> {
        &self.stream
    }

    /// The counters of the listener this connection came from (the HTTP server counts its
    /// timeouts there).
    pub(crate) fn stats(&self) -> &ListenerStats {
        &self.stats
    }
}

impl fmt::Debug for TlsConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnection")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// `AsyncRead` and `AsyncWrite` for a connection type by forwarding to its `stream` field (the
/// TLS and the plain connection differ only in what they do when dropped).
macro_rules! forward_io_to_stream {
    ($connection:ty) => {
        impl tokio::io::AsyncRead for $connection {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
            }
        }

        impl tokio::io::AsyncWrite for $connection {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.stream.is_write_vectored()
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().stream).poll_flush(cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
            }
        }
    };
}
pub(crate) use forward_io_to_stream;

forward_io_to_stream!(TlsConnection);

/// Counters of a [`TlsListener`] or a [`PlainListener`](crate::PlainListener) — and of the HTTP
/// server serving its connections — read live; obtained from [`TlsListener::stats`] or
/// [`PlainListener::stats`](crate::PlainListener::stats).
///
/// A plain listener has no handshakes: its handshake and certificate counters stay at zero.
/// Cloning gives another view of the same counters.
#[derive(Clone, Default)]
pub struct ListenerStats(Arc<Counters>);

#[derive(Default)]
struct Counters {
    tcp_accepted: AtomicU64,
    handshakes_completed: AtomicU64,
    handshakes_failed: AtomicU64,
    handshakes_timed_out: AtomicU64,
    client_hello_timeouts: AtomicU64,
    per_ip_limit_rejections: AtomicU64,
    connection_limit_waits: AtomicU64,
    open_connections: AtomicU64,
    client_certificates: AtomicU64,
    header_read_timeouts: AtomicU64,
    idle_timeouts: AtomicU64,
}

impl ListenerStats {
    /// TCP connections accepted (including those then closed at once by the per-address
    /// limit).
    pub fn tcp_accepted(&self) -> u64 {
        self.0.tcp_accepted.load(Ordering::Relaxed)
    }

    /// TLS handshakes that completed.
    pub fn handshakes_completed(&self) -> u64 {
        self.0.handshakes_completed.load(Ordering::Relaxed)
    }

    /// TLS handshakes that failed: a refused (unknown, revoked, expired) client certificate, a
    /// protocol error, a client that hung up.
    pub fn handshakes_failed(&self) -> u64 {
        self.0.handshakes_failed.load(Ordering::Relaxed)
    }

    /// TLS handshakes abandoned after the handshake timeout.
    pub fn handshakes_timed_out(&self) -> u64 {
        self.0.handshakes_timed_out.load(Ordering::Relaxed)
    }

    /// Connections closed because no complete ClientHello arrived within
    /// [`TlsListener::client_hello_timeout`].
    pub fn client_hello_timeouts(&self) -> u64 {
        self.0.client_hello_timeouts.load(Ordering::Relaxed)
    }

    /// Connections closed at once because their IP address already had
    /// [`TlsListener::max_pending_handshakes_per_ip`] handshakes in progress — or, on a
    /// [`PlainListener`](crate::PlainListener),
    /// [`max_pending_connections_per_ip`](crate::PlainListener::max_pending_connections_per_ip)
    /// connections without a first request.
    pub fn per_ip_limit_rejections(&self) -> u64 {
        self.0.per_ip_limit_rejections.load(Ordering::Relaxed)
    }

    /// How many times the listener found [`TlsListener::max_connections`] (or
    /// [`PlainListener::max_connections`](crate::PlainListener::max_connections)) connections
    /// open and stopped taking new ones until one closed.
    pub fn connection_limit_waits(&self) -> u64 {
        self.0.connection_limit_waits.load(Ordering::Relaxed)
    }

    /// Connections open now: handshaking, waiting for `accept()`, or handed out and not yet
    /// dropped (on a plain listener: handed out and not yet dropped).
    pub fn open_connections(&self) -> u64 {
        self.0.open_connections.load(Ordering::Relaxed)
    }

    /// Client certificates taken from completed handshakes and hashed — one per connection
    /// whose client presented a certificate, however many requests it carries.
    pub fn client_certificates(&self) -> u64 {
        self.0.client_certificates.load(Ordering::Relaxed)
    }

    /// Connections the HTTP server ([`serve`](crate::serve),
    /// [`HttpConfig::serve_connection`](crate::HttpConfig::serve_connection)) closed because a
    /// request head did not arrive in time (see
    /// [`HttpConfig::header_read_timeout`](crate::HttpConfig::header_read_timeout)).
    pub fn header_read_timeouts(&self) -> u64 {
        self.0.header_read_timeouts.load(Ordering::Relaxed)
    }

    /// Connections the HTTP server closed after
    /// [`HttpConfig::idle_timeout`](crate::HttpConfig::idle_timeout) without a request in
    /// flight.
    pub fn idle_timeouts(&self) -> u64 {
        self.0.idle_timeouts.load(Ordering::Relaxed)
    }

    pub(crate) fn count_tcp_accepted(&self) {
        self.0.tcp_accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_per_ip_limit_rejection(&self) {
        self.0
            .per_ip_limit_rejections
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_header_read_timeout(&self) {
        self.0.header_read_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_idle_timeout(&self) {
        self.0.idle_timeouts.fetch_add(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for ListenerStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerStats")
            .field("tcp_accepted", &self.tcp_accepted())
            .field("handshakes_completed", &self.handshakes_completed())
            .field("handshakes_failed", &self.handshakes_failed())
            .field("handshakes_timed_out", &self.handshakes_timed_out())
            .field("client_hello_timeouts", &self.client_hello_timeouts())
            .field("per_ip_limit_rejections", &self.per_ip_limit_rejections())
            .field("connection_limit_waits", &self.connection_limit_waits())
            .field("open_connections", &self.open_connections())
            .field("client_certificates", &self.client_certificates())
            .field("header_read_timeouts", &self.header_read_timeouts())
            .field("idle_timeouts", &self.idle_timeouts())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn per_address_slots_count_ipv4_mapped_ipv6_as_ipv4() {
        let pending = Arc::new(PendingByIp::new(2));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let other: IpAddr = "2001:db8::7".parse().unwrap();

        let first = PendingByIp::take(&pending, v4);
        let second = PendingByIp::take(&pending, mapped);
        assert!(first.is_some() && second.is_some());
        // The same address, however written, is now at its limit; another one is not.
        assert!(PendingByIp::take(&pending, v4).is_none());
        assert!(PendingByIp::take(&pending, mapped).is_none());
        let third = PendingByIp::take(&pending, other);
        assert!(third.is_some());
        assert_eq!(pending.lock().len(), 2);

        // Slots come back on drop, and empty entries leave the table.
        drop(first);
        assert!(PendingByIp::take(&pending, mapped).is_some()); // taken and dropped at once
        drop((second, third));
        assert!(pending.lock().is_empty());
    }

    #[test]
    fn an_ipv6_client_counts_as_its_whole_slash_64() {
        let pending = Arc::new(PendingByIp::new(2));
        // Two addresses of one /64 (a host that picks a fresh address per connection) share
        // the limit; the neighbouring /64 does not.
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:fffe".parse().unwrap();
        let neighbour: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let slots = [
            PendingByIp::take(&pending, a),
            PendingByIp::take(&pending, b),
        ];
        assert!(slots.iter().all(Option::is_some));
        assert!(PendingByIp::take(&pending, "2001:db8:1:2::99".parse().unwrap()).is_none());
        let other = PendingByIp::take(&pending, neighbour);
        assert!(other.is_some());
        assert_eq!(pending.lock().len(), 2);
        drop((slots, other));
        assert!(pending.lock().is_empty());
    }
}

#[cfg(feature = "axum")]
mod axum_impl {
    use super::*;
    use axum::extract::connect_info::Connected;
    use axum::serve::{IncomingStream, Listener};

    /// For `axum::serve(listener, app.into_make_service_with_connect_info::<PeerCertificate>())`.
    /// Prefer [`serve`](crate::serve): it also sets HTTP timeouts, which `axum::serve` cannot.
    impl Listener for TlsListener {
        type Io = TlsConnection;
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
