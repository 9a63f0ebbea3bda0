//! HTTP without TLS, for an API behind a TLS-terminating proxy — with the same defences as
//! [`TlsListener`](crate::TlsListener).
//!
//! When a proxy terminates mutual TLS and forwards the client certificate in a header, the API
//! itself listens on plain TCP. [`PlainListener`] is that listener, and [`serve`](crate::serve)
//! serves it exactly as it serves a [`TlsListener`](crate::TlsListener): header-read and idle
//! timeouts, HTTP/1.1 and HTTP/2 (prior knowledge), graceful drain, the counters in
//! [`ListenerStats`], and a [`PeerCertificate`] without a certificate on every request — the
//! peer address the certbound layer checks against its trusted proxies (also as axum's
//! `ConnectInfo<PeerCertificate>` and `ConnectInfo<SocketAddr>`).
//!
//! ```
//! # use std::future::IntoFuture;
//! use axum::{routing::get, Router};
//! use certbound_tls::PlainListener;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app = Router::new().route("/", get(|| async { "hello" }));
//! let listener = PlainListener::bind("127.0.0.1:0")
//!     .await?
//!     // Where the TLS-terminating proxy connects from (not limited per address).
//!     .trusted_proxies(["127.0.0.1/32".parse()?]);
//! let addr = listener.local_addr();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(
//!     certbound_tls::serve(listener, app)
//!         .with_graceful_shutdown(async move {
//!             let _ = stopped.await;
//!         })
//!         .into_future(),
//! );
//!
//! // What a proxy would send.
//! let mut tcp = tokio::net::TcpStream::connect(addr).await?;
//! tcp.write_all(b"GET / HTTP/1.1\r\nhost: api\r\nconnection: close\r\n\r\n").await?;
//! let mut answer = String::new();
//! tcp.read_to_string(&mut answer).await?;
//! assert!(answer.starts_with("HTTP/1.1 200 OK"));
//! assert!(answer.ends_with("hello"));
//!
//! let _ = stop.send(());
//! server.await??;
//! # Ok(())
//! # }
//! ```
//!
//! # Limits
//!
//! | limit | default | setter | what happens to a client over it |
//! |---|---|---|---|
//! | connections from one IP address (IPv6: one /64) without a first request (except [trusted proxies](PlainListener::trusted_proxies)) | 64 | [`max_pending_connections_per_ip`](PlainListener::max_pending_connections_per_ip) | closed at once, counted in [`ListenerStats::per_ip_limit_rejections`] |
//! | open connections, all addresses | 10,000 | [`max_connections`](PlainListener::max_connections) | waits in the kernel's backlog; counted in [`ListenerStats::connection_limit_waits`] |
//! | time to send a request head | 10 s | [`HttpConfig::header_read_timeout`](crate::HttpConfig::header_read_timeout) | closed, counted in [`ListenerStats::header_read_timeouts`] |
//! | time without a request in flight | 60 s | [`HttpConfig::idle_timeout`](crate::HttpConfig::idle_timeout) | closed, counted in [`ListenerStats::idle_timeouts`] |
//!
//! # Why the per-address limit counts connections without a request
//!
//! Behind a proxy, every connection has the proxy's address, so a limit on *open* connections
//! per address would throttle the proxy — the one client that matters — as soon as it keeps a
//! pool of upstream connections. What starves a server is connections that hold a slot without
//! doing anything: a client that connects and sends nothing, or trickles its headers
//! (slowloris), until the header-read timeout. Capping those per address — the counterpart of
//! the TLS listener's cap on handshakes in progress — keeps one address from taking the
//! connection slots of everyone else, while a connection that has made a request is bounded by
//! the idle timeout and the connection cap.
//!
//! A proxy's connections leave that count as soon as their first request head is read, but a
//! proxy opening hundreds of connections in one burst can still exceed it for a moment. List
//! the proxies with [`trusted_proxies`](PlainListener::trusted_proxies) (the networks the
//! certbound layer trusts for forwarded certificates): their connections are not counted —
//! nginx, HAProxy and Envoy open an upstream connection only once they have a client's whole
//! request head, so a proxy never holds a silent one. Otherwise, watch
//! [`ListenerStats::per_ip_limit_rejections`] and raise the limit.
//!
//! A connection leaves the pending count when its first request head has arrived — which
//! [`serve`](crate::serve) and [`HttpConfig::serve_connection`](crate::HttpConfig::serve_connection)
//! see. A [`PlainConnection`] served any other way stays counted until it is dropped.
//!
//! # Without forwarded certificates
//!
//! A plain connection carries no client certificate. The certbound layer on a plain listener is
//! meant to be configured with `forwarded_certificates` (the proxy's header, from the trusted
//! proxies only); without it, every request looks like a connection whose client presented no
//! certificate, and certificate-bound tokens are refused.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use certbound_core::IpCidr;
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::Semaphore;

use crate::listener::{
    handle_accept_error, next_connection, ConnectionSlot, IpSlot, ListenerStats, PendingByIp,
    DEFAULT_MAX_CONNECTIONS,
};
use crate::PeerCertificate;

/// How many connections one IP address may have open without having sent a complete first
/// request head, unless changed with [`PlainListener::max_pending_connections_per_ip`].
pub const DEFAULT_MAX_PENDING_CONNECTIONS_PER_IP: usize = 64;

/// Accepts plain-TCP connections for HTTP behind a TLS-terminating proxy, with a per-address
/// limit on connections without a request and a connection cap; serve it with
/// [`serve`](crate::serve).
///
/// See the [module documentation](self) for the limits and why they are what they are.
pub struct PlainListener {
    tcp: TcpListener,
    local_addr: SocketAddr,
    limits: Limits,
    /// Not counted against the per-address limit.
    trusted_proxies: Vec<IpCidr>,
    stats: ListenerStats,
    /// Made on the first `accept()`, so settings made after construction apply.
    running: Option<Running>,
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    max_pending_per_ip: usize,
    max_connections: usize,
}

struct Running {
    slots: Arc<Semaphore>,
    pending_by_ip: Arc<PendingByIp>,
    /// Whether the last attempt found no free connection slot (each wait is counted once).
    at_limit: bool,
}

impl PlainListener {
    /// Binds a TCP listener to `addr`.
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<Self> {
        Self::new(TcpListener::bind(addr).await?)
    }

    /// Uses an existing TCP listener.
    ///
    /// Fails only if the listener's local address cannot be read.
    pub fn new(tcp: TcpListener) -> io::Result<Self> {
        Ok(Self {
            local_addr: tcp.local_addr()?,
            tcp,
            limits: Limits {
                max_pending_per_ip: DEFAULT_MAX_PENDING_CONNECTIONS_PER_IP,
                max_connections: DEFAULT_MAX_CONNECTIONS,
            },
            trusted_proxies: Vec::new(),
            stats: ListenerStats::default(),
            running: None,
        })
    }

    /// The proxies in front of this listener (the networks the certbound layer's
    /// `ForwardedCertificates` trusts): their connections are not counted against
    /// [`max_pending_connections_per_ip`](Self::max_pending_connections_per_ip). They still
    /// count against [`max_connections`](Self::max_connections), and the HTTP timeouts apply
    /// to them.
    ///
    /// Every connection from a proxy carries the proxy's address, and a busy proxy may open
    /// hundreds at once — more than the per-address limit, though each sends its request head
    /// at once: nginx, HAProxy and Envoy open an upstream connection only after reading a
    /// client's whole request head, so a proxy never holds a silent connection for a client.
    /// Clients that reach the listener directly stay limited.
    pub fn trusted_proxies(mut self, networks: impl IntoIterator<Item = IpCidr>) -> Self {
        self.trusted_proxies = networks.into_iter().collect();
        self
    }

    /// Sets how many connections one IP address may have open without having sent a complete
    /// first request head (default [`DEFAULT_MAX_PENDING_CONNECTIONS_PER_IP`], at least 1). A
    /// connection from an address at its limit is closed at once and counted in
    /// [`ListenerStats::per_ip_limit_rejections`]; a connection leaves the count when its first
    /// request head has arrived, or when it closes.
    ///
    /// An IPv4-mapped IPv6 address (`::ffff:192.0.2.7`) counts as the IPv4 address it denotes.
    /// Takes effect if set before the first [`accept`](Self::accept).
    pub fn max_pending_connections_per_ip(mut self, max: usize) -> Self {
        self.limits.max_pending_per_ip = max.max(1);
        self
    }

    /// Sets how many connections may be open at once — from TCP accept until the
    /// [`PlainConnection`] is dropped (default [`DEFAULT_MAX_CONNECTIONS`], at least 1). At the
    /// limit the listener stops taking TCP connections, which wait in the kernel's backlog
    /// until one closes; each time that happens is counted in
    /// [`ListenerStats::connection_limit_waits`].
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

    /// A live view of this listener's counters (and, once served, of the HTTP server's); it
    /// stays valid after the listener is moved into a server.
    pub fn stats(&self) -> ListenerStats {
        self.stats.clone()
    }

    /// Waits for the next connection within the limits, and returns it with the client's
    /// address.
    ///
    /// Connections over the per-address limit are closed here and counted, never returned.
    /// TCP accept errors are never returned either: those about one connection are skipped,
    /// others (such as `EMFILE`, too many open files) are logged and retried after a pause.
    ///
    /// Cancel-safe: if the future is dropped before it completes, no connection is lost.
    pub async fn accept(&mut self) -> (PlainConnection, SocketAddr) {
        let limits = self.limits;
        let running = self.running.get_or_insert_with(|| {
            tracing::debug!(local_addr = %self.local_addr, ?limits, "plain listener accepting");
            Running {
                slots: Arc::new(Semaphore::new(limits.max_connections)),
                pending_by_ip: Arc::new(PendingByIp::new(limits.max_pending_per_ip)),
                at_limit: false,
            }
        });
        loop {
            let Some((slot, accepted)) = next_connection(
                &self.tcp,
                &running.slots,
                &self.stats,
                &mut running.at_limit,
            )
            .await
            else {
                // The semaphore is ours and never closed.
                tracing::error!("plain listener: connection semaphore closed; not accepting");
                return std::future::pending().await;
            };
            let (stream, remote_addr) = match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    drop(slot);
                    handle_accept_error(err).await;
                    continue;
                }
            };
            self.stats.count_tcp_accepted();
            let ip = remote_addr.ip();
            let pending = if self.trusted_proxies.iter().any(|proxy| proxy.contains(ip)) {
                None
            } else if let Some(slot) = PendingByIp::take(&running.pending_by_ip, ip) {
                Some(slot)
            } else {
                // Closed at once (the stream and the slot drop here).
                self.stats.count_per_ip_limit_rejection();
                tracing::debug!(
                    %remote_addr,
                    limit = limits.max_pending_per_ip,
                    "too many connections without a request from this address; closed"
                );
                continue;
            };
            if let Err(err) = stream.set_nodelay(true) {
                tracing::trace!(%remote_addr, "cannot set TCP_NODELAY: {err}");
            }
            let connection = PlainConnection {
                stream,
                peer: PeerCertificate::plain(remote_addr),
                stats: self.stats.clone(),
                pending,
                _slot: slot,
            };
            return (connection, remote_addr);
        }
    }
}

impl fmt::Debug for PlainListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainListener")
            .field("local_addr", &self.local_addr)
            .field(
                "max_pending_connections_per_ip",
                &self.limits.max_pending_per_ip,
            )
            .field("max_connections", &self.limits.max_connections)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// A plain-TCP connection from [`PlainListener::accept`]: the stream, the client's address (as a
/// [`PeerCertificate`] without a certificate), and its slots under the listener's limits —
/// the per-address one until its first request head arrives, the connection cap until it is
/// dropped.
pub struct PlainConnection {
    stream: TcpStream,
    peer: PeerCertificate,
    stats: ListenerStats,
    pending: Option<IpSlot>,
    _slot: ConnectionSlot,
}

impl PlainConnection {
    /// The client's address, as the [`PeerCertificate`] (without a certificate) that
    /// [`serve`](crate::serve) attaches to every request.
    pub fn peer(&self) -> &PeerCertificate {
        &self.peer
    }

    /// The client's address (the proxy's, behind a proxy).
    pub fn remote_addr(&self) -> SocketAddr {
        self.peer.remote_addr()
    }

    /// The TCP socket.
    pub fn get_ref(&self) -> &TcpStream {
        &self.stream
    }

    /// The TCP socket, mutably.
    pub fn get_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    pub(crate) fn stats(&self) -> &ListenerStats {
        &self.stats
    }

    /// The per-address slot, for the HTTP server to release when the first request head
    /// arrives.
    pub(crate) fn take_pending(&mut self) -> Option<IpSlot> {
        self.pending.take()
    }
}

impl fmt::Debug for PlainConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainConnection")
            .field("remote_addr", &self.peer.remote_addr())
            .field("awaiting_first_request", &self.pending.is_some())
            .finish_non_exhaustive()
    }
}

crate::listener::forward_io_to_stream!(PlainConnection);
