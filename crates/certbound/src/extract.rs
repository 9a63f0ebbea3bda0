//! axum integration: [`VerifiedToken`] as an extractor, [`Rejection`] as a response.
//!
//! ```
//! use axum::{routing::get, Json, Router};
//! use certbound::VerifiedToken;
//!
//! async fn hello(token: VerifiedToken) -> Json<serde_json::Value> {
//!     Json(serde_json::json!({ "sub": token.sub(), "bound_to": token.thumbprint().map(|t| t.to_string()) }))
//! }
//! // Optional on routes that also serve anonymous callers (e.g. with BindingPolicy::IfBound):
//! async fn maybe(token: Option<VerifiedToken>) -> &'static str {
//!     if token.is_some() { "hello, client" } else { "hello, stranger" }
//! }
//! let app: Router = Router::new().route("/hello", get(hello)).route("/maybe", get(maybe));
//! ```

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use serde::de::DeserializeOwned;

use certbound_core::Rejection;

use crate::response::rejection_response;
use crate::VerifiedToken;

/// Why the [`VerifiedToken`] extractor failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenRejection {
    /// The route is not behind the certbound layer, so there is no verified token. This is a
    /// wiring mistake; it is answered like a missing token (401) so nothing is served.
    #[error("route is not protected by the certbound layer")]
    NotProtected,
    /// The claims do not deserialize into the requested custom-claims type.
    #[error("token claims do not match the expected shape")]
    ClaimsShape,
}

impl IntoResponse for TokenRejection {
    fn into_response(self) -> Response {
        let rejection = match self {
            TokenRejection::NotProtected => {
                tracing::error!("VerifiedToken extracted on a route without the certbound layer");
                Rejection::MissingToken
            }
            TokenRejection::ClaimsShape => Rejection::InvalidClaims,
        };
        rejection_response(&rejection, "api")
    }
}

impl<S, C> FromRequestParts<S> for VerifiedToken<C>
where
    S: Send + Sync,
    C: DeserializeOwned + Send + Sync + 'static,
{
    type Rejection = TokenRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let token = parts
            .extensions
            .get::<VerifiedToken>()
            .ok_or(TokenRejection::NotProtected)?;
        token
            .with_claims::<C>()
            .map_err(|_| TokenRejection::ClaimsShape)
    }
}

impl<S, C> OptionalFromRequestParts<S> for VerifiedToken<C>
where
    S: Send + Sync,
    C: DeserializeOwned + Send + Sync + 'static,
{
    type Rejection = TokenRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        match parts.extensions.get::<VerifiedToken>() {
            None => Ok(None),
            Some(token) => token
                .with_claims::<C>()
                .map(Some)
                .map_err(|_| TokenRejection::ClaimsShape),
        }
    }
}
