//! `certbound dpop key`, `certbound dpop proof` and `certbound inspect --proof`, through the real
//! binary: keys and proofs certbound-core's `DpopPolicy` accepts (and refuses when they do not
//! fit the request), and inspect's verdict with the layer's own reason code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use certbound::{CertBound, Dpop, StaticJwks};
use certbound_core::{access_token_hash, jwk_thumbprint, DpopPolicy, ProofRequest};
use certbound_core::{Algorithm, Thumbprint};
use certbound_dev::dpop::{dpop_bound_claims, fresh_jti, DpopKey};
use certbound_dev::{jwks_document, unix_now, SigningKey};
use common::{certbound, certbound_stdin, Run, TempDir};
use serde_json::{json, Value};

const ISS: &str = "https://issuer.example";
const AUD: &str = "https://api.example";
const URL: &str = "https://api.example/accounts";

/// `certbound dpop key --out DIR/NAME [--alg ALG]`: the key file and the printed jkt and jwk.
fn make_key(dir: &TempDir, name: &str, alg: Option<&str>) -> (PathBuf, Thumbprint, Value) {
    let path = dir.path().join(name);
    let mut args = vec!["dpop", "key", "--out", path.to_str().unwrap()];
    if let Some(alg) = alg {
        args.extend(["--alg", alg]);
    }
    let run = certbound(&args);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stderr, "", "{run:?}");
    let field = |label: &str| {
        run.stdout
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label:?} line: {run:?}"))
            .trim()
            .to_owned()
    };
    let jkt = Thumbprint::from_cnf_value(&field("jkt ")).unwrap();
    let jwk: Value = serde_json::from_str(&field("jwk ")).unwrap();
    (path, jkt, jwk)
}

/// `certbound dpop proof ARGS…`: exactly one line on stdout, the proof.
fn make_proof(args: &[&str]) -> String {
    let mut all = vec!["dpop", "proof"];
    all.extend_from_slice(args);
    let run = certbound(&all);
    one_proof(run)
}

fn one_proof(run: Run) -> String {
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stderr, "", "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "only the proof on stdout: {run:?}");
    assert_eq!(lines[0].split('.').count(), 3, "{run:?}");
    lines[0].to_owned()
}

fn payload(proof: &str) -> Value {
    let segment = proof.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn key_then_proof_is_accepted_by_the_core_policy() {
    let dir = TempDir::new("dpop-key");
    let (key, jkt, jwk) = make_key(&dir, "client.pem", None);
    #[cfg(unix)]
    assert_eq!(mode(&key), 0o600);
    let pem = std::fs::read_to_string(&key).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8 PEM");
    // The printed jwk is public, and the printed jkt is its RFC 7638 thumbprint.
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["crv"], "P-256");
    assert!(jwk.get("d").is_none(), "{jwk}");
    assert_eq!(jwk_thumbprint(jwk.as_object().unwrap()), Some(jkt));

    let token = "the.access.token";
    let proof = make_proof(&[
        "--key",
        key.to_str().unwrap(),
        "--method",
        "GET",
        "--url",
        "https://api.example/accounts?page=2#top",
        "--token",
        token,
    ]);
    let claims = payload(&proof);
    assert_eq!(claims["htu"], URL, "query and fragment are left out");
    assert_eq!(claims["ath"], access_token_hash(token));
    let now = unix_now();
    let policy = DpopPolicy::default();
    let verified = policy
        .verify_proof(&proof, token, &ProofRequest::new("GET", URL), now)
        .unwrap();
    assert_eq!(verified.jkt(), &jkt);
    assert_eq!(verified.nonce(), None);
    // The same proof for another method, URL or token is refused: the checks can fail.
    for (method, url, tok, code) in [
        ("POST", URL, token, "dpop_method_mismatch"),
        (
            "GET",
            "https://api.example/other",
            token,
            "dpop_uri_mismatch",
        ),
        (
            "GET",
            URL,
            "another.access.token",
            "dpop_token_hash_mismatch",
        ),
    ] {
        let err = policy
            .verify_proof(&proof, tok, &ProofRequest::new(method, url), now)
            .unwrap_err();
        assert_eq!(err.code(), code);
    }

    // With a nonce, and the token from stdin (as a copied `DPoP …` header value).
    let run = certbound_stdin(
        [
            "dpop",
            "proof",
            "--key",
            key.to_str().unwrap(),
            "--method",
            "POST",
            "--url",
            URL,
            "--token",
            "-",
            "--nonce",
            "server-nonce-1",
        ],
        &format!("DPoP {token}\n"),
    );
    let proof = one_proof(run);
    let verified = policy
        .verify_proof(&proof, token, &ProofRequest::new("POST", URL), now)
        .unwrap();
    assert_eq!(verified.nonce(), Some("server-nonce-1"));
    // Every proof has its own jti.
    let again = make_proof(&[
        "--key",
        key.to_str().unwrap(),
        "--method",
        "GET",
        "--url",
        URL,
    ]);
    assert_ne!(payload(&again)["jti"], claims["jti"]);
    assert!(payload(&again).get("ath").is_none(), "no --token, no ath");

    // Running `dpop key` again keeps the key (a new one only with --force).
    let (_, same, _) = make_key(&dir, "client.pem", None);
    assert_eq!(same, jkt);
    let run = certbound(["dpop", "key", "--out", key.to_str().unwrap(), "--force"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stdout.contains(&jkt.to_string()), "{run:?}");
}

#[test]
fn every_algorithm_and_keys_made_by_openssl() {
    let dir = TempDir::new("dpop-algs");
    let token = "t0k3n";
    for alg in ["ES256", "ES384", "EdDSA", "PS256", "RS256"] {
        let (key, jkt, _) = make_key(&dir, &format!("{alg}.pem"), Some(alg));
        // The algorithm comes from the key type; an RSA key signs PS256 unless told RS256.
        let mut args = vec![
            "--key",
            key.to_str().unwrap(),
            "--method",
            "GET",
            "--url",
            URL,
            "--token",
            token,
        ];
        if alg == "RS256" {
            args.extend(["--alg", "RS256"]);
        }
        let proof = make_proof(&args);
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(proof.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], alg);
        assert_eq!(header["typ"], "dpop+jwt");
        let policy = DpopPolicy::default().algorithms([
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
            Algorithm::PS256,
            Algorithm::RS256,
        ]);
        let verified = policy
            .verify_proof(&proof, token, &ProofRequest::new("GET", URL), unix_now())
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(verified.jkt(), &jkt, "{alg}");
        if alg == "RS256" {
            // Not in the default allow-list.
            let err = DpopPolicy::default()
                .verify_proof(&proof, token, &ProofRequest::new("GET", URL), unix_now())
                .unwrap_err();
            assert_eq!(err.code(), "disallowed_dpop_algorithm");
        }
    }
    // A key the wrong algorithm is asked of: one error line, exit 2.
    let es = dir.path().join("ES256.pem");
    let run = certbound([
        "dpop",
        "proof",
        "--key",
        es.to_str().unwrap(),
        "--alg",
        "PS256",
        "--method",
        "GET",
        "--url",
        URL,
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("the key is for ES256, not PS256"),
        "{run:?}"
    );

    // Keys from the real openssl (PKCS#8 PEM) work the same.
    for (name, args) in [
        (
            "openssl-p256.pem",
            vec!["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        ),
        ("openssl-ed25519.pem", vec!["-algorithm", "ED25519"]),
    ] {
        let path = dir.path().join(name);
        let out = std::process::Command::new("openssl")
            .arg("genpkey")
            .args(&args)
            .arg("-out")
            .arg(&path)
            .output()
            .expect("openssl is on PATH (`cargo xtask test` installs it)");
        assert!(out.status.success(), "{out:?}");
        let proof = make_proof(&[
            "--key",
            path.to_str().unwrap(),
            "--method",
            "DELETE",
            "--url",
            URL,
            "--token",
            token,
        ]);
        DpopPolicy::default()
            .verify_proof(&proof, token, &ProofRequest::new("DELETE", URL), unix_now())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn usage_errors_are_one_line() {
    let dir = TempDir::new("dpop-usage");
    let (key, _, _) = make_key(&dir, "k.pem", None);
    let key = key.to_str().unwrap();
    let not_a_key = dir.write("not-a-key.pem", "hello");
    for args in [
        vec!["dpop", "proof", "--key", key, "--url", URL], // no --method
        vec!["dpop", "proof", "--key", key, "--method", "GET"], // no --url
        vec![
            "dpop",
            "proof",
            "--key",
            key,
            "--method",
            "GET",
            "--url",
            "api.example/x",
        ],
        vec![
            "dpop", "proof", "--key", key, "--method", "G T", "--url", URL,
        ],
        vec![
            "dpop",
            "proof",
            "--key",
            "/nonexistent.pem",
            "--method",
            "GET",
            "--url",
            URL,
        ],
        vec![
            "dpop",
            "proof",
            "--key",
            not_a_key.to_str().unwrap(),
            "--method",
            "GET",
            "--url",
            URL,
        ],
        vec!["dpop", "key", "--alg", "HS256"],
        vec!["dpop", "key", "--alg", "none"],
        vec!["inspect", "x", "--proof", "p"], // --proof needs --method and --url
        vec!["inspect", "x", "--url", URL],   // --url needs --proof
    ] {
        let run = certbound(&args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert_eq!(run.stdout, "", "{args:?}: {run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {run:?}");
        assert!(run.stderr.starts_with("error: "), "{args:?}: {run:?}");
    }
}

/// A DPoP client key made by the binary, an issuer key and its JWKS, and a token bound to the
/// client key.
struct Setup {
    dir: TempDir,
    key_path: PathBuf,
    client: DpopKey,
    jkt: Thumbprint,
    jwks: PathBuf,
    issuer: SigningKey,
    token: String,
}

fn setup(tag: &str) -> Setup {
    let dir = TempDir::new(tag);
    let (key_path, jkt, _) = make_key(&dir, "client.pem", None);
    let client = DpopKey::from_pkcs8_pem(
        Algorithm::ES256,
        &std::fs::read_to_string(&key_path).unwrap(),
    )
    .unwrap();
    assert_eq!(client.jkt(), jkt);
    let issuer = SigningKey::generate("key-1", Algorithm::ES256).unwrap();
    let token = issuer.sign(&dpop_bound_claims(ISS, AUD, &jkt)).unwrap();
    Setup {
        jwks: dir.write("jwks.json", jwks_document(&[&issuer]).to_string()),
        dir,
        key_path,
        client,
        jkt,
        issuer,
        token,
    }
}

impl Setup {
    /// A proof made by the binary for this token.
    fn proof(&self, method: &str, url: &str) -> String {
        make_proof(&[
            "--key",
            self.key_path.to_str().unwrap(),
            "--method",
            method,
            "--url",
            url,
            "--token",
            &self.token,
        ])
    }

    /// `inspect TOKEN --jwks-file … --issuer ISS --audience AUD [--proof P --method GET --url URL]`.
    fn inspect(&self, token: &str, proof: Option<&str>) -> Run {
        let mut args: Vec<String> = vec![
            "inspect".into(),
            token.into(),
            "--jwks-file".into(),
            self.jwks.display().to_string(),
            "--issuer".into(),
            ISS.into(),
            "--audience".into(),
            AUD.into(),
        ];
        if let Some(proof) = proof {
            args.extend([
                "--proof".into(),
                proof.into(),
                "--method".into(),
                "GET".into(),
                "--url".into(),
                URL.into(),
            ]);
        }
        certbound(args)
    }
}

#[test]
fn inspect_explains_a_dpop_bound_token_and_its_proof() {
    let s = setup("inspect-dpop");
    let jkt = s.jkt.to_string();

    // Without a proof: the jkt binding, and the layer's refusal of the token as Bearer.
    let run = s.inspect(&s.token, None);
    println!("{}", run.stdout);
    assert_eq!(run.code, 1, "{run:?}");
    run.line_with(&["cnf", "{\"jkt\":", &jkt]);
    run.line_with(&["binding", "token is bound to key", &jkt, "(cnf.jkt, DPoP)"]);
    run.line_with(&["proof", "none given (--proof PROOF --method M --url U)"]);
    assert!(
        !run.stdout.contains("--cert CERT"),
        "no certificate needed: {run:?}"
    );
    run.line_with(&["=> dpop_bound_token_as_bearer"]);
    run.line_with(&[
        "verdict",
        "REFUSED: dpop_bound_token_as_bearer",
        "HTTP 401, invalid_token",
    ]);
    run.line_with(&[
        "hint",
        "Authorization: DPoP",
        "--proof PROOF --method M --url U",
    ]);

    // With a good proof from `certbound dpop proof`: accepted by the layer's DPoP path.
    let proof = s.proof("GET", URL);
    let run = s.inspect(&s.token, Some(&proof));
    println!("{}", run.stdout);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stderr, "", "{run:?}");
    let bound = run.line_with(&["token is bound to key", &jkt]);
    let signed = run.line_with(&["proof is signed by key", &jkt]);
    assert_eq!(
        bound.find(&jkt),
        signed.find(&jkt),
        "aligned:\n{bound}\n{signed}"
    );
    run.line_with(&["=> match: the proof is signed by the key the token is bound to"]);
    for check in [
        "typ", "alg", "jwk", "sig", "jti", "htm", "htu", "iat", "ath",
    ] {
        run.line_with(&["ok", &format!(" {check} ")]);
    }
    run.line_with(&["ath", "= SHA-256 of the token"]);
    run.line_with(&["=> the proof holds for GET", URL]);
    run.line_with(&["checked", "CertBoundLayer::verify_dpop", URL]);
    run.line_with(&["verdict", "ACCEPTED", "ES256", "key-1"]);
    // Neither the token nor the proof is printed whole.
    assert!(!run.stdout.contains(&s.token));
    assert!(!run.stdout.contains(&proof));

    // Without keys: the proof's checks, and no verdict.
    let run = certbound([
        "inspect", &s.token, "--proof", &proof, "--method", "POST", "--url", URL,
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    run.line_with(&["FAILS", "htm", "\"GET\"; the request is POST"]);
    run.line_with(&["-     htu"]);
    run.line_with(&["=> dpop_method_mismatch"]);
    run.line_with(&["verdict", "NOT CHECKED"]);
    run.line_with(&["hint", "htm is \"GET\"; the request is POST"]);

    // A proof given as a file holding a copied `DPoP: …` header line.
    let file = s.dir.write("proof.txt", format!("DPoP: {proof}\n"));
    let run = s.inspect(&s.token, Some(file.to_str().unwrap()));
    assert_eq!(run.code, 0, "{run:?}");
}

/// Every refusal `inspect --proof` reports carries exactly the code `CertBoundLayer::verify_dpop`
/// gives for the same token, proof and request.
#[test]
fn inspect_of_bad_proofs_gives_the_layers_reason_code() {
    let s = setup("inspect-dpop-bad");
    let now = unix_now();
    let claims = |changes: Value| {
        let mut c = json!({"jti": fresh_jti(), "htm": "GET", "htu": URL, "iat": now,
                           "ath": access_token_hash(&s.token)});
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let header = |changes: Value| {
        let mut h = s.client.header();
        for (k, v) in changes.as_object().unwrap() {
            h[k] = v.clone();
        }
        h
    };
    let signed = |h: Value, c: Value| s.client.proof_with(&h, &c).unwrap();
    let other = DpopKey::generate(Algorithm::ES256).unwrap();
    let rsa = DpopKey::generate(Algorithm::RS256).unwrap();
    let mut private = s.client.header();
    private["jwk"]["d"] = json!("AAAA");
    // The client's jwk in the header, signed by another key.
    let forged = other
        .proof_with(&s.client.header(), &claims(json!({})))
        .unwrap();
    // A DPoP proof for a token bound to a certificate, not a key.
    let cert_bound = s
        .issuer
        .sign(&certbound_dev::bound_claims(
            ISS,
            AUD,
            &Thumbprint::of_der(b"cert"),
        ))
        .unwrap();
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "dpop_uri_mismatch",
            s.proof("GET", "https://api.example/other"),
            "htu",
            "FAILS",
        ),
        (
            "dpop_uri_mismatch",
            s.proof("GET", "https://evil.example/accounts"),
            "htu",
            "FAILS",
        ),
        ("dpop_method_mismatch", s.proof("POST", URL), "htm", "FAILS"),
        (
            "dpop_token_hash_mismatch",
            signed(
                s.client.header(),
                claims(json!({"ath": access_token_hash("another")})),
            ),
            "ath",
            "FAILS",
        ),
        (
            "dpop_proof_not_fresh",
            signed(s.client.header(), claims(json!({"iat": now - 3600}))),
            "iat",
            "FAILS",
        ),
        (
            "dpop_proof_not_fresh",
            signed(s.client.header(), claims(json!({"iat": now + 3600}))),
            "iat",
            "FAILS",
        ),
        (
            "malformed_dpop_proof",
            signed(s.client.header(), claims(json!({"jti": null}))),
            "jti",
            "FAILS",
        ),
        (
            "malformed_dpop_proof",
            signed(s.client.header(), claims(json!({"ath": null}))),
            "ath",
            "FAILS",
        ),
        (
            "wrong_dpop_proof_type",
            signed(header(json!({"typ": "JWT"})), claims(json!({}))),
            "typ",
            "FAILS",
        ),
        (
            "disallowed_dpop_algorithm",
            rsa.proof("GET", URL, Some(&s.token), None).unwrap(),
            "alg",
            "FAILS",
        ),
        (
            "invalid_dpop_key",
            signed(private, claims(json!({}))),
            "jwk",
            "FAILS",
        ),
        ("bad_dpop_signature", forged, "sig", "FAILS"),
        // A valid proof by another key than the token's cnf.jkt: the proof holds, the binding not.
        (
            "dpop_key_mismatch",
            other.proof("GET", URL, Some(&s.token), None).unwrap(),
            "ath",
            "ok",
        ),
        ("malformed_dpop_proof", "not-a-proof".to_owned(), "", ""),
    ];
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let layer = runtime
        .block_on(
            CertBound::builder()
                .issuer(ISS)
                .audience(AUD)
                .key_source(StaticJwks::from_file(&s.jwks).unwrap())
                .dpop(Dpop::default())
                .build(),
        )
        .unwrap();
    for (code, proof, check, mark) in cases {
        let expected = runtime
            .block_on(layer.verify_dpop(&s.token, &proof, "GET", URL, None))
            .expect_err(code);
        assert_eq!(expected.code(), code, "the layer's own code");
        let run = s.inspect(&s.token, Some(&proof));
        println!("{}", run.stdout);
        assert_eq!(run.code, 1, "{code}: {run:?}");
        assert_eq!(run.stderr, "", "{code}: {run:?}");
        run.line_with(&["verdict", &format!("REFUSED: {code} — {expected}")]);
        if !check.is_empty() {
            run.line_with(&[mark, &format!(" {check} ")]);
        }
        assert!(
            run.stdout.lines().any(|l| l.starts_with("hint ")),
            "{code}: {run:?}"
        );
    }
    // The layer's answer to the certificate-bound token with a proof.
    let proof = make_proof(&[
        "--key",
        s.key_path.to_str().unwrap(),
        "--method",
        "GET",
        "--url",
        URL,
        "--token",
        &cert_bound,
    ]);
    let run = s.inspect(&cert_bound, Some(&proof));
    assert_eq!(run.code, 1, "{run:?}");
    run.line_with(&["verdict", "REFUSED: dpop_key_mismatch"]);
    run.line_with(&["hint", "no cnf.jkt"]);
}

/// `certbound dpop key | head -0`: the reader is gone before the first line; the command ends
/// quietly (exit 0, nothing on stderr) instead of panicking on the broken pipe.
#[test]
fn a_closed_stdout_ends_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_certbound"))
        .args(["dpop", "key"])
        .stdin(std::process::Stdio::null())
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}
