//! Loading certificates, keys and CA bundles from PEM files.
//!
//! These back the `--tls-cert`, `--tls-key`, `--client-ca` and `--client-crl` flags of a server;
//! every error names the file it is about.
//!
//! ```no_run
//! use certbound_tls::{
//!     load_ca_roots, load_certs, load_crls, load_private_key, server_config, ClientAuth,
//! };
//!
//! # fn main() -> Result<(), certbound_tls::TlsError> {
//! let chain = load_certs("server.pem")?;
//! let key = load_private_key("server.key")?;
//! let roots = load_ca_roots("client-ca.pem")?;
//! let crls = load_crls("client-ca.crl")?; // optional: revoked client certificates
//! let config = server_config(chain, key, ClientAuth::ca(roots).with_crls(crls))?;
//! # let _ = config;
//! # Ok(())
//! # }
//! ```

use std::path::Path;

use rustls::RootCertStore;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::TlsError;

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn parse_certs(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificates {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Reads every `CERTIFICATE` block of a PEM file, in order: for a server, the leaf first, then
/// its intermediates.
///
/// Fails if the file cannot be read, is not valid PEM, or holds no certificate.
pub fn load_certs(path: impl AsRef<Path>) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let path = path.as_ref();
    parse_certs(path, &read(path)?)
}

/// Reads the first private key of a PEM file: PKCS#8 (`PRIVATE KEY`), PKCS#1
/// (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`). Other blocks (certificates, parameters) are
/// skipped.
///
/// Fails if the file cannot be read, is not valid PEM, or holds no private key. Encrypted keys
/// are not supported.
pub fn load_private_key(path: impl AsRef<Path>) -> Result<PrivateKeyDer<'static>, TlsError> {
    let path = path.as_ref();
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|source| match source {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: path.to_owned(),
        },
        source => TlsError::Pem {
            path: path.to_owned(),
            source,
        },
    })
}

/// Reads a CA bundle — every `CERTIFICATE` block of a PEM file — into a [`RootCertStore`] for
/// [`ClientAuth::ca`](crate::ClientAuth::ca).
///
/// Fails if the file cannot be read, is not valid PEM, holds no certificate, or holds a
/// certificate that cannot be a trust anchor (the error gives its position).
pub fn load_ca_roots(path: impl AsRef<Path>) -> Result<RootCertStore, TlsError> {
    let path = path.as_ref();
    let certs = parse_certs(path, &read(path)?)?;
    let mut roots = RootCertStore::empty();
    for (index, cert) in certs.into_iter().enumerate() {
        roots
            .add(cert)
            .map_err(|source| TlsError::InvalidTrustAnchor {
                path: path.to_owned(),
                index,
                source,
            })?;
    }
    Ok(roots)
}

/// Reads certificate revocation lists for
/// [`ClientAuth::with_crls`](crate::ClientAuth::with_crls): every `X509 CRL` block of a PEM
/// file, or a file that is one DER-encoded CRL (as CAs often publish them).
///
/// Each CRL is parsed here, so a corrupt one is reported with its file and position rather
/// than when the server configuration is built. Its signature is checked later, in the
/// handshake, against the CA that issued it.
///
/// Fails if the file cannot be read, is not valid PEM, holds no CRL (for example, a file of
/// certificates), or holds one that does not parse.
pub fn load_crls(
    path: impl AsRef<Path>,
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let path = path.as_ref();
    let bytes = read(path)?;
    let mut crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_owned(),
            source,
        })?;
    if crls.is_empty() {
        // Not PEM: DER, if it starts like a DER SEQUENCE (the parse below decides).
        if bytes.first() != Some(&0x30) {
            return Err(TlsError::NoCrls {
                path: path.to_owned(),
            });
        }
        crls.push(CertificateRevocationListDer::from(bytes));
    }
    for (index, crl) in crls.iter().enumerate() {
        webpki::OwnedCertRevocationList::from_der(crl).map_err(|err| TlsError::InvalidCrl {
            path: path.to_owned(),
            index,
            source: Box::new(err),
        })?;
    }
    Ok(crls)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::path::PathBuf;

    /// A file under the system temp dir, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, contents: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("certbound-tls-{}-{name}", std::process::id()));
            std::fs::write(&path, contents).unwrap();
            Self(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn loads_certs_keys_and_roots() {
        let ca = certbound_dev::DevCa::new("pem test CA").unwrap();
        let server = ca.server_cert(&["localhost"]).unwrap();
        let chain = TempFile::new(
            "chain.pem",
            &format!("{}{}", server.cert_pem, ca.cert().cert_pem),
        );
        let key = TempFile::new("key.pem", &server.key_pem);
        let bundle = TempFile::new("bundle.pem", &ca.cert().cert_pem);

        let certs = load_certs(&chain.0).unwrap();
        assert_eq!(
            certs,
            vec![server.cert_der.clone(), ca.cert().cert_der.clone()]
        );
        assert_eq!(
            load_private_key(&key.0).unwrap().secret_der(),
            server.key_der.as_slice()
        );
        assert_eq!(load_ca_roots(&bundle.0).unwrap().len(), 1);
        // A combined file: the key is found after the certificate.
        let combined = TempFile::new("combined.pem", &server.identity_pem());
        assert!(load_private_key(&combined.0).is_ok());
    }

    #[test]
    fn loads_crls_from_pem_and_der() {
        let ca = certbound_dev::DevCa::new("crl test CA").unwrap();
        let revoked = ca
            .client_cert("revoked", certbound_dev::KeyKind::EcP256)
            .unwrap();
        let crl = ca.revocation_list(&[&revoked]).unwrap();
        let other = ca.revocation_list(&[]).unwrap();

        let pem = TempFile::new("crls.pem", &format!("{}{}", crl.pem, other.pem));
        assert_eq!(
            load_crls(&pem.0).unwrap(),
            vec![crl.der.clone(), other.der.clone()]
        );
        let der = TempFile(
            std::env::temp_dir().join(format!("certbound-tls-{}-crl.der", std::process::id())),
        );
        std::fs::write(&der.0, crl.der.as_ref()).unwrap();
        assert_eq!(load_crls(&der.0).unwrap(), vec![crl.der.clone()]);
    }

    #[test]
    fn bad_crl_files_are_refused_with_their_name() {
        // A certificate is not a CRL.
        let ca = certbound_dev::DevCa::new("crl test CA").unwrap();
        let certs = TempFile::new("not-a-crl.pem", &ca.cert().cert_pem);
        let err = load_crls(&certs.0).unwrap_err();
        assert!(matches!(err, TlsError::NoCrls { .. }), "{err:?}");
        assert!(err.to_string().contains("not-a-crl.pem"), "{err}");

        let text = TempFile::new("text.crl", "revoked: everyone\n");
        let err = load_crls(&text.0).unwrap_err();
        assert!(matches!(err, TlsError::NoCrls { .. }), "{err:?}");

        // Well-formed PEM around garbage; and DER-looking garbage.
        let garbage = TempFile::new(
            "garbage.crl.pem",
            "-----BEGIN X509 CRL-----\nMAMCAQE=\n-----END X509 CRL-----\n",
        );
        let err = load_crls(&garbage.0).unwrap_err();
        assert!(
            matches!(err, TlsError::InvalidCrl { index: 0, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("garbage.crl.pem"), "{err}");
        let der = TempFile::new("garbage.crl", "0\u{3}\u{2}\u{1}\u{1}");
        let err = load_crls(&der.0).unwrap_err();
        assert!(matches!(err, TlsError::InvalidCrl { .. }), "{err:?}");

        let err = load_crls("/nonexistent/clients.crl").unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }), "{err:?}");
    }

    #[test]
    fn errors_name_the_file() {
        let missing = std::env::temp_dir().join("certbound-tls-definitely-missing.pem");
        let err = load_certs(&missing).unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }), "{err:?}");
        assert!(err
            .to_string()
            .contains("certbound-tls-definitely-missing.pem"));

        let empty = TempFile::new("empty.pem", "no PEM here\n");
        let err = load_certs(&empty.0).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificates { .. }), "{err:?}");
        assert!(err.to_string().contains(&*empty.0.to_string_lossy()));
        let err = load_private_key(&empty.0).unwrap_err();
        assert!(matches!(err, TlsError::NoPrivateKey { .. }), "{err:?}");
        let err = load_ca_roots(&empty.0).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificates { .. }), "{err:?}");

        let broken = TempFile::new(
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        );
        let err = load_certs(&broken.0).unwrap_err();
        assert!(matches!(err, TlsError::Pem { .. }), "{err:?}");

        let garbage = TempFile::new(
            "garbage-ca.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        let err = load_ca_roots(&garbage.0).unwrap_err();
        assert!(
            matches!(err, TlsError::InvalidTrustAnchor { index: 0, .. }),
            "{err:?}"
        );
    }
}
