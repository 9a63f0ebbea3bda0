//! # certbound-tls
//!
//! The TLS side of [certbound](https://docs.rs/certbound): rustls server configurations for both
//! RFC 8705 client-authentication modes, and a listener that completes handshakes concurrently
//! and attaches the client's certificate — hashed once per connection — to every request.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use certbound_tls::{
//!     load_ca_roots, load_certs, load_private_key, server_config, ClientAuth, PeerCertificate,
//!     TlsListener,
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
//! // Every request now carries `ConnectInfo<PeerCertificate>`.
//! axum::serve(listener, app.into_make_service_with_connect_info::<PeerCertificate>()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! * [`config`] — [`server_config`] and [`ClientAuth`] (`tls_client_auth`,
//!   `self_signed_tls_client_auth`, optional or mandatory).
//! * [`listener`] — [`TlsListener`]: for `axum::serve` (feature `axum`, default) or a
//!   hyper-util loop.
//! * [`peer`] — [`PeerCertificate`], the per-connection request extension.
//! * [`pem`] — [`load_certs`], [`load_private_key`], [`load_ca_roots`].
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

pub use config::{server_config, ClientAuth};
pub use error::TlsError;
pub use listener::{ListenerStats, TlsListener};
pub use peer::PeerCertificate;
pub use pem::{load_ca_roots, load_certs, load_private_key};

/// The rustls version this crate is built on, for naming [`rustls::ServerConfig`],
/// [`rustls::RootCertStore`] and friends.
pub use rustls;
/// The stream type [`TlsListener::accept`] yields.
pub use tokio_rustls::server::TlsStream;
