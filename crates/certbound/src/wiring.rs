//! Server wiring mistakes: answered `500 Internal Server Error` with one error log that names the
//! fix — never blamed on the client with a `401` (axum answers a missing extension the same way).
//!
//! ```
//! use certbound::WiringError;
//!
//! let response: http::Response<String> = WiringError::NoTransport.response();
//! assert_eq!(response.status(), 500);
//! assert!(WiringError::NoTransport.to_string().contains("certbound::tls::serve"));
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use http::{Response, StatusCode};

/// A mistake in how the server is put together, found while serving a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WiringError {
    /// The request says nothing about the client certificate: no `PeerCertificate` extension,
    /// no `ConnectInfo<PeerCertificate>`, no tonic `TlsConnectInfo` (feature `tonic`), and no
    /// forwarded-certificate source configured.
    #[error(
        "the request carries no client-certificate information: serve the app with \
         certbound::tls::serve(listener, app) (or axum::serve with \
         app.into_make_service_with_connect_info::<PeerCertificate>(), or insert each \
         connection's PeerCertificate as a request extension in a hyper loop; with tonic's \
         transport::Server and ServerTlsConfig, enable certbound's `tonic` feature); behind a \
         TLS-terminating proxy configure CertBoundBuilder::forwarded_certificates(..)"
    )]
    NoTransport,
    /// A forwarded-certificate source is configured, but the request says nothing about the
    /// peer's address, so the proxy cannot be recognised.
    #[error(
        "forwarded certificates are configured but the request carries no peer address: serve \
         the app with certbound::tls::serve(certbound::tls::PlainListener::bind(..), app) (or \
         axum::serve with app.into_make_service_with_connect_info::<std::net::SocketAddr>())"
    )]
    NoPeerAddress,
    /// A response future was polled after it completed.
    #[error("the certbound response future was polled after it completed (a bug in the caller)")]
    PolledAfterCompletion,
}

impl WiringError {
    /// Logs the mistake (at most one line per second, so a misconfigured server does not flood
    /// its log) and builds the `500` response with an empty body.
    pub fn response<B: Default>(self) -> Response<B> {
        static LAST_LOGGED: AtomicU64 = AtomicU64::new(0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if LAST_LOGGED.swap(now, Ordering::Relaxed) != now {
            tracing::error!(fix = %self, "certbound wiring mistake; answering 500");
        }
        let mut response = Response::new(B::default());
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        response
    }
}
