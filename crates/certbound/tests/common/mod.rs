//! Shared by the certbound crate's integration tests.

use certbound::{CertBound, CertBoundLayer, StaticJwks};
use certbound_dev::{jwks_document, SigningKey};

pub const ISSUER: &str = "https://issuer.example/";
pub const AUDIENCE: &str = "https://api.example";

/// A layer for [`ISSUER`] / [`AUDIENCE`] whose only key is `key`'s public key.
pub async fn static_layer(key: &SigningKey) -> CertBoundLayer {
    let keys = StaticJwks::from_jwks(jwks_document(&[key]).to_string()).unwrap();
    CertBound::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .key_source(keys)
        .build()
        .await
        .unwrap()
}
