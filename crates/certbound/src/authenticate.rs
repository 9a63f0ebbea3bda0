//! The layer's driver for certbound-core's [`Verifier`]: it gathers the request's credentials and
//! certificate, serves the verifier's key requests from the issuers' key sources (refreshing
//! them — the only I/O), and keeps the verified-token cache. Every decision is the Verifier's.

use std::fmt;
use std::sync::Arc;

use certbound_core::forwarded::ForwardedCertificates;
use certbound_core::{Accepted, Credentials, NeedKey, Rejection, Step, Thumbprint, Verifier};
use certbound_jwks::KeySource;
use futures_util::future::BoxFuture;
use http::HeaderMap;

use crate::cache::TokenCache;
use crate::VerifiedToken;

/// Source of the current time, in seconds since the Unix epoch.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

pub(crate) fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    })
}

/// Everything the layer needs to decide; shared by all clones of the layer and service.
pub(crate) struct Authenticator {
    /// This layer instance, stamped into every token it verifies (see `require_scope`).
    pub(crate) id: crate::token::LayerId,
    /// Every decision.
    pub(crate) verifier: Verifier,
    /// The key source of each issuer, in the verifier's issuer order.
    pub(crate) keys: Vec<Arc<dyn KeySource>>,
    pub(crate) realm: String,
    pub(crate) clock: Clock,
    /// `Some` when a proxy terminates TLS and forwards the client certificate in a header.
    pub(crate) forwarded: Option<ForwardedCertificates>,
    /// At most one "forwarded header from an untrusted peer" warning per peer per interval.
    pub(crate) untrusted_warnings: crate::warn_limit::WarnLimiter,
    /// Verified tokens, unless switched off.
    pub(crate) cache: Option<TokenCache>,
    /// RFC 9728 metadata of this resource.
    pub(crate) metadata: crate::metadata::ResourceMetadata,
    /// Whether challenges carry `resource_metadata` (RFC 9728 §5.1).
    pub(crate) advertise_metadata: bool,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field(
                "issuers",
                &self
                    .verifier
                    .issuers()
                    .iter()
                    .map(|p| p.issuer())
                    .collect::<Vec<_>>(),
            )
            .field("binding", &self.verifier.binding())
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

/// The result of the synchronous part of authentication.
pub(crate) enum Decision {
    Accept(VerifiedToken),
    Reject(Rejection),
    /// The token's `kid` is not in the current key set: refresh (I/O) and decide then.
    Refresh(BoxFuture<'static, Result<VerifiedToken, Rejection>>),
}

impl Authenticator {
    /// The RFC 6750 response for `rejection`, with `extra` auth-params and, when enabled, the
    /// RFC 9728 `resource_metadata` parameter.
    pub(crate) fn respond_with<B: Default>(
        &self,
        rejection: &Rejection,
        extra: &[(&str, &str)],
    ) -> http::Response<B> {
        if !self.advertise_metadata {
            return crate::response::rejection_response_with(rejection, &self.realm, extra);
        }
        let url = self.metadata.well_known_url();
        let mut params: Vec<(&str, &str)> = extra.to_vec();
        params.push(("resource_metadata", &url));
        crate::response::rejection_response_with(rejection, &self.realm, &params)
    }

    /// The thumbprint of the certificate the client presented: from the TLS connection, or —
    /// when configured — from a trusted proxy's header. A forwarded header from an untrusted
    /// peer is refused and logged with the peer address — at most once per peer per interval
    /// (any client can send the header on every request), with the number of lines left out.
    pub(crate) fn client_certificate(
        &self,
        headers: &HeaderMap,
        peer: Option<std::net::IpAddr>,
        tls: Option<Thumbprint>,
    ) -> Result<Option<Thumbprint>, Rejection> {
        let Some(forwarded) = &self.forwarded else {
            return Ok(tls);
        };
        forwarded.extract(headers, peer).inspect_err(|rejection| {
            let shown = || peer.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
            match rejection {
                Rejection::UntrustedForwardedCertificate => {
                    let now = std::time::Instant::now();
                    if let Some(permit) = self.untrusted_warnings.check(peer, now) {
                        tracing::warn!(
                            peer = %shown(),
                            header = %forwarded.header(),
                            suppressed = permit.suppressed,
                            suppressed_other_peers = permit.untracked,
                            interval_secs = self.untrusted_warnings.interval().as_secs(),
                            "forwarded client certificate from a peer that is not a trusted proxy; refused \
                             (one line per peer per interval; `suppressed` counts this peer's since its last line)"
                        );
                    }
                }
                other => tracing::info!(peer = %shown(), reason = other.code(), "forwarded client certificate refused"),
            }
        })
    }

    /// Decides for a request, doing I/O only through the future in [`Decision::Refresh`].
    pub(crate) fn decide(
        self: &Arc<Self>,
        headers: &HeaderMap,
        presented: Option<Thumbprint>,
    ) -> Decision {
        match self.verifier.credentials(headers) {
            Ok(credentials) => self.decide_credentials(credentials, presented),
            Err(rejection) => Decision::Reject(rejection),
        }
    }

    /// [`decide`](Self::decide) for credentials already extracted.
    pub(crate) fn decide_credentials(
        self: &Arc<Self>,
        credentials: Credentials<'_>,
        presented: Option<Thumbprint>,
    ) -> Decision {
        let token = credentials.token();
        let now = (self.clock)();
        let cached = self.cache.as_ref().and_then(|c| c.get(token));
        let step = match &cached {
            Some(hit) => self.verifier.revalidate(credentials, hit, presented, now),
            None => self.verifier.verify(credentials, presented, now),
        };
        let need = match step {
            Step::Accept(accepted) => return Decision::Accept(self.accepted(token, accepted)),
            Step::Reject(rejection) => {
                return Decision::Reject(self.rejected(token, &cached, rejection))
            }
            Step::NeedKey(need) => need,
        };
        match self.lookup(&need) {
            Err(Rejection::UnknownKey) => {}
            key => {
                self.count(&need, &key);
                return match need.resume(key) {
                    Ok(accepted) => Decision::Accept(self.accepted(token, accepted)),
                    Err(rejection) => Decision::Reject(self.rejected(token, &cached, rejection)),
                };
            }
        }
        // Not in the current key set: refresh the issuer's keys (I/O), then decide again with
        // the same pure steps.
        let (issuer, kid, alg) = (
            need.issuer_index(),
            need.kid().map(str::to_owned),
            need.alg(),
        );
        let this = Arc::clone(self);
        let token = token.to_owned();
        Decision::Refresh(Box::pin(async move {
            let keys = this.keys.get(issuer).ok_or(Rejection::WrongIssuer)?;
            let key = keys.refresh(kid.as_deref(), alg).await;
            let credentials = Credentials::bearer(&token);
            let cached = this.cache.as_ref().and_then(|c| c.get(&token));
            let now = (this.clock)();
            let step = match &cached {
                Some(hit) => this.verifier.revalidate(credentials, hit, presented, now),
                None => this.verifier.verify(credentials, presented, now),
            };
            let outcome = match step {
                Step::Accept(accepted) => Ok(accepted),
                Step::Reject(rejection) => Err(rejection),
                Step::NeedKey(need) => {
                    this.count(&need, &key);
                    need.resume(key)
                }
            };
            match outcome {
                Ok(accepted) => Ok(this.accepted(&token, accepted)),
                Err(rejection) => Err(this.rejected(&token, &cached, rejection)),
            }
        }))
    }

    /// The key the verifier asks for, from the issuer's current key set (no I/O).
    fn lookup(
        &self,
        need: &NeedKey<'_>,
    ) -> Result<Arc<certbound_core::VerificationKey>, Rejection> {
        let keys = self
            .keys
            .get(need.issuer_index())
            .ok_or(Rejection::WrongIssuer)?;
        keys.lookup(need.kid(), need.alg())
    }

    /// Counts a cache hit or miss, and a signature verification when one is about to happen.
    fn count(
        &self,
        need: &NeedKey<'_>,
        key: &Result<Arc<certbound_core::VerificationKey>, Rejection>,
    ) {
        let hit = key.as_ref().is_ok_and(|key| need.uses_cached(key));
        if let Some(cache) = &self.cache {
            cache.record(hit);
        }
        if !hit && key.is_ok() {
            metrics::counter!(crate::layer::metric_names::SIGNATURE_VERIFICATIONS).increment(1);
        }
    }

    /// Caches what was verified just now, and hands the request its token.
    fn accepted(&self, token: &str, accepted: Accepted) -> VerifiedToken {
        let fresh = accepted.is_fresh();
        let (verified, presented) = accepted.into_parts();
        if let (Some(cache), true) = (&self.cache, fresh) {
            cache.insert(token, verified.clone());
        }
        VerifiedToken::new(Arc::clone(verified.claims()), presented, self.id)
    }

    /// A refused cache hit leaves the cache (expired, or its key rotated out): the next request
    /// with this token is decided from scratch.
    fn rejected(
        &self,
        token: &str,
        cached: &Option<certbound_core::Verified>,
        rejection: Rejection,
    ) -> Rejection {
        if let (Some(cache), Some(_)) = (&self.cache, cached) {
            if !rejection_keeps_cache_entry(&rejection) {
                cache.remove(token);
            }
        }
        rejection
    }
}

/// A binding failure is about this request's certificate, not the token: the entry stays.
fn rejection_keeps_cache_entry(rejection: &Rejection) -> bool {
    matches!(
        rejection,
        Rejection::BindingMismatch
            | Rejection::MissingClientCertificate
            | Rejection::UnboundToken
            | Rejection::UnsupportedBinding
    )
}
