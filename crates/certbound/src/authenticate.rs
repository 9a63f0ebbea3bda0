//! The decision the layer makes for one request, as a function of its headers, the client
//! certificate and the clock. I/O happens only when a key must be refreshed.

use std::fmt;
use std::sync::Arc;

use certbound_core::forwarded::ForwardedCertificates;
use certbound_core::{
    bearer_token, Algorithm, BindingPolicy, Rejection, Thumbprint, TokenPolicy, UnverifiedToken,
    VerificationKey,
};
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

/// One trusted issuer: how its tokens are validated and where its keys come from.
pub(crate) struct IssuerEntry {
    pub(crate) policy: TokenPolicy,
    pub(crate) keys: Arc<dyn KeySource>,
}

/// Everything the layer needs to decide; shared by all clones of the layer and service.
pub(crate) struct Authenticator {
    /// This layer instance, stamped into every token it verifies (see `require_scope`).
    pub(crate) id: crate::token::LayerId,
    pub(crate) issuers: Vec<IssuerEntry>,
    pub(crate) binding: BindingPolicy,
    pub(crate) realm: String,
    pub(crate) max_token_len: usize,
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
                    .issuers
                    .iter()
                    .map(|e| e.policy.issuer())
                    .collect::<Vec<_>>(),
            )
            .field("binding", &self.binding)
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

/// What the synchronous path found out.
enum Step {
    Done(VerifiedToken),
    NeedsKey {
        issuer: usize,
        alg: Algorithm,
        kid: Option<String>,
    },
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
        let raw = match bearer_token(headers, self.max_token_len) {
            Ok(raw) => raw,
            Err(r) => return Decision::Reject(r),
        };
        if let Some(decision) = self.cached_decision(raw, presented) {
            return decision;
        }
        match self.try_now(raw, presented) {
            Ok(Step::Done(token)) => Decision::Accept(token),
            Err(r) => Decision::Reject(r),
            Ok(Step::NeedsKey { issuer, alg, kid }) => {
                let this = Arc::clone(self);
                let raw = raw.to_owned();
                Decision::Refresh(Box::pin(async move {
                    let entry = this.issuers.get(issuer).ok_or(Rejection::WrongIssuer)?;
                    let key = entry.keys.refresh(kid.as_deref(), alg).await?;
                    let token = UnverifiedToken::parse(&raw)?;
                    this.finish(issuer, &raw, token, alg, key, presented)
                }))
            }
        }
    }

    fn try_now(&self, raw: &str, presented: Option<Thumbprint>) -> Result<Step, Rejection> {
        let token = UnverifiedToken::parse(raw)?;
        let issuer = self.select_issuer(&token)?;
        let entry = &self.issuers[issuer];
        let alg = entry.policy.check_header(token.header())?;
        match entry.keys.lookup(token.header().kid(), alg) {
            Ok(key) => self
                .finish(issuer, raw, token, alg, key, presented)
                .map(Step::Done),
            Err(Rejection::UnknownKey) => Ok(Step::NeedsKey {
                issuer,
                alg,
                kid: token.header().kid().map(str::to_owned),
            }),
            Err(r) => Err(r),
        }
    }

    /// With one issuer, every token goes to it (and a foreign `iss` fails after the signature
    /// check). With several, the unverified `iss` only selects the configuration; it is verified
    /// again by that issuer's policy.
    fn select_issuer(&self, token: &UnverifiedToken<'_>) -> Result<usize, Rejection> {
        if self.issuers.len() == 1 {
            return Ok(0);
        }
        let iss = token.unverified_issuer().ok_or(Rejection::WrongIssuer)?;
        self.issuers
            .iter()
            .position(|e| e.policy.issuer() == iss)
            .ok_or(Rejection::WrongIssuer)
    }

    /// A cache hit, re-checked against now, the current key set and this request's certificate.
    /// `None` means: decide the long way (no entry, or the entry's key is gone).
    fn cached_decision(&self, raw: &str, presented: Option<Thumbprint>) -> Option<Decision> {
        let cache = self.cache.as_ref()?;
        let hit = cache.get(raw)?;
        let entry = self.issuers.get(hit.issuer)?;
        match entry.keys.lookup(hit.claims.kid(), hit.claims.alg()) {
            Ok(current) if Arc::ptr_eq(&current, &hit.key) => {}
            _ => {
                // Rotated out, replaced, or keys unavailable: the uncached path decides.
                cache.remove(raw);
                return None;
            }
        }
        if let Err(rejection) = hit
            .claims
            .check_time((self.clock)(), entry.policy.leeway_secs())
        {
            cache.remove(raw);
            return Some(Decision::Reject(rejection));
        }
        Some(
            match self.binding.check_claims(&hit.claims, presented.as_ref()) {
                Ok(()) => Decision::Accept(VerifiedToken::new(hit.claims, presented, self.id)),
                Err(rejection) => Decision::Reject(rejection),
            },
        )
    }

    /// Verifies signature and claims, caches the verified claims, then checks the binding
    /// (which is per request, so it is never cached).
    fn finish(
        &self,
        issuer: usize,
        raw: &str,
        token: UnverifiedToken<'_>,
        alg: Algorithm,
        key: Arc<VerificationKey>,
        presented: Option<Thumbprint>,
    ) -> Result<VerifiedToken, Rejection> {
        let entry = self.issuers.get(issuer).ok_or(Rejection::WrongIssuer)?;
        let claims = Arc::new(entry.policy.verify(token, alg, &key, (self.clock)())?);
        if let Some(cache) = &self.cache {
            cache.insert(raw, Arc::clone(&claims), key, issuer);
        }
        self.binding.check_claims(&claims, presented.as_ref())?;
        Ok(VerifiedToken::new(claims, presented, self.id))
    }
}
