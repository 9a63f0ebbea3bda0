//! A development PKI: CA, server certificate, CA-issued and self-signed client certificates.
//!
//! ```
//! use certbound_dev::{DevCa, KeyKind};
//!
//! let ca = DevCa::new("dev CA").unwrap();
//! let server = ca.server_cert(&["localhost", "127.0.0.1"]).unwrap();
//! let client = ca.client_cert("client-a", KeyKind::Rsa2048).unwrap();
//! let self_signed = certbound_dev::pki::self_signed_client("client-s", KeyKind::EcP256).unwrap();
//! // The same key pair under a new certificate has a different thumbprint.
//! let reissued = ca.reissue(&client, "client-a").unwrap();
//! assert_ne!(client.cert_der, reissued.cert_der);
//! ```

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SignatureAlgorithm,
};
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs8KeyDer,
};

use crate::DevError;

/// The key algorithm of a generated certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA P-256.
    EcP256,
    /// ECDSA P-384.
    EcP384,
    /// RSA 2048 (PKCS#1 v1.5 SHA-256 signatures).
    Rsa2048,
    /// Ed25519.
    Ed25519,
}

impl KeyKind {
    pub(crate) fn generate(self) -> Result<KeyPair, rcgen::Error> {
        match self {
            KeyKind::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            }
            other => KeyPair::generate_for(other.alg()),
        }
    }

    fn alg(self) -> &'static SignatureAlgorithm {
        match self {
            KeyKind::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyKind::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyKind::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
            KeyKind::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }
}

/// A certificate with its private key, in the forms rustls, reqwest and curl want.
#[derive(Debug, Clone)]
pub struct CertAndKey {
    /// The certificate, DER.
    pub cert_der: CertificateDer<'static>,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 DER.
    pub key_der: Vec<u8>,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
}

impl CertAndKey {
    pub(crate) fn new(cert: rcgen::Certificate, key: &KeyPair) -> Self {
        Self {
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
            key_der: key.serialize_der(),
            key_pem: key.serialize_pem(),
        }
    }

    /// The private key as rustls takes it.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// Certificate PEM followed by key PEM (what reqwest's `Identity::from_pem` takes).
    pub fn identity_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }

    fn key_pair(&self) -> Result<KeyPair, rcgen::Error> {
        KeyPair::from_pem(&self.key_pem)
    }
}

/// A development certificate authority.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    cert: CertAndKey,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "certbound dev");
    dn.push(DnType::CommonName, cn);
    dn
}

impl DevCa {
    /// Generates a new CA (ECDSA P-256) named `cn`.
    pub fn new(cn: &str) -> Result<Self, DevError> {
        let key = KeyKind::EcP256.generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        let cert = CertAndKey::new(cert, &key);
        Ok(Self {
            issuer: Issuer::new(params, key),
            cert,
        })
    }

    /// The CA certificate (trust anchor).
    pub fn cert(&self) -> &CertAndKey {
        &self.cert
    }

    /// A server certificate for the given DNS names and IP addresses.
    pub fn server_cert(&self, names: &[&str]) -> Result<CertAndKey, DevError> {
        let key = KeyKind::EcP256.generate()?;
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone())?;
        params.distinguished_name = dn(names.first().map_or("server", String::as_str));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        Ok(CertAndKey::new(params.signed_by(&key, &self.issuer)?, &key))
    }

    /// A client certificate (`tls_client_auth`) with a new key of `kind`.
    pub fn client_cert(&self, cn: &str, kind: KeyKind) -> Result<CertAndKey, DevError> {
        let key = kind.generate()?;
        self.client_cert_for_key(cn, &key)
    }

    /// A new certificate for the key pair of `existing` — a different certificate, so a
    /// different thumbprint, although the key is the same.
    pub fn reissue(&self, existing: &CertAndKey, cn: &str) -> Result<CertAndKey, DevError> {
        let key = existing.key_pair()?;
        self.client_cert_for_key(cn, &key)
    }

    fn client_cert_for_key(&self, cn: &str, key: &KeyPair) -> Result<CertAndKey, DevError> {
        let mut params = client_params(cn)?;
        params.use_authority_key_identifier_extension = true;
        Ok(CertAndKey::new(params.signed_by(key, &self.issuer)?, key))
    }
}

/// A certificate revocation list (CRL) signed by a [`DevCa`], from [`DevCa::revocation_list`].
#[derive(Debug, Clone)]
pub struct DevCrl {
    /// The CRL, DER.
    pub der: CertificateRevocationListDer<'static>,
    /// The CRL, PEM (`-----BEGIN X509 CRL-----`).
    pub pem: String,
}

impl DevCa {
    /// A CRL signed by this CA that lists `revoked` (certificates this CA issued) as revoked,
    /// for testing `tls_client_auth` with revocation. It has been valid since 2024 and stays
    /// valid until 4096.
    ///
    /// Note: certificates for the same key pair (see [`reissue`](Self::reissue)) share a
    /// serial number, so revoking one revokes them all.
    pub fn revocation_list(&self, revoked: &[&CertAndKey]) -> Result<DevCrl, DevError> {
        let revoked_certs = revoked
            .iter()
            .map(|cert| {
                Ok(rcgen::RevokedCertParams {
                    serial_number: serial_number(&cert.cert_der)?,
                    revocation_time: rcgen::date_time_ymd(2024, 1, 1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, DevError>>()?;
        let params = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2024, 1, 1),
            next_update: rcgen::date_time_ymd(4096, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer)?;
        Ok(DevCrl {
            pem: crl.pem()?,
            der: crl.der().clone(),
        })
    }
}

/// The `serialNumber` of a DER certificate: the INTEGER after the optional version in its
/// TBSCertificate (RFC 5280 §4.1).
fn serial_number(cert_der: &[u8]) -> Result<rcgen::SerialNumber, DevError> {
    let invalid = || DevError::Invalid("not a DER X.509 certificate".into());
    let (certificate, _) = der_element(cert_der, 0x30).ok_or_else(invalid)?;
    let (tbs, _) = der_element(certificate, 0x30).ok_or_else(invalid)?;
    let after_version = der_element(tbs, 0xa0).map_or(tbs, |(_, rest)| rest);
    let (serial, _) = der_element(after_version, 0x02).ok_or_else(invalid)?;
    Ok(rcgen::SerialNumber::from_slice(serial))
}

/// Splits one DER element tagged `tag` off the front of `input`: (its contents, the rest).
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let len = rest
            .get(..n)?
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (len, rest.get(n..)?)
    };
    Some((rest.get(..len)?, rest.get(len..)?))
}

pub(crate) fn client_params(cn: &str) -> Result<CertificateParams, DevError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = dn(cn);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    Ok(params)
}

/// A self-signed client certificate (`self_signed_tls_client_auth`).
pub fn self_signed_client(cn: &str, kind: KeyKind) -> Result<CertAndKey, DevError> {
    let key = kind.generate()?;
    let params = client_params(cn)?;
    Ok(CertAndKey::new(params.self_signed(&key)?, &key))
}

/// Everything the example API needs, as files in one directory.
#[derive(Debug, Clone)]
pub struct DevPki {
    /// The directory the files live in.
    pub dir: PathBuf,
    /// CA certificate (`ca.pem`); its key is not kept.
    pub ca: CertAndKey,
    /// Server certificate for localhost, 127.0.0.1 and ::1 (`server.pem`, `server.key`).
    pub server: CertAndKey,
    /// Client A, issued by the CA (`client-a.pem`, `client-a.key`).
    pub client_a: CertAndKey,
    /// Client B, issued by the CA (`client-b.pem`, `client-b.key`).
    pub client_b: CertAndKey,
    /// A self-signed client (`client-self-signed.pem`, `client-self-signed.key`).
    pub self_signed: CertAndKey,
}

const FILES: [&str; 5] = ["ca", "server", "client-a", "client-b", "client-self-signed"];

impl DevPki {
    /// Generates a fresh set in memory (nothing written; `dir` is where [`save`](Self::save) writes).
    pub fn generate(dir: impl Into<PathBuf>) -> Result<Self, DevError> {
        let ca = DevCa::new("certbound dev CA")?;
        Ok(Self {
            dir: dir.into(),
            server: ca.server_cert(&["localhost", "127.0.0.1", "::1"])?,
            client_a: ca.client_cert("client-a", KeyKind::EcP256)?,
            client_b: ca.client_cert("client-b", KeyKind::EcP256)?,
            self_signed: self_signed_client("client-self-signed", KeyKind::EcP256)?,
            ca: ca.cert().clone(),
        })
    }

    /// Loads the set from `dir` if every file is there, otherwise generates and saves a new one.
    /// Returns the set and whether it was newly created.
    ///
    /// `dir` must be private first (see [`private_dir`](crate::private_dir)): it is created with
    /// mode 0700, and one owned by another user or writable by group or others is refused with
    /// [`DevError::UnsafeDir`] — never reused, whoever created it. Private keys are mode 0600;
    /// keys a reused set left readable by others are narrowed to 0600.
    pub fn load_or_create(dir: impl AsRef<Path>) -> Result<(Self, bool), DevError> {
        let dir = dir.as_ref();
        crate::private_dir(dir)?;
        if FILES.iter().all(|f| dir.join(format!("{f}.pem")).is_file()) {
            for name in FILES.iter().filter(|f| **f != "ca") {
                crate::dir::narrow_private(&dir.join(format!("{name}.key")))?;
            }
            return Ok((Self::load(dir)?, false));
        }
        let pki = Self::generate(dir)?;
        pki.save()?;
        Ok((pki, true))
    }

    /// Writes `NAME.pem` and `NAME.key` for every member (the CA key is never written), in a
    /// private directory (see [`load_or_create`](Self::load_or_create)); keys with mode 0600.
    pub fn save(&self) -> Result<(), DevError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| DevError::Io { path, source }
        };
        crate::private_dir(&self.dir)?;
        for (name, ck) in FILES.iter().zip(self.members()) {
            let pem = self.dir.join(format!("{name}.pem"));
            std::fs::write(&pem, &ck.cert_pem).map_err(io(&pem))?;
            if *name != "ca" {
                crate::write_private(&self.dir.join(format!("{name}.key")), &ck.key_pem)?;
            }
        }
        Ok(())
    }

    fn members(&self) -> [&CertAndKey; 5] {
        [
            &self.ca,
            &self.server,
            &self.client_a,
            &self.client_b,
            &self.self_signed,
        ]
    }

    /// Path of `NAME.pem` in the directory.
    pub fn cert_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }

    /// Path of `NAME.key` in the directory.
    pub fn key_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }

    fn load(dir: &Path) -> Result<Self, DevError> {
        let read = |name: &str, with_key: bool| -> Result<CertAndKey, DevError> {
            let pem_path = dir.join(format!("{name}.pem"));
            let cert_pem = std::fs::read_to_string(&pem_path).map_err(|source| DevError::Io {
                path: pem_path.clone(),
                source,
            })?;
            let cert_der = rustls_pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
                .map_err(|e| DevError::Invalid(format!("{}: {e}", pem_path.display())))?;
            let (key_pem, key_der) = if with_key {
                let key_path = dir.join(format!("{name}.key"));
                let key_pem =
                    std::fs::read_to_string(&key_path).map_err(|source| DevError::Io {
                        path: key_path.clone(),
                        source,
                    })?;
                let key_der: PrivatePkcs8KeyDer<'static> =
                    rustls_pki_types::pem::PemObject::from_pem_slice(key_pem.as_bytes())
                        .map_err(|e| DevError::Invalid(format!("{}: {e}", key_path.display())))?;
                (key_pem, key_der.secret_pkcs8_der().to_vec())
            } else {
                (String::new(), Vec::new())
            };
            Ok(CertAndKey {
                cert_der,
                cert_pem,
                key_der,
                key_pem,
            })
        };
        Ok(Self {
            dir: dir.to_owned(),
            ca: read("ca", false)?,
            server: read("server", true)?,
            client_a: read("client-a", true)?,
            client_b: read("client-b", true)?,
            self_signed: read("client-self-signed", true)?,
        })
    }
}
