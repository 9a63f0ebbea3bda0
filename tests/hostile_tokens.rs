//! A hostile corpus, sent the way an attacker would: over a real mutual-TLS connection to the
//! example API behind certbound (`tests/common::Api`). Written from the RFCs and from known JWT
//! attacks, not from certbound's code. Every hostile request must be refused — 401
//! `invalid_token`, or 400 / 431 where the HTTP request itself is malformed — and a correct
//! token must pass, on the same server, before and after.
//!
//! Run with `--nocapture` to see the table of cases and what the server answered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use certbound_core::{Algorithm, Thumbprint};
use certbound_dev::{CertAndKey, SigningKey};
use common::{thumbprint, Api, Mode, AUDIENCE};
use jsonwebtoken::EncodingKey;
use rustls::pki_types::ServerName;
use serde_json::{json, Value};

/// What the server may answer to a hostile request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// 401 with `error="invalid_token"`.
    InvalidToken,
    /// 400 (`invalid_request`, or hyper refusing a malformed request).
    BadRequest,
    /// 401 invalid_token, or 400: either is a refusal the RFCs allow for this input.
    InvalidTokenOrBadRequest,
}

/// One request as sent: the raw `Authorization` value, over HTTP/1.1 (raw bytes, so values
/// a polite client would refuse to send still reach the server).
struct Case {
    name: &'static str,
    authorization: Vec<u8>,
    expect: Expect,
}

fn bearer(token: impl AsRef<str>) -> Vec<u8> {
    format!("Bearer {}", token.as_ref()).into_bytes()
}

fn b64(v: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

/// Signs the exact bytes of `header` and `claims` with `key`/`alg`.
fn sign_raw(key: &EncodingKey, alg: Algorithm, header: &str, claims: &str) -> String {
    let input = format!("{}.{}", b64(header), b64(claims));
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).unwrap();
    format!("{input}.{sig}")
}

fn ec_key(signer: &SigningKey) -> EncodingKey {
    EncodingKey::from_ec_pem(signer.pkcs8_pem().as_bytes()).unwrap()
}

/// Sends `GET /api/hello` with `authorization` (if any) and `extra` raw header lines, over a
/// fresh HTTP/1.1 mutual-TLS connection presenting `identity`. Returns status, the
/// `WWW-Authenticate` value, and the body.
fn raw_request(
    api: &Api,
    identity: &CertAndKey,
    authorization: Option<&[u8]>,
    extra: &[u8],
) -> (u16, Option<String>, String) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(api.pki.ca.cert_der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![identity.cert_der.clone()], identity.private_key())
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let port: u16 = api.url.rsplit(':').next().unwrap().parse().unwrap();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut req = b"GET /api/hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n".to_vec();
    if let Some(a) = authorization {
        req.extend_from_slice(b"Authorization: ");
        req.extend_from_slice(a);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(extra);
    req.extend_from_slice(b"\r\n");
    // The server may answer (431) and close before it has read everything: ignore write errors.
    let _ = tls.write_all(&req).and_then(|()| tls.flush());
    let mut resp = Vec::new();
    let _ = tls.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP response: {text:?}"));
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let challenge = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("www-authenticate"))
        })
        .map(|(_, v)| v.trim().to_owned());
    (status, challenge, body.to_owned())
}

async fn send(
    api: &Arc<Api>,
    identity: CertAndKey,
    authorization: Option<Vec<u8>>,
    extra: Vec<u8>,
) -> (u16, Option<String>, String) {
    let api = Arc::clone(api);
    tokio::task::spawn_blocking(move || {
        raw_request(&api, &identity, authorization.as_deref(), &extra)
    })
    .await
    .unwrap()
}

fn error_code(challenge: Option<&str>) -> Option<String> {
    let c = challenge?;
    let start = c.find("error=\"")? + 7;
    let end = c[start..].find('"')? + start;
    Some(c[start..end].to_owned())
}

fn check(expect: Expect, status: u16, challenge: Option<&str>) -> bool {
    let invalid_token = status == 401 && error_code(challenge).as_deref() == Some("invalid_token");
    match expect {
        Expect::InvalidToken => invalid_token,
        Expect::BadRequest => status == 400,
        Expect::InvalidTokenOrBadRequest => invalid_token || status == 400,
    }
}

/// The hostile corpus. `api.signer` is the issuer's real ES256 key (kid "k1"); `attacker` is
/// a key of the attacker's own.
fn corpus(api: &Api, attacker: &SigningKey, rsa_attacker: &SigningKey) -> Vec<Case> {
    let a = &api.pki.client_a;
    let iss = api.issuer.as_ref().unwrap().issuer_url().to_owned();
    let good_claims = api.claims_for(a);
    let real = ec_key(&api.signer);
    let evil = ec_key(attacker);
    let claims_text = good_claims.to_string();
    let claims_seg = b64(&claims_text);
    // A real token whose signature has a '-' or '_', so that its standard-alphabet spelling
    // differs (ES256 signatures are random; about 1 in 15 has neither).
    let real_token = (0..200)
        .map(|_| api.token_for(a))
        .find(|t| t.rsplit('.').next().unwrap().contains(['-', '_']))
        .unwrap();
    let (real_input, real_sig) = real_token.rsplit_once('.').unwrap();
    let with = |k: &str, v: Value| {
        let mut c = good_claims.clone();
        c[k] = v;
        c
    };
    let signed_real = |h: Value, c: &Value| api.signer.sign_with_header(&h, c).unwrap();
    let signed_evil = |h: Value, c: &Value| attacker.sign_with_header(&h, c).unwrap();
    let h_k1 = json!({"alg":"ES256","kid":"k1","typ":"at+jwt"});
    let tp = thumbprint(a).to_string();
    let exp = good_claims["exp"].clone();
    let mut cases = Vec::new();
    let mut add = |name: &'static str, authorization: Vec<u8>, expect: Expect| {
        cases.push(Case {
            name,
            authorization,
            expect,
        });
    };
    use Expect::*;

    // -- alg none and its spellings (RFC 8725 §2.1, §3.1) --
    add(
        "alg none, no signature",
        bearer(format!("{}.{claims_seg}.", b64(r#"{"alg":"none"}"#))),
        InvalidToken,
    );
    add(
        "alg None",
        bearer(format!(
            "{}.{claims_seg}.",
            b64(r#"{"alg":"None","kid":"k1"}"#)
        )),
        InvalidToken,
    );
    add(
        "alg NONE with the real signature kept",
        bearer(format!(
            "{}.{claims_seg}.{real_sig}",
            b64(r#"{"alg":"NONE","kid":"k1"}"#)
        )),
        InvalidToken,
    );
    add(
        "alg nOnE, signature 'e30'",
        bearer(format!("{}.{claims_seg}.e30", b64(r#"{"alg":"nOnE"}"#))),
        InvalidToken,
    );
    add(
        "alg lower-case es256",
        bearer(signed_evil(json!({"alg":"es256","kid":"k1"}), &good_claims)),
        InvalidToken,
    );
    add(
        "alg missing",
        bearer(signed_evil(json!({"kid":"k1"}), &good_claims)),
        InvalidToken,
    );

    // -- key confusion (HS/RS, kty) --
    let pub_jwk = api.signer.public_jwk().to_string();
    add(
        "HS256 keyed with the issuer's public JWK",
        bearer(sign_raw(
            &EncodingKey::from_secret(pub_jwk.as_bytes()),
            Algorithm::HS256,
            r#"{"alg":"HS256","kid":"k1"}"#,
            &claims_text,
        )),
        InvalidToken,
    );
    let x = api.signer.public_jwk()["x"].as_str().unwrap().to_owned();
    add(
        "HS256 keyed with the public x coordinate",
        bearer(sign_raw(
            &EncodingKey::from_secret(x.as_bytes()),
            Algorithm::HS256,
            r#"{"alg":"HS256","kid":"k1"}"#,
            &claims_text,
        )),
        InvalidToken,
    );
    add(
        "RS256 by the attacker, naming the EC key",
        bearer(
            rsa_attacker
                .sign_with_header(&json!({"alg":"RS256","kid":"k1"}), &good_claims)
                .unwrap(),
        ),
        InvalidToken,
    );
    add(
        "ES384 naming the P-256 key",
        bearer(format!(
            "{}.{claims_seg}.{real_sig}",
            b64(r#"{"alg":"ES384","kid":"k1"}"#)
        )),
        InvalidToken,
    );

    // -- kid tricks --
    add(
        "kid path traversal",
        bearer(signed_evil(
            json!({"alg":"ES256","kid":"../../../../../dev/null"}),
            &good_claims,
        )),
        InvalidToken,
    );
    add(
        "kid SQL injection",
        bearer(signed_evil(
            json!({"alg":"ES256","kid":"' UNION SELECT 'secret' -- "}),
            &good_claims,
        )),
        InvalidToken,
    );
    add(
        "kid with NUL",
        bearer(signed_evil(
            json!({"alg":"ES256","kid":"k1\u{0}"}),
            &good_claims,
        )),
        InvalidToken,
    );
    add(
        "kid absent, attacker's signature",
        bearer(signed_evil(json!({"alg":"ES256"}), &good_claims)),
        InvalidToken,
    );

    // -- key-locating headers pointing at the attacker (RFC 8725 §3.10) --
    let evil_jwk = attacker.public_jwk().clone();
    add(
        "jku to the attacker's JWKS",
        bearer(signed_evil(
            json!({"alg":"ES256","kid":"attacker","jku":"https://127.0.0.1:1/jwks.json"}),
            &good_claims,
        )),
        InvalidToken,
    );
    add(
        "x5u to the attacker's certificate",
        bearer(signed_evil(
            json!({"alg":"ES256","kid":"attacker","x5u":"https://127.0.0.1:1/cert.pem"}),
            &good_claims,
        )),
        InvalidToken,
    );
    add(
        "embedded jwk of the attacker",
        bearer(signed_evil(
            json!({"alg":"ES256","jwk":evil_jwk}),
            &good_claims,
        )),
        InvalidToken,
    );
    add(
        "embedded jwk + the real kid",
        bearer(signed_evil(
            json!({"alg":"ES256","kid":"k1","jwk":evil_jwk}),
            &good_claims,
        )),
        InvalidToken,
    );
    add(
        "x5c with the attacker's certificate",
        bearer(signed_evil(
            json!({"alg":"ES256","kid":"k1","x5c":[STANDARD.encode(attacker.pkcs8_pem())]}),
            &good_claims,
        )),
        InvalidToken,
    );
    add(
        "jku + kid k1, signed by the attacker",
        bearer(signed_evil(
            json!({"alg":"ES256","kid":"k1","jku":"https://127.0.0.1:1/jwks.json"}),
            &good_claims,
        )),
        InvalidToken,
    );

    // -- JSON ambiguity, signed with the REAL key (a parser differential must not help) --
    add(
        "duplicate alg (ES256, none)",
        bearer(sign_raw(
            &real,
            Algorithm::ES256,
            r#"{"alg":"ES256","kid":"k1","alg":"none"}"#,
            &claims_text,
        )),
        InvalidToken,
    );
    add(
        "duplicate iss (evil first)",
        bearer(sign_raw(
            &real,
            Algorithm::ES256,
            r#"{"alg":"ES256","kid":"k1"}"#,
            &claims_text.replacen('{', r#"{"iss":"https://evil.example/","#, 1),
        )),
        InvalidToken,
    );
    add(
        "duplicate exp (far future last)",
        bearer(sign_raw(
            &real,
            Algorithm::ES256,
            r#"{"alg":"ES256","kid":"k1"}"#,
            &claims_text.replacen('{', r#"{"exp":99999999999,"#, 1),
        )),
        InvalidToken,
    );
    add(
        "duplicate cnf members",
        bearer(sign_raw(
            &real,
            Algorithm::ES256,
            r#"{"alg":"ES256","kid":"k1"}"#,
            &format!(
                r#"{{"iss":"{iss}","aud":"{AUDIENCE}","exp":{exp},"cnf":{{"x5t#S256":"{tp}","x5t#S256":"AAAA"}}}}"#
            ),
        )),
        InvalidToken,
    );
    add(
        "exp as a string",
        bearer(signed_real(
            h_k1.clone(),
            &with("exp", json!(exp.to_string())),
        )),
        InvalidToken,
    );
    add(
        "aud as a number",
        bearer(signed_real(h_k1.clone(), &with("aud", json!(443)))),
        InvalidToken,
    );
    add(
        "nbf as a boolean",
        bearer(signed_real(h_k1.clone(), &with("nbf", json!(false)))),
        InvalidToken,
    );
    add(
        "iss as an array",
        bearer(signed_real(
            h_k1.clone(),
            &with("iss", json!([iss.clone()])),
        )),
        InvalidToken,
    );
    add(
        "exp 1e400 (out of range)",
        bearer(sign_raw(
            &real,
            Algorithm::ES256,
            r#"{"alg":"ES256","kid":"k1"}"#,
            &format!(
                r#"{{"iss":"{iss}","aud":"{AUDIENCE}","exp":1e400,"cnf":{{"x5t#S256":"{tp}"}}}}"#
            ),
        )),
        InvalidToken,
    );
    add(
        "iat 1e308 (issued in the far future)",
        bearer(signed_real(h_k1.clone(), &with("iat", json!(1e308)))),
        InvalidToken,
    );
    add(
        "nested JSON bomb (depth 4000)",
        bearer(sign_raw(
            &real,
            Algorithm::ES256,
            r#"{"alg":"ES256","kid":"k1"}"#,
            &format!(
                r#"{{"iss":"{iss}","aud":"{AUDIENCE}","exp":{exp},"x":{}{}}}"#,
                "[".repeat(4000),
                "]".repeat(4000)
            ),
        )),
        InvalidToken,
    );
    add(
        "iss with a trailing \\u0000",
        bearer(signed_real(
            h_k1.clone(),
            &with("iss", json!(format!("{iss}\u{0}"))),
        )),
        InvalidToken,
    );
    add(
        "iss with a look-alike slash \\u2215",
        bearer(signed_real(
            h_k1.clone(),
            &with("iss", json!(iss.replace('/', "\u{2215}"))),
        )),
        InvalidToken,
    );
    add(
        "crit naming an unknown extension",
        bearer(signed_real(
            json!({"alg":"ES256","kid":"k1","crit":["urn:evil"],"urn:evil":1}),
            &good_claims,
        )),
        InvalidToken,
    );
    add(
        "claims object as an array",
        bearer(sign_raw(
            &real,
            Algorithm::ES256,
            r#"{"alg":"ES256","kid":"k1"}"#,
            &format!("[{claims_text}]"),
        )),
        InvalidToken,
    );

    // -- framing: segments, base64url, trailing data --
    add(
        "trailing dot (4 segments, last empty)",
        bearer(format!("{real_token}.")),
        InvalidToken,
    );
    add(
        "4 segments",
        bearer(format!("{real_token}.{claims_seg}")),
        InvalidToken,
    );
    add(
        "JWE-shaped, 5 segments",
        bearer(format!(
            "{}.{}.{}.{}.{}",
            b64(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#),
            b64([1u8; 32]),
            b64([2u8; 12]),
            claims_seg,
            b64([3u8; 16])
        )),
        InvalidToken,
    );
    add("empty segments '..'", bearer(".."), InvalidToken);
    add("only dots", bearer("....."), InvalidToken);
    add(
        "signature with '==' padding",
        bearer(format!("{real_token}==")),
        InvalidToken,
    );
    add(
        "padding inside the header segment",
        bearer(format!(
            "{}=.{claims_seg}.{real_sig}",
            real_input.split('.').next().unwrap()
        )),
        InvalidTokenOrBadRequest,
    );
    add(
        "standard-alphabet signature (+ /)",
        bearer(format!(
            "{real_input}.{}",
            real_sig.replace('-', "+").replace('_', "/")
        )),
        InvalidToken,
    );
    let mut flipped = real_sig.to_owned().into_bytes();
    let last = flipped.len() - 1;
    // ES256 signatures are 64 bytes → 86 characters, 4 spare bits in the last one.
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    add(
        "non-canonical last signature character",
        bearer(format!(
            "{real_input}.{}",
            String::from_utf8(flipped).unwrap()
        )),
        InvalidToken,
    );
    add(
        "trailing data after the token",
        format!("Bearer {real_token} extra").into_bytes(),
        BadRequest,
    );
    add(
        "token followed by a comma",
        format!("Bearer {real_token},").into_bytes(),
        BadRequest,
    );
    add(
        "NUL byte inside the token",
        [
            b"Bearer ".as_slice(),
            real_input.as_bytes(),
            b"\0.",
            real_sig.as_bytes(),
        ]
        .concat(),
        BadRequest,
    );
    add(
        "upper-cased token",
        bearer(real_token.to_uppercase()),
        InvalidToken,
    );
    add(
        "lower-cased token",
        bearer(real_token.to_lowercase()),
        InvalidToken,
    );

    // -- binding tricks (RFC 8705 §3) --
    let mut no_cnf = good_claims.clone();
    no_cnf.as_object_mut().unwrap().remove("cnf");
    add(
        "x5t#S256 in the header, not the claims",
        bearer(signed_real(
            json!({"alg":"ES256","kid":"k1","x5t#S256":tp,"cnf":{"x5t#S256":tp}}),
            &no_cnf,
        )),
        InvalidToken,
    );
    add(
        "x5t (SHA-1) instead of x5t#S256",
        bearer(signed_real(
            h_k1.clone(),
            &with("cnf", json!({"x5t": b64([9u8; 20])})),
        )),
        InvalidToken,
    );
    let ca_tp = Thumbprint::of_der(&api.pki.ca.cert_der).to_string();
    add(
        "thumbprint of the CA, not the leaf",
        bearer(signed_real(
            h_k1.clone(),
            &with("cnf", json!({"x5t#S256": ca_tp})),
        )),
        InvalidToken,
    );
    add(
        "thumbprint in the standard alphabet",
        bearer(signed_real(
            h_k1.clone(),
            &with(
                "cnf",
                json!({"x5t#S256": STANDARD.encode(thumbprint(a).as_bytes())}),
            ),
        )),
        InvalidToken,
    );
    add(
        "thumbprint as hex",
        bearer(signed_real(
            h_k1.clone(),
            &with("cnf", json!({"x5t#S256": thumbprint(a).to_hex()})),
        )),
        InvalidToken,
    );
    let swapped: String = tp
        .chars()
        .map(|c| {
            if c.is_ascii_uppercase() {
                c.to_ascii_lowercase()
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect();
    add(
        "thumbprint with swapped case",
        bearer(signed_real(
            h_k1.clone(),
            &with("cnf", json!({"x5t#S256": swapped})),
        )),
        InvalidToken,
    );
    add(
        "cnf as a string",
        bearer(signed_real(h_k1.clone(), &with("cnf", json!(tp.clone())))),
        InvalidToken,
    );
    add(
        "bound to client B, sent by client A",
        bearer(api.token_for(&api.pki.client_b)),
        InvalidToken,
    );
    add(
        "unbound token",
        bearer(signed_real(h_k1.clone(), &no_cnf)),
        InvalidToken,
    );

    // -- lifetime and audience --
    add(
        "expired an hour ago",
        bearer(signed_real(
            h_k1.clone(),
            &with("exp", json!(certbound_dev::unix_now() - 3600)),
        )),
        InvalidToken,
    );
    add(
        "for another audience",
        bearer(signed_real(
            h_k1.clone(),
            &with("aud", json!("https://other.example")),
        )),
        InvalidToken,
    );
    add(
        "from another issuer",
        bearer(signed_real(
            h_k1.clone(),
            &with("iss", json!("https://evil.example/")),
        )),
        InvalidToken,
    );
    // -- the attacker's own key with perfect claims --
    add(
        "perfect claims, attacker's key, real kid",
        bearer(signed_evil(h_k1.clone(), &good_claims)),
        InvalidToken,
    );
    let _ = evil;
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tokens_are_refused_over_the_real_server() {
    let api = Arc::new(Api::start(Mode::SelfSigned).await);
    let attacker = SigningKey::generate("attacker", Algorithm::ES256).unwrap();
    let rsa_attacker = SigningKey::generate("k1", Algorithm::RS256).unwrap();
    let a = api.pki.client_a.clone();
    let control = bearer(api.token_for(&a));

    let (status, _, body) = send(&api, a.clone(), Some(control.clone()), vec![]).await;
    assert_eq!(status, 200, "control token before: {body}");

    let cases = corpus(&api, &attacker, &rsa_attacker);
    assert!(cases.len() >= 30, "{}", cases.len());
    let mut failures = Vec::new();
    println!("{:<48} {:>6}  answer", "hostile request", "status");
    for case in &cases {
        let (status, challenge, _) =
            send(&api, a.clone(), Some(case.authorization.clone()), vec![]).await;
        let code = error_code(challenge.as_deref()).unwrap_or_default();
        let ok = check(case.expect, status, challenge.as_deref());
        println!(
            "{:<48} {status:>6}  {code} {}",
            case.name,
            if ok { "" } else { "<-- UNEXPECTED" }
        );
        if !ok {
            failures.push(format!(
                "{}: {status} {challenge:?}, expected {:?}",
                case.name, case.expect
            ));
        }
    }
    println!(
        "{} hostile requests, {} refused as expected",
        cases.len(),
        cases.len() - failures.len()
    );

    let (status, _, body) = send(&api, a.clone(), Some(control), vec![]).await;
    assert_eq!(status, 200, "control token after: {body}");
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused_before_any_token_logic() {
    let api = Arc::new(Api::start(Mode::SelfSigned).await);
    let a = api.pki.client_a.clone();
    let token = api.token_for(&a);
    // Two Authorization headers (RFC 6750 §2: one method, one credential).
    let (status, challenge, _) = send(
        &api,
        a.clone(),
        Some(bearer(&token)),
        format!("Authorization: Bearer {token}\r\n").into_bytes(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        error_code(challenge.as_deref()).as_deref(),
        Some("invalid_request")
    );
    // A token only in the query string is no token at all (bare challenge, no error code).
    let (status, challenge, _) = send(&api, a.clone(), None, vec![]).await;
    assert_eq!(status, 401);
    assert_eq!(error_code(challenge.as_deref()), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_tokens_and_headers_are_refused_without_reading_them_whole() {
    let api = Arc::new(Api::start(Mode::SelfSigned).await);
    let a = api.pki.client_a.clone();

    // Over certbound's 16 KiB token limit but within hyper's HTTP/1.1 header buffer:
    // certbound answers 401 token_too_large.
    let big = format!(
        "{}.{}.{}",
        "a".repeat(10_000),
        "b".repeat(10_000),
        "c".repeat(100)
    );
    let (status, challenge, _) = send(&api, a.clone(), Some(bearer(&big)), vec![]).await;
    assert_eq!(status, 401, "{challenge:?}");
    assert_eq!(
        error_code(challenge.as_deref()).as_deref(),
        Some("invalid_token")
    );
    assert!(challenge.unwrap().contains("token is larger than allowed"));

    // Far beyond hyper's header buffer (~408 KiB): hyper answers 431 itself, certbound never runs.
    let huge = "a".repeat(600 * 1024);
    let (status, _, _) = send(&api, a.clone(), Some(bearer(&huge)), vec![]).await;
    assert_eq!(status, 431);
    // The same size spread over many headers.
    let many: Vec<u8> = (0..200)
        .flat_map(|i| format!("X-Filler-{i}: {}\r\n", "f".repeat(3000)).into_bytes())
        .collect();
    let (status, _, _) = send(&api, a.clone(), Some(bearer("a.b.c")), many).await;
    assert_eq!(status, 431);

    // Over HTTP/2 (what reqwest negotiates), hyper's 16 KiB header-list limit is the first
    // bound: the request is refused (431, or the stream reset), never accepted.
    let client = api.client(Some(&a));
    let over_h2 = client
        .get(format!("{}/api/hello", api.url))
        .header("authorization", format!("Bearer {big}"))
        .send()
        .await;
    if let Ok(resp) = over_h2 {
        assert!(
            matches!(resp.status().as_u16(), 401 | 431),
            "{}",
            resp.status()
        );
    }
    // And the server is still healthy afterwards.
    let ok = api.hello(Some(&a), Some(&api.token_for(&a))).await;
    assert_eq!(ok.status, 200, "{ok:?}");
}
