//! Turning a [`Rejection`] into an HTTP response (RFC 6750 §3).
//!
//! The layer answers through one path, [`CertBoundLayer::rejection_response`](crate::CertBoundLayer::rejection_response): the configured
//! realm, `resource_metadata` when advertised, `Retry-After` for `503`. Use it when you map a
//! rejection yourself (e.g. after [`CertBoundLayer::verify`](crate::CertBoundLayer::verify)); with axum the returned
//! [`RejectionResponse`] is an `IntoResponse`.
//!
//! ```
//! # async fn doc(layer: certbound::CertBoundLayer) {
//! use certbound::Rejection;
//! let response: http::Response<String> = layer.rejection_response(Rejection::Expired).into_http();
//! assert_eq!(response.status(), 401);
//! # }
//! ```
//!
//! The free functions build the same answer for an explicit realm:
//!
//! ```
//! use certbound::{rejection_response, Rejection};
//!
//! let response: http::Response<String> = rejection_response(&Rejection::Expired, "api");
//! assert_eq!(response.status(), 401);
//! assert_eq!(
//!     response.headers()["www-authenticate"],
//!     r#"Bearer realm="api", error="invalid_token", error_description="token has expired""#
//! );
//! assert_eq!(response.headers()["cache-control"], "no-store");
//! ```

use http::header::{HeaderValue, CACHE_CONTROL, RETRY_AFTER, WWW_AUTHENTICATE};
use http::Response;

use std::sync::Arc;

use certbound_core::Rejection;

use crate::authenticate::Authenticator;

/// A [`Rejection`] answered the way a [`CertBoundLayer`](crate::CertBoundLayer) answers it (its
/// realm, its `resource_metadata`): from [`CertBoundLayer::rejection_response`](crate::CertBoundLayer::rejection_response).
/// Implements axum's `IntoResponse` (feature `axum`).
#[derive(Debug, Clone)]
pub struct RejectionResponse {
    rejection: Rejection,
    auth: Arc<Authenticator>,
}

impl RejectionResponse {
    pub(crate) fn new(rejection: Rejection, auth: Arc<Authenticator>) -> Self {
        Self { rejection, auth }
    }

    /// The rejection.
    pub fn rejection(&self) -> &Rejection {
        &self.rejection
    }

    /// The HTTP response, with any body type that has an empty default.
    pub fn into_http<B: Default>(self) -> Response<B> {
        self.auth.respond_with(&self.rejection, None, &[])
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for RejectionResponse {
    fn into_response(self) -> axum::response::Response {
        self.into_http()
    }
}

/// Builds the response for `rejection`: its status, the `WWW-Authenticate` challenge for `realm`,
/// `Retry-After` for 503, `Cache-Control: no-store`, and an empty body.
pub fn rejection_response<B: Default>(rejection: &Rejection, realm: &str) -> Response<B> {
    rejection_response_with(rejection, realm, &[])
}

/// Like [`rejection_response`], with extra challenge auth-params (e.g. `scope`,
/// `resource_metadata`).
pub fn rejection_response_with<B: Default>(
    rejection: &Rejection,
    realm: &str,
    params: &[(&str, &str)],
) -> Response<B> {
    let challenges = match rejection.www_authenticate(realm) {
        Some(_) => vec![rejection.challenge_with(realm, params)],
        None => Vec::new(),
    };
    response_with_challenges(rejection, &challenges)
}

/// The response for `rejection` with these `WWW-Authenticate` challenges (one header each):
/// its status, `Retry-After` for 503, `Cache-Control: no-store`, an empty body.
pub(crate) fn response_with_challenges<B: Default>(
    rejection: &Rejection,
    challenges: &[String],
) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = rejection.status();
    let headers = response.headers_mut();
    for challenge in challenges {
        // Challenges are built from printable ASCII only (see `Rejection::challenge_with`).
        if let Ok(value) = HeaderValue::from_str(challenge) {
            headers.append(WWW_AUTHENTICATE, value);
        }
    }
    if let Some(secs) = rejection.retry_after_secs() {
        headers.insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The answer to the server's own wiring mistake (a `VerifiedToken` asked for where the certbound
/// layer did not run, or one from another layer instance): `500`, no challenge — the client did
/// nothing wrong — `Cache-Control: no-store`, an empty body. The caller logs the fix.
pub(crate) fn wiring_error<B: Default>() -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
