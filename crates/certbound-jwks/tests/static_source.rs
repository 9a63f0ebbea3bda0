//! StaticJwks: from a file, from a document, shared secrets, and use behind `Arc<dyn KeySource>`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use certbound_core::{Algorithm, JwksError, Rejection};
use certbound_dev::jwks_document;
use certbound_jwks::{KeySource, StaticJwks, StaticJwksError};
use common::{key, verifies};

fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("certbound-jwks-{}-{name}", std::process::id()))
}

#[tokio::test]
async fn from_a_file() {
    let k1 = key("k1");
    let path = temp_path("jwks.json");
    std::fs::write(&path, jwks_document(&[&k1]).to_string()).unwrap();
    let keys = StaticJwks::from_file(&path).unwrap();
    std::fs::remove_file(&path).unwrap();

    let found = keys.lookup(Some("k1"), Algorithm::ES256).unwrap();
    assert!(verifies(&k1, &found));
    // refresh answers from the same set.
    assert!(keys.refresh(Some("k1"), Algorithm::ES256).await.is_ok());
    assert_eq!(
        keys.refresh(Some("k2"), Algorithm::ES256)
            .await
            .unwrap_err(),
        Rejection::UnknownKey
    );

    let err = StaticJwks::from_file(temp_path("missing.json")).unwrap_err();
    assert!(matches!(err, StaticJwksError::Io { .. }), "{err:?}");

    let bad = temp_path("bad.json");
    std::fs::write(
        &bad,
        r#"{"keys":[{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"}]}"#,
    )
    .unwrap();
    let err = StaticJwks::from_file(&bad).unwrap_err();
    std::fs::remove_file(&bad).unwrap();
    assert!(
        matches!(
            &err,
            StaticJwksError::Jwks {
                path: Some(_),
                source: JwksError::NoUsableKey { skipped: 1 }
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("bad.json"), "{err}");
}

#[test]
fn shared_secret() {
    let keys = StaticJwks::shared_secret("hs-1", b"0123456789abcdef0123456789abcdef").unwrap();
    let key = keys.lookup(Some("hs-1"), Algorithm::HS256).unwrap();
    assert_eq!(key.kid(), Some("hs-1"));
    // A token without a kid finds the only key that fits.
    assert!(keys.lookup(None, Algorithm::HS512).is_ok());
    assert_eq!(
        keys.lookup(Some("hs-1"), Algorithm::ES256).unwrap_err(),
        Rejection::KeyAlgorithmMismatch
    );
    let err = StaticJwks::shared_secret("hs-1", b"short").unwrap_err();
    assert!(
        matches!(err, StaticJwksError::WeakSecret { len: 5 }),
        "{err:?}"
    );
    // And never from a JWKS document.
    let err =
        StaticJwks::from_jwks(r#"{"keys":[{"kty":"oct","kid":"x","k":"c2VjcmV0"}]}"#).unwrap_err();
    assert!(
        matches!(err, StaticJwksError::Jwks { path: None, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn behind_arc_dyn() {
    let k1 = key("k1");
    let source: Arc<dyn KeySource> =
        Arc::new(StaticJwks::from_jwks(jwks_document(&[&k1]).to_string()).unwrap());
    assert!(source.lookup(Some("k1"), Algorithm::ES256).is_ok());
    assert!(source.refresh(Some("k1"), Algorithm::ES256).await.is_ok());
    let twice: Arc<Arc<dyn KeySource>> = Arc::new(source);
    assert!(twice.lookup(Some("k1"), Algorithm::ES256).is_ok());
}
