//! Authorization server metadata: OpenID Connect Discovery 1.0 §4 and RFC 8414 §3.

use std::net::IpAddr;

use certbound_core::__private::parse_object;
use reqwest::Url;
use serde_json::{Map, Value};

use super::http::HttpClient;
use super::{FetchError, RemoteJwksBuildError};

/// The metadata an issuer publishes about itself, as found by discovery.
#[derive(Debug, Clone)]
pub struct IssuerMetadata {
    issuer: String,
    jwks_uri: String,
    metadata_url: String,
    bound_tokens: bool,
    document: Map<String, Value>,
}

impl IssuerMetadata {
    /// The `issuer` value (equal to the configured issuer; discovery fails otherwise).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Where the keys are (`jwks_uri`).
    pub fn jwks_uri(&self) -> &str {
        &self.jwks_uri
    }

    /// The URL the metadata was read from.
    pub fn metadata_url(&self) -> &str {
        &self.metadata_url
    }

    /// Whether the issuer advertises `tls_client_certificate_bound_access_tokens: true`
    /// (RFC 8705 §3.3). `false` when the member is absent or not `true`.
    pub fn tls_client_certificate_bound_access_tokens(&self) -> bool {
        self.bound_tokens
    }

    /// Any other member of the metadata document, as JSON.
    pub fn member(&self, name: &str) -> Option<&Value> {
        self.document.get(name)
    }
}

/// The two places metadata may be, in the order they are tried.
///
/// OpenID Connect appends the well-known suffix to the issuer (after removing a trailing `/`);
/// RFC 8414 §3.1 inserts it between the host and the issuer's path.
pub(crate) fn well_known_urls(issuer: &Url) -> [Url; 2] {
    let path = issuer.path().trim_end_matches('/');
    let mut oidc = issuer.clone();
    oidc.set_path(&format!("{path}/.well-known/openid-configuration"));
    let mut oauth = issuer.clone();
    oauth.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    [oidc, oauth]
}

/// Runs discovery for `issuer` (the configured string, compared exactly).
pub(crate) async fn discover(
    http: &HttpClient,
    issuer: &str,
    issuer_url: &Url,
) -> Result<IssuerMetadata, RemoteJwksBuildError> {
    let mut attempts = Vec::new();
    for url in well_known_urls(issuer_url) {
        let started = std::time::Instant::now();
        let outcome = http
            .get(&url, "application/json")
            .await
            .and_then(|fetched| {
                parse_object(&fetched.body).map_err(|source| FetchError::Metadata {
                    url: url.to_string(),
                    source,
                })
            });
        let document = match outcome {
            Ok(document) => document,
            Err(error) => {
                tracing::debug!(
                    url = %url,
                    duration_ms = started.elapsed().as_millis() as u64,
                    %error,
                    "authorization server metadata not found here"
                );
                attempts.push((url.to_string(), error));
                continue;
            }
        };
        return metadata_from(issuer, issuer_url, &url, document);
    }
    Err(RemoteJwksBuildError::Discovery {
        issuer: issuer.to_owned(),
        attempts,
    })
}

fn metadata_from(
    issuer: &str,
    issuer_url: &Url,
    url: &Url,
    document: Map<String, Value>,
) -> Result<IssuerMetadata, RemoteJwksBuildError> {
    let advertised = document.get("issuer").and_then(Value::as_str);
    if advertised != Some(issuer) {
        return Err(RemoteJwksBuildError::IssuerMismatch {
            configured: issuer.to_owned(),
            advertised: match document.get("issuer") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => "(none)".to_owned(),
            },
            metadata_url: url.to_string(),
        });
    }
    let Some(jwks_uri) = document.get("jwks_uri").and_then(Value::as_str) else {
        return Err(RemoteJwksBuildError::MissingJwksUri {
            metadata_url: url.to_string(),
        });
    };
    let parsed = Url::parse(jwks_uri).map_err(|e| RemoteJwksBuildError::InvalidUrl {
        url: jwks_uri.to_owned(),
        reason: e.to_string(),
    })?;
    // https, or http only when the issuer itself is http (which `check_url` limits to loopback).
    let allowed = parsed.scheme() == "https"
        || (parsed.scheme() == "http" && issuer_url.scheme() == "http" && is_loopback(&parsed));
    if !allowed {
        return Err(RemoteJwksBuildError::InsecureUrl {
            url: jwks_uri.to_owned(),
        });
    }
    let bound_tokens =
        document.get("tls_client_certificate_bound_access_tokens") == Some(&Value::Bool(true));
    if !bound_tokens {
        tracing::warn!(
            issuer,
            metadata_url = %url,
            "issuer metadata does not advertise tls_client_certificate_bound_access_tokens; \
             its tokens may not be certificate-bound (RFC 8705 §3.3)"
        );
    }
    tracing::info!(issuer, metadata_url = %url, jwks_uri, bound_tokens, "discovered issuer metadata");
    Ok(IssuerMetadata {
        issuer: issuer.to_owned(),
        jwks_uri: jwks_uri.to_owned(),
        metadata_url: url.to_string(),
        bound_tokens,
        document,
    })
}

/// `localhost`, `127.0.0.0/8` or `::1`.
pub(crate) fn is_loopback(url: &Url) -> bool {
    url.host_str().is_some_and(|host| {
        host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    })
}

/// Parses a configured URL: `https`, or `http` to a loopback host (local testing only); no
/// fragment; for issuers (RFC 8414 §2) no query either.
pub(crate) fn check_url(url: &str, is_issuer: bool) -> Result<Url, RemoteJwksBuildError> {
    let parsed = Url::parse(url).map_err(|e| RemoteJwksBuildError::InvalidUrl {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    let invalid = |reason: &str| RemoteJwksBuildError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let secure = match parsed.scheme() {
        "https" => true,
        "http" => is_loopback(&parsed),
        _ => false,
    };
    if !secure {
        return Err(RemoteJwksBuildError::InsecureUrl {
            url: url.to_owned(),
        });
    }
    if parsed.host().is_none() {
        return Err(invalid("no host"));
    }
    if parsed.fragment().is_some() {
        return Err(invalid("a fragment is not allowed"));
    }
    if is_issuer && parsed.query().is_some() {
        return Err(invalid("an issuer identifier has no query (RFC 8414 §2)"));
    }
    Ok(parsed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn urls(issuer: &str) -> [String; 2] {
        well_known_urls(&Url::parse(issuer).unwrap()).map(|u| u.to_string())
    }

    #[test]
    fn well_known_locations() {
        assert_eq!(
            urls("https://as.example"),
            [
                "https://as.example/.well-known/openid-configuration",
                "https://as.example/.well-known/oauth-authorization-server"
            ]
        );
        assert_eq!(
            urls("https://as.example/"),
            [
                "https://as.example/.well-known/openid-configuration",
                "https://as.example/.well-known/oauth-authorization-server"
            ]
        );
        assert_eq!(
            urls("https://as.example:8443/tenant/one/"),
            [
                "https://as.example:8443/tenant/one/.well-known/openid-configuration",
                "https://as.example:8443/.well-known/oauth-authorization-server/tenant/one"
            ]
        );
    }

    #[test]
    fn url_rules() {
        assert!(check_url("https://as.example", true).is_ok());
        assert!(check_url("http://127.0.0.1:8080", true).is_ok());
        assert!(check_url("http://localhost/x", false).is_ok());
        assert!(check_url("http://[::1]:9/", true).is_ok());
        assert!(matches!(
            check_url("http://as.example", true),
            Err(RemoteJwksBuildError::InsecureUrl { .. })
        ));
        assert!(matches!(
            check_url("https://as.example/?a=b", true),
            Err(RemoteJwksBuildError::InvalidUrl { .. })
        ));
        assert!(check_url("https://as.example/jwks?v=2", false).is_ok());
        assert!(matches!(
            check_url("https://as.example/#x", false),
            Err(RemoteJwksBuildError::InvalidUrl { .. })
        ));
        assert!(matches!(
            check_url("not a url", false),
            Err(RemoteJwksBuildError::InvalidUrl { .. })
        ));
        assert!(matches!(
            check_url("file:///etc/passwd", false),
            Err(RemoteJwksBuildError::InsecureUrl { .. })
        ));
    }

    fn doc(json: &str) -> Map<String, Value> {
        parse_object(json.as_bytes()).unwrap()
    }

    #[test]
    fn metadata_checks() {
        let iss = "https://as.example";
        let iss_url = Url::parse(iss).unwrap();
        let at = Url::parse("https://as.example/.well-known/openid-configuration").unwrap();
        let ok = metadata_from(
            iss,
            &iss_url,
            &at,
            doc(r#"{"issuer":"https://as.example","jwks_uri":"https://as.example/jwks","tls_client_certificate_bound_access_tokens":true}"#),
        )
        .unwrap();
        assert!(ok.tls_client_certificate_bound_access_tokens());
        assert_eq!(ok.jwks_uri(), "https://as.example/jwks");

        let err = metadata_from(
            iss,
            &iss_url,
            &at,
            doc(r#"{"issuer":"https://as.example/","jwks_uri":"https://as.example/jwks"}"#),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("\"https://as.example\"") && err.contains("\"https://as.example/\""),
            "{err}"
        );

        assert!(matches!(
            metadata_from(
                iss,
                &iss_url,
                &at,
                doc(r#"{"issuer":"https://as.example"}"#)
            ),
            Err(RemoteJwksBuildError::MissingJwksUri { .. })
        ));
        assert!(matches!(
            metadata_from(
                iss,
                &iss_url,
                &at,
                doc(r#"{"issuer":"https://as.example","jwks_uri":"http://as.example/jwks"}"#)
            ),
            Err(RemoteJwksBuildError::InsecureUrl { .. })
        ));
        let plain = metadata_from(
            iss,
            &iss_url,
            &at,
            doc(r#"{"issuer":"https://as.example","jwks_uri":"https://as.example/jwks","tls_client_certificate_bound_access_tokens":"yes"}"#),
        )
        .unwrap();
        assert!(!plain.tls_client_certificate_bound_access_tokens());
    }
}
