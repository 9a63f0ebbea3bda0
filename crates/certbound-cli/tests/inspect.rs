//! `certbound inspect`: the mismatch screen, acceptance with a JWKS file, expiry, discovery
//! against a real HTTPS issuer, and the same reason code as `CertBoundLayer::verify`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use certbound::{CertBound, StaticJwks};
use certbound_core::{Algorithm, ClientCertificate, Thumbprint};
use certbound_dev::issuer::TestIssuer;
use certbound_dev::{
    bound_claims, jwks_document, unix_now, CertAndKey, DevCa, KeyKind, SigningKey,
};
use common::{certbound, certbound_stdin, TempDir};
use serde_json::{json, Value};

const ISS: &str = "https://issuer.example";
const AUD: &str = "https://api.example";

/// Two clients of one CA, a signing key and its JWKS, as files.
struct Setup {
    dir: TempDir,
    key: SigningKey,
    client_a: CertAndKey,
    a_pem: PathBuf,
    b_pem: PathBuf,
    jwks: PathBuf,
    tp_a: Thumbprint,
    tp_b: Thumbprint,
}

fn setup(tag: &str) -> Setup {
    let dir = TempDir::new(tag);
    let ca = DevCa::new("inspect test CA").unwrap();
    let client_a = ca.client_cert("client-a", KeyKind::EcP256).unwrap();
    let client_b = ca.client_cert("client-b", KeyKind::EcP256).unwrap();
    let key = SigningKey::generate("key-1", Algorithm::ES256).unwrap();
    Setup {
        a_pem: dir.write("client-a.pem", &client_a.cert_pem),
        b_pem: dir.write("client-b.pem", &client_b.cert_pem),
        jwks: dir.write("jwks.json", jwks_document(&[&key]).to_string()),
        tp_a: *ClientCertificate::from_der(client_a.cert_der.to_vec()).thumbprint(),
        tp_b: *ClientCertificate::from_der(client_b.cert_der.to_vec()).thumbprint(),
        client_a,
        key,
        dir,
    }
}

impl Setup {
    fn token_for_a(&self) -> String {
        self.key.sign(&bound_claims(ISS, AUD, &self.tp_a)).unwrap()
    }

    /// `inspect TOKEN --cert CERT --jwks-file jwks.json --issuer ISS --audience AUD [extra…]`.
    fn inspect_with_keys(&self, token: &str, cert: &Path, extra: &[&str]) -> common::Run {
        let mut args: Vec<String> = vec![
            "inspect".into(),
            token.into(),
            "--cert".into(),
            cert.display().to_string(),
            "--jwks-file".into(),
            self.jwks.display().to_string(),
            "--issuer".into(),
            ISS.into(),
            "--audience".into(),
            AUD.into(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        certbound(args)
    }
}

#[test]
fn mismatch_is_explained_on_one_screen() {
    let s = setup("mismatch");
    let token = s.token_for_a();
    let run = s.inspect_with_keys(&token, &s.b_pem, &[]);
    println!("{}", run.stdout);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stderr, "", "{run:?}");

    // What the token is bound to, what the certificate's thumbprint is, side by side.
    let bound = run.line_with(&["token is bound to", &s.tp_a.to_string()]);
    let presented = run.line_with(&["certificate presents", &s.tp_b.to_string()]);
    assert_eq!(
        bound.find(&s.tp_a.to_string()),
        presented.find(&s.tp_b.to_string()),
        "the two thumbprints are aligned:\n{bound}\n{presented}"
    );
    run.line_with(&["certificate subject", "CN=client-b, O=certbound dev"]);
    // The verdict is the layer's code, and a one-line hint says what probably happened.
    run.line_with(&[
        "verdict",
        "REFUSED: binding_mismatch",
        "HTTP 401, invalid_token",
    ]);
    let hint = run.line_with(&["hint"]);
    assert!(
        hint.contains("the token was issued to a different certificate — was the client certificate re-issued?"),
        "{hint}"
    );
    // Readable: one screen, no line wider than a wide terminal, the token itself never printed.
    assert!(run.stdout.lines().count() <= 30, "{}", run.stdout);
    assert!(!run.stdout.contains(&token));
    // The decoded header and claims of the token are shown.
    run.line_with(&["header", "\"alg\":\"ES256\"", "\"kid\":\"key-1\""]);
    run.line_with(&["claims", "iss", ISS]);
    run.line_with(&["expiry", "expires in ", " min ("]);
    run.line_with(&["iat", "(issued "]);
}

#[test]
fn mismatch_without_keys_says_the_signature_was_not_checked() {
    let s = setup("mismatch-nokeys");
    let token = s.token_for_a();
    let run = certbound([
        "inspect".as_ref(),
        token.as_ref(),
        "--cert".as_ref(),
        s.b_pem.as_os_str(),
    ]);
    println!("{}", run.stdout);
    assert_eq!(run.code, 1, "{run:?}");
    run.line_with(&["token is bound to", &s.tp_a.to_string()]);
    run.line_with(&["certificate presents", &s.tp_b.to_string()]);
    run.line_with(&["=> binding_mismatch"]);
    run.line_with(&["verdict", "NOT CHECKED", "signature"]);
    run.line_with(&["hint", "re-issued"]);
}

#[test]
fn accepts_a_valid_bound_token_with_a_jwks_file() {
    let s = setup("accept");
    let token = s.token_for_a();
    let run = s.inspect_with_keys(&token, &s.a_pem, &["--require-at-jwt"]);
    println!("{}", run.stdout);
    assert_eq!(run.code, 0, "{run:?}");
    run.line_with(&["=> match", "bound to this certificate"]);
    run.line_with(&["verdict", "ACCEPTED", "ES256", "key-1"]);
    run.line_with(&["sub user-123", "client_id client-a", "scope \"read write\""]);

    // The same token from stdin, from a file, and as a copied `Bearer …` header value.
    let base = |tok: &str| {
        vec![
            "inspect".to_owned(),
            tok.to_owned(),
            "--cert".into(),
            s.a_pem.display().to_string(),
            "--jwks-file".into(),
            s.jwks.display().to_string(),
            "--issuer".into(),
            ISS.into(),
            "--audience".into(),
            AUD.into(),
        ]
    };
    assert_eq!(certbound_stdin(base("-"), &format!("{token}\n")).code, 0);
    let file = s.dir.write("token.jwt", format!("{token}\n"));
    assert_eq!(certbound(base(&file.display().to_string())).code, 0);
    assert_eq!(certbound(base(&format!("Bearer {token}"))).code, 0);
}

#[test]
fn reports_expired() {
    let s = setup("expired");
    let now = unix_now();
    let mut claims = bound_claims(ISS, AUD, &s.tp_a);
    claims["iat"] = json!(now - 4 * 3600);
    claims["exp"] = json!(now - 3 * 3600);
    let token = s.key.sign(&claims).unwrap();
    let run = s.inspect_with_keys(&token, &s.a_pem, &[]);
    println!("{}", run.stdout);
    assert_eq!(run.code, 1, "{run:?}");
    run.line_with(&["expiry", "expired 3 h ago"]);
    run.line_with(&["iat", "(issued 4 h ago)"]);
    run.line_with(&["verdict", "REFUSED: expired"]);
    run.line_with(&["hint", "get a new token: it expired 3 h ago"]);
    // Expired a few seconds ago: within the leeway, still accepted — and said so.
    claims["exp"] = json!(now - 5);
    let token = s.key.sign(&claims).unwrap();
    let run = s.inspect_with_keys(&token, &s.a_pem, &[]);
    assert_eq!(run.code, 0, "{run:?}");
    run.line_with(&["expiry", "still accepted within the layer's 60 s"]);
}

#[test]
fn discovery_against_a_real_https_issuer() {
    let s = setup("discovery");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let issuer = runtime.block_on(TestIssuer::start(&[&s.key])).unwrap();
    let ca = s.dir.write("issuer-ca.pem", issuer.ca_pem());
    let token = s
        .key
        .sign(&bound_claims(issuer.issuer_url(), AUD, &s.tp_a))
        .unwrap();
    let args = |cert: &PathBuf, with_ca: bool| {
        let mut args = vec![
            "inspect".to_owned(),
            token.clone(),
            "--cert".into(),
            cert.display().to_string(),
            "--issuer".into(),
            issuer.issuer_url().to_owned(),
            "--audience".into(),
            AUD.into(),
        ];
        if with_ca {
            args.extend(["--jwks-ca".into(), ca.display().to_string()]);
        }
        args
    };

    let run = certbound(args(&s.a_pem, true));
    println!("{}", run.stdout);
    assert_eq!(run.code, 0, "{run:?}");
    run.line_with(&["keys by discovery"]);
    run.line_with(&["verdict", "ACCEPTED"]);
    assert!(issuer.discovery_fetches() >= 1);
    assert!(issuer.jwks_fetches() >= 1);

    let run = certbound(args(&s.b_pem, true));
    assert_eq!(run.code, 1, "{run:?}");
    run.line_with(&["verdict", "REFUSED: binding_mismatch"]);

    // Without the issuer's CA the keys cannot be fetched: one error line, exit 2.
    let run = certbound(args(&s.a_pem, false));
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(
        run.stderr.starts_with("error: cannot set up the layer: "),
        "{run:?}"
    );
    drop(issuer);
}

#[test]
fn an_opaque_token_is_explained_by_introspection() {
    let s = setup("opaque");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let issuer = runtime.block_on(TestIssuer::start(&[&s.key])).unwrap();
    issuer.register_introspection_client(
        "inspector",
        certbound_dev::issuer::ClientAuthMethod::SecretBasic("s3cret".into()),
    );
    let ca = s.dir.write("issuer-ca.pem", issuer.ca_pem());
    let now = unix_now();
    let token = issuer.issue_opaque(json!({
        "iss": issuer.issuer_url(), "aud": AUD, "sub": "alice", "exp": now + 600,
        "cnf": {"x5t#S256": s.tp_a.to_string()},
    }));
    let args = |cert: &PathBuf, secret: &str| {
        vec![
            "inspect".to_owned(),
            token.clone(),
            "--cert".into(),
            cert.display().to_string(),
            "--issuer".into(),
            issuer.issuer_url().to_owned(),
            "--audience".into(),
            AUD.into(),
            "--jwks-ca".into(),
            ca.display().to_string(),
            "--introspect".into(),
            "--introspection-client-id".into(),
            "inspector".into(),
            "--introspection-client-secret".into(),
            secret.into(),
        ]
    };
    let run = certbound(args(&s.a_pem, "s3cret"));
    assert_eq!(run.code, 0, "{run:?}");
    run.line_with(&["token", "opaque (not a JWT"]);
    run.line_with(&["verdict", "ACCEPTED — introspected by the issuer"]);
    run.line_with(&["cnf", &s.tp_a.to_string()]);
    assert!(
        !run.stdout.contains(&token),
        "the token is never printed back"
    );

    let run = certbound(args(&s.b_pem, "s3cret"));
    assert_eq!(run.code, 1, "{run:?}");
    run.line_with(&["verdict", "REFUSED: binding_mismatch"]);

    let run = certbound(args(&s.a_pem, "wrong"));
    assert_eq!(run.code, 1, "{run:?}");
    run.line_with(&[
        "verdict",
        "REFUSED: introspection_credentials_refused",
        "HTTP 503",
    ]);
    run.line_with(&["hint", "inspector"]);
    assert_eq!(issuer.introspection_calls(), 3);

    // Without introspection flags, an opaque token is what it always was.
    let run = certbound(vec![
        "inspect".to_owned(),
        token.clone(),
        "--cert".into(),
        s.a_pem.display().to_string(),
    ]);
    run.line_with(&["NOT a well-formed JWT"]);
    drop(issuer);
}

/// Every refusal the CLI reports carries exactly the code `CertBoundLayer::verify` gives for the
/// same token, certificate and configuration.
#[test]
fn same_reason_code_as_the_layer() {
    let s = setup("same-code");
    let other_key = SigningKey::generate("key-1", Algorithm::ES256).unwrap();
    let unknown_kid = SigningKey::generate("key-9", Algorithm::ES256).unwrap();
    let now = unix_now();
    let claims = bound_claims(ISS, AUD, &s.tp_a);
    let with = |name: &str, value: Value| {
        let mut c = claims.clone();
        c[name] = value;
        c
    };
    let cases: Vec<(&str, String, &PathBuf)> = vec![
        ("binding_mismatch", s.token_for_a(), &s.b_pem),
        (
            "expired",
            s.key.sign(&with("exp", json!(now - 3600))).unwrap(),
            &s.a_pem,
        ),
        (
            "not_yet_valid",
            s.key.sign(&with("nbf", json!(now + 3600))).unwrap(),
            &s.a_pem,
        ),
        (
            "wrong_audience",
            s.key
                .sign(&with("aud", json!("https://other.example")))
                .unwrap(),
            &s.a_pem,
        ),
        (
            "wrong_issuer",
            s.key
                .sign(&with("iss", json!("https://evil.example")))
                .unwrap(),
            &s.a_pem,
        ),
        ("bad_signature", other_key.sign(&claims).unwrap(), &s.a_pem),
        ("unknown_key", unknown_kid.sign(&claims).unwrap(), &s.a_pem),
        (
            "unsupported_binding",
            s.key
                .sign(&with("cnf", json!({"jwk": {"kty": "EC"}})))
                .unwrap(),
            &s.a_pem,
        ),
        (
            "malformed_binding",
            s.key
                .sign(&with("cnf", json!({"x5t#S256": "abc"})))
                .unwrap(),
            &s.a_pem,
        ),
        (
            "invalid_claims",
            s.key.sign(&with("exp", json!("tomorrow"))).unwrap(),
            &s.a_pem,
        ),
        ("malformed_token", "abc.def".to_owned(), &s.a_pem),
    ];
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let layer = runtime
        .block_on(
            CertBound::builder()
                .issuer(ISS)
                .audience(AUD)
                .key_source(StaticJwks::from_file(&s.jwks).unwrap())
                .build(),
        )
        .unwrap();
    for (code, token, cert) in cases {
        let presented = if *cert == s.a_pem { s.tp_a } else { s.tp_b };
        let expected = runtime
            .block_on(layer.verify(&token, Some(presented)))
            .expect_err(code);
        assert_eq!(expected.code(), code, "the layer's own code");
        let run = s.inspect_with_keys(&token, cert, &[]);
        assert_eq!(run.code, 1, "{code}: {run:?}");
        assert_eq!(run.stderr, "", "{code}: {run:?}");
        run.line_with(&["verdict", &format!("REFUSED: {code} — {expected}")]);
        assert!(!run.stdout.contains(&token) || token == "abc.def");
    }
}

#[test]
fn hints_for_missing_certificate_chain_files_and_unbound_tokens() {
    let s = setup("hints");
    let token = s.token_for_a();

    // No --cert: the layer would see no client certificate.
    let run = certbound([
        "inspect",
        &token,
        "--jwks-file",
        &s.jwks.display().to_string(),
        "--issuer",
        ISS,
        "--audience",
        AUD,
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    run.line_with(&["certificate", "none given (--cert CERT)"]);
    run.line_with(&["verdict", "REFUSED: missing_client_certificate"]);
    run.line_with(&["hint", "--cert CERT"]);

    // A PEM whose second certificate is the one the token is bound to.
    let both = s.dir.write(
        "b-then-a.pem",
        format!(
            "{}{}",
            std::fs::read_to_string(&s.b_pem).unwrap(),
            s.client_a.cert_pem
        ),
    );
    let run = s.inspect_with_keys(&token, &both, &[]);
    assert_eq!(run.code, 1, "{run:?}");
    run.line_with(&[
        "certificate presents",
        &s.tp_b.to_string(),
        "[0] of 2, the leaf",
    ]);
    run.line_with(&["hint", "bound to certificate [1]", "CN=client-a"]);

    // An unbound token: refused under `required`, accepted under `if-bound`.
    let mut claims = bound_claims(ISS, AUD, &s.tp_a);
    claims.as_object_mut().unwrap().remove("cnf");
    let bearer = s.key.sign(&claims).unwrap();
    let run = s.inspect_with_keys(&bearer, &s.a_pem, &[]);
    assert_eq!(run.code, 1, "{run:?}");
    run.line_with(&["binding", "NOT bound"]);
    run.line_with(&["verdict", "REFUSED: unbound_token"]);
    let run = s.inspect_with_keys(&bearer, &s.a_pem, &["--binding", "if-bound"]);
    assert_eq!(run.code, 0, "{run:?}");
    run.line_with(&["=> not bound", "if-bound"]);
}

#[test]
fn malformed_tokens_and_bad_flags() {
    let run = certbound(["inspect", "not-a-jwt"]);
    assert_eq!(run.code, 1, "{run:?}");
    run.line_with(&["token", "NOT a well-formed JWT: malformed_token"]);
    run.line_with(&["expected 3 dot-separated segments", "found 1"]);

    let run = certbound(["inspect", "eyJhbGciOiJFUzI1NiJ9.e30=.c2ln"]);
    run.line_with(&["payload segment is not base64url"]);

    let run = certbound(["inspect", "a.b.c.d.e"]);
    run.line_with(&["encrypted token (JWE)"]);

    // Usage errors: one line on stderr, exit 2.
    for args in [
        vec!["inspect", "x", "--jwks-file", "jwks.json"],
        vec!["inspect", "x", "--issuer", ISS],
        vec!["inspect", "x", "--binding", "sometimes"],
        vec!["inspect", "x", "--cert", "/nonexistent/cert.pem"],
        vec!["inspect", ""],
    ] {
        let run = certbound(&args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {run:?}");
        assert!(run.stderr.starts_with("error: "), "{args:?}: {run:?}");
    }
}

/// Every extreme NumericDate in `iat`, `nbf` and `exp`, signed and checked by the layer through
/// the real binary: no overflow, no panic (the test binary is built with overflow checks), the
/// raw number where there is no calendar date, and the layer's own verdict.
#[test]
fn extreme_times_never_overflow() {
    let s = setup("extreme");
    let no_date = "no calendar date (outside the years 0000–9999)";
    // (value, what its date reads as, the layer's verdict per claim: iat, nbf, exp)
    let cases: Vec<(Value, String, [&str; 3])> = vec![
        (
            json!(i64::MIN),
            format!("-9223372036854775808 s since 1970: {no_date}"),
            ["ACCEPTED", "ACCEPTED", "REFUSED: expired"],
        ),
        (
            json!(i64::MAX),
            format!("9223372036854775807 s since 1970: {no_date}"),
            [
                "REFUSED: issued_in_future",
                "REFUSED: not_yet_valid",
                "ACCEPTED",
            ],
        ),
        (
            json!(1e300),
            format!("1e+300 s since 1970: {no_date}"),
            [
                "REFUSED: issued_in_future",
                "REFUSED: not_yet_valid",
                "ACCEPTED",
            ],
        ),
        (
            json!(-1e300),
            format!("-1e+300 s since 1970: {no_date}"),
            ["ACCEPTED", "ACCEPTED", "REFUSED: expired"],
        ),
        (
            json!(u64::MAX),
            format!("18446744073709551615 s since 1970: {no_date}"),
            [
                "REFUSED: issued_in_future",
                "REFUSED: not_yet_valid",
                "ACCEPTED",
            ],
        ),
        (
            json!(-1),
            "1969-12-31 23:59:59 UTC".to_owned(),
            ["ACCEPTED", "ACCEPTED", "REFUSED: expired"],
        ),
        (
            json!(-0.5),
            "1969-12-31 23:59:59 UTC".to_owned(),
            ["ACCEPTED", "ACCEPTED", "REFUSED: expired"],
        ),
        (
            json!(1.75),
            "1970-01-01 00:00:01 UTC".to_owned(),
            ["ACCEPTED", "ACCEPTED", "REFUSED: expired"],
        ),
        (
            json!(253_402_300_800_i64),
            format!("253402300800 s since 1970: {no_date}"),
            [
                "REFUSED: issued_in_future",
                "REFUSED: not_yet_valid",
                "ACCEPTED",
            ],
        ),
    ];
    for (value, date, verdicts) in &cases {
        for (claim, verdict) in ["iat", "nbf", "exp"].into_iter().zip(verdicts) {
            let mut claims = bound_claims(ISS, AUD, &s.tp_a);
            claims[claim] = value.clone();
            let token = s.key.sign(&claims).unwrap();
            let run = s.inspect_with_keys(&token, &s.a_pem, &[]);
            let what = format!("{claim} = {value}: {run:?}");
            assert!(run.code == 0 || run.code == 1, "{what}");
            assert!(!run.stderr.contains("panicked"), "{what}");
            run.line_with(&[claim, date]);
            run.line_with(&["verdict", verdict]);
        }
    }

    // The relative times, in i128: the far ends read as "over 10000 y".
    let with = |claim: &str, value: Value| {
        let mut claims = bound_claims(ISS, AUD, &s.tp_a);
        claims[claim] = value;
        s.inspect_with_keys(&s.key.sign(&claims).unwrap(), &s.a_pem, &[])
    };
    let run = with("exp", json!(i64::MIN));
    run.line_with(&["expiry", "expired over 10000 y ago (-9223372036854775808 s"]);
    run.line_with(&["hint", "it expired over 10000 y ago"]);
    with("exp", json!(1e300)).line_with(&["expiry", "expires in over 10000 y (1e+300 s"]);
    with("iat", json!(i64::MAX)).line_with(&["iat", "(issued in over 10000 y)"]);
    with("nbf", json!(-1e300)).line_with(&["nbf", "(valid since over 10000 y ago)"]);
    with("nbf", json!(i64::MAX)).line_with(&["nbf", "(not valid for another over 10000 y)"]);
    with("exp", json!(-1)).line_with(&["expiry", "expired 5", "y ago (1969-12-31 23:59:59 UTC)"]);
    // `now` read again here: the runs above take seconds, and "60 min" must not become "59".
    with("exp", json!(unix_now() as f64 + 3600.5)).line_with(&["expiry", "expires in 60 min"]);

    // Numbers only raw JSON can carry (no signature needed: the token is read, not verified).
    let unsigned = |payload: &str| {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        )
    };
    let run = certbound([
        "inspect",
        &unsigned(r#"{"exp":123456789012345678901234567890,"iat":-99999999999999999999999}"#),
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    run.line_with(&["expiry", "expires in over 10000 y", no_date]);
    run.line_with(&["iat", "(issued over 10000 y ago)"]);
    // Beyond f64: serde_json refuses the number, so the token is malformed — said, not a panic.
    let run = certbound(["inspect", &unsigned(r#"{"exp":1e400}"#)]);
    assert_eq!(run.code, 1, "{run:?}");
    run.line_with(&["token", "NOT a well-formed JWT"]);
}
