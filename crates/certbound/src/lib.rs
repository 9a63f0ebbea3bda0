//! # certbound
//!
//! Accept an OAuth 2.0 access token only from the client it was issued to.
//!
//! When a client obtains a token over mutual TLS, the authorization server binds the token to the
//! client's certificate: the JWT carries `cnf: {"x5t#S256": base64url(SHA-256(DER))}`
//! (RFC 8705 §3.1). certbound is the resource server's side, as a tower layer: it takes the
//! client certificate from the mutual-TLS connection, validates the JWT with the issuer's keys,
//! and lets the request through only if the token is bound to *that* certificate. Otherwise the
//! answer is `401` with `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750 §3).
//! A stolen token is worthless without the private key of the certificate it is bound to.
//!
//! ```no_run
//! use axum::{routing::get, Json, Router};
//! use certbound::{CertBound, VerifiedToken};
//! use certbound::tls::{server_config, load_certs, load_private_key, ClientAuth, TlsListener};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let auth = CertBound::builder()
//!         .issuer("https://auth.example.com/")    // discovery → jwks_uri → keys, cached
//!         .audience("https://api.example.com")
//!         .build()
//!         .await?;
//!     let app = Router::new().route("/hello", get(hello)).route_layer(auth);
//!
//!     let tls = server_config(load_certs("server.pem")?, load_private_key("server.key")?, ClientAuth::self_signed())?;
//!     let listener = TlsListener::bind("0.0.0.0:8443", tls).await?;
//!     certbound::tls::serve(listener, app).await?; // the client certificate on every request
//!     Ok(())
//! }
//!
//! async fn hello(token: VerifiedToken) -> Json<serde_json::Value> {
//!     Json(serde_json::json!({ "sub": token.sub(), "client_id": token.client_id() }))
//! }
//! ```
//!
//! The layer works with any tower service whose response body implements `Default` (axum,
//! tonic, plain hyper). Requests that fail never reach the inner service.
//!
//! # Crate features
//!
//! | feature  | default | what it adds |
//! |----------|---------|--------------|
//! | `axum`   | on      | axum extractors for [`VerifiedToken`], `IntoResponse` for [`RejectionResponse`], and `ConnectInfo<PeerCertificate>` / `ConnectInfo<SocketAddr>` as sources of the client certificate and peer address. |
//! | `remote` | on      | keys over the network: [`.issuer(url)`](CertBoundBuilder::issuer) discovery, `.jwks_uri(url)` and `RemoteJwks` (certbound-jwks' `remote` feature: reqwest + rustls, cached, rotated, stale-if-error), and opaque tokens by introspection with an `Introspector` ([`.introspection(..)`](CertBoundBuilder::introspection); without the feature, [`.introspection_source(..)`](CertBoundBuilder::introspection_source) takes any `IntrospectionSource`). Without it no HTTP client is compiled; every issuer needs a [`.key_source(..)`](CertBoundBuilder::key_source), and an issuer left to discovery fails the build with [`LayerBuildError::RemoteDisabled`]. |
//! | `tonic`  | off     | the client certificate from tonic's own `transport::Server` TLS (`ServerTlsConfig`): the layer reads tonic's `TlsConnectInfo<TcpConnectInfo>` request extension (and `TcpConnectInfo` for the peer address behind a proxy). |
//!
//! A server with static keys and no axum:
//!
//! ```toml
//! certbound = { version = "0.1", default-features = false }
//! ```
//!
//! and [`CertBoundBuilder::build_static`] builds its layer without `async`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod authenticate;
pub mod builder;
pub mod cache;
pub mod dpop;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod extract;
pub mod introspection;
pub mod layer;
pub mod metadata;
pub mod replay;
pub mod response;
pub mod scope;
pub mod token;
mod warn_limit;
pub mod wiring;

pub use authenticate::Clock;
pub use builder::{CertBoundBuilder, LayerBuildError, TrustedIssuer};
pub use cache::{TokenCacheConfig, TokenCacheStats};
pub use certbound_core::{
    Algorithm, BindingPolicy, ClientCertificate, Confirmation, ErrorClass, ForwardedCertificates,
    ForwardedFormat, IpCidr, NonceKeys, Rejection, Scheme, Thumbprint, VerifiedClaims,
};
#[cfg(feature = "remote")]
#[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
pub use certbound_jwks::RemoteJwks;
pub use certbound_jwks::{IntrospectionReply, IntrospectionSource};
pub use certbound_jwks::{KeySource, StaticJwks};
pub use dpop::Dpop;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use extract::TokenRejection;
pub use introspection::{IntrospectionCacheConfig, IntrospectionStats};
pub use layer::{CertBound, CertBoundLayer, ResponseFuture};
pub use response::{rejection_response, rejection_response_with, RejectionResponse};
pub use token::{NoCustomClaims, VerifiedToken};
pub use wiring::WiringError;

#[cfg(feature = "remote")]
#[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
pub use certbound_jwks::{
    IntrospectionAuth, Introspector, IntrospectorBuilder, IssuerMetadata, JwksStats,
    RemoteJwksBuilder,
};
/// Mutual-TLS server configurations, the listener that attaches [`tls::PeerCertificate`], and
/// [`tls::serve`] with HTTP timeouts.
pub use certbound_tls as tls;
