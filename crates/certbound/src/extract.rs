//! axum integration: [`VerifiedToken`] as an extractor, [`Rejection`] as a response.
//!
//! ```
//! use axum::{routing::get, Json, Router};
//! use certbound::VerifiedToken;
//!
//! async fn hello(token: VerifiedToken) -> Json<serde_json::Value> {
//!     Json(serde_json::json!({ "sub": token.sub(), "bound_to": token.thumbprint().map(|t| t.to_string()) }))
//! }
//! // Optional: `None` on a route the certbound layer does not cover (one that also serves
//! // anonymous callers); `VerifiedToken` there would be a wiring mistake, answered 500.
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

use crate::response::{rejection_response, wiring_error};
use crate::VerifiedToken;

/// Why the [`VerifiedToken`] extractor failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenRejection {
    /// The route is not behind the certbound layer, so there is no verified token. This is the
    /// server's wiring mistake, not the client's: it is answered `500` with no challenge (as
    /// axum answers a missing extension) and logged as an error naming the fix; the handler never
    /// runs.
    #[error("route is not protected by the certbound layer")]
    NotProtected,
    /// The claims do not deserialize into the requested custom-claims type.
    #[error("token claims do not match the expected shape")]
    ClaimsShape,
}

impl IntoResponse for TokenRejection {
    fn into_response(self) -> Response {
        match self {
            TokenRejection::NotProtected => {
                tracing::error!(
                    "a handler extracts VerifiedToken on a route the certbound layer does not cover; \
                     add the CertBoundLayer to this route (Router::layer(auth) or route_layer(auth)) \
                     or take Option<VerifiedToken>; answering 500"
                );
                wiring_error()
            }
            TokenRejection::ClaimsShape => rejection_response(&Rejection::InvalidClaims, "api"),
        }
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
