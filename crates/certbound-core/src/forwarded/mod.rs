//! Client certificates forwarded by a TLS-terminating proxy, in every format in use.
//!
//! A forwarded header is evidence only when it comes from a proxy you trust: the layer uses it
//! only when the TCP peer is inside the configured [`IpCidr`]s, and refuses (400
//! `invalid_request`, logged) a request that carries it from anywhere else — never silently
//! ignoring it, which would hide a misconfigured proxy. See [`ForwardedCertificates::extract`].
//!
//! ```
//! use certbound_core::{ForwardedCertificates, ForwardedFormat, IpCidr};
//! use http::HeaderMap;
//!
//! let source = ForwardedCertificates::new(
//!     ForwardedFormat::Nginx { header: "x-ssl-client-cert".parse().unwrap() },
//!     vec!["127.0.0.1/32".parse::<IpCidr>().unwrap()],
//! );
//! let mut headers = HeaderMap::new();
//! headers.insert("x-ssl-client-cert", "not%20a%20certificate".parse().unwrap());
//!
//! // From the trusted proxy: parsed, and this value is malformed → 400 invalid_request.
//! let err = source.extract(&headers, Some("127.0.0.1".parse().unwrap())).unwrap_err();
//! assert_eq!(err.code(), "malformed_forwarded_certificate");
//! // From anyone else: refused before it is even parsed.
//! let err = source.extract(&headers, Some("10.1.2.3".parse().unwrap())).unwrap_err();
//! assert_eq!(err.code(), "untrusted_forwarded_certificate");
//! ```
//!
//! The module is in three parts: the formats and their parsers ([`ForwardedFormat`]), Envoy's
//! XFCC grammar, and the trust decision ([`IpCidr`], [`ForwardedCertificates`]).

mod formats;
mod trust;
mod xfcc;

pub use formats::{first_pem_certificate, percent_decode, FormatSpecError, ForwardedFormat};
pub use trust::{
    CidrError, ForwardedCertificates, ForwardedResult, IpCidr, DEFAULT_MAX_FORWARDED_HEADER_LEN,
};
