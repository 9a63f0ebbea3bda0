//! JWT signing keys and certificate-bound tokens, as an authorization server would issue them.
//!
//! ```
//! use certbound_dev::{SigningKey, jwks_document};
//! use certbound_core::{Algorithm, KeySet};
//!
//! let key = SigningKey::generate("k1", Algorithm::RS256).unwrap();
//! let jwks = jwks_document(&[&key]);
//! let parsed = KeySet::from_jwks(jwks.to_string().as_bytes()).unwrap();
//! assert!(parsed.keys.contains_kid("k1"));
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use certbound_core::{Algorithm, Thumbprint};
use jsonwebtoken::{EncodingKey, Header};
use rcgen::KeyPair;
use serde_json::{json, Value};

use crate::DevError;

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A private key that signs access tokens, with its public JWK.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    public_jwk: Value,
    pkcs8_pem: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish()
    }
}

impl SigningKey {
    /// Generates a key for `alg` (RS*/PS* use RSA 2048; ES256 P-256; ES384 P-384; EdDSA Ed25519).
    pub fn generate(kid: &str, alg: Algorithm) -> Result<Self, DevError> {
        let pair = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)?
            }
            Algorithm::ES256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
            Algorithm::ES384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?,
            Algorithm::EdDSA => KeyPair::generate_for(&rcgen::PKCS_ED25519)?,
            other => {
                return Err(DevError::Invalid(format!(
                    "{other:?} is not an asymmetric algorithm"
                )))
            }
        };
        Self::from_pkcs8_pem(kid, alg, &pair.serialize_pem())
    }

    /// Loads a PKCS#8 PEM private key (as written by [`pkcs8_pem`](Self::pkcs8_pem)).
    pub fn from_pkcs8_pem(kid: &str, alg: Algorithm, pem: &str) -> Result<Self, DevError> {
        let encoding = match alg.family() {
            jsonwebtoken::AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(pem.as_bytes())?,
            jsonwebtoken::AlgorithmFamily::Ec => EncodingKey::from_ec_pem(pem.as_bytes())?,
            jsonwebtoken::AlgorithmFamily::Ed => EncodingKey::from_ed_pem(pem.as_bytes())?,
            jsonwebtoken::AlgorithmFamily::Hmac => {
                return Err(DevError::Invalid(
                    "HMAC keys are not signing keys here".into(),
                ))
            }
        };
        let mut public_jwk = match alg {
            // rcgen writes Ed25519 keys as PKCS#8 v2, which jsonwebtoken's JWK export does not
            // read; the public key is simply the 32 raw bytes rcgen already knows.
            Algorithm::EdDSA => {
                let pair = KeyPair::from_pem(pem)?;
                json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(pair.public_key_raw())})
            }
            _ => {
                let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, alg)?;
                serde_json::to_value(&jwk).map_err(|e| DevError::Invalid(e.to_string()))?
            }
        };
        public_jwk["kid"] = json!(kid);
        public_jwk["use"] = json!("sig");
        public_jwk["alg"] = json!(format!("{alg:?}"));
        Ok(Self {
            kid: kid.to_owned(),
            alg,
            encoding,
            public_jwk,
            pkcs8_pem: pem.to_owned(),
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The signing algorithm.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The public JWK (with `kid`, `use: "sig"`, `alg`).
    pub fn public_jwk(&self) -> &Value {
        &self.public_jwk
    }

    /// The private key, PKCS#8 PEM.
    pub fn pkcs8_pem(&self) -> &str {
        &self.pkcs8_pem
    }

    /// Signs `claims` with header `{"alg":…,"typ":"at+jwt","kid":…}`.
    pub fn sign(&self, claims: &Value) -> Result<String, DevError> {
        let mut header = Header::new(self.alg);
        header.typ = Some("at+jwt".into());
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }

    /// Signs `claims` under an arbitrary JSON header (for hostile-input tests): the header is
    /// serialized as given and the signature is made with this key and algorithm.
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> Result<String, DevError> {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &self.encoding, self.alg)?;
        Ok(format!("{input}.{sig}"))
    }
}

/// A JWKS document (`{"keys":[…]}`) with the public keys of `keys`.
pub fn jwks_document(keys: &[&SigningKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.public_jwk().clone()).collect::<Vec<_>>() })
}

/// Claims of an access token from `iss` for `aud`, bound to `thumbprint`, valid for an hour
/// from now (RFC 9068 shape: iss, sub, aud, exp, iat, jti, client_id, scope, cnf).
pub fn bound_claims(iss: &str, aud: &str, thumbprint: &Thumbprint) -> Value {
    let now = unix_now();
    json!({
        "iss": iss,
        "sub": "user-123",
        "aud": aud,
        "exp": now + 3600,
        "iat": now,
        "jti": format!("jti-{now}-{}", &thumbprint.to_string()[..8]),
        "client_id": "client-a",
        "scope": "read write",
        "cnf": { "x5t#S256": thumbprint.to_string() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use certbound_core::{KeySet, TokenPolicy, UnverifiedToken};

    #[test]
    fn every_asymmetric_algorithm_signs_tokens_our_core_verifies() {
        let tp = Thumbprint::from_bytes([7; 32]);
        for alg in certbound_core::DEFAULT_ALGORITHMS {
            let key = SigningKey::generate("k", *alg).unwrap();
            let token = key
                .sign(&bound_claims("https://i", "https://a", &tp))
                .unwrap();
            let keys = KeySet::from_jwks(jwks_document(&[&key]).to_string().as_bytes())
                .unwrap()
                .keys;
            let parsed = UnverifiedToken::parse(&token).unwrap();
            let policy = TokenPolicy::new("https://i", "https://a");
            let checked = policy.check_header(parsed.header()).unwrap();
            let vk = keys.get(Some("k"), checked).unwrap();
            let claims = policy.verify(parsed, checked, vk, unix_now()).unwrap();
            assert_eq!(claims.confirmation().certificate(), Some(&tp), "{alg:?}");
            // And the key reloads from its PEM with the same public JWK.
            let again = SigningKey::from_pkcs8_pem("k", *alg, key.pkcs8_pem()).unwrap();
            assert_eq!(again.public_jwk(), key.public_jwk(), "{alg:?}");
        }
    }
}
