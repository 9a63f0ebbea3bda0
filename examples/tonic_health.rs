//! certbound in front of a gRPC service, over real mutual TLS, in one process.
//!
//! The service is tonic-health's `grpc.health.v1.Health` (no protoc needed). It becomes an axum
//! router with `tonic::service::Routes::into_axum_router`, and the very same certbound layer the
//! REST examples use goes on top of it; `TlsListener` + `axum::serve` provide the client
//! certificate as `ConnectInfo<PeerCertificate>`. Three gRPC clients (tonic `Channel`s over a
//! tokio-rustls connector) then call `Health/Check` with a token bound to client A: client A gets
//! `SERVING`; client B and a client without a certificate get the layer's HTTP 401, which tonic
//! reports as gRPC `Unauthenticated`.
//!
//! ```text
//! cargo run --example tonic_health
//! ```

use std::error::Error;
use std::io::Write;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use certbound::tls::{server_config, ClientAuth, PeerCertificate, TlsListener};
use certbound::CertBound;
use certbound_core::{Algorithm, ClientCertificate};
use certbound_dev::issuer::TestIssuer;
use certbound_dev::{bound_claims, CertAndKey, DevPki, SigningKey};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const AUDIENCE: &str = "https://api.example";

/// The labels of the three calls, in the order the table prints them.
pub const PLAYERS: [&str; 3] = [
    "client A's certificate + A's token",
    "client B's certificate + A's token",
    "no certificate + A's token",
];

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    run(&mut std::io::stdout()).await
}

/// Starts a dev issuer and the protected gRPC service, plays the three clients, and writes the
/// table to `out`.
pub async fn run(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    let pki = DevPki::generate(std::env::temp_dir())?; // kept in memory, nothing written

    // The authorization server's side: a signing key, served as JWKS with discovery.
    let signer = SigningKey::generate("grpc-key", Algorithm::ES256)?;
    let issuer = TestIssuer::start(&[&signer]).await?;

    // The resource server: the same certbound layer as for REST, on tonic's axum router.
    let auth = CertBound::builder()
        .issuer(issuer.issuer_url())
        .audience(AUDIENCE)
        .jwks_root_certificates_pem(issuer.ca_pem().as_bytes().to_vec())
        .build()
        .await?;
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let app = tonic::service::Routes::new(health)
        .into_axum_router()
        .layer(auth);
    let tls = server_config(
        vec![pki.server.cert_der.clone()],
        pki.server.private_key(),
        ClientAuth::self_signed(),
    )?;
    let listener = TlsListener::bind("127.0.0.1:0", tls).await?;
    let origin = format!("https://localhost:{}", listener.local_addr().port());
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<PeerCertificate>(),
        )
        .await
    });

    // The token the authorization server issued to client A, bound to A's certificate.
    let a = ClientCertificate::from_der(pki.client_a.cert_der.to_vec());
    let token = signer.sign(&bound_claims(issuer.issuer_url(), AUDIENCE, a.thumbprint()))?;

    writeln!(
        out,
        "gRPC grpc.health.v1.Health/Check at {origin}\ntoken bound to client A: cnf.x5t#S256 = {}\n",
        a.thumbprint()
    )?;
    writeln!(out, "{:<34} {:>4}  {:<15}  detail", "call", "HTTP", "gRPC")?;
    writeln!(out, "{}", "-".repeat(110))?;
    let identities = [Some(&pki.client_a), Some(&pki.client_b), None];
    for (label, identity) in PLAYERS.into_iter().zip(identities) {
        let channel = mtls_channel(&origin, &pki.ca.cert_pem, identity).await?;
        // Note the HTTP status under the gRPC call, to show what tonic made of it.
        let http_status = Arc::new(AtomicU16::new(0));
        let seen = Arc::clone(&http_status);
        let service = tower::ServiceBuilder::new()
            .map_response(move |response: http::Response<tonic::body::Body>| {
                seen.store(response.status().as_u16(), Ordering::Relaxed);
                response
            })
            .service(channel);
        let mut client = HealthClient::new(service);
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        });
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
        let (code, detail) = match client.check(request).await {
            Ok(response) => {
                let status = ServingStatus::try_from(response.into_inner().status)
                    .map_or("UNKNOWN", |s| s.as_str_name());
                ("Ok".to_owned(), status.to_owned())
            }
            Err(status) => (
                format!("{:?}", status.code()),
                status
                    .metadata()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .map_or_else(
                        || status.message().to_owned(),
                        |c| format!("WWW-Authenticate: {c}"),
                    ),
            ),
        };
        let http = http_status.load(Ordering::Relaxed);
        writeln!(out, "{label:<34} {http:>4}  {code:<15}  {detail}")?;
    }
    server.abort();
    Ok(())
}

/// A gRPC channel over HTTP/2 + mutual TLS: trusts `ca_pem`, presents `identity` (if any).
async fn mtls_channel(
    origin: &str,
    ca_pem: &str,
    identity: Option<&CertAndKey>,
) -> Result<Channel, Box<dyn Error>> {
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
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = TlsConnector::from(Arc::new(config));

    // tonic hands the connector the endpoint URI; it answers with a TLS stream.
    let connect = tower::service_fn(move |uri: Uri| {
        let connector = connector.clone();
        async move {
            let host = uri.host().unwrap_or("localhost").to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            let name = ServerName::try_from(host)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    Ok(Endpoint::from_shared(origin.to_owned())?
        .connect_with_connector(connect)
        .await?)
}
