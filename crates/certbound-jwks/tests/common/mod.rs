//! Shared helpers for the certbound-jwks integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use certbound_core::{Algorithm, Thumbprint, UnverifiedToken, VerificationKey};
use certbound_dev::issuer::TestIssuer;
use certbound_dev::{bound_claims, SigningKey};
#[cfg(feature = "remote")]
use certbound_jwks::{RemoteJwks, RemoteJwksBuilder};

/// A builder that trusts only the issuer's CA (hermetic: no system roots), with short timeouts.
#[cfg(feature = "remote")]
pub fn builder(issuer: &TestIssuer) -> RemoteJwksBuilder {
    RemoteJwks::builder()
        .issuer(issuer.issuer_url())
        .system_roots(false)
        .extra_root_certificates_pem(issuer.ca_pem())
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
}

pub fn key(kid: &str) -> SigningKey {
    SigningKey::generate(kid, Algorithm::ES256).unwrap()
}

pub async fn issuer(keys: &[&SigningKey]) -> TestIssuer {
    TestIssuer::start(keys).await.unwrap()
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns its last value.
pub async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// Signs a bound token with `signer` and checks its signature with `key`, as the layer would.
pub fn verifies(signer: &SigningKey, key: &VerificationKey) -> bool {
    let thumbprint = Thumbprint::of_der(b"client certificate");
    let token = signer
        .sign(&bound_claims("https://issuer", "https://api", &thumbprint))
        .unwrap();
    let parsed = UnverifiedToken::parse(&token).unwrap();
    key.verify(signer.alg(), parsed.signing_input(), parsed.signature())
        .is_ok()
}
