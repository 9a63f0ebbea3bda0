//! Errors of [`RemoteJwks`](super::RemoteJwks): building it, and fetching documents.

use std::error::Error as StdError;
use std::fmt::Write as _;

use certbound_core::JsonError;
use certbound_core::JwksError;

/// Why a metadata or JWKS document could not be fetched. Fetch errors after `build` are not
/// returned to requests (which see [`Rejection`](certbound_core::Rejection)s); they are logged,
/// counted in [`JwksStats`](super::JwksStats), and returned by
/// [`RemoteJwks::refresh_now`](super::RemoteJwks::refresh_now).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// No complete response within the configured timeout.
    #[error("GET {url}: timed out")]
    Timeout {
        /// The URL.
        url: String,
    },
    /// The server's certificate did not verify against the trust anchors.
    #[error(
        "GET {url}: the server certificate is not trusted ({reason}); if the issuer uses a \
         private CA, add it with RemoteJwksBuilder::extra_root_certificates_pem"
    )]
    UntrustedCertificate {
        /// The URL.
        url: String,
        /// What rustls said.
        reason: String,
    },
    /// The connection could not be established (refused, unreachable, DNS, TLS handshake).
    #[error("GET {url}: cannot connect: {reason}")]
    Connect {
        /// The URL.
        url: String,
        /// The innermost cause.
        reason: String,
        /// The underlying error.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// The request or the response failed in transit.
    #[error("GET {url}: {reason}")]
    Transport {
        /// The URL.
        url: String,
        /// The innermost cause.
        reason: String,
        /// The underlying error.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// The server answered with a status other than `200 OK`.
    #[error("GET {url}: HTTP status {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The response body is larger than the configured limit (nothing beyond it was buffered).
    #[error("GET {url}: response is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The JWKS document was refused (malformed, or no usable key).
    #[error("GET {url}: {source}")]
    Jwks {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: JwksError,
    },
    /// The metadata document is not a JSON object.
    #[error("GET {url}: invalid authorization server metadata: {source}")]
    Metadata {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: JsonError,
    },
}

impl FetchError {
    /// The URL that was fetched.
    pub fn url(&self) -> &str {
        match self {
            FetchError::Timeout { url }
            | FetchError::UntrustedCertificate { url, .. }
            | FetchError::Connect { url, .. }
            | FetchError::Transport { url, .. }
            | FetchError::Status { url, .. }
            | FetchError::TooLarge { url, .. }
            | FetchError::Jwks { url, .. }
            | FetchError::Metadata { url, .. } => url,
        }
    }

    /// A short, stable name of the failure kind, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::Timeout { .. } => "timeout",
            FetchError::UntrustedCertificate { .. } => "untrusted_certificate",
            FetchError::Connect { .. } => "connect",
            FetchError::Transport { .. } => "transport",
            FetchError::Status { .. } => "status",
            FetchError::TooLarge { .. } => "too_large",
            FetchError::Jwks { .. } => "invalid_jwks",
            FetchError::Metadata { .. } => "invalid_metadata",
        }
    }
}

/// Why [`RemoteJwksBuilder::build`](super::RemoteJwksBuilder::build) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteJwksBuildError {
    /// Neither `issuer` nor `jwks_uri` was given.
    #[error("no key source: call RemoteJwksBuilder::issuer or RemoteJwksBuilder::jwks_uri")]
    NoSource,
    /// A configured or discovered URL does not parse, or has a part it must not have.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why.
        reason: String,
    },
    /// A URL is not `https` (plain `http` is accepted only for loopback hosts, and a discovered
    /// `jwks_uri` only when the issuer itself is such an `http` URL).
    #[error("{url:?} must be an https URL (http is accepted only for loopback hosts)")]
    InsecureUrl {
        /// The URL.
        url: String,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// The extra trust anchors could not be read.
    #[error("extra root certificates: {0}")]
    ExtraRootCertificates(String),
    /// System roots are disabled and no extra root certificate was given.
    #[error("no trust anchors: system roots are disabled and no extra root certificate was given")]
    NoTrustAnchors,
    /// rustls refused the client configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[source] rustls::Error),
    /// The HTTP client could not be created.
    #[error("HTTP client: {0}")]
    HttpClient(#[source] Box<dyn StdError + Send + Sync>),
    /// No metadata document could be fetched from either well-known location.
    #[error("discovery for issuer {issuer:?} failed: {}", attempts_list(.attempts))]
    Discovery {
        /// The configured issuer.
        issuer: String,
        /// Each URL tried, with why it failed.
        attempts: Vec<(String, FetchError)>,
    },
    /// The metadata's `issuer` is not exactly the configured issuer (OpenID Connect Discovery
    /// §4.3, RFC 8414 §3.3). Tokens from such an issuer would never validate, or worse.
    #[error(
        "issuer mismatch: configured {configured:?}, but the metadata at {metadata_url} says \
         {advertised:?} (they must be identical, including any trailing slash)"
    )]
    IssuerMismatch {
        /// The configured issuer.
        configured: String,
        /// The `issuer` in the metadata (`(none)` when absent).
        advertised: String,
        /// Where the metadata came from.
        metadata_url: String,
    },
    /// The metadata has no `jwks_uri`.
    #[error("the metadata at {metadata_url} has no jwks_uri")]
    MissingJwksUri {
        /// Where the metadata came from.
        metadata_url: String,
    },
    /// No introspection endpoint: none was configured, and the issuer's metadata has no
    /// `introspection_endpoint`.
    #[error(
        "no token introspection endpoint: the metadata at {metadata_url} has no \
         introspection_endpoint; configure its URL"
    )]
    NoIntrospectionEndpoint {
        /// Where the metadata came from.
        metadata_url: String,
    },
    /// The introspection client credentials are missing or unusable (a key or certificate
    /// that does not parse).
    #[error("introspection client credentials: {0}")]
    ClientCredentials(String),
    /// The first key fetch failed and [`require_initial_keys`](super::RemoteJwksBuilder::require_initial_keys) is set.
    #[error("initial key fetch failed: {0}")]
    InitialFetch(#[source] FetchError),
}

fn attempts_list(attempts: &[(String, FetchError)]) -> String {
    let mut out = String::new();
    for (i, (_, error)) in attempts.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        let _ = write!(out, "{error}");
    }
    out
}
