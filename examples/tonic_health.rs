//! certbound in front of a gRPC service, over real mutual TLS, in one process.
//!
//! The service is tonic-health's `grpc.health.v1.Health` (no protoc needed). It becomes an axum
//! router with `tonic::service::Routes::into_axum_router`, and the very same certbound layer the
//! REST examples use goes on top of it; `TlsListener` + `certbound::tls::serve` provide the
//! client certificate as a request extension (and as `ConnectInfo<PeerCertificate>`). Three gRPC clients (tonic `Channel`s over a
//! tokio-rustls connector) then call `Health/Check` with a token bound to client A: client A gets
//! `SERVING`; client B and a client without a certificate get the layer's HTTP 401, which tonic
//! reports as gRPC `Unauthenticated`.
//!
//! ```text
//! cargo run --example tonic_health
//! ```

mod support;

use std::error::Error;
use std::future::IntoFuture;
use std::io::Write;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use certbound_dev::CertAndKey;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use support::DevStory;

/// The labels of the three calls, in the order the table prints them.
pub use support::PLAYERS;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    run(&mut std::io::stdout()).await
}

/// Starts a dev issuer and the protected gRPC service, plays the three clients, and writes the
/// table to `out`.
pub async fn run(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    // The authorization server's side: a dev issuer (discovery + JWKS) and client A's token.
    let story = DevStory::start("grpc-key").await?;
    let (pki, token) = (&story.pki, &story.token_a);

    // The resource server: the same certbound layer as for REST, on tonic's axum router.
    let auth = story.layer().await?;
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let app = tonic::service::Routes::new(health)
        .into_axum_router()
        .layer(auth);
    let listener = story.listener().await?;
    let origin = format!("https://localhost:{}", listener.local_addr().port());
    let server = tokio::spawn(certbound::tls::serve(listener, app).into_future());

    writeln!(
        out,
        "gRPC grpc.health.v1.Health/Check at {origin}\ntoken bound to client A: cnf.x5t#S256 = {}\n",
        story.thumbprint_a
    )?;
    writeln!(out, "{:<34} {:>4}  {:<15}  detail", "call", "HTTP", "gRPC")?;
    writeln!(out, "{}", "-".repeat(110))?;
    for (label, identity) in story.players() {
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
    let mut config = support::client_tls_config(ca_pem, identity)?;
    config.alpn_protocols = vec![b"h2".to_vec()]; // gRPC is HTTP/2 only
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
    // The connector does the TLS itself, so tonic gets the address as `http://`: with tonic's
    // own TLS compiled in (tonic's `tls-*` features, which certbound's `tonic` feature turns
    // on), tonic refuses an `https://` endpoint whose connection it does not encrypt itself.
    // The requests still carry the `https` origin.
    let plain = origin.replacen("https://", "http://", 1);
    Ok(Endpoint::from_shared(plain)?
        .origin(origin.parse()?)
        .connect_with_connector(connect)
        .await?)
}
