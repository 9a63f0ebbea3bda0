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
        // route_layer: only matched routes are authenticated, so an unknown path stays 404.
        .route_layer(auth.clone());
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .merge(auth.resource_metadata().router())
        .merge(protected)
}

/// What the protected route answers: who the token is for and what it is bound to (a
/// certificate, a DPoP key, or both).
async fn hello(token: VerifiedToken) -> Json<Value> {
    Json(json!({
        "sub": token.sub(),
        "client_id": token.client_id(),
        "scope": token.scope(),
        // cnf."x5t#S256": the certificate the token is bound to; cnf.jkt: the DPoP key.
        "thumbprint": token.thumbprint().map(ToString::to_string),
        "jkt": token.confirmation().jwk_thumbprint().map(ToString::to_string),
    }))
}

/// The audience of the dev story.
pub const AUDIENCE: &str = "https://api.example";

/// The three callers every one-process example plays, in table order.
pub const PLAYERS: [&str; 3] = [
    "client A's certificate + A's token",
    "client B's certificate + A's token",
    "no certificate + A's token",
];

/// The dev story shared by the one-process examples: a dev PKI (in memory), a dev issuer
/// (HTTPS, discovery, JWKS) with one signing key, and the token it issued to client A, bound to
/// client A's certificate.
pub struct DevStory {
    /// CA, server and client certificates.
    pub pki: certbound_dev::DevPki,
    /// The issuer's signing key.
    pub signer: certbound_dev::SigningKey,
    /// The running dev issuer.
    pub issuer: certbound_dev::issuer::TestIssuer,
    /// Client A's certificate thumbprint.
    pub thumbprint_a: certbound::Thumbprint,
    /// The token bound to client A.
    pub token_a: String,
}

impl DevStory {
    /// Generates the PKI and a signing key `kid`, starts the issuer, mints client A's token.
    pub async fn start(kid: &str) -> Result<Self, Box<dyn std::error::Error>> {
        let pki = certbound_dev::DevPki::generate(std::env::temp_dir())?; // in memory only
        let signer = certbound_dev::SigningKey::generate(kid, certbound_core::Algorithm::ES256)?;
        let issuer = certbound_dev::issuer::TestIssuer::start(&[&signer]).await?;
        let thumbprint_a =
            *certbound::ClientCertificate::from_der(pki.client_a.cert_der.to_vec()).thumbprint();
        let claims = certbound_dev::bound_claims(issuer.issuer_url(), AUDIENCE, &thumbprint_a);
        let token_a = signer.sign(&claims)?;
        Ok(Self {
            pki,
            signer,
            issuer,
            thumbprint_a,
            token_a,
        })
    }

    /// The certbound layer for this issuer and audience.
    pub async fn layer(&self) -> Result<CertBoundLayer, certbound::LayerBuildError> {
        certbound::CertBound::builder()
            .issuer(self.issuer.issuer_url())
            .audience(AUDIENCE)
            .jwks_root_certificates_pem(self.issuer.ca_pem().as_bytes().to_vec())
            .build()
            .await
    }

    /// A mutual-TLS listener on an ephemeral loopback port, self-signed client mode.
    pub async fn listener(
        &self,
    ) -> Result<certbound::tls::TlsListener, Box<dyn std::error::Error>> {
        let tls = certbound::tls::server_config(
            vec![self.pki.server.cert_der.clone()],
            self.pki.server.private_key(),
            certbound::tls::ClientAuth::self_signed(),
        )?;
        Ok(certbound::tls::TlsListener::bind("127.0.0.1:0", tls).await?)
    }

    /// [`PLAYERS`] with the certificate each one presents.
    pub fn players(&self) -> [(&'static str, Option<&CertAndKey>); 3] {
        [
            (PLAYERS[0], Some(&self.pki.client_a)),
            (PLAYERS[1], Some(&self.pki.client_b)),
            (PLAYERS[2], None),
        ]
    }
}

/// A rustls client configuration trusting `ca_pem` and presenting `identity` (if any), with the
/// aws-lc-rs provider and ALPN h2 + http/1.1.
pub fn client_tls_config(
    ca_pem: &str,
    identity: Option<&CertAndKey>,
) -> Result<rustls::ClientConfig, Box<dyn std::error::Error>> {
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
    Ok(config)
}

/// An HTTPS client trusting `ca_pem`, presenting `identity` (if any) as its client certificate,
/// offering HTTP/2 and HTTP/1.1.
pub fn https_client(
    ca_pem: &str,
    identity: Option<&CertAndKey>,
) -> Result<reqwest::Client, Box<dyn std::error::Error>> {
    let config = client_tls_config(ca_pem, identity)?;
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
