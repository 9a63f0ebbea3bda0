//! Verification keys and key sets, parsed from a JWKS document (RFC 7517) without I/O.
//!
//! Keys are turned into verification keys once, when the document is parsed — never per request.
//! A key that cannot be used (unknown `kty`, `use: "enc"`, missing parameters, RSA shorter than
//! 2048 bits, a symmetric key in a public document) is skipped with a reason; a document with no
//! usable key is an error.
//!
//! ```
//! use certbound_core::KeySet;
//!
//! let jwks = br#"{"keys":[
//!   {"kty":"EC","crv":"P-256","kid":"ec-1","use":"sig",
//!    "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
//!    "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
//!   {"kty":"RSA","use":"enc","kid":"enc-1","n":"AQAB","e":"AQAB"}
//! ]}"#;
//! let parsed = KeySet::from_jwks(jwks).unwrap();
//! assert_eq!(parsed.keys.len(), 1);
//! assert_eq!(parsed.skipped.len(), 1); // the encryption key, with its reason
//! assert!(parsed.keys.get(Some("ec-1"), jsonwebtoken::Algorithm::ES256).is_ok());
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::jose::{parse_object, JsonError};
use crate::Rejection;

/// The shortest RSA modulus accepted, in bits (RFC 7518 §3.3).
pub const MIN_RSA_BITS: usize = 2048;

/// The curve of an EC or OKP key; it restricts which `alg` the key may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// NIST P-256 (ES256 only).
    P256,
    /// NIST P-384 (ES384 only).
    P384,
    /// Ed25519 (EdDSA only).
    Ed25519,
}

/// A public (or, only when configured explicitly, shared-secret) key that verifies token signatures.
#[derive(Clone)]
pub struct VerificationKey {
    kid: Option<String>,
    alg: Option<Algorithm>,
    family: AlgorithmFamily,
    curve: Option<Curve>,
    key: DecodingKey,
    /// SHA-256 over the kid, alg, key type, curve and the decoded key parameters; computed
    /// once at parse time. Equal fingerprints mean the same key (see [`KeySet::adopt_unchanged`]).
    fingerprint: [u8; 32],
}

/// Builds a key's content fingerprint: every field length-prefixed, so no two different
/// field lists hash the same input.
struct Fingerprint(Sha256);

impl Fingerprint {
    fn new(kid: Option<&str>, alg: Option<Algorithm>, kty: &str) -> Self {
        let mut f = Self(Sha256::new());
        f.0.update(b"certbound verification key v1");
        match kid {
            Some(kid) => f.field(b"kid").field(kid.as_bytes()),
            None => f.field(b"no kid"),
        };
        match alg {
            Some(alg) => f.field(b"alg").field(format!("{alg:?}").as_bytes()),
            None => f.field(b"no alg"),
        };
        f.field(kty.as_bytes());
        f
    }

    fn field(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update((bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
        self
    }

    /// An unsigned big-endian integer (RSA `n`, `e`), without its leading zero bytes.
    fn integer(&mut self, bytes: &[u8]) -> &mut Self {
        let start = bytes.iter().take_while(|b| **b == 0).count();
        self.field(bytes.get(start..).unwrap_or_default())
    }

    fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// The bit length of an unsigned big-endian integer (leading zero bytes and bits ignored).
fn bit_length(bytes: &[u8]) -> usize {
    let start = bytes.iter().take_while(|b| **b == 0).count();
    match bytes.get(start..) {
        Some([top, rest @ ..]) => rest
            .len()
            .saturating_mul(8)
            .saturating_add(8 - top.leading_zeros() as usize),
        _ => 0,
    }
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("family", &self.family)
            .field("curve", &self.curve)
            .finish_non_exhaustive()
    }
}

/// Why a JWK was not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// `kty` missing or not RSA, EC or OKP.
    #[error("unsupported key type {0:?}")]
    UnsupportedKeyType(String),
    /// `use` is not `sig`, or `key_ops` does not allow `verify`.
    #[error("key is not for signature verification")]
    NotForVerification,
    /// A required parameter is missing or not a string.
    #[error("missing or malformed parameter {0:?}")]
    BadParameter(&'static str),
    /// The curve is not P-256, P-384 or Ed25519.
    #[error("unsupported curve {0:?}")]
    UnsupportedCurve(String),
    /// The key's `alg` is not a supported signature algorithm, or does not fit the key.
    #[error("key algorithm {0:?} is not a supported signature algorithm for this key")]
    UnsupportedAlgorithm(String),
    /// RSA modulus shorter than [`MIN_RSA_BITS`] bits (RFC 7518 §3.3); the exact bit length.
    #[error("RSA key is {0} bits; at least 2048 are required")]
    WeakRsaKey(usize),
    /// A symmetric (`oct`) key in a JWKS document; shared secrets must be configured explicitly.
    #[error("symmetric keys are only accepted when configured explicitly as a shared secret")]
    SymmetricKeyInJwks,
    /// The key material was rejected by the crypto library.
    #[error("key material is invalid")]
    InvalidKeyMaterial,
}

impl VerificationKey {
    /// Builds a key from one JWK object (a member of a JWKS `keys` array).
    pub fn from_jwk(jwk: &Map<String, Value>) -> Result<Self, KeyError> {
        let str_param = |name: &'static str| -> Result<&str, KeyError> {
            jwk.get(name)
                .and_then(Value::as_str)
                .ok_or(KeyError::BadParameter(name))
        };
        let opt_str = |name: &'static str| -> Result<Option<&str>, KeyError> {
            match jwk.get(name) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(KeyError::BadParameter(name)),
            }
        };
        let kty = str_param("kty")?;
        match opt_str("use")? {
            None | Some("sig") => {}
            Some(_) => return Err(KeyError::NotForVerification),
        }
        if let Some(ops) = jwk.get("key_ops") {
            let ok = ops
                .as_array()
                .is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")));
            if !ok {
                return Err(KeyError::NotForVerification);
            }
        }
        let kid = opt_str("kid")?.map(str::to_owned);
        let alg = match opt_str("alg")? {
            None => None,
            Some(a) => Some(
                crate::parse_algorithm(a)
                    .ok_or_else(|| KeyError::UnsupportedAlgorithm(a.to_owned()))?,
            ),
        };
        let decode = |name: &'static str| -> Result<Vec<u8>, KeyError> {
            URL_SAFE_NO_PAD
                .decode(str_param(name)?)
                .map_err(|_| KeyError::BadParameter(name))
        };
        let mut fingerprint = Fingerprint::new(kid.as_deref(), alg, kty);
        let (family, curve, key) = match kty {
            "RSA" => {
                let n = str_param("n")?;
                let e = str_param("e")?;
                let n_bytes = decode("n")?;
                // Counted in bits, from the top byte's leading zeros: a 2047-bit modulus is
                // 256 bytes long and still too short.
                let bits = bit_length(&n_bytes);
                if bits < MIN_RSA_BITS {
                    return Err(KeyError::WeakRsaKey(bits));
                }
                let key = DecodingKey::from_rsa_components(n, e)
                    .map_err(|_| KeyError::BadParameter("e"))?;
                fingerprint.integer(&n_bytes).integer(&decode("e")?);
                (AlgorithmFamily::Rsa, None, key)
            }
            "EC" => {
                let (crv, name) = match str_param("crv")? {
                    "P-256" => (Curve::P256, "P-256"),
                    "P-384" => (Curve::P384, "P-384"),
                    other => return Err(KeyError::UnsupportedCurve(other.to_owned())),
                };
                let key = DecodingKey::from_ec_components(str_param("x")?, str_param("y")?)
                    .map_err(|_| KeyError::InvalidKeyMaterial)?;
                fingerprint
                    .field(name.as_bytes())
                    .field(&decode("x")?)
                    .field(&decode("y")?);
                (AlgorithmFamily::Ec, Some(crv), key)
            }
            "OKP" => {
                match str_param("crv")? {
                    "Ed25519" => {}
                    other => return Err(KeyError::UnsupportedCurve(other.to_owned())),
                }
                let x = str_param("x")?;
                let point = decode("x")?;
                // A small-order point "verifies" forged signatures (R = identity, S = 0 passes
                // cofactorless verification for every message), so it is never a key.
                if point.len() != 32 || is_small_order_ed25519(&point) {
                    return Err(KeyError::InvalidKeyMaterial);
                }
                let key =
                    DecodingKey::from_ed_components(x).map_err(|_| KeyError::BadParameter("x"))?;
                fingerprint.field(b"Ed25519").field(&point);
                (AlgorithmFamily::Ed, Some(Curve::Ed25519), key)
            }
            "oct" => return Err(KeyError::SymmetricKeyInJwks),
            other => return Err(KeyError::UnsupportedKeyType(other.to_owned())),
        };
        let key = Self {
            kid,
            alg,
            family,
            curve,
            key,
            fingerprint: fingerprint.finish(),
        };
        if let Some(alg) = key.alg {
            if !key.fits(alg) {
                return Err(KeyError::UnsupportedAlgorithm(format!("{alg:?}")));
            }
        }
        Ok(key)
    }

    /// A shared-secret (HMAC) key. Tokens signed with HS256/384/512 are accepted only with a key
    /// made here *and* those algorithms added to the allow-list explicitly.
    pub fn from_shared_secret(kid: Option<String>, secret: &[u8]) -> Self {
        let mut fingerprint = Fingerprint::new(kid.as_deref(), None, "oct");
        fingerprint.field(secret);
        Self {
            kid,
            alg: None,
            family: AlgorithmFamily::Hmac,
            curve: None,
            key: DecodingKey::from_secret(secret),
            fingerprint: fingerprint.finish(),
        }
    }

    /// Whether `other` is the same key: same `kid`, `alg`, key type, curve and key material
    /// (compared by a SHA-256 fingerprint computed when the key was parsed). Key use and
    /// `key_ops` only decide whether a key is kept at all, so they are not compared.
    pub fn same_key(&self, other: &VerificationKey) -> bool {
        self.fingerprint == other.fingerprint
    }

    /// The key id.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The key's own `alg`, when the JWK had one.
    pub fn alg(&self) -> Option<Algorithm> {
        self.alg
    }

    /// Whether a token signed with `alg` may be verified with this key: the algorithm family
    /// matches the key type, the curve matches, and the JWK's own `alg`, if any, is the same.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.alg.is_none_or(|own| own == alg) && self.fits(alg)
    }

    fn fits(&self, alg: Algorithm) -> bool {
        alg.family() == self.family
            && match (self.curve, alg) {
                (None, _) => true,
                (Some(Curve::P256), Algorithm::ES256)
                | (Some(Curve::P384), Algorithm::ES384)
                | (Some(Curve::Ed25519), Algorithm::EdDSA) => true,
                (Some(_), _) => false,
            }
    }

    /// Verifies `signature` over `message` with `alg`. Callers check [`accepts`](Self::accepts) first.
    pub fn verify(
        &self,
        alg: Algorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), Rejection> {
        if !self.accepts(alg) {
            return Err(Rejection::KeyAlgorithmMismatch);
        }
        let verifier =
            (jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.verifier_factory)(&alg, &self.key)
                .map_err(|_| Rejection::KeyAlgorithmMismatch)?;
        verifier
            .verify(message, &signature.to_vec())
            .map_err(|_| Rejection::BadSignature)
    }

    /// This key in aws-lc's parsed form for one asymmetric `alg`, so that verifying with it
    /// does not decode the key again (the DPoP proof-key cache holds these).
    ///
    /// [`Rejection::KeyAlgorithmMismatch`] when the key does not [`accept`](Self::accepts)
    /// `alg` (and for HMAC, which has no parsed form); [`Rejection::BadSignature`] when aws-lc
    /// refuses the key material (a point not on the curve) — what [`verify`](Self::verify)
    /// answers for such a key, which it parses on every call.
    pub(crate) fn prepare(&self, alg: Algorithm) -> Result<PreparedKey, Rejection> {
        use aws_lc_rs::signature as sig;
        use jsonwebtoken::DecodingKeyKind;
        if !self.accepts(alg) {
            return Err(Rejection::KeyAlgorithmMismatch);
        }
        // The same aws-lc algorithms jsonwebtoken's aws-lc verifiers use for these `alg`s.
        let rsa: &'static sig::RsaParameters = match alg {
            Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
            Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
            Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
            Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
            Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
            _ => {
                let algorithm: &'static dyn sig::VerificationAlgorithm = match alg {
                    Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
                    Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
                    Algorithm::EdDSA => &sig::ED25519,
                    _ => return Err(Rejection::KeyAlgorithmMismatch),
                };
                let DecodingKeyKind::SecretOrDer(bytes) = self.key.kind() else {
                    return Err(Rejection::KeyAlgorithmMismatch);
                };
                let key = sig::ParsedPublicKey::new(algorithm, bytes)
                    .map_err(|_| Rejection::BadSignature)?;
                return Ok(PreparedKey { key });
            }
        };
        let DecodingKeyKind::RsaModulusExponent { n, e } = self.key.kind() else {
            return Err(Rejection::KeyAlgorithmMismatch);
        };
        let key = sig::RsaPublicKeyComponents { n, e }
            .to_parsed_public_key(rsa)
            .map_err(|_| Rejection::BadSignature)?;
        Ok(PreparedKey { key })
    }
}

/// A public key parsed by aws-lc for one algorithm ([`VerificationKey::prepare`]): verifying
/// with it is aws-lc's signature check alone.
#[derive(Clone)]
pub(crate) struct PreparedKey {
    key: aws_lc_rs::signature::ParsedPublicKey,
}

impl PreparedKey {
    /// Verifies `signature` over `message` with the key and algorithm it was prepared for.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), Rejection> {
        self.key
            .verify_sig(message, signature)
            .map_err(|_| Rejection::BadSignature)
    }
}

impl fmt::Debug for PreparedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedKey").finish_non_exhaustive()
    }
}

/// Whether a 32-byte Ed25519 public key encodes a point of small order (1, 2, 4 or 8),
/// including the non-canonical encodings y = p and y = p + 1. The sign bit is ignored.
fn is_small_order_ed25519(point: &[u8]) -> bool {
    const fn y(lo: u8, fill: u8, hi: u8) -> [u8; 32] {
        let mut b = [fill; 32];
        b[0] = lo;
        b[31] = hi;
        b
    }
    const SMALL_ORDER: [[u8; 32]; 7] = [
        y(0x00, 0x00, 0x00), // y = 0, order 4
        y(0x01, 0x00, 0x00), // y = 1, the identity
        [
            0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef,
            0x98, 0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88,
            0x6d, 0x53, 0xfc, 0x05,
        ], // order 8
        [
            0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10,
            0x67, 0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77,
            0x92, 0xac, 0x03, 0x7a,
        ], // order 8
        y(0xec, 0xff, 0x7f), // y = p - 1, order 2
        y(0xed, 0xff, 0x7f), // y = p ≡ 0
        y(0xee, 0xff, 0x7f), // y = p + 1 ≡ 1
    ];
    let Ok(bytes) = <[u8; 32]>::try_from(point) else {
        return false;
    };
    SMALL_ORDER
        .iter()
        .any(|bad| bytes[..31] == bad[..31] && bytes[31] & 0x7f == bad[31])
}

/// A JWK that was skipped when a key set was parsed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    /// The key's `kid`, if it had a string one.
    pub kid: Option<String>,
    /// Why it was skipped.
    pub reason: KeyError,
}

/// Why a JWKS document was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// Not a JSON object with a `keys` array (or duplicate member names, or trailing data).
    #[error("JWKS document is not valid JSON of the form {{\"keys\":[…]}}: {0}")]
    Malformed(#[source] MalformedJwks),
    /// The document has no key that can verify signatures.
    #[error("JWKS document has no usable signing key ({skipped} skipped)")]
    NoUsableKey {
        /// How many keys were skipped.
        skipped: usize,
    },
}

/// What is wrong with a document that is not a JWKS at all ([`JwksError::Malformed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedJwks {
    /// Not a JSON object (or duplicate member names, or trailing data).
    #[error(transparent)]
    Json(#[from] JsonError),
    /// A JSON object without a `keys` array.
    #[error("no \"keys\" array")]
    NoKeysArray,
}

/// The result of parsing a JWKS document.
#[derive(Debug, Clone)]
pub struct ParsedJwks {
    /// The usable keys.
    pub keys: KeySet,
    /// The keys that were skipped, with reasons (log them as warnings).
    pub skipped: Vec<SkippedKey>,
}

/// An immutable set of verification keys, indexed by `kid`.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Arc<VerificationKey>>,
    by_kid: HashMap<String, Vec<usize>>,
}

/// Why no key was found for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyLookupError {
    /// No key with this `kid` (or, for a token without `kid`, not exactly one candidate key).
    #[error("no key with this kid (or, without a kid, not exactly one key for the algorithm)")]
    UnknownKid,
    /// A key with this `kid` exists but does not fit the token's `alg`.
    #[error("the key with this kid does not fit the token's alg")]
    AlgorithmMismatch,
}

impl From<KeyLookupError> for Rejection {
    fn from(e: KeyLookupError) -> Self {
        match e {
            KeyLookupError::UnknownKid => Rejection::UnknownKey,
            KeyLookupError::AlgorithmMismatch => Rejection::KeyAlgorithmMismatch,
        }
    }
}

impl KeySet {
    /// Parses a JWKS document; see the module docs for what is skipped.
    pub fn from_jwks(document: &[u8]) -> Result<ParsedJwks, JwksError> {
        let doc =
            parse_object(document).map_err(|e| JwksError::Malformed(MalformedJwks::Json(e)))?;
        let Some(Value::Array(entries)) = doc.get("keys") else {
            return Err(JwksError::Malformed(MalformedJwks::NoKeysArray));
        };
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for entry in entries {
            let Value::Object(jwk) = entry else {
                skipped.push(SkippedKey {
                    kid: None,
                    reason: KeyError::BadParameter("kty"),
                });
                continue;
            };
            match VerificationKey::from_jwk(jwk) {
                Ok(key) => keys.push(key),
                Err(reason) => skipped.push(SkippedKey {
                    kid: jwk.get("kid").and_then(Value::as_str).map(str::to_owned),
                    reason,
                }),
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey {
                skipped: skipped.len(),
            });
        }
        Ok(ParsedJwks {
            keys: Self::new(keys),
            skipped,
        })
    }

    /// A key set from keys made by hand (e.g. [`VerificationKey::from_shared_secret`]).
    pub fn new(keys: impl IntoIterator<Item = VerificationKey>) -> Self {
        let keys: Vec<_> = keys.into_iter().map(Arc::new).collect();
        let mut by_kid: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            if let Some(kid) = k.kid() {
                by_kid.entry(kid.to_owned()).or_default().push(i);
            }
        }
        Self { keys, by_kid }
    }

    /// Finds the key for a token's `kid` and `alg`.
    ///
    /// A token without `kid` is verified only when exactly one key in the set fits its `alg`;
    /// certbound never tries several keys in turn.
    pub fn get(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<&Arc<VerificationKey>, KeyLookupError> {
        match kid {
            Some(kid) => {
                let candidates = self.by_kid.get(kid).ok_or(KeyLookupError::UnknownKid)?;
                candidates
                    .iter()
                    .filter_map(|&i| self.keys.get(i))
                    .find(|k| k.accepts(alg))
                    .ok_or(KeyLookupError::AlgorithmMismatch)
            }
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.accepts(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(k), None) => Ok(k),
                    _ => Err(KeyLookupError::UnknownKid),
                }
            }
        }
    }

    /// Carries key identity across a refetch: every key of this set that is also in `previous`
    /// ([`VerificationKey::same_key`]: same `kid`, `alg`, type, curve and material) is replaced
    /// by `previous`'s `Arc`, so whoever holds that `Arc` — the verified-token cache compares
    /// keys by pointer — sees the key unchanged. A key whose material changed under the same
    /// `kid`, or that is not in this set, keeps no identity. Returns how many keys were carried
    /// over.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use certbound_core::{Algorithm, KeySet};
    ///
    /// let jwks = br#"{"keys":[{"kty":"EC","crv":"P-256","kid":"ec-1",
    ///   "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    ///   "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
    /// let old = KeySet::from_jwks(jwks).unwrap().keys;
    /// let mut new = KeySet::from_jwks(jwks).unwrap().keys;
    /// assert_eq!(new.adopt_unchanged(&old), 1);
    /// assert!(Arc::ptr_eq(
    ///     new.get(Some("ec-1"), Algorithm::ES256).unwrap(),
    ///     old.get(Some("ec-1"), Algorithm::ES256).unwrap(),
    /// ));
    /// ```
    pub fn adopt_unchanged(&mut self, previous: &KeySet) -> usize {
        let known: HashMap<[u8; 32], &Arc<VerificationKey>> =
            previous.keys.iter().map(|k| (k.fingerprint, k)).collect();
        let mut adopted = 0;
        for key in &mut self.keys {
            if let Some(old) = known.get(&key.fingerprint) {
                *key = Arc::clone(old);
                adopted += 1;
            }
        }
        adopted
    }

    /// Whether a key with this `kid` is in the set.
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    /// The key ids in the set (for logs and diagnostics).
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().filter_map(|k| k.kid())
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EC_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const EC_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    fn ec(extra: &str) -> String {
        format!(r#"{{"kty":"EC","crv":"P-256","x":"{EC_X}","y":"{EC_Y}"{extra}}}"#)
    }

    fn rsa_n(bits: usize) -> String {
        let mut n = vec![0xffu8; bits / 8];
        n[bits / 8 - 1] = 0xfd;
        URL_SAFE_NO_PAD.encode(n)
    }

    #[test]
    fn skips_unusable_keys_with_reasons() {
        let weak_rsa = format!(
            r#"{{"kty":"RSA","kid":"weak","n":"{}","e":"AQAB"}}"#,
            rsa_n(1024)
        );
        let doc = format!(
            r#"{{"keys":[{},{},{},{},{},{},{},{}]}}"#,
            ec(r#","kid":"good""#),
            ec(r#","kid":"enc","use":"enc""#),
            ec(r#","kid":"ops","key_ops":["encrypt"]"#),
            r#"{"kty":"oct","kid":"hmac","k":"c2VjcmV0"}"#,
            r#"{"kty":"XYZ","kid":"odd"}"#,
            weak_rsa,
            r#"{"kty":"EC","kid":"p521","crv":"P-521","x":"AA","y":"AA"}"#,
            ec(r#","kid":"badalg","alg":"RS256""#),
        );
        let parsed = KeySet::from_jwks(doc.as_bytes()).unwrap();
        assert_eq!(parsed.keys.kids().collect::<Vec<_>>(), ["good"]);
        let reasons: Vec<_> = parsed
            .skipped
            .iter()
            .map(|s| (s.kid.as_deref(), s.reason.clone()))
            .collect();
        assert_eq!(
            reasons,
            [
                (Some("enc"), KeyError::NotForVerification),
                (Some("ops"), KeyError::NotForVerification),
                (Some("hmac"), KeyError::SymmetricKeyInJwks),
                (Some("odd"), KeyError::UnsupportedKeyType("XYZ".into())),
                (Some("weak"), KeyError::WeakRsaKey(1024)),
                (Some("p521"), KeyError::UnsupportedCurve("P-521".into())),
                (
                    Some("badalg"),
                    KeyError::UnsupportedAlgorithm("RS256".into())
                ),
            ]
        );
    }

    fn rsa_doc(n: &[u8]) -> String {
        format!(
            r#"{{"keys":[{{"kty":"RSA","kid":"r","n":"{}","e":"AQAB"}}]}}"#,
            URL_SAFE_NO_PAD.encode(n)
        )
    }

    /// A modulus of exactly `bits` bits (top bit set), preceded by `zeros` zero bytes.
    fn modulus(bits: usize, zeros: usize) -> Vec<u8> {
        let len = bits.div_ceil(8);
        let mut n = vec![0u8; zeros];
        n.extend(std::iter::repeat_n(0xffu8, len));
        let top_bits = bits - (len - 1) * 8;
        n[zeros] = 0xff >> (8 - top_bits);
        n
    }

    #[test]
    fn the_rsa_floor_counts_bits_not_bytes() {
        for (bits, zeros) in [
            (2047, 0),
            (2041, 0),
            (2047, 1),
            (2047, 3),
            (2040, 0),
            (1, 2),
        ] {
            let doc = rsa_doc(&modulus(bits, zeros));
            assert_eq!(
                KeySet::from_jwks(doc.as_bytes()).err(),
                Some(JwksError::NoUsableKey { skipped: 1 }),
                "{bits} bits after {zeros} zero bytes"
            );
            let jwk: Value = serde_json::from_str(&doc).unwrap();
            assert_eq!(
                VerificationKey::from_jwk(jwk["keys"][0].as_object().unwrap()).err(),
                Some(KeyError::WeakRsaKey(bits)),
                "{bits} bits after {zeros} zero bytes"
            );
        }
        for (bits, zeros) in [(2048, 0), (2048, 2), (3071, 0), (4096, 1)] {
            let parsed = KeySet::from_jwks(rsa_doc(&modulus(bits, zeros)).as_bytes()).unwrap();
            assert!(
                parsed.keys.get(Some("r"), Algorithm::RS256).is_ok(),
                "{bits} bits after {zeros} zero bytes"
            );
        }
        // Nothing but zero bytes, or nothing at all: zero bits.
        for n in [&[][..], &[0, 0, 0]] {
            let jwk: Value = serde_json::from_str(&rsa_doc(n)).unwrap();
            assert_eq!(
                VerificationKey::from_jwk(jwk["keys"][0].as_object().unwrap()).err(),
                Some(KeyError::WeakRsaKey(0))
            );
        }
        assert_eq!(bit_length(&[0x00, 0x01]), 1);
        assert_eq!(bit_length(&[0x80, 0x00]), 16);
    }

    const EC2_X: &str = "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4";
    const EC2_Y: &str = "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM";

    fn key(jwk: &str) -> VerificationKey {
        let jwk: Map<String, Value> = serde_json::from_str(jwk).unwrap();
        VerificationKey::from_jwk(&jwk).unwrap()
    }

    #[test]
    fn same_key_compares_kid_alg_type_and_material() {
        let base = key(&ec(r#","kid":"a","alg":"ES256""#));
        // Members that do not change the key: use, key_ops, member order, other members.
        for same in [
            ec(r#","kid":"a","alg":"ES256","use":"sig""#),
            ec(r#","alg":"ES256","kid":"a","key_ops":["verify"],"x5t":"whatever""#),
        ] {
            assert!(base.same_key(&key(&same)), "{same}");
        }
        let other_point = format!(
            r#"{{"kty":"EC","crv":"P-256","kid":"a","alg":"ES256","x":"{EC2_X}","y":"{EC2_Y}"}}"#
        );
        for different in [
            ec(r#","kid":"b","alg":"ES256""#),
            ec(r#","alg":"ES256""#),
            ec(r#","kid":"a""#),
            other_point,
        ] {
            assert!(!base.same_key(&key(&different)), "{different}");
        }
        // RSA integers compare by value: leading zero bytes do not make another key.
        let rsa = |n: &[u8], e: &str| {
            key(&format!(
                r#"{{"kty":"RSA","kid":"r","n":"{}","e":"{e}"}}"#,
                URL_SAFE_NO_PAD.encode(n)
            ))
        };
        let n = modulus(2048, 0);
        assert!(rsa(&n, "AQAB").same_key(&rsa(&modulus(2048, 1), "AQAB")));
        assert!(rsa(&n, "AQAB").same_key(&rsa(&n, "AAEAAQ")));
        assert!(!rsa(&n, "AQAB").same_key(&rsa(&n, "Aw")));
        assert!(!rsa(&n, "AQAB").same_key(&rsa(&modulus(2049, 0), "AQAB")));
        // Shared secrets: by kid and secret.
        let hs = |kid: &str, secret: &[u8]| {
            VerificationKey::from_shared_secret(Some(kid.into()), secret)
        };
        assert!(hs("h", &[1; 32]).same_key(&hs("h", &[1; 32])));
        assert!(!hs("h", &[1; 32]).same_key(&hs("h", &[2; 32])));
        assert!(!hs("h", &[1; 32]).same_key(&hs("i", &[1; 32])));
    }

    #[test]
    fn adopt_unchanged_keeps_identity_only_for_unchanged_keys() {
        let doc = |keys: &[String]| {
            KeySet::from_jwks(format!(r#"{{"keys":[{}]}}"#, keys.join(",")).as_bytes())
                .unwrap()
                .keys
        };
        let moved = |kid: &str| {
            format!(r#"{{"kty":"EC","crv":"P-256","kid":"{kid}","x":"{EC2_X}","y":"{EC2_Y}"}}"#)
        };
        let old = doc(&[
            ec(r#","kid":"stays""#),
            ec(r#","kid":"changes""#),
            ec(r#","kid":"leaves""#),
        ]);
        let mut new = doc(&[
            ec(r#","kid":"stays""#),
            moved("changes"),
            ec(r#","kid":"arrives""#),
        ]);
        assert_eq!(new.adopt_unchanged(&old), 1);
        let get =
            |set: &KeySet, kid: &str| Arc::clone(set.get(Some(kid), Algorithm::ES256).unwrap());
        assert!(Arc::ptr_eq(&get(&new, "stays"), &get(&old, "stays")));
        assert!(!Arc::ptr_eq(&get(&new, "changes"), &get(&old, "changes")));
        assert!(!get(&new, "changes").same_key(&get(&old, "changes")));
        assert!(new.get(Some("leaves"), Algorithm::ES256).is_err());
        assert_eq!(
            new.kids().collect::<Vec<_>>(),
            ["stays", "changes", "arrives"]
        );
        // Idempotent, and a set adopting from itself changes nothing.
        assert_eq!(new.adopt_unchanged(&old), 1);
        let again = new.clone();
        assert_eq!(new.adopt_unchanged(&again), 3);
        assert!(Arc::ptr_eq(&get(&new, "arrives"), &get(&again, "arrives")));
    }

    #[test]
    fn rsa_2048_is_accepted() {
        let doc = format!(
            r#"{{"keys":[{{"kty":"RSA","kid":"r","n":"{}","e":"AQAB"}}]}}"#,
            rsa_n(2048)
        );
        let parsed = KeySet::from_jwks(doc.as_bytes()).unwrap();
        assert!(parsed.keys.get(Some("r"), Algorithm::RS256).is_ok());
        assert!(parsed.keys.get(Some("r"), Algorithm::PS512).is_ok());
        assert_eq!(
            parsed.keys.get(Some("r"), Algorithm::ES256).err(),
            Some(KeyLookupError::AlgorithmMismatch)
        );
        assert_eq!(
            parsed.keys.get(Some("r"), Algorithm::HS256).err(),
            Some(KeyLookupError::AlgorithmMismatch)
        );
    }

    #[test]
    fn malformed_documents_say_why() {
        use crate::jose::JsonError;
        let malformed = |doc: &str| match KeySet::from_jwks(doc.as_bytes()) {
            Err(JwksError::Malformed(why)) => why,
            other => panic!("{doc}: {other:?}"),
        };
        assert_eq!(malformed("{}"), MalformedJwks::NoKeysArray);
        assert_eq!(malformed(r#"{"keys":{}}"#), MalformedJwks::NoKeysArray);
        assert_eq!(malformed("[]"), MalformedJwks::Json(JsonError::NotAnObject));
        assert!(matches!(
            malformed(""),
            MalformedJwks::Json(JsonError::Truncated { .. })
        ));
        assert!(matches!(
            malformed(r#"{"keys":[],"keys":[]}"#),
            MalformedJwks::Json(JsonError::DuplicateMember { .. })
        ));
        let error = KeySet::from_jwks(b"{}").unwrap_err();
        assert!(
            error.to_string().ends_with(r#": no "keys" array"#),
            "{error}"
        );
        assert!(std::error::Error::source(&error).is_some());
        // KeyLookupError is an Error too.
        let lookup: &dyn std::error::Error = &KeyLookupError::AlgorithmMismatch;
        assert!(lookup.to_string().contains("alg"));
    }

    #[test]
    fn whole_document_errors() {
        for doc in ["", "[]", "{}", r#"{"keys":{}}"#, r#"{"keys":[],"keys":[]}"#] {
            assert!(
                matches!(
                    KeySet::from_jwks(doc.as_bytes()),
                    Err(JwksError::Malformed(_))
                ),
                "{doc}"
            );
        }
        assert_eq!(
            KeySet::from_jwks(br#"{"keys":[{"kty":"oct","k":"AA"}]}"#).err(),
            Some(JwksError::NoUsableKey { skipped: 1 })
        );
    }

    #[test]
    fn small_order_ed25519_keys_are_skipped() {
        // Every small-order encoding, with and without the sign bit, is refused; a real key
        // (RFC 8032 §7.1 test 1) is kept.
        let mut bad: Vec<[u8; 32]> = Vec::new();
        for hex in [
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0100000000000000000000000000000000000000000000000000000000000000",
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        ] {
            let mut b = [0u8; 32];
            for (i, out) in b.iter_mut().enumerate() {
                *out = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
            }
            bad.push(b);
            b[31] ^= 0x80;
            bad.push(b);
        }
        for point in bad {
            let jwk = format!(
                r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#,
                URL_SAFE_NO_PAD.encode(point)
            );
            let jwk: Map<String, Value> = serde_json::from_str(&jwk).unwrap();
            assert_eq!(
                VerificationKey::from_jwk(&jwk).err(),
                Some(KeyError::InvalidKeyMaterial),
                "{point:02x?}"
            );
        }
        let short: Map<String, Value> =
            serde_json::from_str(r#"{"kty":"OKP","crv":"Ed25519","x":"AAEC"}"#).unwrap();
        assert_eq!(
            VerificationKey::from_jwk(&short).err(),
            Some(KeyError::InvalidKeyMaterial)
        );
        let real: Map<String, Value> = serde_json::from_str(
            r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#,
        )
        .unwrap();
        assert!(VerificationKey::from_jwk(&real).is_ok());
    }

    #[test]
    fn lookup_rules() {
        let doc = format!(
            r#"{{"keys":[{},{}]}}"#,
            ec(r#","kid":"a","alg":"ES256""#),
            ec(r#","kid":"b""#)
        );
        let set = KeySet::from_jwks(doc.as_bytes()).unwrap().keys;
        assert!(set.get(Some("a"), Algorithm::ES256).is_ok());
        assert_eq!(
            set.get(Some("a"), Algorithm::ES384).err(),
            Some(KeyLookupError::AlgorithmMismatch)
        );
        assert_eq!(
            set.get(Some("zz"), Algorithm::ES256).err(),
            Some(KeyLookupError::UnknownKid)
        );
        // Two candidates and no kid: refuse rather than try each.
        assert_eq!(
            set.get(None, Algorithm::ES256).err(),
            Some(KeyLookupError::UnknownKid)
        );
        let one = KeySet::from_jwks(format!(r#"{{"keys":[{}]}}"#, ec("")).as_bytes())
            .unwrap()
            .keys;
        assert!(one.get(None, Algorithm::ES256).is_ok());
    }
}
