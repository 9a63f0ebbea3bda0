//! The one error type of this crate.
//!
//! Every variant that comes from a file names the file, so a misconfigured flag is found from the
//! message alone:
//!
//! ```
//! use certbound_tls::{load_certs, TlsError};
//!
//! let err = load_certs("/nonexistent/server.pem").unwrap_err();
//! assert!(matches!(err, TlsError::Read { .. }));
//! assert!(err.to_string().contains("/nonexistent/server.pem"));
//! ```

use std::io;
use std::path::PathBuf;

/// Why a server configuration could not be built, or a PEM file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The file is not well-formed PEM.
    #[error("{} is not valid PEM: {source}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The file holds no `CERTIFICATE` block.
    #[error("{} contains no PEM \"CERTIFICATE\" block", path.display())]
    NoCertificates {
        /// The file.
        path: PathBuf,
    },
    /// The file holds no private key.
    #[error(
        "{} contains no private key (expected a PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \
         \"EC PRIVATE KEY\" block)",
        path.display()
    )]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// A certificate in a CA bundle cannot serve as a trust anchor.
    #[error("{}: certificate #{index} is not a usable trust anchor: {source}", path.display())]
    InvalidTrustAnchor {
        /// The file.
        path: PathBuf,
        /// Position of the certificate in the file, from 0.
        index: usize,
        /// Why webpki refused it.
        #[source]
        source: rustls::Error,
    },
    /// The file holds no certificate revocation list.
    #[error(
        "{} contains no certificate revocation list (expected PEM \"X509 CRL\" blocks or one \
         DER-encoded CRL)",
        path.display()
    )]
    NoCrls {
        /// The file.
        path: PathBuf,
    },
    /// A certificate revocation list in the file does not parse.
    #[error("{}: CRL #{index} is not a valid certificate revocation list: {source}", path.display())]
    InvalidCrl {
        /// The file.
        path: PathBuf,
        /// Position of the CRL in the file, from 0.
        index: usize,
        /// What the parser said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// CRLs were given for self-signed mode, where no CA issues (or revokes) client
    /// certificates.
    #[error(
        "certificate revocation lists need CA mode (ClientAuth::ca): self-signed client \
         certificates have no issuer to revoke them"
    )]
    CrlsWithoutCa,
    /// The client certificate verifier could not be built (for example, the CA bundle is empty).
    #[error("cannot build the client certificate verifier: {0}")]
    ClientVerifier(#[from] rustls::server::VerifierBuilderError),
    /// The server certificate chain and private key were refused (unparseable key, unsupported
    /// key type, or a key that does not belong to the certificate).
    #[error("server certificate or private key refused: {0}")]
    ServerIdentity(#[source] rustls::Error),
    /// The crypto provider does not support the default protocol versions.
    #[error("TLS protocol versions unsupported by the crypto provider: {0}")]
    ProtocolVersions(#[source] rustls::Error),
}
