//! Every forwarded-certificate format, with values made from real certificates (RSA and EC; a
//! chain where the format carries one), including the encodings proxies get wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use certbound_core::{ForwardedCertificates, ForwardedFormat, IpCidr};
use certbound_core::{Rejection, Thumbprint};
use certbound_dev::{CertAndKey, DevCa, KeyKind};
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

const PROXY: &str = "10.0.0.5";

fn peer(ip: &str) -> Option<IpAddr> {
    Some(ip.parse().unwrap())
}

fn source(format: ForwardedFormat) -> ForwardedCertificates {
    ForwardedCertificates::new(format, vec!["10.0.0.0/24".parse::<IpCidr>().unwrap()])
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

/// nginx's `$ssl_client_escaped_cert` (and Envoy's `Cert=`): everything but RFC 3986 unreserved
/// characters escaped.
fn escape_all(s: &str) -> String {
    certbound_dev::envoy::url_encode(s)
}

/// AWS ALB: URL-encoded PEM in which `+`, `=` and `/` are left as they are.
fn escape_alb(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b'+'
            | b'='
            | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Fixture {
    leaf: CertAndKey,
    ca: CertAndKey,
}

impl Fixture {
    fn tp(&self) -> Thumbprint {
        Thumbprint::of_der(&self.leaf.cert_der)
    }
    fn b64(&self) -> String {
        STANDARD.encode(&self.leaf.cert_der)
    }
}

/// RSA and EC leaves; the RSA one is re-made until its PEM contains a `+`, so the ALB case
/// really tests that `+` is not turned into a space.
fn fixtures() -> Vec<Fixture> {
    let ca = DevCa::new("proxy test CA").unwrap();
    let mut rsa = ca.client_cert("rsa-client", KeyKind::Rsa2048).unwrap();
    while !rsa.cert_pem.contains('+') {
        rsa = ca.client_cert("rsa-client", KeyKind::Rsa2048).unwrap();
    }
    let ec = ca.client_cert("ec-client", KeyKind::EcP256).unwrap();
    vec![
        Fixture {
            leaf: rsa,
            ca: ca.cert().clone(),
        },
        Fixture {
            leaf: ec,
            ca: ca.cert().clone(),
        },
    ]
}

#[test]
fn nginx_escaped_pem() {
    for f in fixtures() {
        let src = source(ForwardedFormat::Nginx {
            header: HeaderName::from_static("x-ssl-client-cert"),
        });
        let h = headers(&[("x-ssl-client-cert", &escape_all(&f.leaf.cert_pem))]);
        assert_eq!(src.extract(&h, peer(PROXY)), Ok(Some(f.tp())));
        // A bad escape is refused, not skipped.
        let h = headers(&[(
            "x-ssl-client-cert",
            &format!("%G0{}", escape_all(&f.leaf.cert_pem)),
        )]);
        assert_eq!(
            src.extract(&h, peer(PROXY)),
            Err(Rejection::MalformedForwardedCertificate)
        );
    }
}

#[test]
fn alb_keeps_plus_literal() {
    for f in fixtures() {
        for passthrough in [false, true] {
            let src = source(ForwardedFormat::Alb { passthrough });
            let header = if passthrough {
                "x-amzn-mtls-clientcert"
            } else {
                "x-amzn-mtls-clientcert-leaf"
            };
            // Passthrough carries the whole chain, leaf first.
            let pem = if passthrough {
                format!("{}{}", f.leaf.cert_pem, f.ca.cert_pem)
            } else {
                f.leaf.cert_pem.clone()
            };
            let h = headers(&[(header, &escape_alb(&pem))]);
            assert_eq!(
                src.extract(&h, peer(PROXY)),
                Ok(Some(f.tp())),
                "passthrough={passthrough}"
            );
        }
    }
    // The trap: a form decoder turns '+' into ' ' and the DER changes. Show our decoder does not.
    let f = &fixtures()[0];
    assert!(f.leaf.cert_pem.contains('+'));
    let decoded = certbound_core::__private::percent_decode(&escape_alb(&f.leaf.cert_pem)).unwrap();
    assert_eq!(decoded, f.leaf.cert_pem.as_bytes());
}

#[test]
fn xfcc_one_element_cert_and_hash() {
    for f in fixtures() {
        let src = source(ForwardedFormat::Xfcc { hash_only: false });
        let hex = f.tp().to_hex();
        let cert = escape_all(&f.leaf.cert_pem);
        let ours = format!(
            "By=spiffe://cluster.local/ns/api/sa/api;Hash={hex};Cert=\"{cert}\";Subject=\"CN=client,O=\\\"Acme; Inc\\\"\";URI=;DNS=a.example;DNS=b.example"
        );
        let h = headers(&[("x-forwarded-client-cert", &ours)]);
        assert_eq!(src.extract(&h, peer(PROXY)), Ok(Some(f.tp())));
        // A client-supplied element before ours (an edge that does not sanitize): the count is
        // wrong, so nothing is taken from it — neither element.
        let forged = "By=spiffe://evil;Hash=00;Cert=\"junk\"";
        let h = headers(&[("x-forwarded-client-cert", &format!("{forged},{ours}"))]);
        assert_eq!(
            src.extract(&h, peer(PROXY)),
            Err(Rejection::MalformedForwardedCertificate)
        );
        // Two trusted hops configured: the edge's element (the client's) is the first.
        let two = source(ForwardedFormat::Xfcc { hash_only: false }).xfcc_hops(2);
        let hop = "By=spiffe://cluster.local/ns/api;Hash=0000000000000000000000000000000000000000000000000000000000000000;Subject=\"CN=edge\";URI=spiffe://cluster.local/ns/edge";
        let h = headers(&[("x-forwarded-client-cert", &format!("{ours},{hop}"))]);
        assert_eq!(two.extract(&h, peer(PROXY)), Ok(Some(f.tp())));
        let h = headers(&[("x-forwarded-client-cert", &ours)]);
        assert_eq!(
            two.extract(&h, peer(PROXY)),
            Err(Rejection::MalformedForwardedCertificate)
        );
        // Keys are case-insensitive.
        let h = headers(&[(
            "x-forwarded-client-cert",
            &format!("hash={hex};cert={cert}"),
        )]);
        assert_eq!(src.extract(&h, peer(PROXY)), Ok(Some(f.tp())));
        // Hash and Cert disagree.
        let h = headers(&[(
            "x-forwarded-client-cert",
            &format!("Hash={};Cert={cert}", "ab".repeat(32)),
        )]);
        assert_eq!(
            src.extract(&h, peer(PROXY)),
            Err(Rejection::MalformedForwardedCertificate)
        );
        // A repeated key is malformed, even when both copies agree.
        let h = headers(&[(
            "x-forwarded-client-cert",
            &format!("Hash={hex};Hash={hex};Cert={cert}"),
        )]);
        assert_eq!(
            src.extract(&h, peer(PROXY)),
            Err(Rejection::MalformedForwardedCertificate)
        );
        // Hash alone: only in hash-only mode.
        let h = headers(&[("x-forwarded-client-cert", &format!("By=x;Hash={hex}"))]);
        assert_eq!(
            src.extract(&h, peer(PROXY)),
            Err(Rejection::MalformedForwardedCertificate)
        );
        let hash_only = source(ForwardedFormat::Xfcc { hash_only: true });
        assert_eq!(hash_only.extract(&h, peer(PROXY)), Ok(Some(f.tp())));
        // An element with neither: no client certificate.
        let h = headers(&[("x-forwarded-client-cert", "By=spiffe://x;URI=spiffe://y")]);
        assert_eq!(src.extract(&h, peer(PROXY)), Ok(None));
    }
}

/// envoyproxy/envoy#32945: Envoy writes URI and DNS SANs unquoted, so a self-signed client
/// certificate whose SAN carries `,Hash=<victim>` or `,Cert=<victim>` (or `;…`) makes Envoy
/// itself write the victim's thumbprint into the header. The headers here are what Envoy writes
/// for real rcgen certificates with such SANs; every one is refused in both modes.
#[test]
fn xfcc_san_injection_is_refused() {
    use certbound_dev::envoy::{self_signed_client_with_sans, EnvoyXfcc};

    let ca = DevCa::new("victim CA").unwrap();
    let victim = ca.client_cert("victim", KeyKind::EcP256).unwrap();
    let victim_tp = Thumbprint::of_der(&victim.cert_der);
    let victim_hex = victim_tp.to_hex();
    let victim_cert = certbound_dev::envoy::url_encode(&victim.cert_pem);
    let injections: Vec<(Vec<String>, Vec<String>)> = vec![
        (vec![format!("urn:x,Hash={victim_hex}")], vec![]),
        (vec![format!("urn:x;Hash={victim_hex}")], vec![]),
        (vec![format!("urn:x,Cert={victim_cert}")], vec![]),
        (vec![format!("urn:x;Cert={victim_cert}")], vec![]),
        (
            vec![format!("urn:x,By=y;Hash={victim_hex};Cert={victim_cert}")],
            vec![],
        ),
        (vec![], vec![format!("x.example,Hash={victim_hex}")]),
        (vec![], vec![format!("x.example;Hash={victim_hex}")]),
        (vec![], vec![format!("x.example,Cert={victim_cert}")]),
        // Quotes that would hide separators or re-balance a later quoted value.
        (
            vec![format!("urn:\",Hash={victim_hex}")],
            vec!["x\"".to_owned()],
        ),
    ];
    let by = "spiffe://cluster.local/ns/edge/sa/gateway";
    for (uris, dns) in &injections {
        let uris: Vec<&str> = uris.iter().map(String::as_str).collect();
        let dns: Vec<&str> = dns.iter().map(String::as_str).collect();
        let mallory =
            self_signed_client_with_sans("mallory", KeyKind::EcP256, &uris, &dns).unwrap();
        for (envoy, hash_only) in [
            (EnvoyXfcc::mesh(by), true),
            (EnvoyXfcc::with_cert(by), false),
            (EnvoyXfcc::with_cert(by), true),
        ] {
            let element = envoy.element(&mallory);
            let h = headers(&[("x-forwarded-client-cert", &element)]);
            let got = source(ForwardedFormat::Xfcc { hash_only }).extract(&h, peer(PROXY));
            assert_ne!(got, Ok(Some(victim_tp)), "{element:.120}");
            assert_eq!(
                got,
                Err(Rejection::MalformedForwardedCertificate),
                "{element:.120}"
            );
        }
    }
    // A certificate with ordinary SANs is read as itself, in both modes.
    let honest = self_signed_client_with_sans(
        "alice",
        KeyKind::EcP256,
        &["spiffe://example.org/alice"],
        &["alice.example", "alice2.example"],
    )
    .unwrap();
    for (envoy, hash_only) in [
        (EnvoyXfcc::mesh(by), true),
        (EnvoyXfcc::with_cert(by), false),
    ] {
        let h = headers(&[("x-forwarded-client-cert", &envoy.element(&honest))]);
        assert_eq!(
            source(ForwardedFormat::Xfcc { hash_only }).extract(&h, peer(PROXY)),
            Ok(Some(Thumbprint::of_der(&honest.cert_der)))
        );
    }
}

/// Caddy sends an empty value when the client has no certificate: that is "no certificate" in
/// every format, never a malformed header. From an untrusted peer the header is still refused.
#[test]
fn empty_values_mean_no_certificate() {
    let header = HeaderName::from_static("x-client-cert");
    for format in ForwardedFormat::every(&header) {
        let src = source(format.clone());
        for empty in ["", " ", "\t", "  \t "] {
            let mut h = headers(&[(format.header().as_str(), empty)]);
            h.insert(
                "client-certificate-ca-verified",
                HeaderValue::from_static("SUCCESS"),
            );
            assert_eq!(
                src.extract(&h, peer(PROXY)),
                Ok(None),
                "{format:?} {empty:?}"
            );
            assert_eq!(
                src.extract(&h, peer("192.0.2.1")),
                Err(Rejection::UntrustedForwardedCertificate),
                "{format:?}"
            );
        }
    }
}

/// `::ffff:10.0.0.0/104` is `10.0.0.0/8`: it matches IPv4 peers in both spellings.
#[test]
fn ipv4_mapped_cidrs_match_ipv4_peers() {
    let mapped: IpCidr = "::ffff:10.0.0.0/104".parse().unwrap();
    assert_eq!(mapped, "10.0.0.0/8".parse::<IpCidr>().unwrap());
    assert_eq!(mapped.to_string(), "10.0.0.0/8");
    for ip in ["10.1.2.3", "::ffff:10.1.2.3"] {
        assert!(mapped.contains(ip.parse().unwrap()), "{ip}");
    }
    assert!(!mapped.contains("11.0.0.1".parse().unwrap()));
    let host: IpCidr = "::ffff:127.0.0.1".parse().unwrap();
    assert!(host.contains("127.0.0.1".parse().unwrap()));
    assert!(!host.contains("127.0.0.2".parse().unwrap()));
    let src = ForwardedCertificates::new(
        ForwardedFormat::Rfc9440,
        vec!["::ffff:10.0.0.0/120".parse().unwrap()],
    );
    assert!(src.is_trusted(peer("10.0.0.7")));
    assert!(src.is_trusted(peer("::ffff:10.0.0.7")));
    assert!(!src.is_trusted(peer("10.0.1.7")));
    // A whole-IPv6 network matches IPv6 peers only.
    let all6: IpCidr = "::/0".parse().unwrap();
    assert!(all6.contains("2001:db8::1".parse().unwrap()));
    assert!(!all6.contains("10.0.0.1".parse().unwrap()));
    for bad in [
        "::ffff:10.0.0.0/129",
        "10.0.0.0/08",
        "10.0.0.0/+8",
        "10.0.0.0/",
    ] {
        assert!(bad.parse::<IpCidr>().is_err(), "{bad}");
    }
}

#[test]
fn rfc9440_byte_sequence() {
    for f in fixtures() {
        let src = source(ForwardedFormat::Rfc9440);
        let h = headers(&[("client-cert", &format!(":{}:", f.b64()))]);
        assert_eq!(src.extract(&h, peer(PROXY)), Ok(Some(f.tp())));
        // A chain field next to it does not matter.
        let h = headers(&[
            ("client-cert", &format!(":{}:", f.b64())),
            (
                "client-cert-chain",
                &format!(":{}:", STANDARD.encode(&f.ca.cert_der)),
            ),
        ]);
        assert_eq!(src.extract(&h, peer(PROXY)), Ok(Some(f.tp())));
        for bad in [
            f.b64(),
            format!(":{}", f.b64()),
            format!(":{}:, :{}:", f.b64(), f.b64()),
            ":!!:".into(),
        ] {
            let h = headers(&[("client-cert", &bad)]);
            assert_eq!(
                src.extract(&h, peer(PROXY)),
                Err(Rejection::MalformedForwardedCertificate),
                "{bad:.20}"
            );
        }
        // A repeated field is refused.
        let v = format!(":{}:", f.b64());
        let h = headers(&[("client-cert", &v), ("client-cert", &v)]);
        assert_eq!(
            src.extract(&h, peer(PROXY)),
            Err(Rejection::MalformedForwardedCertificate)
        );
    }
}

#[test]
fn traefik_and_base64_der() {
    for f in fixtures() {
        let chain = format!("{},{}", f.b64(), STANDARD.encode(&f.ca.cert_der));
        let h = headers(&[("x-forwarded-tls-client-cert", &chain)]);
        assert_eq!(
            source(ForwardedFormat::Traefik).extract(&h, peer(PROXY)),
            Ok(Some(f.tp()))
        );
        let src = source(ForwardedFormat::Base64Der {
            header: HeaderName::from_static("x-client-cert"),
        });
        let h = headers(&[("x-client-cert", &f.b64())]);
        assert_eq!(src.extract(&h, peer(PROXY)), Ok(Some(f.tp())));
        // PEM where DER is expected, or a truncated certificate: refused.
        let h = headers(&[("x-client-cert", &escape_all(&f.leaf.cert_pem))]);
        assert_eq!(
            src.extract(&h, peer(PROXY)),
            Err(Rejection::MalformedForwardedCertificate)
        );
        let truncated = STANDARD.encode(&f.leaf.cert_der[..f.leaf.cert_der.len() - 3]);
        let h = headers(&[("x-client-cert", &truncated)]);
        assert_eq!(
            src.extract(&h, peer(PROXY)),
            Err(Rejection::MalformedForwardedCertificate)
        );
    }
}

#[test]
fn auth0_edge_with_and_without_verification() {
    for f in fixtures() {
        let cert = escape_all(&f.leaf.cert_pem);
        let lax = source(ForwardedFormat::Auth0Edge {
            require_verified: false,
        });
        let strict = source(ForwardedFormat::Auth0Edge {
            require_verified: true,
        });
        let ok = headers(&[
            ("client-certificate", &cert),
            ("client-certificate-ca-verified", "SUCCESS"),
        ]);
        let failed = headers(&[
            ("client-certificate", &cert),
            (
                "client-certificate-ca-verified",
                "FAILED: self signed certificate",
            ),
        ]);
        let missing = headers(&[("client-certificate", &cert)]);
        assert_eq!(lax.extract(&failed, peer(PROXY)), Ok(Some(f.tp())));
        assert_eq!(strict.extract(&ok, peer(PROXY)), Ok(Some(f.tp())));
        assert_eq!(
            strict.extract(&failed, peer(PROXY)),
            Err(Rejection::UnverifiedForwardedCertificate)
        );
        assert_eq!(
            strict.extract(&missing, peer(PROXY)),
            Err(Rejection::UnverifiedForwardedCertificate)
        );
    }
}

#[test]
fn trust_is_decided_before_parsing() {
    let f = &fixtures()[1];
    let src = source(ForwardedFormat::Base64Der {
        header: HeaderName::from_static("x-client-cert"),
    });
    let h = headers(&[("x-client-cert", &f.b64())]);
    assert_eq!(
        src.extract(&h, peer("10.0.1.5")),
        Err(Rejection::UntrustedForwardedCertificate)
    );
    assert_eq!(
        src.extract(&h, None),
        Err(Rejection::UntrustedForwardedCertificate)
    );
    assert_eq!(src.extract(&h, peer("::ffff:10.0.0.9")), Ok(Some(f.tp())));
    // No header from anyone: no certificate, nothing to refuse.
    assert_eq!(src.extract(&HeaderMap::new(), peer("192.0.2.1")), Ok(None));
    // Oversized and duplicated values.
    let small = src.clone().max_header_len(100);
    assert_eq!(
        small.extract(&h, peer(PROXY)),
        Err(Rejection::MalformedForwardedCertificate)
    );
    let dup = headers(&[("x-client-cert", &f.b64()), ("x-client-cert", &f.b64())]);
    assert_eq!(
        src.extract(&dup, peer(PROXY)),
        Err(Rejection::MalformedForwardedCertificate)
    );
}

fn all_formats() -> Vec<ForwardedFormat> {
    ForwardedFormat::every(&HeaderName::from_static("x-h"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_header_bytes_never_panic_any_parser(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let Ok(value) = HeaderValue::from_bytes(&bytes) else { return Ok(()); };
        for format in all_formats() {
            let src = source(format.clone());
            let mut h = HeaderMap::new();
            h.insert(src.header().clone(), value.clone());
            h.insert("client-certificate-ca-verified", value.clone());
            let _ = src.extract(&h, peer(PROXY));
        }
    }

    #[test]
    fn structured_garbage_never_panics(s in "[:,;=\"\\\\%+/A-Za-z0-9 -]{0,300}") {
        for format in all_formats() {
            let src = source(format.clone());
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&s) {
                h.insert(src.header().clone(), v);
                let _ = src.extract(&h, peer(PROXY));
            }
        }
    }
}
