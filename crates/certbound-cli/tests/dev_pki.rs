//! `certbound dev-pki DIR` writes the example's dev PKI, and a second run reuses it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{certbound, openssl_x5t, TempDir};

const FILES: [&str; 9] = [
    "ca.pem",
    "server.pem",
    "server.key",
    "client-a.pem",
    "client-a.key",
    "client-b.pem",
    "client-b.key",
    "client-self-signed.pem",
    "client-self-signed.key",
];

#[test]
fn creates_then_reuses() {
    let tmp = TempDir::new("dev-pki");
    let dir = tmp.path().join("nested/pki");
    let first = certbound(["dev-pki".as_ref(), dir.as_os_str()]);
    println!("{}", first.stdout);
    assert_eq!(first.code, 0, "{first:?}");
    first.line_with(&["created a dev PKI in", &dir.display().to_string()]);
    for file in FILES {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    assert!(!dir.join("ca.key").exists(), "the CA key is never written");
    // Every listed thumbprint is what openssl computes for the written file.
    for name in ["ca", "server", "client-a", "client-b", "client-self-signed"] {
        let x5t = openssl_x5t(&dir.join(format!("{name}.pem")), false);
        first.line_with(&[&format!("x5t#S256 {x5t}")]);
    }
    let mtimes: Vec<_> = FILES
        .iter()
        .map(|f| std::fs::metadata(dir.join(f)).unwrap().modified().unwrap())
        .collect();
    let contents: Vec<_> = FILES
        .iter()
        .map(|f| std::fs::read(dir.join(f)).unwrap())
        .collect();

    let second = certbound(["dev-pki".as_ref(), dir.as_os_str()]);
    assert_eq!(second.code, 0, "{second:?}");
    second.line_with(&["reusing the dev PKI in", "nothing written"]);
    // Same listing apart from the first line; same files, untouched.
    assert_eq!(
        first.stdout.lines().skip(1).collect::<Vec<_>>(),
        second.stdout.lines().skip(1).collect::<Vec<_>>()
    );
    for (i, f) in FILES.iter().enumerate() {
        assert_eq!(std::fs::read(dir.join(f)).unwrap(), contents[i], "{f}");
        assert_eq!(
            std::fs::metadata(dir.join(f)).unwrap().modified().unwrap(),
            mtimes[i],
            "{f} rewritten"
        );
    }

    // --force makes a new set.
    let forced = certbound(["dev-pki".as_ref(), dir.as_os_str(), "--force".as_ref()]);
    assert_eq!(forced.code, 0, "{forced:?}");
    forced.line_with(&["created a dev PKI in"]);
    assert_ne!(
        std::fs::read(dir.join("client-a.pem")).unwrap(),
        contents[3]
    );
}

#[test]
fn the_example_reads_what_dev_pki_wrote() {
    // The same loader the example uses (DevPki::load_or_create) finds a complete set.
    let tmp = TempDir::new("dev-pki-load");
    assert_eq!(
        certbound(["dev-pki".as_ref(), tmp.path().as_os_str()]).code,
        0
    );
    let (pki, created) = certbound_dev::DevPki::load_or_create(tmp.path()).unwrap();
    assert!(!created);
    let a = std::fs::read_to_string(tmp.path().join("client-a.pem")).unwrap();
    assert_eq!(pki.client_a.cert_pem, a);
}

#[test]
fn unwritable_dir_is_one_line_and_exit_2() {
    let tmp = TempDir::new("dev-pki-bad");
    let file = tmp.write("not-a-dir", "x");
    let run = certbound(["dev-pki".as_ref(), file.join("sub").as_os_str()]);
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(run.stderr.starts_with("error: dev PKI in "), "{run:?}");
}
