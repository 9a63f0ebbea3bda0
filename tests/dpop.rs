//! DPoP (RFC 9449) end to end over real sockets: the example routes behind the certbound layer
//! built with `.dpop(Dpop::default()).public_url(…)`, served over HTTPS on loopback, a real dev
//! issuer (HTTPS discovery + JWKS), and a real reqwest client sending `Authorization: DPoP` and
//! `DPoP` headers — the OpenID FAPI 2.0 DPoP negative matrix (the conformance suite's
//! FAPI2SPFinalDpopNegativeTests) and its positives, the challenges, RFC 9728 metadata, replay
//! within one process, server nonces, and `htu` against spoofed forwarding headers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use certbound::NonceKeys;
use certbound::{CertBound, CertBoundBuilder, Dpop, Rejection};
use certbound::{ForwardedCertificates, ForwardedFormat};
use certbound_core::access_token_hash;
use certbound_core::Algorithm;
use certbound_dev::dpop::{dpop_bound_claims, fresh_jti, DpopKey};
use certbound_dev::issuer::TestIssuer;
use certbound_dev::{unix_now, SigningKey};
use common::{support, Api, Mode, AUDIENCE};
use serde_json::{json, Value};

/// The proof algorithms of `Dpop::default()`, as challenged and advertised.
const ALGS: &str = "ES256 ES384 PS256 EdDSA Ed25519";

/// A running API that accepts DPoP, a client key, and a token bound to it.
struct DpopApi {
    api: Api,
    client: DpopKey,
    token: String,
    /// The protected route, as clients call it.
    url: String,
    http: reqwest::Client,
}

/// One answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    challenges: Vec<String>,
    nonce: Option<String>,
    body: String,
}

impl DpopApi {
    /// The API with `.dpop(Dpop::default()).public_url(<its own URL>)`, then `configure`d
    /// (given the API's URL).
    async fn start(configure: impl FnOnce(CertBoundBuilder, &str) -> CertBoundBuilder) -> Self {
        Self::start_with(|b, url| configure(b.dpop(Dpop::default()).public_url(url), url)).await
    }

    /// The API with the layer configured by `configure` alone (issuer and audience set).
    async fn start_with(
        configure: impl FnOnce(CertBoundBuilder, &str) -> CertBoundBuilder,
    ) -> Self {
        let signer = SigningKey::generate("k1", Algorithm::ES256).unwrap();
        let issuer = TestIssuer::start(&[&signer]).await.unwrap();
        let listening = Api::bind(Mode::SelfSigned).await;
        let builder = CertBound::builder()
            .issuer(issuer.issuer_url())
            .audience(AUDIENCE)
            .jwks_root_certificates_pem(issuer.ca_pem().to_owned());
        let auth = configure(builder, &listening.url).build().await.unwrap();
        let mut api = listening.serve(auth);
        let client = DpopKey::generate(Algorithm::ES256).unwrap();
        let token = signer
            .sign(&dpop_bound_claims(
                issuer.issuer_url(),
                AUDIENCE,
                &client.jkt(),
            ))
            .unwrap();
        api.issuer = Some(issuer);
        api.signer = signer;
        let http = api.client(None); // DPoP clients present no certificate
        DpopApi {
            url: format!("{}/api/hello", api.url),
            api,
            client,
            token,
            http,
        }
    }

    /// A good proof for `GET self.url` and the token.
    fn proof(&self) -> String {
        self.client
            .proof("GET", &self.url, Some(&self.token), None)
            .unwrap()
    }

    /// The good proof's claims, changed (`null` removes one), signed by the client's key.
    fn proof_claims(&self, changes: Value) -> String {
        let claims = changed(self.good_claims(), changes);
        self.client
            .proof_with(&self.client.header(), &claims)
            .unwrap()
    }

    /// The good proof's header, changed (`null` removes a member), signed by the client's key.
    fn proof_header(&self, changes: Value) -> String {
        let header = changed(self.client.header(), changes);
        self.client
            .proof_with(&header, &self.good_claims())
            .unwrap()
    }

    fn good_claims(&self) -> Value {
        json!({"jti": fresh_jti(), "htm": "GET", "htu": self.url, "iat": unix_now(),
               "ath": access_token_hash(&self.token)})
    }

    /// `GET url` with `Authorization: <authorization>` and one `DPoP` header per proof.
    async fn send_to(
        &self,
        client: &reqwest::Client,
        url: &str,
        authorization: Option<&str>,
        proofs: &[&str],
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = client.get(url);
        if let Some(value) = authorization {
            req = req.header("authorization", value);
        }
        for proof in proofs {
            req = req.header("dpop", *proof);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        reply(req.send().await.unwrap()).await
    }

    /// `Authorization: DPoP <token>` and one `DPoP` header per proof, to the protected route.
    async fn send(&self, proofs: &[&str]) -> Reply {
        let authorization = format!("DPoP {}", self.token);
        self.send_to(&self.http, &self.url, Some(&authorization), proofs, &[])
            .await
    }
}

fn changed(mut object: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            object.as_object_mut().unwrap().remove(k);
        } else {
            object[k] = v.clone();
        }
    }
    object
}

async fn reply(resp: reqwest::Response) -> Reply {
    let status = resp.status().as_u16();
    let challenges = resp
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let nonce = resp
        .headers()
        .get("dpop-nonce")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.text().await.unwrap();
    Reply {
        status,
        challenges,
        nonce,
        body,
    }
}

impl Reply {
    /// 200 for the token's subject.
    fn assert_accepted(&self, case: &str) {
        assert_eq!(self.status, 200, "{case}: {self:?}");
        let body: Value = serde_json::from_str(&self.body).unwrap();
        assert_eq!(body["sub"], "user-123", "{case}");
        assert_eq!(body["thumbprint"], Value::Null, "{case}: no certificate");
        assert_eq!(
            body["jkt"].as_str().map(str::len),
            Some(43),
            "{case}: the DPoP key's thumbprint"
        );
    }

    /// Refused for `want`: its status, one challenge in `scheme` (a DPoP one names the
    /// algorithms), its error code and its reason as `error_description`.
    fn assert_refused(&self, case: &str, scheme: &str, want: Rejection) {
        assert_eq!(self.status, want.status().as_u16(), "{case}: {self:?}");
        assert_eq!(self.challenges.len(), 1, "{case}: {self:?}");
        let c = &self.challenges[0];
        let realm = format!("{scheme} realm=\"{AUDIENCE}\", ");
        assert!(c.starts_with(&realm), "{case}: want {scheme}: {c}");
        if scheme == "DPoP" {
            assert!(c.contains(&format!("algs=\"{ALGS}\"")), "{case}: {c}");
        }
        let error = want.class().error_code().unwrap();
        assert!(c.contains(&format!("error=\"{error}\"")), "{case}: {c}");
        assert!(
            c.contains(&format!("error_description=\"{}\"", want.description())),
            "{case}: want {}: {c}",
            want.code()
        );
        assert_eq!(self.body, "", "{case}: the handler never ran");
    }
}

/// Every proof failure is 401 `invalid_dpop_proof` with a DPoP challenge, a token bound to
/// another key `invalid_token`; the conformance suite's names, one request each.
#[tokio::test]
async fn fapi_negative_matrix() {
    let s = DpopApi::start(|b, _| b).await;
    let now = unix_now();
    let other = DpopKey::generate(Algorithm::ES256).unwrap();
    let mut private = s.client.header();
    private["jwk"]["d"] = json!("AAAA");
    let good = s.proof();
    // Bad signature: the good proof with the first character of its signature changed (still
    // canonical base64url), and the client's jwk on a proof signed by another key.
    let (input, sig) = good.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{input}.{flipped}{}", &sig[1..]);
    let forged = other
        .proof_with(&s.client.header(), &s.good_claims())
        .unwrap();
    // alg none, unsigned, as the conformance suite sends it.
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let unsigned = format!(
        "{}.{}.",
        b64(&changed(s.client.header(), json!({"alg": "none"}))),
        b64(&s.good_claims())
    );

    use Rejection::*;
    let cases: Vec<(&str, Vec<String>, Rejection)> = vec![
        (
            "two DPoP headers",
            vec![s.proof(), s.proof()],
            MultipleDpopProofs,
        ),
        ("no DPoP header", vec![], MissingDpopProof),
        (
            "malformed proof",
            vec!["not-a-jwt".into()],
            MalformedDpopProof,
        ),
        (
            "proof is a JWE",
            vec!["a.b.c.d.e".into()],
            MalformedDpopProof,
        ),
        (
            "missing typ",
            vec![s.proof_header(json!({"typ": null}))],
            WrongDpopProofType,
        ),
        (
            "bad typ",
            vec![s.proof_header(json!({"typ": "JWT"}))],
            WrongDpopProofType,
        ),
        (
            "missing alg",
            vec![s.proof_header(json!({"alg": null}))],
            MalformedDpopProof,
        ),
        (
            "alg none (signed)",
            vec![s.proof_header(json!({"alg": "none"}))],
            DisallowedDpopAlgorithm,
        ),
        (
            "alg none (unsigned)",
            vec![unsigned],
            DisallowedDpopAlgorithm,
        ),
        (
            "alg HS256",
            vec![s.proof_header(json!({"alg": "HS256"}))],
            DisallowedDpopAlgorithm,
        ),
        (
            "missing jwk",
            vec![s.proof_header(json!({"jwk": null}))],
            InvalidDpopKey,
        ),
        (
            "private jwk",
            vec![s.client.proof_with(&private, &s.good_claims()).unwrap()],
            InvalidDpopKey,
        ),
        (
            "symmetric jwk",
            vec![s.proof_header(json!({"jwk": {"kty": "oct", "k": "c2VjcmV0"}}))],
            InvalidDpopKey,
        ),
        ("bad signature", vec![tampered], BadDpopSignature),
        (
            "signed by a key other than its jwk",
            vec![forged],
            BadDpopSignature,
        ),
        (
            "missing jti",
            vec![s.proof_claims(json!({"jti": null}))],
            MalformedDpopProof,
        ),
        (
            "missing htm",
            vec![s.proof_claims(json!({"htm": null}))],
            MalformedDpopProof,
        ),
        (
            "missing htu",
            vec![s.proof_claims(json!({"htu": null}))],
            MalformedDpopProof,
        ),
        (
            "missing iat",
            vec![s.proof_claims(json!({"iat": null}))],
            MalformedDpopProof,
        ),
        (
            "missing ath",
            vec![s.proof_claims(json!({"ath": null}))],
            MalformedDpopProof,
        ),
        (
            "iat as a string",
            vec![s.proof_claims(json!({"iat": now.to_string()}))],
            MalformedDpopProof,
        ),
        (
            "wrong htm",
            vec![s.proof_claims(json!({"htm": "POST"}))],
            DpopMethodMismatch,
        ),
        (
            "htm in lower case",
            vec![s.proof_claims(json!({"htm": "get"}))],
            DpopMethodMismatch,
        ),
        (
            "htu for another URL",
            vec![s.proof_claims(json!({"htu": format!("{}/api/admin", s.api.url)}))],
            DpopUriMismatch,
        ),
        (
            "htu for another host",
            vec![s.proof_claims(json!({"htu": "https://evil.example/api/hello"}))],
            DpopUriMismatch,
        ),
        (
            "htu with http instead of https",
            vec![s.proof_claims(json!({"htu": s.url.replacen("https", "http", 1)}))],
            DpopUriMismatch,
        ),
        (
            "iat +1 h",
            vec![s.proof_claims(json!({"iat": now + 3600}))],
            DpopProofNotFresh,
        ),
        (
            "iat -1 h",
            vec![s.proof_claims(json!({"iat": now - 3600}))],
            DpopProofNotFresh,
        ),
        (
            "wrong ath",
            vec![s.proof_claims(json!({"ath": access_token_hash("another token")}))],
            DpopTokenHashMismatch,
        ),
    ];
    for (case, proofs, want) in cases {
        let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        s.send(&proofs).await.assert_refused(case, "DPoP", want);
    }

    // The jwk of another curve than alg names (a P-384 key under ES256): the key does not fit.
    let p384 = DpopKey::generate(Algorithm::ES384).unwrap();
    let misfit = p384
        .proof_with(
            &changed(p384.header(), json!({"alg": "ES256"})),
            &s.good_claims(),
        )
        .unwrap();
    s.send(&[&misfit])
        .await
        .assert_refused("jwk does not fit alg", "DPoP", InvalidDpopKey);
    // A DPoP header that is not visible ASCII is one malformed proof, not "more than one".
    let authorization = format!("DPoP {}", s.token);
    let not_ascii = s
        .http
        .get(&s.url)
        .header("authorization", &authorization)
        .header(
            "dpop",
            reqwest::header::HeaderValue::from_bytes(b"eyJ\xff.e30.c2ln").unwrap(),
        )
        .send()
        .await
        .unwrap();
    reply(not_ascii)
        .await
        .assert_refused("proof not ASCII", "DPoP", MalformedDpopProof);

    // A valid proof by another key than the token's cnf.jkt: the token's failure.
    let by_other = other.proof("GET", &s.url, Some(&s.token), None).unwrap();
    s.send(&[&by_other])
        .await
        .assert_refused("proof by another key", "DPoP", DpopKeyMismatch);

    // The DPoP-bound token downgraded to Bearer — with or without the proof alongside.
    let bearer = format!("Bearer {}", s.token);
    for proofs in [vec![], vec![good.as_str()]] {
        s.send_to(&s.http, &s.url, Some(&bearer), &proofs, &[])
            .await
            .assert_refused("downgraded to Bearer", "Bearer", DpopBoundTokenAsBearer);
    }

    // Nothing above used up the good proof: it is still accepted (so each refusal above was
    // for its own reason, not a side effect).
    s.send(&[&good]).await.assert_accepted("the good proof");
    // Now the token is in the verified-token cache: downgraded to Bearer it is still refused.
    s.send_to(&s.http, &s.url, Some(&bearer), &[], &[])
        .await
        .assert_refused(
            "cached, downgraded to Bearer",
            "Bearer",
            DpopBoundTokenAsBearer,
        );
}

#[tokio::test]
async fn fapi_positives() {
    let s = DpopApi::start(|b, _| b).await;
    let now = unix_now();
    let url = s.url.clone();
    // The host part in upper case, and the scheme: `https://localhost:PORT` → `HTTPS://LOCALHOST:PORT`.
    let shouted = url.replacen("https://localhost", "HTTPS://LOCALHOST", 1);
    let cases: Vec<(&str, String, &str)> = vec![
        ("a good proof", s.proof(), "DPoP"),
        ("DPOP scheme in upper case", s.proof(), "DPOP"),
        ("dpop scheme in lower case", s.proof(), "dpop"),
        (
            "htu with a query",
            s.proof_claims(json!({"htu": format!("{url}?a=1")})),
            "DPoP",
        ),
        (
            "htu with a fragment",
            s.proof_claims(json!({"htu": format!("{url}#top")})),
            "DPoP",
        ),
        (
            "htu with a query and fragment",
            s.proof_claims(json!({"htu": format!("{url}?a=1#top")})),
            "DPoP",
        ),
        (
            "extra claims",
            s.proof_claims(json!({"extra": {"a": [1, 2]}, "nonce_hint": "x"})),
            "DPoP",
        ),
        (
            "extra header members",
            s.proof_header(json!({"kid": "client-key-1"})),
            "DPoP",
        ),
        (
            "host and scheme case",
            s.proof_claims(json!({"htu": shouted})),
            "DPoP",
        ),
        (
            "iat +10 s",
            s.proof_claims(json!({"iat": now + 10})),
            "DPoP",
        ),
        (
            "iat -10 s",
            s.proof_claims(json!({"iat": now - 10})),
            "DPoP",
        ),
        (
            "iat with a fraction",
            s.proof_claims(json!({"iat": now as f64 + 0.5})),
            "DPoP",
        ),
    ];
    for (case, proof, scheme) in cases {
        let authorization = format!("{scheme} {}", s.token);
        s.send_to(&s.http, &s.url, Some(&authorization), &[&proof], &[])
            .await
            .assert_accepted(case);
    }
    // The request with a query; the proof's htu without it.
    let proof = s.proof();
    let authorization = format!("DPoP {}", s.token);
    s.send_to(
        &s.http,
        &format!("{url}?page=2"),
        Some(&authorization),
        &[&proof],
        &[],
    )
    .await
    .assert_accepted("request with a query");

    // The default port: an API whose public URL (a load balancer on 443) has none.
    let lb = DpopApi::start(|b, _| b.public_url("https://api.example")).await;
    let with_port = |htu: &str| lb.proof_claims(json!({ "htu": htu }));
    for htu in [
        "https://api.example/api/hello",
        "https://api.example:443/api/hello",
        "HTTPS://API.EXAMPLE:443/api/hello",
    ] {
        lb.send(&[&with_port(htu)]).await.assert_accepted(htu);
    }
    for htu in [
        "https://api.example:8443/api/hello",
        "http://api.example:443/api/hello",
        &lb.url, // the backend's own address is not the public one
    ] {
        lb.send(&[&with_port(htu)])
            .await
            .assert_refused(htu, "DPoP", Rejection::DpopUriMismatch);
    }
}

#[tokio::test]
async fn no_credentials_challenges_bearer_and_dpop_and_metadata_lists_the_algorithms() {
    let s = DpopApi::start(|b, _| b).await;
    let r = s.send_to(&s.http, &s.url, None, &[], &[]).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(
        r.challenges,
        [
            format!("Bearer realm=\"{AUDIENCE}\""),
            format!("DPoP realm=\"{AUDIENCE}\", algs=\"{ALGS}\""),
        ],
        "{r:?}"
    );
    // A proof alone is no credentials either.
    let proof = s.proof();
    let r = s.send_to(&s.http, &s.url, None, &[&proof], &[]).await;
    assert_eq!((r.status, r.challenges.len()), (401, 2), "{r:?}");

    let doc: Value = s
        .http
        .get(format!(
            "{}/.well-known/oauth-protected-resource",
            s.api.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        doc["dpop_signing_alg_values_supported"],
        json!(["ES256", "ES384", "PS256", "EdDSA", "Ed25519"]),
        "{doc}"
    );
    assert_eq!(doc["dpop_bound_access_tokens_required"], false, "{doc}");
    assert_eq!(doc["tls_client_certificate_bound_access_tokens"], true);

    // Without DPoP configured: one Bearer challenge, nothing about DPoP, and a DPoP request
    // has no usable credentials.
    let plain = DpopApi::start_with(|b, _| b).await;
    let r = plain.send_to(&plain.http, &plain.url, None, &[], &[]).await;
    assert_eq!(r.challenges, [format!("Bearer realm=\"{AUDIENCE}\"")]);
    let r = plain.send(&[&plain.proof()]).await;
    assert_eq!(r.status, 401, "{r:?}");
    let doc: Value = plain
        .http
        .get(format!(
            "{}/.well-known/oauth-protected-resource",
            plain.api.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc.get("dpop_signing_alg_values_supported").is_none());
}

#[tokio::test]
async fn a_proof_is_accepted_once() {
    let s = DpopApi::start(|b, _| b).await;
    let proof = s.proof();
    s.send(&[&proof]).await.assert_accepted("first use");
    s.send(&[&proof])
        .await
        .assert_refused("replayed", "DPoP", Rejection::DpopProofReplayed);
    // Over a fresh connection too (the store is the process's, not the connection's).
    let fresh = s.api.client(None);
    let authorization = format!("DPoP {}", s.token);
    s.send_to(&fresh, &s.url, Some(&authorization), &[&proof], &[])
        .await
        .assert_refused("replayed", "DPoP", Rejection::DpopProofReplayed);
    // A new proof (new jti) is fine; the token stays usable.
    s.send(&[&s.proof()]).await.assert_accepted("a new proof");
    // A proof refused for another reason was not remembered: once fixed, it is not "replayed".
    let jti = fresh_jti();
    let wrong = s.proof_claims(json!({"jti": jti, "htm": "POST"}));
    s.send(&[&wrong])
        .await
        .assert_refused("wrong htm", "DPoP", Rejection::DpopMethodMismatch);
    let right = s.proof_claims(json!({ "jti": jti }));
    s.send(&[&right])
        .await
        .assert_accepted("same jti, right htm");
}

/// An Ed25519 key's proofs with `alg: "Ed25519"` (RFC 9864), as panva's `dpop` and
/// `oauth4webapi` sign them and node oidc-provider 9 accepts them (docs/interop.md), are
/// verified as `EdDSA`; the name binds the curve, and follows the `EdDSA` allow-list entry.
#[tokio::test]
async fn ed25519_proofs_by_their_rfc_9864_name() {
    let s = DpopApi::start(|b, _| b).await;
    let ed = DpopKey::generate(Algorithm::EdDSA).unwrap();
    let issuer = s.api.issuer.as_ref().unwrap().issuer_url().to_owned();
    let token = s
        .api
        .signer
        .sign(&dpop_bound_claims(&issuer, AUDIENCE, &ed.jkt()))
        .unwrap();
    let authorization = format!("DPoP {token}");
    let claims = || {
        json!({"jti": fresh_jti(), "htm": "GET", "htu": s.url, "iat": unix_now(),
               "ath": access_token_hash(&token)})
    };
    let named = |key: &DpopKey, alg: &str| {
        let header = changed(key.header(), json!({ "alg": alg }));
        key.proof_with(&header, &claims()).unwrap()
    };
    for alg in ["Ed25519", "EdDSA"] {
        let proof = named(&ed, alg);
        s.send_to(&s.http, &s.url, Some(&authorization), &[&proof], &[])
            .await
            .assert_accepted(alg);
    }
    // The name is exact (case-sensitive, as every JWS alg) and names a curve: a P-256 key under
    // it is refused.
    s.send_to(
        &s.http,
        &s.url,
        Some(&authorization),
        &[&named(&ed, "ed25519")],
        &[],
    )
    .await
    .assert_refused("ed25519", "DPoP", Rejection::DisallowedDpopAlgorithm);
    s.send_to(
        &s.http,
        &s.url,
        Some(&authorization),
        &[&named(&s.client, "Ed25519")],
        &[],
    )
    .await
    .assert_refused("P-256 key as Ed25519", "DPoP", Rejection::InvalidDpopKey);

    // Without EdDSA in the allow-list, Ed25519 is refused too, and neither is advertised.
    let es = DpopApi::start(|b, url| {
        b.dpop(Dpop::default().algorithms([Algorithm::ES256]))
            .public_url(url.to_owned())
    })
    .await;
    let ed = DpopKey::generate(Algorithm::EdDSA).unwrap();
    let issuer = es.api.issuer.as_ref().unwrap().issuer_url().to_owned();
    let token = es
        .api
        .signer
        .sign(&dpop_bound_claims(&issuer, AUDIENCE, &ed.jkt()))
        .unwrap();
    let header = changed(ed.header(), json!({"alg": "Ed25519"}));
    let claims = json!({"jti": fresh_jti(), "htm": "GET", "htu": es.url, "iat": unix_now(),
                        "ath": access_token_hash(&token)});
    let proof = ed.proof_with(&header, &claims).unwrap();
    let r = es
        .send_to(
            &es.http,
            &es.url,
            Some(&format!("DPoP {token}")),
            &[&proof],
            &[],
        )
        .await;
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.challenges[0].contains("algs=\"ES256\""), "{r:?}");
    assert!(
        r.challenges[0].contains(&Rejection::DisallowedDpopAlgorithm.description()),
        "{r:?}"
    );
}

/// An issuer that names its Ed25519 key and tokens `alg: "Ed25519"` (RFC 9864), as node
/// oidc-provider 9 does for an OKP key (docs/interop.md): its JWKS key is usable and its tokens
/// verify as `EdDSA`; `ed25519` is no algorithm.
#[tokio::test]
async fn ed25519_tokens_from_an_issuer_that_names_its_key_ed25519() {
    let signer = SigningKey::generate("ed-1", Algorithm::EdDSA).unwrap();
    let issuer = TestIssuer::start(&[&signer]).await.unwrap();
    let jwk = changed(signer.public_jwk().clone(), json!({"alg": "Ed25519"}));
    issuer.set_jwks_body(json!({ "keys": [jwk] }).to_string());
    let listening = Api::bind(Mode::SelfSigned).await;
    let auth = CertBound::builder()
        .issuer(issuer.issuer_url())
        .audience(AUDIENCE)
        .jwks_root_certificates_pem(issuer.ca_pem().to_owned())
        .dpop(Dpop::default())
        .public_url(listening.url.clone())
        .build()
        .await
        .unwrap();
    let url = format!("{}/api/hello", listening.url);
    let api = listening.serve(auth);
    let http = api.client(None);
    let client = DpopKey::generate(Algorithm::ES256).unwrap();
    let claims = dpop_bound_claims(issuer.issuer_url(), AUDIENCE, &client.jkt());
    let token_as = |alg: &str| {
        let header = json!({"alg": alg, "typ": "at+jwt", "kid": "ed-1"});
        signer.sign_with_header(&header, &claims).unwrap()
    };
    let send = |token: String| {
        let proof = client.proof("GET", &url, Some(&token), None).unwrap();
        let req = http
            .get(&url)
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", proof);
        async move { reply(req.send().await.unwrap()).await }
    };
    for alg in ["Ed25519", "EdDSA"] {
        send(token_as(alg)).await.assert_accepted(alg);
    }
    let r = send(token_as("ed25519")).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert!(
        r.challenges
            .iter()
            .any(|c| c.contains(&Rejection::DisallowedAlgorithm.description())),
        "{r:?}"
    );
}

#[tokio::test]
async fn nonces_first_401_use_dpop_nonce_then_200() {
    let keys = NonceKeys::new(vec![[7u8; 32]], Duration::from_secs(300)).unwrap();
    let s = DpopApi::start(|b, url| {
        b.dpop(Dpop::default().nonce_keys(keys))
            .public_url(url.to_owned())
    })
    .await;
    // No nonce: 401 use_dpop_nonce, and the nonce to use.
    let r = s.send(&[&s.proof()]).await;
    r.assert_refused("no nonce", "DPoP", Rejection::DpopNonceRequired);
    let nonce = r.nonce.clone().expect("a DPoP-Nonce header");
    assert!(!nonce.is_empty());
    // The retry with it: 200.
    let with = |nonce: &str| {
        s.client
            .proof("GET", &s.url, Some(&s.token), Some(nonce))
            .unwrap()
    };
    s.send(&[&with(&nonce)])
        .await
        .assert_accepted("with the nonce");
    // The same nonce again, in a new proof: still good within its lifetime.
    s.send(&[&with(&nonce)])
        .await
        .assert_accepted("the nonce again");
    // A made-up nonce, or one sealed by another deployment's key: 401 use_dpop_nonce, again
    // with a nonce to use.
    let foreign = NonceKeys::new(vec![[8u8; 32]], Duration::from_secs(300))
        .unwrap()
        .issue(unix_now(), [1u8; 12]);
    for bad in ["made-up", foreign.as_str()] {
        let r = s.send(&[&with(bad)]).await;
        r.assert_refused(bad, "DPoP", Rejection::DpopNonceRequired);
        assert!(r.nonce.is_some(), "{r:?}");
    }
    // Bearer requests without credentials are not asked for a nonce.
    let r = s.send_to(&s.http, &s.url, None, &[], &[]).await;
    assert_eq!(r.nonce, None, "{r:?}");
}

/// A token bound by both `cnf."x5t#S256"` and `cnf.jkt` is accepted only when both hold: the
/// certificate of the connection and the key of the proof.
#[tokio::test]
async fn a_token_bound_to_a_certificate_and_a_key_needs_both() {
    let s = DpopApi::start(|b, _| b).await;
    let issuer = s.api.issuer.as_ref().unwrap();
    let mut claims = dpop_bound_claims(issuer.issuer_url(), AUDIENCE, &s.client.jkt());
    let cert_a = common::thumbprint(&s.api.pki.client_a);
    claims["cnf"]["x5t#S256"] = json!(cert_a.to_string());
    let token = s.api.signer.sign(&claims).unwrap();
    let dpop = format!("DPoP {token}");
    let proof = || s.client.proof("GET", &s.url, Some(&token), None).unwrap();
    let with_a = s.api.client(Some(&s.api.pki.client_a));
    let with_b = s.api.client(Some(&s.api.pki.client_b));
    let r = s
        .send_to(&with_a, &s.url, Some(&dpop), &[&proof()], &[])
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["thumbprint"], cert_a.to_string());
    assert_eq!(body["jkt"], s.client.jkt().to_string());
    use Rejection::*;
    s.send_to(&with_b, &s.url, Some(&dpop), &[&proof()], &[])
        .await
        .assert_refused("another certificate", "DPoP", BindingMismatch);
    s.send_to(&s.http, &s.url, Some(&dpop), &[&proof()], &[])
        .await
        .assert_refused("no certificate", "DPoP", MissingClientCertificate);
    let by_other = DpopKey::generate(Algorithm::ES256)
        .unwrap()
        .proof("GET", &s.url, Some(&token), None)
        .unwrap();
    s.send_to(&with_a, &s.url, Some(&dpop), &[&by_other], &[])
        .await
        .assert_refused("another key", "DPoP", DpopKeyMismatch);
    s.send_to(&with_a, &s.url, Some(&format!("Bearer {token}")), &[], &[])
        .await
        .assert_refused("the certificate alone", "Bearer", DpopBoundTokenAsBearer);
}

/// Headers that would move `htu` to another origin when honoured.
const SPOOFED: [(&str, &str); 4] = [
    ("x-forwarded-host", "evil.example"),
    ("x-forwarded-proto", "http"),
    ("x-forwarded-prefix", "/evil"),
    ("forwarded", "host=evil.example;proto=http"),
];

#[tokio::test]
async fn spoofed_forwarding_headers_from_an_untrusted_peer_never_change_htu() {
    // No public URL and no trusted proxy: htu is the request's own origin, over HTTP/2 and
    // HTTP/1.1 alike, whatever the client claims in forwarding headers.
    let s = DpopApi::start_with(|b, _| b.dpop(Dpop::default())).await;
    let authorization = format!("DPoP {}", s.token);
    let h1 = https_client_from(&s, [127, 0, 0, 1], true);
    for (client, protocol) in [(&s.http, "h2"), (&h1, "http/1.1")] {
        let real = s.proof();
        s.send_to(client, &s.url, Some(&authorization), &[&real], &SPOOFED)
            .await
            .assert_accepted(protocol);
        for htu in [
            "https://evil.example/api/hello",
            "http://evil.example/api/hello",
            "https://evil.example/evil/api/hello",
        ] {
            let spoofed = s.proof_claims(json!({ "htu": htu }));
            s.send_to(client, &s.url, Some(&authorization), &[&spoofed], &SPOOFED)
                .await
                .assert_refused(htu, "DPoP", Rejection::DpopUriMismatch);
        }
    }

    // Behind a trusted proxy (127.0.0.2 only), the same headers from 127.0.0.1 change nothing;
    // from the proxy they are the client-facing origin — the trust check is what decides.
    let proxy: certbound::IpCidr = "127.0.0.2/32".parse().unwrap();
    let format = ForwardedFormat::parse_spec("rfc9440").unwrap();
    let s = DpopApi::start_with(move |b, _| {
        b.dpop(Dpop::default())
            .forwarded_certificates(ForwardedCertificates::new(format, vec![proxy]))
    })
    .await;
    let authorization = format!("DPoP {}", s.token);
    let evil = || s.proof_claims(json!({"htu": "http://evil.example/evil/api/hello"}));
    let untrusted = https_client_from(&s, [127, 0, 0, 1], false);
    s.send_to(
        &untrusted,
        &s.url,
        Some(&authorization),
        &[&evil()],
        &SPOOFED,
    )
    .await
    .assert_refused("untrusted peer", "DPoP", Rejection::DpopUriMismatch);
    s.send_to(
        &untrusted,
        &s.url,
        Some(&authorization),
        &[&s.proof()],
        &SPOOFED,
    )
    .await
    .assert_accepted("untrusted peer, real htu");
    let trusted = https_client_from(&s, [127, 0, 0, 2], false);
    s.send_to(&trusted, &s.url, Some(&authorization), &[&evil()], &SPOOFED)
        .await
        .assert_accepted("trusted proxy");
    s.send_to(
        &trusted,
        &s.url,
        Some(&authorization),
        &[&s.proof()],
        &SPOOFED,
    )
    .await
    .assert_refused(
        "trusted proxy, backend htu",
        "DPoP",
        Rejection::DpopUriMismatch,
    );

    // With a public URL, not even a trusted proxy's headers move htu.
    let format = ForwardedFormat::parse_spec("rfc9440").unwrap();
    let s = DpopApi::start(move |b, _| {
        b.forwarded_certificates(ForwardedCertificates::new(format, vec![proxy]))
    })
    .await;
    let trusted = https_client_from(&s, [127, 0, 0, 2], false);
    let authorization = format!("DPoP {}", s.token);
    s.send_to(
        &trusted,
        &s.url,
        Some(&authorization),
        &[&s.proof()],
        &SPOOFED,
    )
    .await
    .assert_accepted("public URL");
    let evil = s.proof_claims(json!({"htu": "http://evil.example/evil/api/hello"}));
    s.send_to(&trusted, &s.url, Some(&authorization), &[&evil], &SPOOFED)
        .await
        .assert_refused(
            "public URL, trusted proxy",
            "DPoP",
            Rejection::DpopUriMismatch,
        );
}

/// An HTTPS client (no certificate) whose connections come from `local`, offering HTTP/2 or
/// only HTTP/1.1.
fn https_client_from(s: &DpopApi, local: [u8; 4], http1_only: bool) -> reqwest::Client {
    let mut config = support::client_tls_config(&s.api.pki.ca.cert_pem, None).unwrap();
    if http1_only {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
    }
    let port = s
        .api
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .parse::<u16>()
        .unwrap();
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .local_address(std::net::IpAddr::from(local))
        .resolve("localhost", ([127, 0, 0, 1], port).into());
    if http1_only {
        builder = builder.http1_only();
    }
    builder.build().unwrap()
}
