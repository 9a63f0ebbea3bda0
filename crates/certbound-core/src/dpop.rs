//! DPoP proofs (RFC 9449): the checks of §4.3, the RFC 7638 thumbprint that `cnf.jkt` carries,
//! and the `htu` normalisation — pure functions of the proof, the access token, the request and
//! `now`. (A policy keeps the keys of proof headers that verified, bounded, so a client's later
//! proofs cost little more than their signature; no verdict depends on it.)
//!
//! ```
//! use certbound_core::{normalize_htu, DpopPolicy, ProofRequest};
//! use certbound_core::Rejection;
//!
//! // Scheme and host case and the default port do not matter; query and fragment are ignored.
//! assert_eq!(
//!     normalize_htu("HTTPS://API.Example:443/accounts?page=2#top").as_deref(),
//!     Some("https://api.example/accounts")
//! );
//! let policy = DpopPolicy::default();
//! let request = ProofRequest::new("GET", "https://api.example/accounts");
//! let err = policy.verify_proof("not.a.proof", "token", &request, 1_800_000_000).unwrap_err();
//! assert_eq!(err, Rejection::MalformedDpopProof);
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::jose::{b64url, parse_algorithm, parse_object, CompactJws, ED25519_ALG};
use crate::keys::PreparedKey;
use crate::{Algorithm, Rejection, Thumbprint, UnverifiedToken, VerificationKey};

/// The default proof algorithms: ES256, ES384, PS256, EdDSA (RS256 only when added).
pub const DEFAULT_DPOP_ALGORITHMS: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::PS256,
    Algorithm::EdDSA,
];

/// Default acceptance window for a proof's `iat`, either side of `now`.
pub const DEFAULT_IAT_WINDOW: Duration = Duration::from_secs(60);

/// Largest accepted proof, in bytes.
pub const DEFAULT_MAX_PROOF_LEN: usize = 8 * 1024;

/// Longest accepted `jti`, in bytes.
pub const MAX_JTI_LEN: usize = 256;

/// Default number of proof keys [`DpopPolicy`] keeps ready (see
/// [`key_cache_capacity`](DpopPolicy::key_cache_capacity)).
pub const DEFAULT_KEY_CACHE_CAPACITY: usize = 1024;

/// Longest proof header (base64url, as sent) whose key is kept: an RSA-4096 `jwk` fits.
pub const MAX_CACHED_HEADER_LEN: usize = 2048;

/// How DPoP proofs are checked.
///
/// A client sends the same proof header (`typ`, `alg`, `jwk`) on every request, so the policy
/// keeps what that header yields once a proof under it has verified: the `alg`, the key parsed
/// for it and its RFC 7638 thumbprint, keyed by the header's exact bytes (bounded: see
/// [`key_cache_capacity`](Self::key_cache_capacity)). A proof whose header is in the cache
/// skips decoding and checking the header again — its bytes are the ones that passed — and is
/// otherwise checked in full: signature, claims, and the `alg` allow-list of *this* policy.
/// Clones share the cache.
#[derive(Debug, Clone)]
pub struct DpopPolicy {
    algorithms: Vec<Algorithm>,
    iat_window_secs: u64,
    max_proof_len: usize,
    keys: Arc<ProofKeyCache>,
}

impl Default for DpopPolicy {
    fn default() -> Self {
        Self {
            algorithms: DEFAULT_DPOP_ALGORITHMS.to_vec(),
            iat_window_secs: DEFAULT_IAT_WINDOW.as_secs(),
            max_proof_len: DEFAULT_MAX_PROOF_LEN,
            keys: Arc::new(ProofKeyCache::new(DEFAULT_KEY_CACHE_CAPACITY)),
        }
    }
}

/// What a proof header that verified once yields.
#[derive(Debug)]
struct ProofKey {
    alg: Algorithm,
    key: PreparedKey,
    jkt: Thumbprint,
}

/// Proof header (exact base64url bytes) → [`ProofKey`], bounded: two generations of at most
/// `capacity / 2` entries each; when the current one is full it becomes the previous one and
/// the previous one is dropped, and a hit in the previous generation moves to the current one.
/// Only headers no longer than [`MAX_CACHED_HEADER_LEN`] are kept, so the cache holds at most
/// `capacity` × (2 KiB + one public key).
struct ProofKeyCache {
    generation: usize,
    maps: Mutex<[HashMap<Box<str>, Arc<ProofKey>>; 2]>,
}

impl std::fmt::Debug for ProofKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let maps = self.maps.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("ProofKeyCache")
            .field("capacity", &self.generation.saturating_mul(2))
            .field("len", &maps[0].len().saturating_add(maps[1].len()))
            .finish()
    }
}

impl ProofKeyCache {
    fn new(capacity: usize) -> Self {
        Self {
            generation: capacity / 2,
            maps: Mutex::new([HashMap::new(), HashMap::new()]),
        }
    }

    fn get(&self, header: &str) -> Option<Arc<ProofKey>> {
        if self.generation == 0 {
            return None;
        }
        let mut maps = self.maps.lock().unwrap_or_else(PoisonError::into_inner);
        let [current, previous] = &mut *maps;
        if let Some(hit) = current.get(header) {
            return Some(hit.clone());
        }
        let (header, hit) = previous.remove_entry(header)?;
        Self::insert_into(self.generation, &mut maps, header, hit.clone());
        Some(hit)
    }

    fn insert(&self, header: &str, key: ProofKey) {
        if self.generation == 0 || header.len() > MAX_CACHED_HEADER_LEN {
            return;
        }
        let mut maps = self.maps.lock().unwrap_or_else(PoisonError::into_inner);
        Self::insert_into(self.generation, &mut maps, header.into(), Arc::new(key));
    }

    fn insert_into(
        generation: usize,
        maps: &mut [HashMap<Box<str>, Arc<ProofKey>>; 2],
        header: Box<str>,
        key: Arc<ProofKey>,
    ) {
        if maps[0].len() >= generation && !maps[0].contains_key(&header) {
            maps[1] = std::mem::take(&mut maps[0]);
        }
        maps[0].insert(header, key);
    }

    fn len(&self) -> usize {
        let maps = self.maps.lock().unwrap_or_else(PoisonError::into_inner);
        maps[0].len().saturating_add(maps[1].len())
    }
}

/// The request a proof must be for: its method and its URI (any form [`normalize_htu`] reads).
#[derive(Debug, Clone, Copy)]
pub struct ProofRequest<'a> {
    method: &'a str,
    uri: &'a str,
}

impl<'a> ProofRequest<'a> {
    /// `method` as sent (`GET`, case-sensitive), `uri` the absolute URI the client used.
    pub fn new(method: &'a str, uri: &'a str) -> Self {
        Self { method, uri }
    }
    /// The method.
    pub fn method(&self) -> &'a str {
        self.method
    }
    /// The URI.
    pub fn uri(&self) -> &'a str {
        self.uri
    }
}

/// A proof whose signature and claims held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    jkt: Thumbprint,
    jti: String,
    iat: u64,
    nonce: Option<String>,
}

impl VerifiedProof {
    /// The RFC 7638 thumbprint of the proof's key: what `cnf.jkt` must equal.
    pub fn jkt(&self) -> &Thumbprint {
        &self.jkt
    }
    /// `jti`, for the replay check.
    pub fn jti(&self) -> &str {
        &self.jti
    }
    /// `iat`, Unix seconds.
    pub fn iat(&self) -> u64 {
        self.iat
    }
    /// `nonce`, when the proof carries one.
    pub fn nonce(&self) -> Option<&str> {
        self.nonce.as_deref()
    }
    /// The replay-cache key: SHA-256 over the key thumbprint and the `jti` (fixed size, and
    /// never the client's text as a store key).
    pub fn replay_key(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(self.jkt.as_bytes());
        hash.update((self.jti.len() as u64).to_be_bytes());
        hash.update(self.jti.as_bytes());
        hash.finalize().into()
    }
}

impl DpopPolicy {
    /// A policy with the default algorithms and window.
    pub fn new() -> Self {
        Self::default()
    }

    /// The proof-algorithm allow-list (`none` and HMAC are never accepted, whatever is listed).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms
            .into_iter()
            .filter(|a| !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
            .collect();
        self
    }

    /// How far a proof's `iat` may be from `now`, either way (default 60 s).
    pub fn iat_window(mut self, window: Duration) -> Self {
        self.iat_window_secs = window.as_secs();
        self
    }

    /// Largest accepted proof, in bytes (default 8 KiB).
    pub fn max_proof_len(mut self, bytes: usize) -> Self {
        self.max_proof_len = bytes;
        self
    }

    /// How many proof headers' keys are kept ready (default [`DEFAULT_KEY_CACHE_CAPACITY`];
    /// below 2 turns the cache off). Each entry holds at most [`MAX_CACHED_HEADER_LEN`] bytes
    /// of header and one public key; a client whose entry was dropped pays for parsing its
    /// header once more. Starts a new, empty cache (not shared with earlier clones).
    pub fn key_cache_capacity(mut self, entries: usize) -> Self {
        self.keys = Arc::new(ProofKeyCache::new(entries));
        self
    }

    /// How many proof headers' keys are cached now.
    pub fn cached_keys(&self) -> usize {
        self.keys.len()
    }

    /// The allow-list, for the `algs` challenge parameter and RFC 9728 metadata.
    pub fn allowed_algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// The `alg` names a proof may carry, for the `DPoP` challenge's `algs` and the RFC 9728
    /// metadata: each allowed algorithm, and `Ed25519` (RFC 9864) beside `EdDSA`.
    pub fn algorithm_names(&self) -> Vec<String> {
        let mut names = Vec::with_capacity(self.algorithms.len().saturating_add(1));
        for alg in &self.algorithms {
            names.push(format!("{alg:?}"));
            if *alg == Algorithm::EdDSA {
                names.push(ED25519_ALG.to_owned());
            }
        }
        names
    }

    /// The `iat` window in seconds; a replay store keeps a `jti` at least this long either side.
    pub fn iat_window_secs(&self) -> u64 {
        self.iat_window_secs
    }

    /// RFC 9449 §4.3, every check but the replay and the nonce (which need state) and the
    /// binding to the token (which the verifier does): a compact JWS, `typ` `dpop+jwt`, an
    /// allowed `alg`, a public asymmetric `jwk` that verifies the signature, `jti`, `htm` =
    /// the request method, `htu` = the request URI (normalised, without query and fragment),
    /// `iat` within the window, `ath` = base64url(SHA-256(access token)).
    pub fn verify_proof(
        &self,
        proof: &str,
        access_token: &str,
        request: &ProofRequest<'_>,
        now: u64,
    ) -> Result<VerifiedProof, Rejection> {
        if proof.len() > self.max_proof_len {
            return Err(Rejection::MalformedDpopProof);
        }
        let parts = CompactJws::split(proof).map_err(|_| Rejection::MalformedDpopProof)?;
        let (claims, jkt) = match self.keys.get(parts.header) {
            // The header's exact bytes passed every header check and verified a signature
            // before; only the allow-list, which is this policy's, is asked again.
            Some(cached) => {
                let claims = b64url(parts.payload).map_err(|_| Rejection::MalformedDpopProof)?;
                let signature =
                    b64url(parts.signature).map_err(|_| Rejection::MalformedDpopProof)?;
                let claims = parse_object(&claims).map_err(|_| Rejection::MalformedDpopProof)?;
                if !self.algorithms.contains(&cached.alg) {
                    return Err(Rejection::DisallowedDpopAlgorithm);
                }
                cached
                    .key
                    .verify(parts.signing_input.as_bytes(), &signature)
                    .map_err(|_| Rejection::BadDpopSignature)?;
                (claims, cached.jkt)
            }
            None => {
                let (parsed, key) = self.check_header(proof)?;
                let jkt = key.jkt;
                self.keys.insert(parts.header, key);
                (parsed.into_claims(), jkt)
            }
        };
        self.check_claims(&claims, jkt, access_token, request, now)
    }

    /// The header checks and the signature, for a header not in the cache: what the cache
    /// keeps when they hold.
    fn check_header<'p>(
        &self,
        proof: &'p str,
    ) -> Result<(UnverifiedToken<'p>, ProofKey), Rejection> {
        let parsed = UnverifiedToken::parse(proof).map_err(|_| Rejection::MalformedDpopProof)?;
        let header = parsed.header();
        if !header
            .typ()
            .is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt"))
        {
            return Err(Rejection::WrongDpopProofType);
        }
        let alg = parse_algorithm(header.alg()).ok_or(Rejection::DisallowedDpopAlgorithm)?;
        if !self.algorithms.contains(&alg) {
            return Err(Rejection::DisallowedDpopAlgorithm);
        }
        if header.crit().is_some() {
            return Err(Rejection::MalformedDpopProof);
        }
        let jwk = header.jwk().ok_or(Rejection::InvalidDpopKey)?;
        if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
            return Err(Rejection::InvalidDpopKey);
        }
        let key = VerificationKey::from_jwk(jwk).map_err(|_| Rejection::InvalidDpopKey)?;
        let jkt = jwk_thumbprint(jwk).ok_or(Rejection::InvalidDpopKey)?;
        let signature_rejection = |rejection| match rejection {
            // The jwk is of another type or curve than `alg` names (a P-384 key under ES256).
            Rejection::KeyAlgorithmMismatch => Rejection::InvalidDpopKey,
            _ => Rejection::BadDpopSignature,
        };
        let key = key.prepare(alg).map_err(signature_rejection)?;
        key.verify(parsed.signing_input(), parsed.signature())
            .map_err(signature_rejection)?;
        Ok((parsed, ProofKey { alg, key, jkt }))
    }

    /// The claims of a proof whose signature held: `jti`, `htm`, `htu`, `iat`, `ath`, `nonce`.
    fn check_claims(
        &self,
        claims: &Map<String, Value>,
        jkt: Thumbprint,
        access_token: &str,
        request: &ProofRequest<'_>,
        now: u64,
    ) -> Result<VerifiedProof, Rejection> {
        let string = |name: &str| match claims.get(name) {
            Some(Value::String(s)) => Ok(s.as_str()),
            _ => Err(Rejection::MalformedDpopProof),
        };
        let jti = string("jti")?;
        if jti.is_empty() || jti.len() > MAX_JTI_LEN {
            return Err(Rejection::MalformedDpopProof);
        }
        if string("htm")? != request.method {
            return Err(Rejection::DpopMethodMismatch);
        }
        let htu = string("htu")?;
        // The common case — the client wrote the URI exactly as the server sees it — needs no
        // normalisation: equal strings normalise equally. Only a URI that normalisation could
        // refuse (not http(s), a percent sign, a non-graphic byte) still goes the long way.
        let same = htu == request.uri
            && (htu.starts_with("https://") || htu.starts_with("http://"))
            && htu
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'%' && b != b'@');
        if !same
            && normalize_htu(htu).ok_or(Rejection::DpopUriMismatch)?
                != normalize_htu(request.uri).ok_or(Rejection::DpopUriMismatch)?
        {
            return Err(Rejection::DpopUriMismatch);
        }
        let iat = match claims.get("iat") {
            Some(Value::Number(n)) => n.as_f64().ok_or(Rejection::MalformedDpopProof)?,
            _ => return Err(Rejection::MalformedDpopProof),
        };
        let (now_f, window) = (now as f64, self.iat_window_secs as f64);
        if !iat.is_finite() || iat > now_f + window || iat < now_f - window {
            return Err(Rejection::DpopProofNotFresh);
        }
        if !ath_matches(string("ath")?, access_token) {
            return Err(Rejection::DpopTokenHashMismatch);
        }
        let nonce = match claims.get("nonce") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(Rejection::MalformedDpopProof),
        };
        Ok(VerifiedProof {
            jkt,
            jti: jti.to_owned(),
            // Finite and within the window of a u64 `now`, so this cast cannot wrap.
            iat: iat.max(0.0) as u64,
            nonce,
        })
    }
}

/// JWK members that only a private key has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// `ath`: base64url(SHA-256(the access token's ASCII bytes)) (RFC 9449 §4.2).
pub fn access_token_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

/// Whether `ath` is exactly [`access_token_hash`]`(access_token)`, without allocating it.
fn ath_matches(ath: &str, access_token: &str) -> bool {
    let mut expected = [0u8; 43]; // base64url of 32 bytes, no padding
    URL_SAFE_NO_PAD
        .encode_slice(Sha256::digest(access_token.as_bytes()), &mut expected)
        .is_ok_and(|n| n == expected.len() && ath.as_bytes() == expected)
}

/// The RFC 7638 SHA-256 thumbprint of a public JWK: the required members, in lexicographic
/// order, as compact JSON. `None` for a key type without a defined thumbprint or a required
/// member that is not a string.
pub fn jwk_thumbprint(jwk: &Map<String, Value>) -> Option<Thumbprint> {
    let members: &[&str] = match jwk.get("kty")?.as_str()? {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        _ => return None,
    };
    // The canonical JSON goes straight into the hash: `{"name":"value",…}`. Member names need
    // no escaping; a value does only if it has a quote, a backslash or a control character
    // (never in base64url or a curve name), and then serde_json writes it.
    let mut hash = Sha256::new();
    hash.update(b"{");
    for (i, name) in members.iter().enumerate() {
        let value = jwk.get(*name)?.as_str()?;
        if i > 0 {
            hash.update(b",");
        }
        hash.update(b"\"");
        hash.update(name.as_bytes());
        hash.update(b"\":");
        if value.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
            hash.update(serde_json::to_string(value).ok()?.as_bytes());
        } else {
            hash.update(b"\"");
            hash.update(value.as_bytes());
            hash.update(b"\"");
        }
    }
    hash.update(b"}");
    Some(Thumbprint::from_bytes(hash.finalize().into()))
}

/// An absolute `http`/`https` URI normalised for comparing `htu` (RFC 9449 §4.3, RFC 3986 §6.2.2
/// and §6.2.3): scheme and host lower-cased, the default port dropped, percent-encodings
/// upper-cased and unreserved characters decoded, dot segments removed, an empty path as `/`;
/// query and fragment dropped. `None` when it is not such a URI (or has userinfo).
pub fn normalize_htu(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let (host, port) = match authority.rfind(':') {
        // An IPv6 literal's colons are inside the brackets.
        Some(i) if !authority[i..].contains(']') => (&authority[..i], Some(&authority[i + 1..])),
        _ => (authority, None),
    };
    if host.is_empty() || port.is_some_and(|p| !p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let mut out = format!("{scheme}://{}", host.to_ascii_lowercase());
    match port.map(|p| p.trim_start_matches('0')) {
        Some(p) if !p.is_empty() && p != default_port => {
            out.push(':');
            out.push_str(p);
        }
        Some(p) if p.is_empty() && port != Some("") => return None, // port 0
        _ => {}
    }
    out.push_str(&remove_dot_segments(&normalize_percent_encoding(path)?));
    Some(out)
}

fn normalize_percent_encoding(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hi = (hex[0] as char).to_digit(16)?;
            let lo = (hex[1] as char).to_digit(16)?;
            let decoded = u8::try_from(hi * 16 + lo).ok()?;
            if decoded.is_ascii_alphanumeric() || b"-._~".contains(&decoded) {
                out.push(decoded as char);
            } else {
                out.push('%');
                out.push_str(&format!("{decoded:02X}"));
            }
            i += 3;
        } else if b.is_ascii_graphic() {
            out.push(b as char);
            i += 1;
        } else {
            return None;
        }
    }
    Some(out)
}

/// RFC 3986 §5.2.4, on an absolute path (or an empty one, which becomes `/`).
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/').skip(1) {
        match segment {
            "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    // A trailing "." or ".." leaves a trailing slash.
    if path.ends_with("/.") || path.ends_with("/..") {
        segments.push("");
    }
    format!("/{}", segments.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn htu_normalisation() {
        let same = [
            ("https://api.example/a", "https://api.example/a"),
            ("HTTPS://API.EXAMPLE/a", "https://api.example/a"),
            ("https://api.example:443/a", "https://api.example/a"),
            ("http://api.example:80/a", "http://api.example/a"),
            ("https://api.example:8443/a", "https://api.example:8443/a"),
            ("https://api.example", "https://api.example/"),
            ("https://api.example/a?b=c#d", "https://api.example/a"),
            (
                "https://api.example/%7euser/%2f",
                "https://api.example/~user/%2F",
            ),
            ("https://api.example/a/./b/../c", "https://api.example/a/c"),
            ("https://[::1]:443/a", "https://[::1]/a"),
            ("https://[::1]:8443/a", "https://[::1]:8443/a"),
        ];
        for (input, want) in same {
            assert_eq!(normalize_htu(input).as_deref(), Some(want), "{input}");
        }
        // The path is case-sensitive; the query is ignored, not the path.
        assert_ne!(normalize_htu("https://a/X"), normalize_htu("https://a/x"));
        for bad in [
            "api.example/a",
            "ftp://api.example/a",
            "https://user@api.example/a",
            "https:///a",
            "https://api.example:x/a",
            "https://api.example/%zz",
            "https://api.example/a b",
        ] {
            assert_eq!(normalize_htu(bad), None, "{bad}");
        }
    }

    #[test]
    fn rfc7638_example_thumbprint() {
        // RFC 7638 §3.1.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        let tp = jwk_thumbprint(jwk.as_object().unwrap()).unwrap();
        assert_eq!(
            tp.to_string(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        assert_eq!(
            jwk_thumbprint(json!({"kty": "oct", "k": "AA"}).as_object().unwrap()),
            None
        );
        assert_eq!(
            jwk_thumbprint(
                json!({"kty": "EC", "crv": "P-256", "x": 1, "y": "a"})
                    .as_object()
                    .unwrap()
            ),
            None
        );
    }

    #[test]
    fn thumbprint_json_is_serde_jsons_even_for_values_that_need_escaping() {
        // The canonical JSON written straight into the hash is what serde_json writes.
        for x in [
            "plain",
            "quo\"te",
            "back\\slash",
            "new\nline",
            "\u{1}",
            "é\u{7f}",
        ] {
            let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": x});
            let canonical = format!(
                r#"{{"crv":"Ed25519","kty":"OKP","x":{}}}"#,
                serde_json::to_string(x).unwrap()
            );
            let want = Thumbprint::from_bytes(Sha256::digest(canonical.as_bytes()).into());
            assert_eq!(
                jwk_thumbprint(jwk.as_object().unwrap()),
                Some(want),
                "{x:?}"
            );
        }
    }

    #[test]
    fn ath_matches_exactly() {
        let ath = access_token_hash("token");
        assert!(ath_matches(&ath, "token"));
        assert!(!ath_matches(&ath, "token2"));
        assert!(!ath_matches(&format!("{ath}="), "token"));
        assert!(!ath_matches(&ath[..42], "token"));
        assert!(!ath_matches("", "token"));
    }

    #[test]
    fn ath_is_base64url_sha256() {
        // RFC 9449 §7.1's example token and its ath.
        assert_eq!(
            access_token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }
}

/// Stateless DPoP nonces (RFC 9449 §8–9): an AES-256-GCM-sealed issue time under keys that
/// every replica shares, so a nonce from one replica is accepted by all. The first key seals;
/// every key opens (rotation: add the new key first, drop the old one after a nonce lifetime).
///
/// Sealing needs 12 random bytes, which the driver supplies (this crate does no I/O).
///
/// ```
/// use std::time::Duration;
/// use certbound_core::NonceKeys;
///
/// let keys = NonceKeys::new(vec![[7u8; 32]], Duration::from_secs(300)).unwrap();
/// let nonce = keys.issue(1_800_000_000, [1u8; 12]);
/// assert_eq!(keys.issued_at(&nonce, 1_800_000_100), Some(1_800_000_000));
/// assert_eq!(keys.issued_at(&nonce, 1_800_000_301), None); // expired
/// let other = NonceKeys::new(vec![[8u8; 32]], Duration::from_secs(300)).unwrap();
/// assert_eq!(other.issued_at(&nonce, 1_800_000_100), None); // another deployment's key
/// ```
#[derive(Clone)]
pub struct NonceKeys {
    keys: std::sync::Arc<[aws_lc_rs::aead::LessSafeKey]>,
    lifetime_secs: u64,
}

impl std::fmt::Debug for NonceKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceKeys")
            .field("keys", &self.keys.len())
            .field("lifetime_secs", &self.lifetime_secs)
            .finish()
    }
}

/// Why nonce keys could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NonceKeyError {
    /// No key given.
    #[error("no DPoP nonce key: give at least one 32-byte key")]
    Empty,
    /// A line of a key file is not 32 bytes in hex or base64/base64url.
    #[error("DPoP nonce key on line {0} is not 32 bytes in hex or base64")]
    BadKey(usize),
    /// The crypto library refused the key.
    #[error("DPoP nonce key rejected by the AEAD implementation")]
    Crypto,
}

const NONCE_AAD: &[u8] = b"certbound dpop-nonce v1";

impl NonceKeys {
    /// Keys (the first seals) and how long a nonce stays valid.
    pub fn new(keys: Vec<[u8; 32]>, lifetime: Duration) -> Result<Self, NonceKeyError> {
        if keys.is_empty() {
            return Err(NonceKeyError::Empty);
        }
        let keys = keys
            .iter()
            .map(|k| {
                aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, k)
                    .map(aws_lc_rs::aead::LessSafeKey::new)
                    .map_err(|_| NonceKeyError::Crypto)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            keys: keys.into(),
            lifetime_secs: lifetime.as_secs(),
        })
    }

    /// Keys from a key file's text: one key per line (64 hex digits, or base64/base64url of 32
    /// bytes), the first sealing; blank lines and `#` comments ignored.
    pub fn from_key_file(text: &str, lifetime: Duration) -> Result<Self, NonceKeyError> {
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bytes = decode_key(line).ok_or(NonceKeyError::BadKey(n + 1))?;
            keys.push(bytes);
        }
        Self::new(keys, lifetime)
    }

    /// How long a nonce stays valid, in seconds.
    pub fn lifetime_secs(&self) -> u64 {
        self.lifetime_secs
    }

    /// A nonce issued at `now`, sealed with the first key and `random` as the AEAD nonce.
    pub fn issue(&self, now: u64, random: [u8; 12]) -> String {
        let mut sealed = now.to_be_bytes().to_vec();
        let ok = self.keys.first().is_some_and(|key| {
            key.seal_in_place_append_tag(
                aws_lc_rs::aead::Nonce::assume_unique_for_key(random),
                aws_lc_rs::aead::Aad::from(NONCE_AAD),
                &mut sealed,
            )
            .is_ok()
        });
        if !ok {
            return String::new(); // never valid; sealing 8 bytes does not fail in practice
        }
        let mut out = random.to_vec();
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// When `nonce` was issued, if one of these keys sealed it and it is still valid at `now`
    /// (not older than the lifetime, not more than 5 s in the future).
    pub fn issued_at(&self, nonce: &str, now: u64) -> Option<u64> {
        if nonce.len() > 64 {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(nonce).ok()?;
        let (random, sealed) = raw.split_at_checked(12)?;
        let random: [u8; 12] = random.try_into().ok()?;
        let issued = self.keys.iter().find_map(|key| {
            let mut buf = sealed.to_vec();
            let plain = key
                .open_in_place(
                    aws_lc_rs::aead::Nonce::assume_unique_for_key(random),
                    aws_lc_rs::aead::Aad::from(NONCE_AAD),
                    &mut buf,
                )
                .ok()?;
            Some(u64::from_be_bytes(<[u8; 8]>::try_from(&*plain).ok()?))
        })?;
        let fresh =
            issued <= now.saturating_add(5) && now.saturating_sub(issued) <= self.lifetime_secs;
        fresh.then_some(issued)
    }
}

fn decode_key(text: &str) -> Option<[u8; 32]> {
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?
    } else {
        let trimmed = text.trim_end_matches('=');
        URL_SAFE_NO_PAD
            .decode(trimmed)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
            .ok()?
    };
    bytes.try_into().ok()
}

/// The replay check of an accepted DPoP proof (RFC 9449 §11.1): the driver asks its replay
/// store whether `key` is new, remembering it for `ttl_secs`, and hands the answer to
/// [`verdict`](Self::verdict).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayCheck {
    key: [u8; 32],
    ttl_secs: u64,
}

impl ReplayCheck {
    pub(crate) fn new(proof: &VerifiedProof, policy: &DpopPolicy) -> Self {
        Self {
            key: proof.replay_key(),
            // The proof is acceptable for the whole window either side of its iat.
            ttl_secs: policy.iat_window_secs.saturating_mul(2).saturating_add(1),
        }
    }
    /// The store key: SHA-256 over the proof key's thumbprint and the `jti`.
    pub fn key(&self) -> &[u8; 32] {
        &self.key
    }
    /// How long the store must remember it, in seconds.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }
    /// The decision from the store's answer: first use → accepted; seen before → replayed;
    /// store unavailable → 503, never acceptance.
    pub fn verdict(&self, first_use: Option<bool>, retry_after_secs: u32) -> Result<(), Rejection> {
        match first_use {
            Some(true) => Ok(()),
            Some(false) => Err(Rejection::DpopProofReplayed),
            None => Err(Rejection::ReplayStoreUnavailable { retry_after_secs }),
        }
    }
}

/// The absolute URI a request was sent to, as its client saw it — what a DPoP proof's `htu`
/// names (query and fragment are ignored when comparing).
///
/// - With `public_url` (the origin, and any path prefix, clients use — e.g.
///   `https://api.example/v1` when a proxy strips `/v1`): `public_url` + the request path.
/// - Else, when the peer is a trusted proxy (`trusted`): the client-facing scheme and host from
///   RFC 7239 `Forwarded` (`proto=`, `host=` of the first element) or `X-Forwarded-Proto`,
///   `X-Forwarded-Host` and `X-Forwarded-Prefix` (first values) — never from anyone else.
/// - Else: `https` on TLS (`tls`), `http` otherwise, and the request's authority (`Host`).
///
/// `None` when no usable host is known.
///
/// ```
/// use certbound_core::request_uri;
/// use http::{HeaderMap, Uri};
///
/// let uri: Uri = "/accounts?page=2".parse().unwrap();
/// let mut headers = HeaderMap::new();
/// headers.insert("host", "api.example".parse().unwrap());
/// headers.insert("x-forwarded-host", "evil.example".parse().unwrap());
/// // From an untrusted peer, X-Forwarded-Host changes nothing.
/// assert_eq!(request_uri(None, false, true, &uri, &headers).as_deref(), Some("https://api.example/accounts"));
/// // From a trusted proxy it is the client-facing host.
/// assert_eq!(request_uri(None, true, true, &uri, &headers).as_deref(), Some("https://evil.example/accounts"));
/// // A fixed public URL wins over everything.
/// assert_eq!(
///     request_uri(Some("https://api.example/v1"), true, false, &uri, &headers).as_deref(),
///     Some("https://api.example/v1/accounts")
/// );
/// ```
pub fn request_uri(
    public_url: Option<&str>,
    trusted: bool,
    tls: bool,
    uri: &http::Uri,
    headers: &http::HeaderMap,
) -> Option<String> {
    let path = uri.path();
    if let Some(base) = public_url {
        return Some(format!("{}{path}", base.trim_end_matches('/')));
    }
    let first = |name: &str| -> Option<&str> {
        let value = headers.get(name)?.to_str().ok()?;
        let first = value.split(',').next()?.trim();
        (!first.is_empty()).then_some(first)
    };
    let mut scheme = if tls { "https" } else { "http" }.to_owned();
    let mut host = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| first("host").map(str::to_owned));
    let mut prefix = String::new();
    if trusted {
        let forwarded = headers
            .get(http::header::FORWARDED)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next());
        let (mut f_proto, mut f_host) = (None, None);
        for pair in forwarded.into_iter().flat_map(|element| element.split(';')) {
            if let Some((name, value)) = pair.trim().split_once('=') {
                let value = value.trim().trim_matches('"');
                if name.eq_ignore_ascii_case("proto") {
                    f_proto = Some(value);
                } else if name.eq_ignore_ascii_case("host") {
                    f_host = Some(value);
                }
            }
        }
        if let Some(proto) = f_proto.or_else(|| first("x-forwarded-proto")) {
            scheme = proto.to_ascii_lowercase();
        }
        if let Some(h) = f_host.or_else(|| first("x-forwarded-host")) {
            host = Some(h.to_owned());
        }
        if let Some(p) = first("x-forwarded-prefix").filter(|p| p.starts_with('/')) {
            prefix = p.trim_end_matches('/').to_owned();
        }
    }
    let host = host.filter(|h| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b))
    })?;
    if scheme != "https" && scheme != "http" {
        return None;
    }
    Some(format!("{scheme}://{host}{prefix}{path}"))
}
