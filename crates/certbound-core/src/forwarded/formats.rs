//! The header formats proxies use to forward a client certificate, and one strict parser per
//! format: each turns a header value from a trusted proxy into the leaf certificate's thumbprint.

use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::{HeaderMap, HeaderName};

use super::trust::ForwardedResult;
use super::xfcc::xfcc;
use crate::{Rejection, Thumbprint};

/// The header formats proxies use to forward a client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardedFormat {
    /// nginx `$ssl_client_escaped_cert`: URL-encoded PEM in a header you name.
    Nginx {
        /// The header nginx sets (`proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;`).
        header: HeaderName,
    },
    /// Envoy / Istio `x-forwarded-client-cert`: exactly one element by default (what an edge
    /// Envoy with `forward_client_cert_details: SANITIZE_SET` writes), or exactly as many as
    /// [`ForwardedCertificates::xfcc_hops`](super::ForwardedCertificates::xfcc_hops) says, the client's being the first; `Cert=`
    /// URL-encoded PEM; `Hash=` hex SHA-256, which must agree with `Cert` when both are present
    /// and is used alone only when `hash_only` is set. A repeated `Cert`/`Hash` is malformed.
    /// `URI`, `DNS` and `Subject` come from the client's certificate and are never trusted.
    Xfcc {
        /// Accept an element with `Hash=` and no `Cert=`.
        hash_only: bool,
    },
    /// RFC 9440 `Client-Cert`: a structured-field byte sequence `:base64(DER):`.
    Rfc9440,
    /// AWS ALB mTLS: URL-encoded PEM in which `+`, `=` and `/` stay literal.
    /// `X-Amzn-Mtls-Clientcert-Leaf` (verify mode) or `X-Amzn-Mtls-Clientcert` (passthrough,
    /// whole chain, leaf first).
    Alb {
        /// `true` for passthrough mode's `X-Amzn-Mtls-Clientcert`.
        passthrough: bool,
    },
    /// Traefik v3 `X-Forwarded-Tls-Client-Cert`: base64 DER without armour, chain comma-separated,
    /// leaf first.
    Traefik,
    /// One base64 DER value in a header you name (HAProxy `%[ssl_c_der,base64]`, Caddy
    /// `{http.request.tls.client.certificate_der_base64}`, Cloudflare `Cf-Client-Cert-Der-Base64`).
    Base64Der {
        /// The header name.
        header: HeaderName,
    },
    /// An Auth0-style customer edge: `client-certificate` (URL-encoded PEM, leaf only) and
    /// `client-certificate-ca-verified: SUCCESS | FAILED[: reason]`.
    Auth0Edge {
        /// Refuse certificates the edge did not verify (`FAILED` is normal for self-signed clients).
        require_verified: bool,
    },
}

impl ForwardedFormat {
    /// The header that carries the certificate.
    pub fn header(&self) -> HeaderName {
        match self {
            ForwardedFormat::Nginx { header } | ForwardedFormat::Base64Der { header } => {
                header.clone()
            }
            ForwardedFormat::Xfcc { .. } => HeaderName::from_static("x-forwarded-client-cert"),
            ForwardedFormat::Rfc9440 => HeaderName::from_static("client-cert"),
            ForwardedFormat::Alb { passthrough: false } => {
                HeaderName::from_static("x-amzn-mtls-clientcert-leaf")
            }
            ForwardedFormat::Alb { passthrough: true } => {
                HeaderName::from_static("x-amzn-mtls-clientcert")
            }
            ForwardedFormat::Traefik => HeaderName::from_static("x-forwarded-tls-client-cert"),
            ForwardedFormat::Auth0Edge { .. } => HeaderName::from_static("client-certificate"),
        }
    }

    /// Every format and mode, in a fixed order, with `header` for the formats whose header you
    /// name (nginx, base64-der) — for exhaustive tests, fuzzing and documentation.
    pub fn every(header: &HeaderName) -> Vec<Self> {
        vec![
            ForwardedFormat::Nginx {
                header: header.clone(),
            },
            ForwardedFormat::Xfcc { hash_only: false },
            ForwardedFormat::Xfcc { hash_only: true },
            ForwardedFormat::Rfc9440,
            ForwardedFormat::Alb { passthrough: false },
            ForwardedFormat::Alb { passthrough: true },
            ForwardedFormat::Traefik,
            ForwardedFormat::Base64Der {
                header: header.clone(),
            },
            ForwardedFormat::Auth0Edge {
                require_verified: false,
            },
            ForwardedFormat::Auth0Edge {
                require_verified: true,
            },
        ]
    }

    /// Parses `FORMAT[:HEADER-NAME]`, e.g. `nginx:X-SSL-Client-Cert`, `xfcc`, `rfc9440`,
    /// `alb`, `alb-passthrough`, `traefik`, `base64-der:X-Client-Cert`, `auth0-edge`,
    /// `auth0-edge-verified`, `xfcc-hash-only`. Also available as [`str::parse`].
    ///
    /// ```
    /// use certbound_core::{ForwardedFormat, FormatSpecError};
    ///
    /// assert_eq!(ForwardedFormat::parse_spec("rfc9440"), Ok(ForwardedFormat::Rfc9440));
    /// assert_eq!(
    ///     ForwardedFormat::parse_spec("nginx"),
    ///     Err(FormatSpecError::MissingHeader { format: "nginx" })
    /// );
    /// ```
    pub fn parse_spec(spec: &str) -> Result<Self, FormatSpecError> {
        let (name, header) = match spec.split_once(':') {
            Some((n, h)) => (n, Some(h)),
            None => (spec, None),
        };
        let named = |format: &'static str| -> Result<HeaderName, FormatSpecError> {
            let h = header.ok_or(FormatSpecError::MissingHeader { format })?;
            HeaderName::from_str(h).map_err(|_| FormatSpecError::InvalidHeader {
                header: h.to_owned(),
            })
        };
        let fixed = |format: &'static str, f: ForwardedFormat| match header {
            None => Ok(f),
            Some(_) => Err(FormatSpecError::FixedHeader { format }),
        };
        match name {
            "nginx" => Ok(ForwardedFormat::Nginx {
                header: named("nginx")?,
            }),
            "base64-der" => Ok(ForwardedFormat::Base64Der {
                header: named("base64-der")?,
            }),
            "xfcc" => fixed("xfcc", ForwardedFormat::Xfcc { hash_only: false }),
            "xfcc-hash-only" => fixed("xfcc-hash-only", ForwardedFormat::Xfcc { hash_only: true }),
            "rfc9440" => fixed("rfc9440", ForwardedFormat::Rfc9440),
            "alb" => fixed("alb", ForwardedFormat::Alb { passthrough: false }),
            "alb-passthrough" => fixed(
                "alb-passthrough",
                ForwardedFormat::Alb { passthrough: true },
            ),
            "traefik" => fixed("traefik", ForwardedFormat::Traefik),
            "auth0-edge" => fixed(
                "auth0-edge",
                ForwardedFormat::Auth0Edge {
                    require_verified: false,
                },
            ),
            "auth0-edge-verified" => fixed(
                "auth0-edge-verified",
                ForwardedFormat::Auth0Edge {
                    require_verified: true,
                },
            ),
            other => Err(FormatSpecError::UnknownFormat {
                format: other.to_owned(),
            }),
        }
    }

    /// The thumbprint of the certificate in `value` — the one value of this format's header,
    /// from a trusted proxy, already checked for size and emptiness. `headers` are the request's
    /// (for a companion header such as the Auth0 edge's verification result); `xfcc_hops` is
    /// [`ForwardedCertificates::xfcc_hops`](super::ForwardedCertificates::xfcc_hops).
    pub(crate) fn thumbprint(
        &self,
        value: &str,
        headers: &HeaderMap,
        xfcc_hops: usize,
    ) -> ForwardedResult {
        let malformed = Rejection::MalformedForwardedCertificate;
        match self {
            ForwardedFormat::Nginx { .. } | ForwardedFormat::Alb { .. } => {
                leaf_from_escaped_pem(value).map(Some)
            }
            ForwardedFormat::Auth0Edge { require_verified } => {
                if *require_verified {
                    let verified = headers.get_all("client-certificate-ca-verified");
                    let mut it = verified.iter();
                    match (it.next().map(|v| v.as_bytes()), it.next()) {
                        (Some(b"SUCCESS"), None) => {}
                        _ => return Err(Rejection::UnverifiedForwardedCertificate),
                    }
                }
                leaf_from_escaped_pem(value).map(Some)
            }
            ForwardedFormat::Xfcc { hash_only } => xfcc(value, *hash_only, xfcc_hops),
            ForwardedFormat::Rfc9440 => rfc9440(value).map(Some),
            ForwardedFormat::Traefik => {
                let leaf = value.split(',').next().unwrap_or_default().trim();
                thumbprint_of_der(&STANDARD.decode(leaf).map_err(|_| malformed)?).map(Some)
            }
            ForwardedFormat::Base64Der { .. } => {
                thumbprint_of_der(&STANDARD.decode(value.trim()).map_err(|_| malformed)?).map(Some)
            }
        }
    }
}

impl FromStr for ForwardedFormat {
    type Err = FormatSpecError;

    /// [`ForwardedFormat::parse_spec`].
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        Self::parse_spec(spec)
    }
}

/// Why a `FORMAT[:HEADER-NAME]` spec did not parse ([`ForwardedFormat::parse_spec`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatSpecError {
    /// A format whose header you name (`nginx`, `base64-der`) was given without one.
    #[error("{format} needs a header name: {format}:HEADER-NAME")]
    MissingHeader {
        /// The format.
        format: &'static str,
    },
    /// The header name is not a valid HTTP header name.
    #[error("invalid header name {header:?}")]
    InvalidHeader {
        /// The header name as given.
        header: String,
    },
    /// A format with a fixed header was given a header name.
    #[error("{format} uses a fixed header; drop the :HEADER-NAME part")]
    FixedHeader {
        /// The format.
        format: &'static str,
    },
    /// Not one of the formats.
    #[error(
        "unknown client-certificate header format {format:?} (expected nginx, xfcc, \
         xfcc-hash-only, rfc9440, alb, alb-passthrough, traefik, base64-der, auth0-edge, \
         auth0-edge-verified)"
    )]
    UnknownFormat {
        /// The format as given.
        format: String,
    },
}

/// Percent-decoding as RFC 3986 defines it: `%XX` only; `+` is a plus sign, never a space.
pub fn percent_decode(value: &str) -> Option<Vec<u8>> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hi = (hex[0] as char).to_digit(16)?;
            let lo = (hex[1] as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The DER of the first `CERTIFICATE` block of a PEM document (the leaf, in every format that
/// carries a chain).
pub fn first_pem_certificate(pem: &[u8]) -> Option<Vec<u8>> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let start = find(pem, BEGIN)? + BEGIN.len();
    let len = find(&pem[start..], END)?;
    let body: Vec<u8> = pem[start..start + len]
        .iter()
        .copied()
        .filter(|b| !matches!(b, b'\r' | b'\n' | b'\t' | b' '))
        .collect();
    STANDARD.decode(body).ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub(super) fn leaf_from_escaped_pem(value: &str) -> Result<Thumbprint, Rejection> {
    let pem = percent_decode(value).ok_or(Rejection::MalformedForwardedCertificate)?;
    let der = first_pem_certificate(&pem).ok_or(Rejection::MalformedForwardedCertificate)?;
    thumbprint_of_der(&der)
}

/// Hashes `der` after checking that it is exactly one DER SEQUENCE (what every X.509
/// certificate is), so truncated or padded values never produce a thumbprint.
fn thumbprint_of_der(der: &[u8]) -> Result<Thumbprint, Rejection> {
    if is_single_der_sequence(der) {
        Ok(Thumbprint::of_der(der))
    } else {
        Err(Rejection::MalformedForwardedCertificate)
    }
}

fn is_single_der_sequence(der: &[u8]) -> bool {
    let [0x30, first, rest @ ..] = der else {
        return false;
    };
    let (len, header) = match *first {
        n @ 0..=0x7f => (usize::from(n), 2),
        0x81..=0x84 => {
            let n = usize::from(first & 0x7f);
            let Some(len_bytes) = rest.get(..n) else {
                return false;
            };
            // DER: minimal length encoding.
            if len_bytes[0] == 0 || (n == 1 && len_bytes[0] < 0x80) {
                return false;
            }
            (
                len_bytes
                    .iter()
                    .fold(0usize, |acc, b| (acc << 8) | usize::from(*b)),
                2 + n,
            )
        }
        _ => return false,
    };
    header.checked_add(len) == Some(der.len())
}

/// RFC 9440 §2: `Client-Cert: :<base64 DER>:` — a structured-field byte sequence.
fn rfc9440(value: &str) -> Result<Thumbprint, Rejection> {
    let malformed = Rejection::MalformedForwardedCertificate;
    let inner = value
        .trim_matches(' ')
        .strip_prefix(':')
        .and_then(|v| v.strip_suffix(':'))
        .ok_or(malformed)?;
    // RFC 8941 §3.3.5: standard alphabet; padding may be omitted by lenient senders.
    let der = STANDARD
        .decode(inner)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(inner))
        .map_err(|_| malformed)?;
    thumbprint_of_der(&der)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_keeps_plus() {
        assert_eq!(percent_decode("a+b%2Bc%2fd").unwrap(), b"a+b+c/d");
        assert!(percent_decode("%").is_none());
        assert!(percent_decode("%2").is_none());
        assert!(percent_decode("%zz").is_none());
    }

    #[test]
    fn der_sequence_check() {
        assert!(is_single_der_sequence(&[0x30, 0x00]));
        assert!(is_single_der_sequence(&[0x30, 0x02, 1, 2]));
        assert!(!is_single_der_sequence(&[0x30, 0x02, 1]));
        assert!(!is_single_der_sequence(&[0x30, 0x02, 1, 2, 3]));
        assert!(!is_single_der_sequence(&[0x31, 0x00]));
        assert!(!is_single_der_sequence(&[0x30, 0x81, 0x05, 0, 0, 0, 0, 0])); // non-minimal
        assert!(!is_single_der_sequence(&[0x30, 0x80])); // indefinite
        assert!(!is_single_der_sequence(&[]));
    }

    #[test]
    fn spec_parsing() {
        assert_eq!(
            ForwardedFormat::parse_spec("nginx:X-SSL-Client-Cert").unwrap(),
            ForwardedFormat::Nginx {
                header: HeaderName::from_static("x-ssl-client-cert")
            }
        );
        assert!(ForwardedFormat::parse_spec("nginx").is_err());
        assert!(ForwardedFormat::parse_spec("xfcc:foo").is_err());
        assert!(ForwardedFormat::parse_spec("bogus").is_err());
        assert_eq!(
            ForwardedFormat::parse_spec("rfc9440").unwrap().header(),
            "client-cert"
        );
    }

    #[test]
    fn spec_errors_are_typed() {
        assert_eq!(
            ForwardedFormat::parse_spec("base64-der"),
            Err(FormatSpecError::MissingHeader {
                format: "base64-der"
            })
        );
        assert_eq!(
            ForwardedFormat::parse_spec("nginx:bad header"),
            Err(FormatSpecError::InvalidHeader {
                header: "bad header".into()
            })
        );
        assert_eq!(
            ForwardedFormat::parse_spec("alb-passthrough:x-cert"),
            Err(FormatSpecError::FixedHeader {
                format: "alb-passthrough"
            })
        );
        assert_eq!(
            "bogus".parse::<ForwardedFormat>(),
            Err(FormatSpecError::UnknownFormat {
                format: "bogus".into()
            })
        );
        // The messages the example's `--client-cert-header` prints.
        assert_eq!(
            FormatSpecError::MissingHeader { format: "nginx" }.to_string(),
            "nginx needs a header name: nginx:HEADER-NAME"
        );
        assert!(FormatSpecError::UnknownFormat { format: "x".into() }
            .to_string()
            .ends_with("auth0-edge, auth0-edge-verified)"));
        for format in ForwardedFormat::every(&HeaderName::from_static("x-cert")) {
            let spec = match &format {
                ForwardedFormat::Nginx { .. } => "nginx:x-cert",
                ForwardedFormat::Base64Der { .. } => "base64-der:x-cert",
                ForwardedFormat::Xfcc { hash_only: false } => "xfcc",
                ForwardedFormat::Xfcc { hash_only: true } => "xfcc-hash-only",
                ForwardedFormat::Rfc9440 => "rfc9440",
                ForwardedFormat::Alb { passthrough: false } => "alb",
                ForwardedFormat::Alb { passthrough: true } => "alb-passthrough",
                ForwardedFormat::Traefik => "traefik",
                ForwardedFormat::Auth0Edge {
                    require_verified: false,
                } => "auth0-edge",
                ForwardedFormat::Auth0Edge {
                    require_verified: true,
                } => "auth0-edge-verified",
            };
            assert_eq!(spec.parse::<ForwardedFormat>(), Ok(format), "{spec}");
        }
    }
}
