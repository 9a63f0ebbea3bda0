//! The raw baseline both DPoP benches compare `verify_proof` with: aws-lc verifying the same
//! signature, one shot from the key's bytes, and with the key parsed beforehand.

use std::hint::black_box;

use aws_lc_rs::signature::{
    ParsedPublicKey, RsaPublicKeyComponents, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ED25519,
    RSA_PSS_2048_8192_SHA256,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use certbound_core::Algorithm;
use serde_json::Value;

fn b64(jwk: &Value, member: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(jwk[member].as_str().unwrap())
        .unwrap()
}

/// For the public `jwk` of an `alg` key (ES256, EdDSA, else PS256): the key parsed once, and a
/// one-shot raw verification of `signature` over `message` that must return `true`.
pub fn raw_verifier(
    alg: Algorithm,
    jwk: &Value,
    message: &[u8],
    signature: &[u8],
) -> (ParsedPublicKey, Box<dyn Fn() -> bool>) {
    let (message, signature) = (message.to_vec(), signature.to_vec());
    match alg {
        Algorithm::ES256 => {
            let mut point = vec![0x04];
            point.extend(b64(jwk, "x"));
            point.extend(b64(jwk, "y"));
            let parsed = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point).unwrap();
            let raw = Box::new(move || {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, black_box(&point))
                    .verify(black_box(&message), black_box(&signature))
                    .is_ok()
            });
            (parsed, raw)
        }
        Algorithm::EdDSA => {
            let x = b64(jwk, "x");
            let parsed = ParsedPublicKey::new(&ED25519, &x).unwrap();
            let raw = Box::new(move || {
                UnparsedPublicKey::new(&ED25519, black_box(&x))
                    .verify(black_box(&message), black_box(&signature))
                    .is_ok()
            });
            (parsed, raw)
        }
        _ => {
            let (n, e) = (b64(jwk, "n"), b64(jwk, "e"));
            let parsed = RsaPublicKeyComponents { n: &n, e: &e }
                .to_parsed_public_key(&RSA_PSS_2048_8192_SHA256)
                .unwrap();
            let raw = Box::new(move || {
                RsaPublicKeyComponents {
                    n: black_box(&n),
                    e: black_box(&e),
                }
                .verify(
                    &RSA_PSS_2048_8192_SHA256,
                    black_box(&message),
                    black_box(&signature),
                )
                .is_ok()
            });
            (parsed, raw)
        }
    }
}
