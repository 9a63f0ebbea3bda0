//! DPoP client keys and proofs (RFC 9449 §4) for tests, the example and the CLI.
//!
//! ```
//! use certbound_core::{DpopPolicy, ProofRequest};
//! use certbound_dev::dpop::DpopKey;
//! use certbound_core::Algorithm;
//!
//! let key = DpopKey::generate(Algorithm::ES256).unwrap();
//! let proof = key.proof("GET", "https://api.example/accounts", Some("the-access-token"), None).unwrap();
//! let now = certbound_dev::unix_now();
//! let verified = DpopPolicy::default()
//!     .verify_proof(&proof, "the-access-token", &ProofRequest::new("GET", "https://api.example/accounts"), now)
//!     .unwrap();
//! assert_eq!(verified.jkt(), &key.jkt()); // what the token's cnf.jkt must be
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use certbound_core::{access_token_hash, jwk_thumbprint};
use certbound_core::{Algorithm, Thumbprint};
use serde_json::{json, Value};

use crate::{unix_now, DevError, SigningKey};

/// A DPoP client key pair.
#[derive(Debug, Clone)]
pub struct DpopKey {
    signer: SigningKey,
    jwk: Value,
    jkt: Thumbprint,
}

impl DpopKey {
    /// Generates a key for `alg` (ES256, ES384, PS256, RS256, EdDSA).
    pub fn generate(alg: Algorithm) -> Result<Self, DevError> {
        Self::from_signing_key(SigningKey::generate("dpop", alg)?)
    }

    /// Loads a PKCS#8 PEM private key.
    pub fn from_pkcs8_pem(alg: Algorithm, pem: &str) -> Result<Self, DevError> {
        Self::from_signing_key(SigningKey::from_pkcs8_pem("dpop", alg, pem)?)
    }

    /// Loads a PKCS#8 PEM private key of any supported type, with `alg` when given (it must fit
    /// the key) or else the algorithm its type implies: P-256 → ES256, P-384 → ES384, Ed25519 →
    /// EdDSA, RSA → PS256 (RS256 only when asked for).
    pub fn from_pem(pem: &str, alg: Option<Algorithm>) -> Result<Self, DevError> {
        let pair = rcgen::KeyPair::from_pem(pem)
            .map_err(|e| DevError::Invalid(format!("not a PKCS#8 PEM private key: {e}")))?;
        let kind = pair.algorithm();
        let implied = if kind == &rcgen::PKCS_ECDSA_P256_SHA256 {
            Algorithm::ES256
        } else if kind == &rcgen::PKCS_ECDSA_P384_SHA384 {
            Algorithm::ES384
        } else if kind == &rcgen::PKCS_ED25519 {
            Algorithm::EdDSA
        } else if kind == &rcgen::PKCS_RSA_SHA256 {
            Algorithm::PS256
        } else {
            return Err(DevError::Invalid(
                "unsupported key type (P-256, P-384, Ed25519 or RSA)".into(),
            ));
        };
        let alg = match alg {
            None => implied,
            Some(alg) if alg == implied => alg,
            Some(alg @ (Algorithm::RS256 | Algorithm::PS256)) if implied == Algorithm::PS256 => alg,
            Some(alg) => {
                return Err(DevError::Invalid(format!(
                    "the key is for {implied:?}, not {alg:?}"
                )))
            }
        };
        Self::from_pkcs8_pem(alg, pem)
    }

    fn from_signing_key(signer: SigningKey) -> Result<Self, DevError> {
        // The public JWK as a DPoP proof carries it: key members only (no kid/use/alg).
        let mut jwk = signer.public_jwk().clone();
        if let Some(map) = jwk.as_object_mut() {
            for member in ["kid", "use", "alg"] {
                map.remove(member);
            }
        }
        let jkt = jwk
            .as_object()
            .and_then(jwk_thumbprint)
            .ok_or_else(|| DevError::Invalid("no RFC 7638 thumbprint for this key".into()))?;
        Ok(Self { signer, jwk, jkt })
    }

    /// The public JWK the proofs carry.
    pub fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    /// The RFC 7638 thumbprint: the `cnf.jkt` of tokens bound to this key.
    pub fn jkt(&self) -> Thumbprint {
        self.jkt
    }

    /// The algorithm.
    pub fn alg(&self) -> Algorithm {
        self.signer.alg()
    }

    /// The private key, PKCS#8 PEM.
    pub fn pkcs8_pem(&self) -> &str {
        self.signer.pkcs8_pem()
    }

    /// A proof for `method` `url`, issued now with a fresh `jti`, with `ath` for
    /// `access_token` and `nonce` when given.
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<String, DevError> {
        let mut claims = json!({"jti": fresh_jti(), "htm": method, "htu": url, "iat": unix_now()});
        if let Some(token) = access_token {
            claims["ath"] = json!(access_token_hash(token));
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        self.proof_with(&self.header(), &claims)
    }

    /// The standard proof header: `{"typ":"dpop+jwt","alg":…,"jwk":…}`.
    pub fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": format!("{:?}", self.alg()), "jwk": self.jwk})
    }

    /// Signs any header and claims with this key (for hostile-input tests).
    pub fn proof_with(&self, header: &Value, claims: &Value) -> Result<String, DevError> {
        self.signer.sign_with_header(header, claims)
    }
}

/// A `jti` unique across processes and calls.
pub fn fresh_jti() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Claims of an access token bound to a DPoP key (`cnf.jkt`).
pub fn dpop_bound_claims(iss: &str, aud: &str, jkt: &Thumbprint) -> Value {
    let now = unix_now();
    json!({
        "iss": iss, "sub": "user-123", "aud": aud, "exp": now + 3600, "iat": now,
        "jti": fresh_jti(), "client_id": "client-dpop", "scope": "read write",
        "cnf": { "jkt": jkt.to_string() },
    })
}
