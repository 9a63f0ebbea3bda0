//! Shared by the examples and the end-to-end tests: the demo API's routes and an HTTPS client
//! that presents a client certificate.
#![allow(dead_code)]

use std::sync::Arc;

use axum::{routing::get, Json, Router};
use certbound::{CertBoundLayer, VerifiedToken};
use certbound_dev::CertAndKey;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};

/// `GET /health` (no auth), `GET /.well-known/oauth-protected-resource` (RFC 9728 metadata),
/// `GET /api/hello` (any token bound to the caller) and `GET /api/admin` (also needs scope
/// `admin`).
pub fn routes(auth: CertBoundLayer) -> Router {
    let protected = Router::new()
        .route("/api/hello", get(hello))
        .route(
            "/api/admin",
            get(hello).route_layer(auth.require_scope("admin")),
        )
        .layer(auth.clone());
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .merge(auth.resource_metadata().router())
        .merge(protected)
}

/// What the protected route answers: who the token is for and what it is bound to.
async fn hello(token: VerifiedToken) -> Json<Value> {
    Json(json!({
        "sub": token.sub(),
        "client_id": token.client_id(),
        "scope": token.scope(),
        "thumbprint": token.thumbprint().map(ToString::to_string),
    }))
}

/// An HTTPS client trusting `ca_pem`, presenting `identity` (if any) as its client certificate,
/// offering HTTP/2 and HTTP/1.1.
pub fn https_client(
    ca_pem: &str,
    identity: Option<&CertAndKey>,
) -> Result<reqwest::Client, Box<dyn std::error::Error>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        let cert: CertificateDer<'static> = cert?;
        roots.add(cert)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(id) => builder.with_client_auth_cert(
            vec![id.cert_der.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key_der.clone())),
        )?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .build()?)
}

/// A plain-HTTP client whose connections come from `local` (e.g. 127.0.0.2, to play an
/// untrusted peer). reqwest is built without a default crypto provider, so it gets an explicit
/// (unused) rustls configuration.
pub fn http_client_from(
    local: std::net::IpAddr,
) -> Result<reqwest::Client, Box<dyn std::error::Error>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .local_address(local)
        .build()?)
}
