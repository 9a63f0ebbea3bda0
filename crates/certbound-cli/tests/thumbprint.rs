//! `certbound thumbprint` against the real openssl: `openssl x509 -outform DER | openssl dgst
//! -sha256 -binary`, base64url — for RSA, EC, Ed25519, self-signed and chain-leaf certificates,
//! PEM and DER input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use certbound_dev::pki::self_signed_client;
use certbound_dev::{DevCa, KeyKind};
use common::{certbound, openssl_x5t, TempDir};

#[test]
fn matches_openssl_for_every_key_type_and_shape() {
    let dir = TempDir::new("thumbprint");
    let ca = DevCa::new("thumbprint test CA").unwrap();
    let rsa = ca.client_cert("client-rsa", KeyKind::Rsa2048).unwrap();
    let ec = ca.client_cert("client-ec", KeyKind::EcP256).unwrap();
    let ec384 = ca.client_cert("client-ec384", KeyKind::EcP384).unwrap();
    let ed = ca.client_cert("client-ed", KeyKind::Ed25519).unwrap();
    let selfsigned = self_signed_client("client-self", KeyKind::EcP256).unwrap();

    let cases = [
        (
            "rsa.pem",
            rsa.cert_pem.clone(),
            "CN=client-rsa, O=certbound dev",
        ),
        (
            "ec.pem",
            ec.cert_pem.clone(),
            "CN=client-ec, O=certbound dev",
        ),
        (
            "ec384.pem",
            ec384.cert_pem.clone(),
            "CN=client-ec384, O=certbound dev",
        ),
        (
            "ed25519.pem",
            ed.cert_pem.clone(),
            "CN=client-ed, O=certbound dev",
        ),
        (
            "self.pem",
            selfsigned.cert_pem.clone(),
            "CN=client-self, O=certbound dev",
        ),
        // A chain as servers and clients keep them: leaf first, then the CA.
        (
            "chain.pem",
            format!("{}{}", rsa.cert_pem, ca.cert().cert_pem),
            "CN=client-rsa, O=certbound dev",
        ),
        // Certificate and private key in one file (an "identity" PEM): the key is skipped.
        (
            "identity.pem",
            ec.identity_pem(),
            "CN=client-ec, O=certbound dev",
        ),
    ];
    for (name, pem, subject) in cases {
        let path = dir.write(name, pem);
        let expected = openssl_x5t(&path, false);

        let run = certbound(["thumbprint".as_ref(), path.as_os_str()]);
        assert_eq!(run.code, 0, "{name}: {run:?}");
        let line = run.line_with(&[&format!("{} [0]", path.display())]);
        assert!(
            line.contains(&format!("x5t#S256 {expected}")),
            "{name}: {line}"
        );
        assert!(
            line.contains(&format!("subject {subject}")),
            "{name}: {line}"
        );
        // The hex SHA-256 is the same digest.
        let hex = line
            .split("sha256 ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        assert_eq!(hex.len(), 64);
        assert_eq!(
            certbound_core::Thumbprint::from_hex(hex)
                .unwrap()
                .to_string(),
            expected
        );

        let raw = certbound(["thumbprint".as_ref(), "--raw".as_ref(), path.as_os_str()]);
        assert_eq!(raw.code, 0, "{raw:?}");
        assert_eq!(raw.stdout.lines().next(), Some(expected.as_str()), "{name}");
    }

    // The chain file lists both certificates, leaf first; [1] is the CA, marked self-signed.
    let chain = dir.path().join("chain.pem");
    let run = certbound(["thumbprint".as_ref(), chain.as_os_str()]);
    assert_eq!(run.stdout.lines().count(), 2, "{run:?}");
    let ca_line = run.line_with(&["chain.pem [1]"]);
    assert!(ca_line.contains("CN=thumbprint test CA"), "{ca_line}");
    assert!(ca_line.contains("(self-signed)"), "{ca_line}");
    let ca_path = dir.write("ca.pem", &ca.cert().cert_pem);
    assert!(ca_line.contains(&openssl_x5t(&ca_path, false)), "{ca_line}");
    let selfsigned_run = certbound([
        "thumbprint".as_ref(),
        dir.path().join("self.pem").as_os_str(),
    ]);
    assert!(selfsigned_run.stdout.contains("(self-signed)"));
    assert!(
        !certbound(["thumbprint".as_ref(), dir.path().join("ec.pem").as_os_str()])
            .stdout
            .contains("(self-signed)")
    );
}

#[test]
fn der_input_matches_openssl() {
    let dir = TempDir::new("thumbprint-der");
    let ca = DevCa::new("der test CA").unwrap();
    let leaf = ca.client_cert("client-der", KeyKind::Rsa2048).unwrap();
    let path = dir.write("client.der", leaf.cert_der.as_ref());
    let expected = openssl_x5t(&path, true);

    let run = certbound(["thumbprint".as_ref(), "--raw".as_ref(), path.as_os_str()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, format!("{expected}\n"));
    let run = certbound(["thumbprint".as_ref(), path.as_os_str()]);
    run.line_with(&["client.der [0]", &expected, "subject CN=client-der"]);
}

#[test]
fn several_files_raw_one_per_line() {
    let dir = TempDir::new("thumbprint-many");
    let ca = DevCa::new("many CA").unwrap();
    let a = dir.write(
        "a.pem",
        ca.client_cert("a", KeyKind::EcP256).unwrap().cert_pem,
    );
    let b = dir.write(
        "b.pem",
        ca.client_cert("b", KeyKind::EcP256).unwrap().cert_pem,
    );
    let run = certbound([
        "thumbprint".as_ref(),
        "--raw".as_ref(),
        a.as_os_str(),
        b.as_os_str(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let expected = format!("{}\n{}\n", openssl_x5t(&a, false), openssl_x5t(&b, false));
    assert_eq!(run.stdout, expected);
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let dir = TempDir::new("thumbprint-bad");
    let key_only = dir.write(
        "key.pem",
        self_signed_client("k", KeyKind::EcP256).unwrap().key_pem,
    );
    let garbage = dir.write("garbage.bin", b"definitely not a certificate");
    let missing = dir.path().join("missing.pem");
    for (path, says) in [
        (&key_only, "no CERTIFICATE block"),
        (&garbage, "neither PEM nor a DER X.509 certificate"),
        (&missing, "cannot read"),
    ] {
        let run = certbound(["thumbprint".as_ref(), path.as_os_str()]);
        assert_eq!(run.code, 2, "{run:?}");
        assert_eq!(run.stdout, "", "nothing half-printed: {run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
        assert!(run.stderr.starts_with("error: "), "{run:?}");
        assert!(run.stderr.contains(says), "{run:?}");
    }
    let run = certbound(["thumbprint"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
}
