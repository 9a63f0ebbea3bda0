//! certbound's `tonic` feature: the layer on tonic's own `transport::Server` — its TLS
//! (`ServerTlsConfig`, client certificates optional) and its `.layer(..)` — reading the client
//! certificate from tonic's `TlsConnectInfo`, called by real tonic clients over mutual TLS
//! (`Channel` + `ClientTlsConfig`). The gRPC service is tonic-health's `grpc.health.v1.Health`.
//! Also: tonic without TLS behind a proxy, where `TcpConnectInfo` gives the peer address that a
//! forwarded certificate is trusted by.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use certbound::{CertBound, CertBoundLayer, Rejection, StaticJwks, Thumbprint};
use certbound_core::Algorithm;
use certbound_core::{ForwardedCertificates, ForwardedFormat, IpCidr};
use certbound_dev::{bound_claims, jwks_document, CertAndKey, DevPki, SigningKey};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig,
};
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const ISSUER: &str = "https://issuer.example/";
const AUDIENCE: &str = "https://grpc.example";

struct Setup {
    pki: DevPki,
    key: SigningKey,
}

impl Setup {
    fn new() -> Self {
        Self {
            pki: DevPki::generate(std::env::temp_dir().join("certbound-tonic-unused")).unwrap(),
            key: SigningKey::generate("grpc-key", Algorithm::ES256).unwrap(),
        }
    }

    /// The layer, with static keys: no discovery, so `build_static` builds it without `async`.
    fn layer(&self) -> CertBoundLayer {
        self.builder().build_static().unwrap()
    }

    fn builder(&self) -> certbound::CertBoundBuilder {
        let jwks = StaticJwks::from_jwks(jwks_document(&[&self.key]).to_string()).unwrap();
        CertBound::builder()
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .key_source(jwks)
    }

    /// A token bound to `cert`.
    fn token_for(&self, cert: &CertAndKey) -> String {
        let thumbprint = Thumbprint::of_der(&cert.cert_der);
        self.key
            .sign(&bound_claims(ISSUER, AUDIENCE, &thumbprint))
            .unwrap()
    }
}

/// tonic-health's service, reporting SERVING for the whole server.
async fn health_service(
) -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health> {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    service
}

/// tonic's own server with its own TLS: client certificates from the dev CA are asked for but
/// optional (a client without one reaches the layer, which decides), and the certbound layer.
async fn serve_tls(setup: &Setup, auth: CertBoundLayer) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            &setup.pki.server.cert_pem,
            &setup.pki.server.key_pem,
        ))
        .client_ca_root(Certificate::from_pem(&setup.pki.ca.cert_pem))
        .client_auth_optional(true);
    let mut server = Server::builder().tls_config(tls).unwrap().layer(auth);
    let router = server.add_service(health_service().await);
    let handle = tokio::spawn(async move {
        router
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    (addr, handle)
}

/// A tonic channel over mutual TLS: trusts the dev CA, presents `identity` (if any).
async fn tls_channel(setup: &Setup, addr: SocketAddr, identity: Option<&CertAndKey>) -> Channel {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&setup.pki.ca.cert_pem))
        .domain_name("localhost");
    if let Some(id) = identity {
        tls = tls.identity(Identity::from_pem(&id.cert_pem, &id.key_pem));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// `Health/Check` with `token` as the bearer token.
async fn check(channel: Channel, token: &str) -> Result<ServingStatus, Status> {
    check_with(channel, &[("authorization", format!("Bearer {token}"))]).await
}

async fn check_with(
    channel: Channel,
    metadata: &[(&'static str, String)],
) -> Result<ServingStatus, Status> {
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    for (name, value) in metadata {
        request.metadata_mut().insert(*name, value.parse().unwrap());
    }
    let response = HealthClient::new(channel).check(request).await?;
    Ok(ServingStatus::try_from(response.into_inner().status).unwrap())
}

/// The layer's 401, as tonic reports it: `Unauthenticated`, with the layer's challenge (realm
/// and reason) in the status metadata.
fn assert_refused(result: Result<ServingStatus, Status>, reason: Rejection) {
    let status = result.expect_err("the layer must refuse this call");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let challenge = status
        .metadata()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no challenge in {status:?}"));
    assert!(
        challenge.starts_with(&format!("Bearer realm=\"{AUDIENCE}\"")),
        "{challenge}"
    );
    assert!(
        challenge.contains(&format!("error_description=\"{}\"", reason.description())),
        "want {}: {challenge}",
        reason.code()
    );
}

#[tokio::test]
async fn tonic_server_tls_bound_client_passes_other_and_no_certificate_are_unauthenticated() {
    let setup = Setup::new();
    let (addr, server) = serve_tls(&setup, setup.layer()).await;
    let token = setup.token_for(&setup.pki.client_a);

    // Client A with its own token: through the layer to the health service.
    let a = tls_channel(&setup, addr, Some(&setup.pki.client_a)).await;
    assert_eq!(
        check(a.clone(), &token).await.unwrap(),
        ServingStatus::Serving
    );
    // Again on the same connection (tonic's connection info is per connection).
    assert_eq!(check(a, &token).await.unwrap(), ServingStatus::Serving);

    // Client B (same CA, so the handshake succeeds) with A's token: bound to another
    // certificate.
    let b = tls_channel(&setup, addr, Some(&setup.pki.client_b)).await;
    assert_refused(check(b, &token).await, Rejection::BindingMismatch);

    // No client certificate at all (tonic's TLS allows it; the layer does not).
    let none = tls_channel(&setup, addr, None).await;
    assert_refused(
        check(none, &token).await,
        Rejection::MissingClientCertificate,
    );

    // Client B with its own token passes: the refusal above was the binding, not client B.
    let b = tls_channel(&setup, addr, Some(&setup.pki.client_b)).await;
    let token_b = setup.token_for(&setup.pki.client_b);
    assert_eq!(check(b, &token_b).await.unwrap(), ServingStatus::Serving);
    server.abort();
}

/// tonic without TLS behind a TLS-terminating proxy: the peer address comes from tonic's
/// `TcpConnectInfo`, and a forwarded certificate is taken from the trusted proxy (127.0.0.1)
/// only.
#[tokio::test]
async fn tonic_server_plaintext_behind_a_proxy_takes_the_forwarded_certificate_from_a_trusted_peer()
{
    let setup = Setup::new();
    let header = http::HeaderName::from_static("x-client-cert");
    let serve = |trusted: &'static str| {
        let auth = setup
            .builder()
            .forwarded_certificates(ForwardedCertificates::new(
                ForwardedFormat::Base64Der {
                    header: header.clone(),
                },
                vec![trusted.parse::<IpCidr>().unwrap()],
            ))
            .build_static()
            .unwrap();
        async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let router = Server::builder()
                .layer(auth)
                .add_service(health_service().await);
            let handle = tokio::spawn(async move {
                router
                    .serve_with_incoming(TcpIncoming::from(listener))
                    .await
                    .unwrap();
            });
            (addr, handle)
        }
    };
    let token = setup.token_for(&setup.pki.client_a);
    let forwarded = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&setup.pki.client_a.cert_der)
    };
    let metadata = [
        ("authorization", format!("Bearer {token}")),
        ("x-client-cert", forwarded),
    ];
    let plain = |addr: SocketAddr| async move {
        Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap()
    };

    // From the trusted proxy address: the forwarded certificate is client A's → accepted.
    let (addr, server) = serve("127.0.0.1/32").await;
    assert_eq!(
        check_with(plain(addr).await, &metadata).await.unwrap(),
        ServingStatus::Serving
    );
    server.abort();

    // The same call when 127.0.0.1 is not a trusted proxy: refused with 400 invalid_request
    // (tonic: Internal), never accepted.
    let (addr, server) = serve("10.0.0.0/8").await;
    let status = check_with(plain(addr).await, &metadata)
        .await
        .expect_err("an untrusted peer's forwarded certificate must be refused");
    assert_ne!(status.code(), Code::Ok);
    let challenge = status
        .metadata()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        challenge.contains("error=\"invalid_request\""),
        "{status:?}"
    );
    server.abort();
}
