//! The layer's driver for certbound-core's [`Verifier`]: it gathers the request's credentials and
//! certificate, serves the verifier's key requests from the issuers' key sources (refreshing
//! them — the only I/O), and keeps the verified-token cache. Every decision is the Verifier's.

use std::fmt;
use std::sync::Arc;

use certbound_core::request_uri;
use certbound_core::ForwardedCertificates;
use certbound_core::{
    Accepted, Credentials, NeedKey, Rejection, Scheme, Step, Thumbprint, Verifier,
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
    /// With DPoP on: the proof algorithms for challenges, space-separated.
    pub(crate) dpop_algs: Option<String>,
    /// With DPoP on: where accepted proofs are remembered.
    pub(crate) replay: Option<Arc<dyn crate::replay::ReplayStore>>,
    /// The origin clients use, for DPoP `htu`.
    pub(crate) public_url: Option<String>,
    /// With introspection on: the endpoint, its cache and single flight.
    pub(crate) introspection: Option<crate::introspection::Introspection>,
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

/// What the layer knows of the request, beyond its headers.
pub(crate) struct RequestView<'a> {
    pub(crate) method: &'a http::Method,
    pub(crate) uri: &'a http::Uri,
    pub(crate) headers: &'a HeaderMap,
    /// The connection is TLS (the layer saw a `PeerCertificate`).
    pub(crate) tls: bool,
    /// The peer is a trusted proxy (its `Forwarded` / `X-Forwarded-*` headers count).
    pub(crate) trusted_proxy: bool,
}

/// An accepted request: its token, and a fresh DPoP nonce to send along when one is due.
pub(crate) struct Granted {
    pub(crate) token: VerifiedToken,
    pub(crate) dpop_nonce: Option<http::HeaderValue>,
}

/// A refused request: why, and the scheme the request used (for the challenge).
pub(crate) struct Refused {
    pub(crate) rejection: Rejection,
    pub(crate) scheme: Option<Scheme>,
}

/// The result of the synchronous part of authentication.
pub(crate) enum Decision {
    Accept(Granted),
    Reject(Refused),
    /// I/O is needed (a key refresh, a remote replay store): decide when it completes.
    Pending(BoxFuture<'static, Result<Granted, Refused>>),
}

impl Authenticator {
    /// The RFC 6750 / RFC 9449 response for `rejection` to a request that used `scheme`, with
    /// `extra` auth-params and, when enabled, the RFC 9728 `resource_metadata` parameter; with
    /// DPoP nonces on, `use_dpop_nonce` carries a fresh `DPoP-Nonce`.
    pub(crate) fn respond_with<B: Default>(
        &self,
        rejection: &Rejection,
        scheme: Option<Scheme>,
        extra: &[(&str, &str)],
    ) -> http::Response<B> {
        let url;
        let mut params: Vec<(&str, &str)> = extra.to_vec();
        if self.advertise_metadata {
            url = self.metadata.well_known_url();
            params.push(("resource_metadata", &url));
        }
        let challenges =
            rejection.challenges(scheme, &self.realm, self.dpop_algs.as_deref(), &params);
        let mut response = crate::response::response_with_challenges(rejection, &challenges);
        if rejection.class() == certbound_core::ErrorClass::UseDpopNonce {
            if let Some(nonce) = self.fresh_nonce((self.clock)()) {
                response.headers_mut().insert("dpop-nonce", nonce);
            }
        }
        response
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

    /// Decides for a request, doing I/O only through the future in [`Decision::Pending`].
    pub(crate) fn decide(
        self: &Arc<Self>,
        request: &RequestView<'_>,
        presented: Option<Thumbprint>,
    ) -> Decision {
        let credentials = match self.verifier.credentials(request.headers) {
            Ok(credentials) => credentials,
            Err(rejection) => {
                return Decision::Reject(Refused {
                    rejection,
                    scheme: None,
                })
            }
        };
        // The htu a proof must name is only worked out for DPoP requests.
        let target = (credentials.scheme() == Scheme::Dpop)
            .then(|| {
                request_uri(
                    self.public_url.as_deref(),
                    request.trusted_proxy,
                    request.tls,
                    request.uri,
                    request.headers,
                )
            })
            .flatten();
        let credentials = match &target {
            Some(uri) => credentials.for_request(request.method.as_str(), uri),
            None => credentials,
        };
        self.decide_credentials(credentials, presented)
    }

    /// [`decide`](Self::decide) for credentials already extracted.
    pub(crate) fn decide_credentials(
        self: &Arc<Self>,
        credentials: Credentials<'_>,
        presented: Option<Thumbprint>,
    ) -> Decision {
        let token = credentials.token();
        let scheme = Some(credentials.scheme());
        let now = (self.clock)();
        // A token bound for introspection is never in the verified-token cache.
        let introspects = self
            .verifier
            .introspection_policy()
            .is_some_and(|policy| policy.wants(token));
        let cached = match introspects {
            true => None,
            false => self.cache.as_ref().and_then(|c| c.get(token)),
        };
        let was_cached = cached.is_some();
        let step = match cached {
            Some(hit) => self.verifier.revalidate(credentials, hit, presented, now),
            None => self.verifier.verify(credentials, presented, now),
        };
        let outcome = match step {
            Step::Accept(accepted) => Ok(accepted),
            Step::Reject(rejection) => Err(rejection),
            Step::NeedKey(need) => match self.lookup(&need) {
                Err(Rejection::UnknownKey) => {
                    // Not in the current key set: refresh the issuer's keys (I/O), then decide
                    // again with the same pure steps.
                    let (issuer, kid, alg) = (
                        need.issuer_index(),
                        need.kid().map(str::to_owned),
                        need.alg(),
                    );
                    let this = Arc::clone(self);
                    let owned = credentials.to_owned();
                    return Decision::Pending(Box::pin(async move {
                        let refused = |rejection| Refused { rejection, scheme };
                        let keys = this
                            .keys
                            .get(issuer)
                            .ok_or(refused(Rejection::WrongIssuer))?;
                        let key = keys.refresh(kid.as_deref(), alg).await;
                        let credentials = owned.as_credentials();
                        let token = credentials.token();
                        let cached = this.cache.as_ref().and_then(|c| c.get(token));
                        let was_cached = cached.is_some();
                        let now = (this.clock)();
                        let step = match cached {
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
                            // A JWT refresh never turns into introspection.
                            Step::NeedIntrospection(_) => Err(Rejection::MalformedToken),
                        };
                        match this.finish(token, scheme, was_cached, outcome, now) {
                            Decision::Accept(granted) => Ok(granted),
                            Decision::Reject(refused) => Err(refused),
                            Decision::Pending(replay) => replay.await,
                        }
                    }));
                }
                key => {
                    self.count(&need, &key);
                    need.resume(key)
                }
            },
            Step::NeedIntrospection(need) => {
                let Some(introspection) = &self.introspection else {
                    // The verifier asks only when introspection is configured.
                    return Decision::Reject(Refused {
                        rejection: Rejection::MalformedToken,
                        scheme,
                    });
                };
                match introspection.cached(token, now) {
                    Some(answer) => need.resume(answer),
                    None => return self.introspect(credentials.to_owned(), presented, scheme),
                }
            }
        };
        self.finish(token, scheme, was_cached, outcome, now)
    }

    /// A token the introspection cache does not know: ask the endpoint (once for all the
    /// requests waiting for this token), then decide with the same pure steps.
    fn introspect(
        self: &Arc<Self>,
        owned: certbound_core::OwnedCredentials,
        presented: Option<Thumbprint>,
        scheme: Option<Scheme>,
    ) -> Decision {
        let this = Arc::clone(self);
        Decision::Pending(Box::pin(async move {
            let credentials = owned.as_credentials();
            let token = credentials.token();
            let answer = match &this.introspection {
                Some(introspection) => introspection.answer(&this, token).await,
                None => Err(Rejection::MalformedToken),
            };
            let now = (this.clock)();
            let outcome = match this.verifier.verify(credentials, presented, now) {
                Step::NeedIntrospection(need) => need.resume(answer),
                Step::Accept(accepted) => Ok(accepted),
                Step::Reject(rejection) => Err(rejection),
                // The same token and policy ask for introspection again.
                Step::NeedKey(_) => Err(Rejection::MalformedToken),
            };
            match this.finish(token, scheme, false, outcome, now) {
                Decision::Accept(granted) => Ok(granted),
                Decision::Reject(refused) => Err(refused),
                Decision::Pending(replay) => replay.await,
            }
        }))
    }

    /// After the verifier's verdict: caches what was verified, runs the DPoP replay check
    /// (at once for an in-memory store, as I/O otherwise), and builds the answer.
    fn finish(
        self: &Arc<Self>,
        token: &str,
        scheme: Option<Scheme>,
        was_cached: bool,
        outcome: Result<Accepted, Rejection>,
        now: u64,
    ) -> Decision {
        let accepted = match outcome {
            Ok(accepted) => accepted,
            Err(rejection) => {
                return Decision::Reject(Refused {
                    rejection: self.rejected(token, was_cached, rejection),
                    scheme,
                })
            }
        };
        let Some(check) = accepted.replay_check().copied() else {
            return Decision::Accept(self.accepted(token, accepted, now));
        };
        let Some(store) = self.replay.clone() else {
            // The verifier accepted a DPoP proof but no store is configured: impossible through
            // the builder; never accept unchecked.
            return Decision::Reject(Refused {
                rejection: Rejection::ReplayStoreUnavailable {
                    retry_after_secs: 1,
                },
                scheme,
            });
        };
        let ttl = std::time::Duration::from_secs(check.ttl_secs());
        let answer = move |this: &Self,
                           first_use: Result<bool, crate::replay::ReplayStoreError>,
                           accepted: Accepted,
                           token: &str| {
            let first_use = first_use
                .inspect_err(|error| this.replay_store_failed(error))
                .ok();
            match check.verdict(first_use, 1) {
                Ok(()) => Decision::Accept(this.accepted(token, accepted, now)),
                Err(rejection) => Decision::Reject(Refused { rejection, scheme }),
            }
        };
        // One call to the store, polled once here: an in-memory store answers at once; a remote
        // one has already sent its command, so the same future is awaited (calling again would
        // record the proof twice and refuse it as its own replay).
        let key = *check.key();
        let mut pending = Box::pin(async move { store.first_use(key, ttl).await });
        match futures_util::FutureExt::now_or_never(&mut pending) {
            Some(first_use) => answer(self, first_use, accepted, token),
            None => {
                let this = Arc::clone(self);
                let token = token.to_owned();
                Decision::Pending(Box::pin(async move {
                    let first_use = pending.await;
                    match answer(&this, first_use, accepted, &token) {
                        Decision::Accept(granted) => Ok(granted),
                        Decision::Reject(refused) => Err(refused),
                        Decision::Pending(_) => Err(Refused {
                            rejection: Rejection::ReplayStoreUnavailable {
                                retry_after_secs: 1,
                            },
                            scheme,
                        }),
                    }
                }))
            }
        }
    }

    /// One metric per failure, one error line per second at most.
    fn replay_store_failed(&self, error: &crate::replay::ReplayStoreError) {
        metrics::counter!(crate::layer::metric_names::REPLAY_STORE_ERRORS).increment(1);
        static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let now = (self.clock)();
        if LAST.swap(now, std::sync::atomic::Ordering::Relaxed) != now {
            tracing::error!(%error, "DPoP replay store failed; answering 503");
        }
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

    /// Caches what was verified just now, and hands the request its token (and a fresh DPoP
    /// nonce when the one it used is past half its lifetime).
    fn accepted(&self, token: &str, accepted: Accepted, now: u64) -> Granted {
        let fresh = accepted.is_fresh();
        let dpop_nonce = accepted
            .nonce_issued_at()
            .zip(self.verifier.dpop_nonce_keys())
            .filter(|(issued, keys)| now.saturating_sub(*issued) > keys.lifetime_secs() / 2)
            .and_then(|_| self.fresh_nonce(now));
        let (verified, presented) = accepted.into_parts();
        if let (Some(cache), true) = (&self.cache, fresh) {
            cache.insert(token, verified.clone());
        }
        Granted {
            token: VerifiedToken::new(verified.into_claims(), presented, self.id),
            dpop_nonce,
        }
    }

    /// A new DPoP nonce, when nonces are on.
    pub(crate) fn fresh_nonce(&self, now: u64) -> Option<http::HeaderValue> {
        let keys = self.verifier.dpop_nonce_keys()?;
        let mut random = [0u8; 12];
        aws_lc_rs::rand::fill(&mut random).ok()?;
        http::HeaderValue::from_str(&keys.issue(now, random)).ok()
    }

    /// A refused cache hit leaves the cache (expired, or its key rotated out): the next request
    /// with this token is decided from scratch.
    fn rejected(&self, token: &str, was_cached: bool, rejection: Rejection) -> Rejection {
        if let (Some(cache), true) = (&self.cache, was_cached) {
            if !rejection_keeps_cache_entry(&rejection) {
                cache.remove(token);
            }
        }
        rejection
    }
}

/// Only a failure of the token itself (its lifetime, its key, its signature) drops its cache
/// entry; a failure of this request (certificate, proof, nonce) or of the service (keys or store
/// unavailable) leaves it.
fn rejection_keeps_cache_entry(rejection: &Rejection) -> bool {
    !matches!(
        rejection,
        Rejection::Expired
            | Rejection::NotYetValid
            | Rejection::IssuedInFuture
            | Rejection::UnknownKey
            | Rejection::BadSignature
            | Rejection::KeyAlgorithmMismatch
    )
}
