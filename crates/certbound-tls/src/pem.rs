//! Loading certificates, keys and CA bundles from PEM files.
//!
//! These back the `--tls-cert`, `--tls-key` and `--client-ca` flags of a server; every error
//! names the file it is about.
//!
//! ```no_run
//! use certbound_tls::{load_ca_roots, load_certs, load_private_key, server_config, ClientAuth};
//!
//! # fn main() -> Result<(), certbound_tls::TlsError> {
//! let chain = load_certs("server.pem")?;
//! let key = load_private_key("server.key")?;
//! let roots = load_ca_roots("client-ca.pem")?;
//! let config = server_config(chain, key, ClientAuth::ca(roots))?;
//! # let _ = config;
//! # Ok(())
//! # }
//! ```

use std::path::Path;

use rustls::RootCertStore;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

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
