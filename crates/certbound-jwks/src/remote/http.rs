//! The HTTPS client: rustls with the aws-lc-rs provider, system roots plus optional extra trust
//! anchors, timeouts, and a response-size cap enforced while streaming.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderValue, ACCEPT, AGE, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{FetchError, RemoteJwksBuildError};

type BoxError = Box<dyn StdError + Send + Sync>;

/// A successful (200) response with its body read in full (within the limit).
#[derive(Debug)]
pub(crate) struct Fetched {
    pub status: StatusCode,
    pub body: Vec<u8>,
    pub cache_control: Vec<String>,
    pub age: Option<String>,
}

/// The HTTP side of a remote key source.
#[derive(Debug, Clone)]
pub(crate) struct HttpClient {
    client: reqwest::Client,
    max_body: usize,
}

/// What the client is built from.
pub(crate) struct HttpConfig<'a> {
    pub system_roots: bool,
    pub extra_roots_pem: &'a [Vec<u8>],
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub max_body: usize,
    pub https_only: bool,
    /// This client's own certificate chain and key, for mutual TLS (`tls_client_auth`).
    pub identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    /// Keep connections open between requests (introspection: many requests a second; JWKS:
    /// minutes apart, so never).
    pub keep_alive: bool,
    /// Follow up to 5 redirects (JWKS and discovery: a GET without credentials). Never for
    /// introspection: a 307/308 would POST the token and this server's client credentials
    /// (and present its client certificate) to wherever the `Location` points.
    pub follow_redirects: bool,
}

/// Any answer to a POST, its body read in full (within the limit).
#[derive(Debug)]
pub(crate) struct Posted {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl HttpClient {
    pub fn new(config: &HttpConfig<'_>) -> Result<Self, RemoteJwksBuildError> {
        let mut roots = RootCertStore::empty();
        if config.system_roots {
            let native = rustls_native_certs::load_native_certs();
            for error in &native.errors {
                tracing::debug!(%error, "could not load some system root certificates");
            }
            let (added, ignored) = roots.add_parsable_certificates(native.certs);
            tracing::debug!(added, ignored, "loaded system root certificates");
        }
        for pem in config.extra_roots_pem {
            let mut found = 0usize;
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert =
                    cert.map_err(|e| RemoteJwksBuildError::ExtraRootCertificates(e.to_string()))?;
                roots
                    .add(cert)
                    .map_err(|e| RemoteJwksBuildError::ExtraRootCertificates(e.to_string()))?;
                found += 1;
            }
            if found == 0 {
                return Err(RemoteJwksBuildError::ExtraRootCertificates(
                    "no CERTIFICATE block in the PEM data".into(),
                ));
            }
        }
        if roots.is_empty() {
            return Err(RemoteJwksBuildError::NoTrustAnchors);
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(RemoteJwksBuildError::Tls)?
            .with_root_certificates(roots);
        let mut tls = match &config.identity {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(RemoteJwksBuildError::Tls)?,
        };
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .https_only(config.https_only)
            .redirect(if config.follow_redirects {
                reqwest::redirect::Policy::limited(5)
            } else {
                reqwest::redirect::Policy::none()
            })
            // Fetches are minutes apart: a kept-alive connection saves nothing and, after an
            // issuer restart, fails the next request. Every fetch gets a fresh connection.
            // Introspection keeps a few idle connections (every cache miss is a request).
            .pool_max_idle_per_host(if config.keep_alive { 8 } else { 0 })
            .user_agent(concat!("certbound-jwks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RemoteJwksBuildError::HttpClient(Box::new(e)))?;
        Ok(Self {
            client,
            max_body: config.max_body,
        })
    }

    /// GETs `url` expecting `200 OK` and a JSON body of at most `max_body` bytes. The cap is
    /// enforced on the bytes received, whatever `Content-Length` says.
    pub async fn get(&self, url: &Url, accept: &'static str) -> Result<Fetched, FetchError> {
        let transport = |e: reqwest::Error| classify(url, e);
        let mut response = self
            .client
            .get(url.clone())
            .header(ACCEPT, HeaderValue::from_static(accept))
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if status != StatusCode::OK {
            return Err(FetchError::Status {
                url: url.to_string(),
                status: status.as_u16(),
            });
        }
        let headers = response.headers();
        let cache_control = headers
            .get_all(CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        let age = headers
            .get(AGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);

        let body = self.read_body(url, &mut response).await?;
        Ok(Fetched {
            status,
            body,
            cache_control,
            age,
        })
    }
}

impl HttpClient {
    /// Reads a response body of at most `max_body` bytes, whatever `Content-Length` says.
    async fn read_body(
        &self,
        url: &Url,
        response: &mut reqwest::Response,
    ) -> Result<Vec<u8>, FetchError> {
        let too_large = || FetchError::TooLarge {
            url: url.to_string(),
            limit: self.max_body,
        };
        let announced = response.content_length();
        if announced.is_some_and(|len| len > self.max_body as u64) {
            return Err(too_large());
        }
        let capacity = announced.map_or(8 * 1024, |len| {
            usize::try_from(len).unwrap_or(self.max_body)
        });
        let mut body = Vec::with_capacity(capacity.min(self.max_body));
        while let Some(chunk) = response.chunk().await.map_err(|e| classify(url, e))? {
            if body.len().saturating_add(chunk.len()) > self.max_body {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// POSTs `form` (`application/x-www-form-urlencoded`) to `url`, with an `Authorization`
    /// header when given, and returns whatever status came back with its body (within the
    /// limit). A redirect is returned as it came when the client was built without
    /// `follow_redirects` (the introspection client).
    pub async fn post_form(
        &self,
        url: &Url,
        form: String,
        authorization: Option<&HeaderValue>,
        accept: &'static str,
    ) -> Result<Posted, FetchError> {
        let mut request = self
            .client
            .post(url.clone())
            .header(ACCEPT, HeaderValue::from_static(accept))
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .body(form);
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value.clone());
        }
        let mut response = request.send().await.map_err(|e| classify(url, e))?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = self.read_body(url, &mut response).await?;
        Ok(Posted {
            status,
            content_type,
            body,
        })
    }
}

/// Sorts a reqwest error into something a user can act on.
fn classify(url: &Url, error: reqwest::Error) -> FetchError {
    let url = url.to_string();
    if error.is_timeout() {
        return FetchError::Timeout { url };
    }
    if let Some(tls) = find_rustls_error(&error) {
        if matches!(tls, rustls::Error::InvalidCertificate(_)) {
            return FetchError::UntrustedCertificate {
                url,
                reason: tls.to_string(),
            };
        }
    }
    let reason = root_cause(&error);
    let source: BoxError = Box::new(error);
    if source
        .downcast_ref::<reqwest::Error>()
        .is_some_and(reqwest::Error::is_connect)
    {
        FetchError::Connect {
            url,
            reason,
            source,
        }
    } else {
        FetchError::Transport {
            url,
            reason,
            source,
        }
    }
}

/// The rustls error somewhere in the chain. `io::Error::source` skips the error it wraps, so
/// wrapped errors are looked at with `get_ref` as well.
fn find_rustls_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            if let Some(tls) = find_rustls_error(inner) {
                return Some(tls);
            }
        }
        current = e.source();
    }
    None
}

/// The innermost message of an error chain ("Connection refused (os error 111)", …).
fn root_cause(error: &(dyn StdError + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}
