//! The client of an issuer's token introspection endpoint: see [`Introspector`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use certbound_core::introspection::{client_secret_basic, form_urlencode};
use certbound_core::{Algorithm, IntrospectionFailure};
use futures_util::future::BoxFuture;
use reqwest::header::HeaderValue;
use reqwest::{StatusCode, Url};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::http::{HttpClient, HttpConfig};
use super::{discovery, IssuerMetadata, RemoteJwksBuildError};
use crate::{IntrospectionReply, IntrospectionSource};

/// Default [`IntrospectorBuilder::connect_timeout`]: 2 s.
pub const DEFAULT_INTROSPECTION_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default [`IntrospectorBuilder::timeout`] (whole request): 5 s.
pub const DEFAULT_INTROSPECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// Default [`IntrospectorBuilder::max_response_size`]: 64 KiB.
pub const DEFAULT_INTROSPECTION_MAX_RESPONSE: usize = 64 * 1024;

const ACCEPT_JSON: &str = "application/json";
const ACCEPT_JWT: &str = "application/token-introspection+jwt, application/json;q=0.5";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How this resource server authenticates to the introspection endpoint (RFC 7662 §2.1).
#[derive(Clone)]
pub struct IntrospectionAuth {
    client_id: String,
    method: Method,
}

#[derive(Clone)]
enum Method {
    SecretBasic(String),
    SecretPost(String),
    PrivateKeyJwt {
        key: jsonwebtoken::EncodingKey,
        alg: Algorithm,
        kid: Option<String>,
    },
    TlsClientAuth {
        cert_pem: Vec<u8>,
        key_pem: Vec<u8>,
    },
}

impl fmt::Debug for IntrospectionAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets and keys stay out of logs.
        f.debug_struct("IntrospectionAuth")
            .field("client_id", &self.client_id)
            .field("method", &self.method_name())
            .finish()
    }
}

impl IntrospectionAuth {
    /// `client_secret_basic`: HTTP Basic with the form-urlencoded id and secret (RFC 6749 §2.3.1).
    pub fn client_secret_basic(client_id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            method: Method::SecretBasic(secret.into()),
        }
    }

    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    pub fn client_secret_post(client_id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            method: Method::SecretPost(secret.into()),
        }
    }

    /// `private_key_jwt` (RFC 7523 §2.2): a fresh client assertion, signed with this private key
    /// (PKCS#8 PEM; `alg` one of RS*, PS*, ES256, ES384, EdDSA) per request.
    pub fn private_key_jwt(
        client_id: impl Into<String>,
        private_key_pem: &[u8],
        alg: Algorithm,
        kid: Option<String>,
    ) -> Result<Self, RemoteJwksBuildError> {
        use jsonwebtoken::{AlgorithmFamily, EncodingKey};
        let key = match alg.family() {
            AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(private_key_pem),
            AlgorithmFamily::Ec => EncodingKey::from_ec_pem(private_key_pem),
            AlgorithmFamily::Ed => EncodingKey::from_ed_pem(private_key_pem),
            AlgorithmFamily::Hmac => {
                return Err(RemoteJwksBuildError::ClientCredentials(
                    "private_key_jwt needs an asymmetric algorithm".into(),
                ))
            }
        }
        .map_err(|e| RemoteJwksBuildError::ClientCredentials(e.to_string()))?;
        Ok(Self {
            client_id: client_id.into(),
            method: Method::PrivateKeyJwt { key, alg, kid },
        })
    }

    /// `tls_client_auth` (RFC 8705 §2): this server's own client certificate (PEM chain) and
    /// private key (PEM) on the TLS connection to the endpoint.
    pub fn tls_client_auth(
        client_id: impl Into<String>,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        Self {
            client_id: client_id.into(),
            method: Method::TlsClientAuth {
                cert_pem: cert_pem.into(),
                key_pem: key_pem.into(),
            },
        }
    }

    /// The client id at the issuer.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The RFC 7591 name of the method (`client_secret_basic`, …).
    pub fn method_name(&self) -> &'static str {
        match self.method {
            Method::SecretBasic(_) => "client_secret_basic",
            Method::SecretPost(_) => "client_secret_post",
            Method::PrivateKeyJwt { .. } => "private_key_jwt",
            Method::TlsClientAuth { .. } => "tls_client_auth",
        }
    }

    fn identity(
        &self,
    ) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, RemoteJwksBuildError>
    {
        let Method::TlsClientAuth { cert_pem, key_pem } = &self.method else {
            return Ok(None);
        };
        let bad = |what: &str, e: &dyn fmt::Display| {
            RemoteJwksBuildError::ClientCredentials(format!("tls_client_auth {what}: {e}"))
        };
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("certificate", &e))?;
        if chain.is_empty() {
            return Err(bad("certificate", &"no CERTIFICATE block in the PEM data"));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| bad("key", &e))?;
        Ok(Some((chain, key)))
    }
}

/// Configures and builds an [`Introspector`].
#[derive(Clone, Debug)]
#[must_use]
pub struct IntrospectorBuilder {
    endpoint: Option<String>,
    issuer: Option<String>,
    auth: Option<IntrospectionAuth>,
    extra_roots_pem: Vec<Vec<u8>>,
    system_roots: bool,
    connect_timeout: Duration,
    timeout: Duration,
    max_response_size: usize,
    signed_response: bool,
    assertion_audience: Option<String>,
}

impl Default for IntrospectorBuilder {
    fn default() -> Self {
        Self {
            endpoint: None,
            issuer: None,
            auth: None,
            extra_roots_pem: Vec::new(),
            system_roots: true,
            connect_timeout: DEFAULT_INTROSPECTION_CONNECT_TIMEOUT,
            timeout: DEFAULT_INTROSPECTION_TIMEOUT,
            max_response_size: DEFAULT_INTROSPECTION_MAX_RESPONSE,
            signed_response: false,
            assertion_audience: None,
        }
    }
}

impl IntrospectorBuilder {
    /// The endpoint URL (`https`, or `http` for a loopback host). Without it, the
    /// `introspection_endpoint` of the issuer's discovery metadata is used.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The issuer: where [`build`](Self::build) runs discovery when no
    /// [`endpoint`](Self::endpoint) is given, and the `aud` of `private_key_jwt` assertions.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// How this server authenticates (required).
    pub fn auth(mut self, auth: IntrospectionAuth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Also trusts the CA certificate(s) in this PEM data (the same option as
    /// [`RemoteJwksBuilder`](super::RemoteJwksBuilder)).
    pub fn extra_root_certificates_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.extra_roots_pem.push(pem.as_ref().to_vec());
        self
    }

    /// Whether the operating system's trust store is used (default `true`).
    pub fn system_roots(mut self, enabled: bool) -> Self {
        self.system_roots = enabled;
        self
    }

    /// Time allowed to connect (TCP + TLS). Default 2 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time allowed for a whole introspection request. Default 5 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Largest response accepted, in bytes (default 64 KiB).
    pub fn max_response_size(mut self, bytes: usize) -> Self {
        self.max_response_size = bytes;
        self
    }

    /// Ask for RFC 9701 signed responses (`Accept: application/token-introspection+jwt`).
    pub fn request_signed_response(mut self, signed: bool) -> Self {
        self.signed_response = signed;
        self
    }

    /// The `aud` of `private_key_jwt` assertions (default: the issuer when known, else the
    /// endpoint URL).
    pub fn assertion_audience(mut self, audience: impl Into<String>) -> Self {
        self.assertion_audience = Some(audience.into());
        self
    }

    /// Whether an endpoint URL was given (otherwise it comes from discovery).
    pub fn has_endpoint(&self) -> bool {
        self.endpoint.is_some()
    }

    /// Builds it: runs discovery for the endpoint when none was given.
    pub async fn build(self) -> Result<Introspector, RemoteJwksBuildError> {
        if self.endpoint.is_some() {
            return self.build_with_metadata(None);
        }
        let issuer = self
            .issuer
            .clone()
            .ok_or(RemoteJwksBuildError::NoIntrospectionEndpoint {
                metadata_url: "(no issuer configured)".into(),
            })?;
        let issuer_url = discovery::check_url(&issuer, true)?;
        // Discovery is a GET without credentials: it may follow redirects.
        let http = HttpClient::new(&HttpConfig {
            follow_redirects: true,
            ..self.http_config(issuer_url.scheme() == "https", None)
        })?;
        let metadata = discovery::discover(&http, &issuer, &issuer_url).await?;
        self.build_with_metadata(Some(&metadata))
    }

    /// Builds it without I/O, taking the endpoint (when none was given) from `metadata` —
    /// e.g. what a [`RemoteJwks`](super::RemoteJwks) found by discovery.
    pub fn build_with_metadata(
        self,
        metadata: Option<&IssuerMetadata>,
    ) -> Result<Introspector, RemoteJwksBuildError> {
        let auth = self
            .auth
            .clone()
            .ok_or(RemoteJwksBuildError::ClientCredentials(
                "no client authentication for the introspection endpoint".into(),
            ))?;
        if self.max_response_size == 0 {
            return Err(RemoteJwksBuildError::InvalidConfig(
                "the response size limit is zero",
            ));
        }
        let endpoint = match (&self.endpoint, metadata) {
            (Some(url), _) => url.clone(),
            (None, Some(metadata)) => metadata
                .member("introspection_endpoint")
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| RemoteJwksBuildError::NoIntrospectionEndpoint {
                    metadata_url: metadata.metadata_url().to_owned(),
                })?
                .to_owned(),
            (None, None) => {
                return Err(RemoteJwksBuildError::NoIntrospectionEndpoint {
                    metadata_url: "(no discovery metadata)".into(),
                })
            }
        };
        let endpoint = discovery::check_url(&endpoint, false)?;
        let identity = auth.identity()?;
        let http = HttpClient::new(&self.http_config(endpoint.scheme() == "https", identity))?;
        let issuer = self
            .issuer
            .clone()
            .or_else(|| metadata.map(|m| m.issuer().to_owned()));
        let assertion_audience = self
            .assertion_audience
            .clone()
            .or(issuer)
            .unwrap_or_else(|| endpoint.to_string());
        let authorization = match &auth.method {
            Method::SecretBasic(secret) => {
                let mut value =
                    HeaderValue::from_str(&client_secret_basic(&auth.client_id, secret)).map_err(
                        |_| RemoteJwksBuildError::ClientCredentials("client id or secret".into()),
                    )?;
                // Kept out of debug output and HPACK tables.
                value.set_sensitive(true);
                Some(value)
            }
            _ => None,
        };
        Ok(Introspector {
            inner: Arc::new(Inner {
                http,
                endpoint,
                auth,
                authorization,
                assertion_audience,
                accept: if self.signed_response {
                    ACCEPT_JWT
                } else {
                    ACCEPT_JSON
                },
                calls: AtomicU64::new(0),
                last_warning: AtomicU64::new(0),
            }),
        })
    }

    fn http_config(
        &self,
        https_only: bool,
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> HttpConfig<'_> {
        HttpConfig {
            system_roots: self.system_roots,
            extra_roots_pem: &self.extra_roots_pem,
            connect_timeout: self.connect_timeout,
            timeout: self.timeout,
            max_body: self.max_response_size,
            https_only,
            identity,
            keep_alive: true,
            // A 307/308 would re-POST the token and this server's credentials elsewhere.
            follow_redirects: false,
        }
    }
}

/// An issuer's token introspection endpoint (RFC 7662) over HTTPS, with this
/// resource server's client authentication. It only transports: the response is judged by
/// certbound-core ([`Verifier::check_introspection_response`](certbound_core::Verifier::check_introspection_response)).
///
/// ```no_run
/// # async fn run() -> Result<(), certbound_jwks::RemoteJwksBuildError> {
/// use certbound_jwks::{IntrospectionAuth, IntrospectionSource, Introspector};
///
/// let introspector = Introspector::builder()
///     .issuer("https://auth.example.com")               // discovery → introspection_endpoint
///     .auth(IntrospectionAuth::client_secret_basic("api", "s3cret"))
///     .build()
///     .await?;
/// match introspector.introspect("2YotnFZFEjr1zCsicMWpAA").await {
///     Ok(reply) => println!("{} bytes of {:?}", reply.body.len(), reply.content_type),
///     // Unavailable or CredentialsRefused: the layer answers 503 + Retry-After.
///     Err(failure) => eprintln!("{failure}"),
/// }
/// # Ok(()) }
/// ```
///
/// Failures are typed for the layer: unreachable, a timeout, a 5xx or any other unexpected
/// status — a redirect too: redirects are never followed, since a 307/308 would send the token
/// and this server's credentials to another URL — is [`IntrospectionFailure::Unavailable`]; 401/403 (or `400 invalid_client`) is
/// [`IntrospectionFailure::CredentialsRefused`]. Each failure is logged at most once a second.
///
/// Cheap to clone: clones share one HTTP client (and its kept-alive connections).
#[derive(Clone)]
pub struct Introspector {
    inner: Arc<Inner>,
}

struct Inner {
    http: HttpClient,
    endpoint: Url,
    auth: IntrospectionAuth,
    authorization: Option<HeaderValue>,
    assertion_audience: String,
    accept: &'static str,
    calls: AtomicU64,
    /// Unix second of the last failure warning (one a second at most).
    last_warning: AtomicU64,
}

impl fmt::Debug for Introspector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Introspector")
            .field("endpoint", &self.inner.endpoint.as_str())
            .field("auth", &self.inner.auth)
            .finish_non_exhaustive()
    }
}

impl Introspector {
    /// A builder; give it an [`endpoint`](IntrospectorBuilder::endpoint) or an
    /// [`issuer`](IntrospectorBuilder::issuer), and an [`auth`](IntrospectorBuilder::auth).
    pub fn builder() -> IntrospectorBuilder {
        IntrospectorBuilder::default()
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> &str {
        self.inner.endpoint.as_str()
    }

    /// Introspection requests sent so far.
    pub fn calls(&self) -> u64 {
        self.inner.calls.load(Ordering::Relaxed)
    }

    /// POSTs `token` (never logged) and returns the raw 200 answer, or the typed failure.
    pub async fn introspect_token(
        &self,
        token: &str,
    ) -> Result<IntrospectionReply, IntrospectionFailure> {
        let inner = &self.inner;
        inner.calls.fetch_add(1, Ordering::Relaxed);
        let mut form = format!(
            "token={}&token_type_hint=access_token",
            form_urlencode(token)
        );
        match &inner.auth.method {
            Method::SecretBasic(_) | Method::TlsClientAuth { .. } => {
                if matches!(inner.auth.method, Method::TlsClientAuth { .. }) {
                    form.push_str("&client_id=");
                    form.push_str(&form_urlencode(&inner.auth.client_id));
                }
            }
            Method::SecretPost(secret) => {
                form.push_str("&client_id=");
                form.push_str(&form_urlencode(&inner.auth.client_id));
                form.push_str("&client_secret=");
                form.push_str(&form_urlencode(secret));
            }
            Method::PrivateKeyJwt { key, alg, kid } => {
                let assertion = self.assertion(key, *alg, kid.clone()).map_err(|error| {
                    self.warn(&format!("cannot sign the client assertion: {error}"));
                    IntrospectionFailure::CredentialsRefused
                })?;
                form.push_str("&client_id=");
                form.push_str(&form_urlencode(&inner.auth.client_id));
                form.push_str("&client_assertion_type=");
                form.push_str(&form_urlencode(ASSERTION_TYPE));
                form.push_str("&client_assertion=");
                form.push_str(&assertion);
            }
        }
        let started = std::time::Instant::now();
        let posted = inner
            .http
            .post_form(
                &inner.endpoint,
                form,
                inner.authorization.as_ref(),
                inner.accept,
            )
            .await
            .map_err(|error| {
                self.warn(&error.to_string());
                IntrospectionFailure::Unavailable
            })?;
        tracing::debug!(
            endpoint = %inner.endpoint,
            status = posted.status.as_u16(),
            duration_ms = started.elapsed().as_millis() as u64,
            "token introspected"
        );
        match posted.status {
            StatusCode::OK => Ok(IntrospectionReply {
                content_type: posted.content_type,
                body: posted.body,
            }),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Err(IntrospectionFailure::CredentialsRefused)
            }
            StatusCode::BAD_REQUEST => match oauth_error(&posted.body).as_deref() {
                Some("invalid_client") => Err(IntrospectionFailure::CredentialsRefused),
                Some("unsupported_token_type") => {
                    self.warn(
                        "400 unsupported_token_type: the endpoint does not introspect this kind of \
                         token — some issuers (node oidc-provider) refuse JWTs, so introspect_all \
                         cannot be used with them",
                    );
                    Err(IntrospectionFailure::Unavailable)
                }
                other => {
                    self.warn(&format!(
                        "HTTP status 400 ({})",
                        other.unwrap_or("no OAuth error")
                    ));
                    Err(IntrospectionFailure::Unavailable)
                }
            },
            status if status.is_redirection() => {
                self.warn(&format!(
                    "HTTP status {}: redirects are not followed (they would send the token and \
                     this server's credentials to another URL); configure the endpoint's final URL",
                    status.as_u16()
                ));
                Err(IntrospectionFailure::Unavailable)
            }
            status => {
                self.warn(&format!("HTTP status {}", status.as_u16()));
                Err(IntrospectionFailure::Unavailable)
            }
        }
    }

    fn assertion(
        &self,
        key: &jsonwebtoken::EncodingKey,
        alg: Algorithm,
        kid: Option<String>,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut jti = [0u8; 16];
        // A failing system RNG leaves zeros: the assertion is then refused as a replay by
        // issuers that track jti, never accepted with a guessable one by us.
        let _ = aws_lc_rs::rand::fill(&mut jti);
        let jti: String = jti.iter().map(|b| format!("{b:02x}")).collect();
        let mut header = jsonwebtoken::Header::new(alg);
        header.kid = kid;
        let claims = serde_json::json!({
            "iss": self.inner.auth.client_id,
            "sub": self.inner.auth.client_id,
            "aud": self.inner.assertion_audience,
            "jti": jti,
            "iat": now,
            "exp": now.saturating_add(60),
        });
        jsonwebtoken::encode(&header, &claims, key)
    }

    /// One warning a second at most: an outage must not flood the log.
    fn warn(&self, error: &str) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.inner.last_warning.swap(now, Ordering::Relaxed) != now {
            tracing::warn!(endpoint = %self.inner.endpoint, %error, "token introspection failed; answering 503");
        }
    }
}

/// The `error` of an OAuth error response (RFC 6749 §5.2), if the body is one.
fn oauth_error(body: &[u8]) -> Option<String> {
    let doc = certbound_core::__private::parse_object(body).ok()?;
    let error = doc.get("error")?.as_str()?;
    // Only the characters RFC 6749 allows, so the log line stays what it is.
    error
        .bytes()
        .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\')
        .then(|| error.chars().take(64).collect())
}

impl IntrospectionSource for Introspector {
    fn introspect<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<IntrospectionReply, IntrospectionFailure>> {
        Box::pin(self.introspect_token(token))
    }

    fn client_id(&self) -> &str {
        self.inner.auth.client_id()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_basic_authorization_value_is_marked_sensitive() {
        let introspector = Introspector::builder()
            .endpoint("https://issuer.example/introspect")
            .auth(IntrospectionAuth::client_secret_basic("api", "s3cret"))
            .build_with_metadata(None)
            .unwrap();
        let value = introspector.inner.authorization.as_ref().unwrap();
        assert!(value.is_sensitive());
        assert_eq!(format!("{value:?}"), "Sensitive");
        assert!(!format!("{introspector:?}").contains("s3cret"));
    }
}
