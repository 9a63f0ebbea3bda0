//! The wiring mistake issue 11 names, over a real socket: `axum::serve(listener, app)` without
//! `into_make_service_with_connect_info::<PeerCertificate>()` (so no request carries the client
//! certificate) answers 500 with one error log naming the fix — never 401
//! `missing_client_certificate`, which would blame the client. `certbound::tls::serve` on the
//! same listener and app answers 200.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use certbound::tls::{server_config, ClientAuth, TlsListener};
use certbound::{CertBound, StaticJwks};
use certbound_core::Algorithm;
use certbound_dev::{bound_claims, jwks_document, DevPki, SigningKey};
use common::support;

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn axum_serve_without_connect_info_is_a_500_naming_the_fix() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(logs.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let pki = DevPki::generate(std::env::temp_dir()).unwrap();
    let key = SigningKey::generate("k1", Algorithm::ES256).unwrap();
    let issuer = "https://issuer.example/";
    let audience = "https://api.example";
    let auth = CertBound::builder()
        .issuer(issuer)
        .audience(audience)
        .key_source(StaticJwks::from_jwks(jwks_document(&[&key]).to_string()).unwrap())
        .build()
        .await
        .unwrap();
    let app = support::routes(auth);
    let token = key
        .sign(&bound_claims(
            issuer,
            audience,
            &common::thumbprint(&pki.client_a),
        ))
        .unwrap();
    let tls = || {
        server_config(
            vec![pki.server.cert_der.clone()],
            pki.server.private_key(),
            ClientAuth::self_signed(),
        )
        .unwrap()
    };
    let client = support::https_client(&pki.ca.cert_pem, Some(&pki.client_a)).unwrap();

    // The mistake: plain axum::serve, no connect info.
    let listener = TlsListener::bind("127.0.0.1:0", tls()).await.unwrap();
    let addr = listener.local_addr();
    let server = tokio::spawn(async move { axum::serve(listener, app.clone()).await });
    let url = format!("https://localhost:{}/api/hello", addr.port());
    let resp = client.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    assert!(resp.headers().get("www-authenticate").is_none());
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();
    let errors: Vec<&str> = text.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{text}");
    assert!(errors[0].contains("certbound::tls::serve"), "{}", errors[0]);
    server.abort();

    // The helper cannot forget the certificate.
    let listener = TlsListener::bind("127.0.0.1:0", tls()).await.unwrap();
    let addr = listener.local_addr();
    let app = support::routes(
        CertBound::builder()
            .issuer(issuer)
            .audience(audience)
            .key_source(StaticJwks::from_jwks(jwks_document(&[&key]).to_string()).unwrap())
            .build()
            .await
            .unwrap(),
    );
    let server = tokio::spawn(async move { certbound::tls::serve(listener, app).await });
    let url = format!("https://localhost:{}/api/hello", addr.port());
    let resp = client.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    server.abort();
}
