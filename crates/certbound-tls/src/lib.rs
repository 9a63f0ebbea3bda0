//! # certbound-tls
//!
//! The TLS side of [certbound](https://docs.rs/certbound): rustls server configurations for both
//! RFC 8705 client-authentication modes, a listener that completes handshakes concurrently
//! and attaches the client's certificate — hashed once per connection — to every request, and
//! an HTTP server with the timeouts a public server needs. Behind a TLS-terminating proxy, the
//! same server runs on a [`PlainListener`] with the same defences.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use certbound_tls::{
//!     load_ca_roots, load_certs, load_private_key, server_config, ClientAuth, TlsListener,
//! };
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = server_config(
//!     load_certs("server.pem")?,
//!     load_private_key("server.key")?,
//!     ClientAuth::ca(load_ca_roots("client-ca.pem")?), // or ClientAuth::self_signed()
//! )?;
//! let app = Router::new().route("/", get(|| async { "hello" }));
//! let listener = TlsListener::bind("0.0.0.0:8443", config).await?;
//! // Every request carries the PeerCertificate (and `ConnectInfo<PeerCertificate>`).
//! certbound_tls::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```
//!
//! * [`config`] — [`server_config`] and [`ClientAuth`] (`tls_client_auth` with optional CRLs,
//!   `self_signed_tls_client_auth`, optional or mandatory).
//! * [`listener`] — [`TlsListener`] and its limits: ClientHello deadline, handshake timeout,
//!   pending handshakes per IP address and in all, open connections.
//!   [`TlsListener::config_handle`] swaps the server configuration (a renewed certificate) for
//!   new handshakes while open connections keep theirs.
//! * [`plain`] — [`PlainListener`], plain TCP behind a TLS-terminating proxy: connections
//!   without a request per IP address, open connections; the peer address on every request.
//! * [`server`] — [`serve`] (axum routers and any tower service, over either listener) and
//!   [`HttpConfig`] (header-read and idle timeouts, also for a hyper-util loop of your own).
//! * [`peer`] — [`PeerCertificate`], the per-connection request extension.
//! * [`pem`] — [`load_certs`], [`load_private_key`], [`load_ca_roots`], [`load_crls`].
//!
//! Every limit and timeout has a safe default:
//!
//! | setting | default |
//! |---|---|
//! | [`TlsListener::client_hello_timeout`] | 3 s |
//! | [`TlsListener::handshake_timeout`] | 10 s |
//! | [`TlsListener::max_pending_handshakes_per_ip`] | 64 |
//! | [`TlsListener::max_pending_handshakes`] | 1,024 |
//! | [`TlsListener::max_connections`] | 10,000 |
//! | [`PlainListener::max_pending_connections_per_ip`] | 64 |
//! | [`PlainListener::max_connections`] | 10,000 |
//! | [`HttpConfig::header_read_timeout`] | 10 s |
//! | [`HttpConfig::idle_timeout`] | 60 s |
//! | [`HttpConfig::h2_keep_alive_interval`] / [`h2_keep_alive_timeout`](HttpConfig::h2_keep_alive_timeout) | 30 s / 20 s |
//!
//! Everything uses the aws-lc-rs crypto provider explicitly; no process-wide default provider
//! is needed or installed.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
mod error;
pub mod listener;
pub mod peer;
pub mod pem;
pub mod plain;
pub mod server;

pub use config::{server_config, ClientAuth};
pub use error::TlsError;
pub use listener::{ListenerStats, ServerConfigHandle, TlsConnection, TlsListener};
pub use peer::PeerCertificate;
pub use pem::{load_ca_roots, load_certs, load_crls, load_private_key};
pub use plain::{PlainConnection, PlainListener};
pub use server::{serve, Accept, Connection, ConnectionError, HttpConfig, Serve};

/// The rustls version this crate is built on, for naming [`rustls::ServerConfig`],
/// [`rustls::RootCertStore`] and friends.
pub use rustls;
/// The TLS stream inside a [`TlsConnection`] ([`TlsConnection::tls_stream`]).
pub use tokio_rustls::server::TlsStream;
