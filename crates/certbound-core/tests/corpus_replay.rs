//! Replays every committed fuzz input (`fuzz/corpus/<target>/*`) through the same harness the
//! fuzz targets run (`fuzz/src/harness.rs`), as plain tests: CI never runs a fuzzer, but every
//! seed and every minimized interesting input stays a regression test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../fuzz/src/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::path::{Path, PathBuf};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// Runs `harness` on every file of `fuzz/corpus/<target>`; returns how many there were.
fn replay(target: &str, harness: fn(&[u8])) -> usize {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for file in &files {
        let data = std::fs::read(file).unwrap();
        let outcome = std::panic::catch_unwind(|| harness(&data));
        assert!(outcome.is_ok(), "{target}: {} fails", file.display());
    }
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    files.len()
}

#[test]
fn token_corpus() {
    replay("token", harness::token);
}

#[test]
fn bearer_corpus() {
    replay("bearer", harness::bearer);
}

#[test]
fn cnf_corpus() {
    replay("cnf", harness::cnf);
}

#[test]
fn forwarded_corpus() {
    replay("forwarded", harness::forwarded);
}

#[test]
fn jwks_corpus() {
    replay("jwks", harness::jwks);
}

#[test]
fn introspection_corpus() {
    // The committed seeds include accepted responses, so the oracles run on acceptances too.
    replay("introspection", harness::introspection);
    let dir = corpus_dir("introspection");
    for (seed, accepted) in [
        ("001-active-bound", true),
        ("002-inactive", false),
        ("003-duplicate", false),
        ("004-unbound-aud-list", true),
        ("005-signed", true),
        ("006-forged-jwt", false),
        ("007-refresh", false),
    ] {
        let data = std::fs::read(dir.join(seed)).unwrap();
        assert_eq!(harness::introspection_accepted(&data), accepted, "{seed}");
    }
}

#[test]
fn dpop_corpus() {
    // The committed seeds include a valid proof, so the oracles run on an accepted proof too.
    replay("dpop", harness::dpop);
    let dir = corpus_dir("dpop");
    for (seed, accepted) in [
        ("001-valid", true),
        ("002-htu-normalised", true),
        ("003-nonce", true),
        ("004-private-jwk", false),
        ("005-wrong-ath", false),
    ] {
        let data = std::fs::read(dir.join(seed)).unwrap();
        assert_eq!(harness::dpop_accepted(&data), accepted, "{seed}");
    }
}

/// Regenerates `fuzz/keys/*` and the seed corpora (fresh keys each time, so every committed
/// token seed changes). Run by hand, then commit the result:
/// `cargo test -p certbound-core --test corpus_replay -- --ignored regenerate`
#[test]
#[ignore = "writes fuzz/keys and fuzz/corpus; run by hand"]
fn regenerate_fuzz_keys_and_seeds() {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    use certbound_core::{Algorithm, Thumbprint};
    use certbound_dev::{DevCa, KeyKind, SigningKey};
    use serde_json::json;

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let write = |rel: &str, data: &[u8]| {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    };
    for target in ["token", "bearer", "cnf", "forwarded", "jwks"] {
        let dir = root.join("corpus").join(target);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    // Keys and really issued tokens.
    let signers = [
        SigningKey::generate("ec", Algorithm::ES256).unwrap(),
        SigningKey::generate("ec384", Algorithm::ES384).unwrap(),
        SigningKey::generate("rsa", Algorithm::RS256).unwrap(),
        SigningKey::generate("ps", Algorithm::PS256).unwrap(),
    ];
    let jwks = certbound_dev::jwks_document(&signers.iter().collect::<Vec<_>>());
    let jwks_text = serde_json::to_string_pretty(&jwks).unwrap();
    write("keys/jwks.json", jwks_text.as_bytes());

    let tp = Thumbprint::of_der(harness::CLIENT_DER).to_string();
    let claims = json!({
        "iss": harness::ISSUER, "aud": harness::AUDIENCE, "sub": "user-1",
        "client_id": "client-1", "scope": "read write", "jti": "seed-1",
        "iat": harness::NOW - 10, "exp": 4_102_444_800u64, "cnf": {"x5t#S256": tp},
    });
    let mut valid = Vec::new();
    for s in &signers {
        valid.push(s.sign(&claims).unwrap());
    }
    let hs_header = br#"{"alg":"HS256","kid":"hs","typ":"at+jwt"}"#;
    valid.push(harness::sign_hs256(
        hs_header,
        claims.to_string().as_bytes(),
    ));
    write(
        "keys/valid_tokens.txt",
        format!("{}\n", valid.join("\n")).as_bytes(),
    );

    let mut n = 0;
    let mut seed = |target: &str, name: &str, data: &[u8]| {
        n += 1;
        write(&format!("corpus/{target}/{n:03}-{name}"), data);
    };

    // token: valid, near-valid compact tokens, and structured HEADER\nCLAIMS inputs.
    for (i, t) in valid.iter().enumerate() {
        seed("token", &format!("valid-{i}"), t.as_bytes());
    }
    let v = &valid[0];
    let (input, sig) = v.rsplit_once('.').unwrap();
    let mut flipped = sig.to_owned().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'A' { b'Q' } else { b'A' };
    seed(
        "token",
        "sig-last-char",
        format!("{input}.{}", String::from_utf8(flipped).unwrap()).as_bytes(),
    );
    seed("token", "padded", format!("{v}=").as_bytes());
    seed("token", "four-segments", format!("{v}.e30").as_bytes());
    seed("token", "no-signature", format!("{input}.").as_bytes());
    let enc = |s: &str| URL_SAFE_NO_PAD.encode(s);
    let (_, claims_seg) = input.split_once('.').unwrap();
    seed(
        "token",
        "alg-none",
        format!("{}.{claims_seg}.", enc(r#"{"alg":"none"}"#)).as_bytes(),
    );
    seed(
        "token",
        "alg-hs-with-rsa-kid",
        format!(
            "{}.{claims_seg}.{sig}",
            enc(r#"{"alg":"HS256","kid":"rsa"}"#)
        )
        .as_bytes(),
    );
    let structured = |h: &str, c: &serde_json::Value| format!("{h}\n{c}").into_bytes();
    seed(
        "token",
        "s-valid",
        &structured(r#"{"alg":"HS256","kid":"hs","typ":"at+jwt"}"#, &claims),
    );
    seed(
        "token",
        "s-crit",
        &structured(r#"{"alg":"HS256","kid":"hs","crit":["exp"]}"#, &claims),
    );
    seed(
        "token",
        "s-dup-alg",
        &structured(r#"{"alg":"HS256","alg":"none","kid":"hs"}"#, &claims),
    );
    let mut c = claims.clone();
    c["exp"] = json!("4102444800");
    seed(
        "token",
        "s-exp-string",
        &structured(r#"{"alg":"HS256","kid":"hs"}"#, &c),
    );
    let mut c = claims.clone();
    c["aud"] = json!(["https://other", harness::AUDIENCE]);
    c["nbf"] = json!(harness::NOW - 1);
    seed("token", "s-aud-list", &structured(r#"{"alg":"HS256"}"#, &c));
    let mut c = claims.clone();
    c["cnf"] = json!({"x5t#S256": tp, "jkt": "x", "x5t": "abc"});
    seed(
        "token",
        "s-cnf-extra",
        &structured(
            r#"{"alg":"HS256","kid":"hs","typ":"application/at+jwt"}"#,
            &c,
        ),
    );
    seed("token", "s-dup-iss", format!(
        "{{\"alg\":\"HS256\"}}\n{{\"iss\":\"https://evil/\",\"iss\":\"{}\",\"aud\":\"{}\",\"exp\":4102444800}}",
        harness::ISSUER, harness::AUDIENCE).as_bytes());

    // bearer
    for (name, v) in [
        ("valid", format!("Bearer {}", valid[0])),
        ("lower-spaces", "bearer   a.b.c  ".into()),
        ("basic", "Basic dXNlcjpwYXNz".into()),
        ("padding", "Bearer abc==".into()),
        ("inner-equals", "Bearer a=b".into()),
        ("tab", "Bearer\ta.b.c".into()),
        ("token68-chars", "BEARER A-._~+/z==".into()),
        ("empty", "Bearer ".into()),
    ] {
        seed("bearer", name, v.as_bytes());
    }

    // cnf
    let tp_b = tp.clone().into_bytes();
    let mut trailing = tp_b.clone();
    trailing[42] = if trailing[42] == b'A' { b'B' } else { b'A' };
    for (name, v) in [
        ("thumbprint", tp_b.clone()),
        ("trailing-bits", trailing),
        (
            "hex",
            Thumbprint::of_der(harness::CLIENT_DER)
                .to_hex()
                .into_bytes(),
        ),
        ("object", format!(r#"{{"x5t#S256":"{tp}"}}"#).into_bytes()),
        (
            "object-extra",
            format!(r#"{{"jkt":"abc","x5t#S256":"{tp}","n":{{"a":[1]}}}}"#).into_bytes(),
        ),
        ("object-sha1", br#"{"x5t":"3q2-7w"}"#.to_vec()),
        ("object-number", br#"{"x5t#S256":5}"#.to_vec()),
        ("string", format!(r#""{tp}""#).into_bytes()),
    ] {
        seed("cnf", name, &v);
    }

    // forwarded: one correct value per format from a real certificate, trusted peer.
    let ca = DevCa::new("fuzz seed CA").unwrap();
    let leaf = ca.client_cert("fuzz-client", KeyKind::EcP256).unwrap();
    let der: &[u8] = leaf.cert_der.as_ref();
    let b64 = STANDARD.encode(der);
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        b64.as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let escape = |s: &str, keep: &[u8]| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    let hex = Thumbprint::of_der(der).to_hex();
    let formats = harness::forwarded_formats();
    let value_for = |i: usize| -> Vec<u8> {
        match i {
            0 | 8 => escape(&pem, b"").into_bytes(),
            1 => format!(
                "By=spiffe://api;Hash={hex};Cert=\"{}\";Subject=\"CN=x\"",
                escape(&pem, b"")
            )
            .into_bytes(),
            2 => format!("Hash={hex};By=spiffe://api").into_bytes(),
            3 => format!(":{b64}:").into_bytes(),
            4 | 5 => escape(&pem, b"+=/").into_bytes(),
            6 => format!(
                "{b64},{}",
                STANDARD.encode(ca.cert().cert_der.as_ref() as &[u8])
            )
            .into_bytes(),
            7 => b64.clone().into_bytes(),
            _ => format!("{}\nSUCCESS", escape(&pem, b"")).into_bytes(),
        }
    };
    for i in 0..formats.len() {
        let mut data = vec![i as u8, 3];
        data.extend(value_for(i));
        seed("forwarded", &format!("format-{i}"), &data);
    }
    let mut untrusted = vec![7, 1];
    untrusted.extend(b64.as_bytes());
    seed("forwarded", "untrusted-peer", &untrusted);
    let mut dup = vec![3, 3 | 8];
    dup.extend(format!(":{b64}:").as_bytes());
    seed("forwarded", "duplicated", &dup);
    seed(
        "forwarded",
        "xfcc-hash-mismatch",
        format!(
            "\x01\x03Hash={};Cert=\"{}\"",
            "0".repeat(64),
            escape(&pem, b"")
        )
        .as_bytes(),
    );
    seed(
        "forwarded",
        "auth0-failed",
        format!("\x09\x03{}\nFAILED: self signed", escape(&pem, b"")).as_bytes(),
    );

    // envoyproxy/envoy#32945: what Envoy writes for a certificate whose URI or DNS SAN carries
    // another element or pair (the victim's Hash/Cert); all must be refused.
    let attacker = "ab".repeat(32);
    let victim_cert = escape(&pem, b"");
    for (name, selector, value) in [
        ("xfcc-san-uri-hash", 2u8, format!("By=spiffe://edge;Hash={attacker};Subject=\"CN=m\";URI=urn:x,Hash={hex}")),
        ("xfcc-san-uri-hash-pair", 2, format!("By=spiffe://edge;Hash={attacker};Subject=\"CN=m\";URI=urn:x;Hash={hex}")),
        ("xfcc-san-uri-cert", 1, format!("By=spiffe://edge;Hash={attacker};Cert=\"{victim_cert}\";Subject=\"CN=m\";URI=urn:x,Cert={victim_cert}")),
        ("xfcc-san-dns-hash", 2, format!("By=spiffe://edge;Hash={attacker};Subject=\"CN=m\";URI=;DNS=a.example,Hash={hex}")),
        ("xfcc-san-quote", 2, format!("By=spiffe://edge;Hash={attacker};Subject=\"CN=m\";URI=urn:\",Hash={hex};DNS=x\"")),
    ] {
        let mut data = vec![selector, 3];
        data.extend(value.as_bytes());
        seed("forwarded", name, &data);
    }

    // jwks
    seed("jwks", "real", jwks_text.as_bytes());
    seed("jwks", "compact", jwks.to_string().as_bytes());
    for (name, doc) in [
        (
            "enc-and-oct",
            json!({"keys":[{"kty":"oct","k":"AAAA","kid":"o"},{"kty":"EC","use":"enc","crv":"P-256","x":"AA","y":"AA"}]}),
        ),
        (
            "alg-mismatch",
            json!({"keys":[{"kty":"EC","crv":"P-256","alg":"RS256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}),
        ),
        (
            "key-ops",
            json!({"keys":[{"kty":"OKP","crv":"Ed25519","key_ops":["verify"],"x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}),
        ),
        (
            "weak-rsa",
            json!({"keys":[{"kty":"RSA","kid":"w","n":"AQAB","e":"AQAB"}]}),
        ),
    ] {
        seed("jwks", name, doc.to_string().as_bytes());
    }
    seed("jwks", "duplicate-keys", br#"{"keys":[],"keys":[]}"#);
    seed("jwks", "not-object", b"[]");
}
