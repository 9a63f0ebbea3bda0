//! `Introspector` against a real HTTPS issuer: the endpoint from discovery or a URL, the raw
//! answer handed back untouched, and each failure typed for the layer (unavailable vs our
//! credentials refused), the size limit and the timeout.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "remote")]

mod common;

use std::time::{Duration, Instant};

use certbound_core::IntrospectionFailure;
use certbound_dev::issuer::{ClientAuthMethod, FailureMode};
use certbound_jwks::{IntrospectionAuth, IntrospectionSource, Introspector, RemoteJwksBuildError};
use common::{issuer, key};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_and_failures_are_typed() {
    let k1 = key("k1");
    let issuer = issuer(&[&k1]).await;
    issuer.register_introspection_client("rs", ClientAuthMethod::SecretPost("pw".into()));
    let token = issuer.issue_opaque(json!({"sub": "alice", "scope": "read"}));
    let introspector = Introspector::builder()
        .issuer(issuer.issuer_url())
        .extra_root_certificates_pem(issuer.ca_pem())
        .auth(IntrospectionAuth::client_secret_post("rs", "pw"))
        .timeout(Duration::from_millis(500))
        .max_response_size(4096)
        .build()
        .await
        .unwrap();
    assert_eq!(introspector.endpoint(), issuer.introspection_endpoint());
    assert_eq!(IntrospectionSource::client_id(&introspector), "rs");

    let reply = introspector.introspect(&token).await.unwrap();
    assert_eq!(reply.content_type.as_deref(), Some("application/json"));
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(
        body,
        json!({"active": true, "sub": "alice", "scope": "read"})
    );
    let unknown: Value =
        serde_json::from_slice(&introspector.introspect("nope").await.unwrap().body).unwrap();
    assert_eq!(unknown, json!({"active": false}));

    let failure = |mode| {
        issuer.set_introspection_failure(mode);
        introspector.introspect(&token)
    };
    use IntrospectionFailure::{CredentialsRefused, Unavailable};
    assert_eq!(
        failure(FailureMode::Status(503)).await.unwrap_err(),
        Unavailable
    );
    assert_eq!(
        failure(FailureMode::Status(404)).await.unwrap_err(),
        Unavailable
    );
    assert_eq!(
        failure(FailureMode::Status(401)).await.unwrap_err(),
        CredentialsRefused
    );
    assert_eq!(
        failure(FailureMode::Status(403)).await.unwrap_err(),
        CredentialsRefused
    );
    assert_eq!(
        failure(FailureMode::Status(400)).await.unwrap_err(),
        CredentialsRefused
    );
    assert_eq!(
        failure(FailureMode::Oversized(64 * 1024))
            .await
            .unwrap_err(),
        Unavailable
    );
    let started = Instant::now();
    assert_eq!(
        failure(FailureMode::Slow(Duration::from_secs(5)))
            .await
            .unwrap_err(),
        Unavailable
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    issuer.set_introspection_failure(FailureMode::Normal);
    issuer.stop().await;
    assert_eq!(
        introspector.introspect(&token).await.unwrap_err(),
        Unavailable
    );
    issuer.restart().await.unwrap();
    assert!(introspector.introspect(&token).await.is_ok());
    // Every request reached the endpoint but the one made while it was down.
    assert_eq!(
        issuer.introspection_calls() as u64,
        introspector.calls() - 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_name_the_problem() {
    let k1 = key("k1");
    let issuer = issuer(&[&k1]).await;
    // No credentials.
    let err = Introspector::builder()
        .endpoint(issuer.introspection_endpoint())
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(err, RemoteJwksBuildError::ClientCredentials(_)),
        "{err}"
    );
    // Plain http to a non-loopback host.
    let err = Introspector::builder()
        .endpoint("http://auth.example.com/introspect")
        .auth(IntrospectionAuth::client_secret_basic("rs", "pw"))
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(err, RemoteJwksBuildError::InsecureUrl { .. }),
        "{err}"
    );
    // A certificate that is not PEM.
    let err = Introspector::builder()
        .endpoint(issuer.introspection_endpoint())
        .auth(IntrospectionAuth::tls_client_auth(
            "rs", "not pem", "not pem",
        ))
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("tls_client_auth"), "{err}");
    // private_key_jwt with an HMAC algorithm.
    let err = IntrospectionAuth::private_key_jwt("rs", b"", certbound_core::Algorithm::HS256, None)
        .unwrap_err();
    assert!(err.to_string().contains("asymmetric"), "{err}");
}

/// A redirecting endpoint (plain HTTP on loopback) answering every request with `status` and
/// `Location: target`, after reading the whole request. Returns its URL.
fn redirector(status: u16, target: String) -> String {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/introspect", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then Content-Length bytes of body.
            loop {
                let n = stream.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            let answer = format!(
                "HTTP/1.1 {status} Redirect\r\nLocation: {target}\r\nContent-Length: 0\r\n\r\n"
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    url
}

/// No redirect is followed: a 307/308 would POST the token and the client secret (here
/// `client_secret_post`, in the body) to the `Location` — the real issuer here, which counts
/// what reaches it. Every 3xx is "unavailable".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_never_followed() {
    let k1 = key("k1");
    let issuer = issuer(&[&k1]).await;
    issuer.register_introspection_client("rs", ClientAuthMethod::SecretPost("pw".into()));
    let token = issuer.issue_opaque(json!({"sub": "alice"}));
    for status in [301, 302, 303, 307, 308] {
        let endpoint = redirector(status, issuer.introspection_endpoint().to_owned());
        let introspector = Introspector::builder()
            .endpoint(endpoint)
            .extra_root_certificates_pem(issuer.ca_pem())
            .auth(IntrospectionAuth::client_secret_post("rs", "pw"))
            .build()
            .await
            .unwrap();
        assert_eq!(
            introspector.introspect(&token).await.unwrap_err(),
            IntrospectionFailure::Unavailable,
            "{status}"
        );
        assert_eq!(introspector.calls(), 1);
    }
    assert_eq!(issuer.introspection_calls(), 0, "a redirect was followed");
}
