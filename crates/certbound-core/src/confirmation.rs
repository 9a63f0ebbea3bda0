//! What a token's `cnf` claim binds it to (RFC 7800), parsed once, and the one place the binding
//! is checked against what this request presented.
//!
//! ```
//! use certbound_core::{BindingPolicy, Confirmation, Rejection, Thumbprint};
//! use serde_json::json;
//!
//! let cert = Thumbprint::of_der(b"the client's leaf certificate");
//! let cnf = json!({ "x5t#S256": cert.to_string() });
//! let confirmation = Confirmation::from_cnf(Some(&cnf)).unwrap();
//! assert_eq!(confirmation.certificate(), Some(&cert));
//!
//! let policy = BindingPolicy::Required;
//! assert_eq!(confirmation.check(policy, Some(&cert).into()), Ok(()));
//! let other = Thumbprint::of_der(b"another certificate");
//! assert_eq!(confirmation.check(policy, Some(&other).into()), Err(Rejection::BindingMismatch));
//! assert_eq!(confirmation.check(policy, None.into()), Err(Rejection::MissingClientCertificate));
//! ```

use serde_json::Value;

use crate::bearer::Scheme;
use crate::{Rejection, Thumbprint};

/// The confirmation methods of a token (`cnf`): every one present must hold for the token to
/// be accepted (RFC 7800 §3.1).
///
/// A new confirmation method is one more field here and one more rule in [`check`](Self::check).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confirmation {
    /// `x5t#S256` (RFC 8705 §3.1): SHA-256 of the client certificate's DER.
    certificate: Option<Thumbprint>,
    /// `jkt` (RFC 9449 §6): the RFC 7638 SHA-256 thumbprint of the client's DPoP key.
    jwk: Option<Thumbprint>,
    /// Other members (`jwk`, `jku`, `kid`, `jwe`, extensions): confirmation methods certbound
    /// does not verify.
    other: bool,
}

impl Confirmation {
    /// Parses a `cnf` claim value (`None` when the claim is absent). A `cnf` that is not an
    /// object, or a known member that is not a canonical base64url SHA-256, is
    /// [`Rejection::MalformedBinding`].
    pub fn from_cnf(cnf: Option<&Value>) -> Result<Self, Rejection> {
        let Some(cnf) = cnf else {
            return Ok(Self::default());
        };
        let Value::Object(members) = cnf else {
            return Err(Rejection::MalformedBinding);
        };
        let thumbprint = |name: &str| -> Result<Option<Thumbprint>, Rejection> {
            match members.get(name) {
                None => Ok(None),
                Some(Value::String(s)) => Thumbprint::from_cnf_value(s)
                    .map(Some)
                    .map_err(|_| Rejection::MalformedBinding),
                Some(_) => Err(Rejection::MalformedBinding),
            }
        };
        Ok(Self {
            certificate: thumbprint("x5t#S256")?,
            jwk: thumbprint("jkt")?,
            other: members.keys().any(|k| k != "x5t#S256" && k != "jkt"),
        })
    }

    /// `cnf."x5t#S256"`: the certificate the token is bound to.
    pub fn certificate(&self) -> Option<&Thumbprint> {
        self.certificate.as_ref()
    }

    /// `cnf.jkt`: the DPoP key the token is bound to.
    pub fn jwk_thumbprint(&self) -> Option<&Thumbprint> {
        self.jwk.as_ref()
    }

    /// Whether `cnf` names any confirmation method at all.
    pub fn is_bound(&self) -> bool {
        self.certificate.is_some() || self.jwk.is_some() || self.other
    }

    /// The binding decision, in one place: every confirmation method in `cnf` must hold for
    /// what this request presented.
    ///
    /// - `x5t#S256` must equal the presented certificate's thumbprint (constant time):
    ///   [`BindingMismatch`](Rejection::BindingMismatch) or
    ///   [`MissingClientCertificate`](Rejection::MissingClientCertificate) otherwise;
    /// - `jkt` must equal the thumbprint of the key of this request's verified DPoP proof
    ///   (constant time): [`DpopKeyMismatch`](Rejection::DpopKeyMismatch), or
    ///   [`DpopBoundTokenAsBearer`](Rejection::DpopBoundTokenAsBearer) when the token came with
    ///   the `Bearer` scheme (RFC 9449 §7.2); a DPoP proof for a token without `jkt` is a
    ///   key mismatch too;
    /// - only methods certbound does not verify: [`UnsupportedBinding`](Rejection::UnsupportedBinding)
    ///   under either policy — such a token is sender-constrained to a key this service never
    ///   sees, never "unbound";
    /// - no `cnf` (or an empty one): [`UnboundToken`](Rejection::UnboundToken) under
    ///   [`BindingPolicy::Required`], accepted under [`BindingPolicy::IfBound`].
    pub fn check(&self, policy: BindingPolicy, presented: Presented<'_>) -> Result<(), Rejection> {
        match (&self.jwk, presented.dpop_key) {
            (Some(bound), Some(key)) if bound == key => {}
            (Some(_), Some(_)) | (None, Some(_)) => return Err(Rejection::DpopKeyMismatch),
            (Some(_), None) => {
                return Err(match presented.scheme {
                    Scheme::Bearer => Rejection::DpopBoundTokenAsBearer,
                    Scheme::Dpop => Rejection::MissingDpopProof,
                })
            }
            (None, None) => {}
        }
        if self.other && self.certificate.is_none() && self.jwk.is_none() {
            return Err(Rejection::UnsupportedBinding);
        }
        match (&self.certificate, presented.certificate) {
            (Some(bound), Some(presented)) if bound == presented => Ok(()),
            (Some(_), Some(_)) => Err(Rejection::BindingMismatch),
            (Some(_), None) => Err(Rejection::MissingClientCertificate),
            (None, _) if self.jwk.is_some() => Ok(()),
            (None, _) => match policy {
                BindingPolicy::Required => Err(Rejection::UnboundToken),
                BindingPolicy::IfBound => Ok(()),
            },
        }
    }
}

/// What a request presented that a token can be bound to: the client certificate of its
/// connection, and the key of its verified DPoP proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presented<'a> {
    certificate: Option<&'a Thumbprint>,
    dpop_key: Option<&'a Thumbprint>,
    scheme: Scheme,
}

impl<'a> Presented<'a> {
    /// A `Bearer` request with this client certificate (or none).
    pub fn certificate(certificate: Option<&'a Thumbprint>) -> Self {
        Self {
            certificate,
            dpop_key: None,
            scheme: Scheme::Bearer,
        }
    }

    /// A `DPoP` request whose proof verified with the key of thumbprint `jkt`.
    pub fn with_dpop_key(mut self, jkt: &'a Thumbprint) -> Self {
        self.dpop_key = Some(jkt);
        self.scheme = Scheme::Dpop;
        self
    }

    /// The scheme the token was sent with.
    pub fn with_scheme(mut self, scheme: Scheme) -> Self {
        self.scheme = scheme;
        self
    }
}

impl<'a> From<Option<&'a Thumbprint>> for Presented<'a> {
    fn from(certificate: Option<&'a Thumbprint>) -> Self {
        Self::certificate(certificate)
    }
}

/// What to do with tokens that carry no binding (RFC 8705 §3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BindingPolicy {
    /// Every token must be bound, by a method that is checked (the default).
    #[default]
    Required,
    /// Bound tokens must match; unbound tokens pass (for deployments mixing bound and bearer tokens).
    IfBound,
}

/// Why a binding-policy name did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown binding policy {0:?} (expected required or if-bound)")]
pub struct BindingPolicyError(String);

impl std::str::FromStr for BindingPolicy {
    type Err = BindingPolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "required" => Ok(Self::Required),
            "if-bound" => Ok(Self::IfBound),
            other => Err(BindingPolicyError(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tp(s: &[u8]) -> Thumbprint {
        Thumbprint::of_der(s)
    }

    #[test]
    fn certificate_binding_matrix() {
        let (a, b) = (tp(b"a"), tp(b"b"));
        let bound = Confirmation::from_cnf(Some(&json!({"x5t#S256": a.to_string()}))).unwrap();
        let unbound = Confirmation::from_cnf(None).unwrap();
        use BindingPolicy::*;
        for policy in [Required, IfBound] {
            assert_eq!(bound.check(policy, Some(&a).into()), Ok(()));
            assert_eq!(
                bound.check(policy, Some(&b).into()),
                Err(Rejection::BindingMismatch)
            );
            assert_eq!(
                bound.check(policy, None.into()),
                Err(Rejection::MissingClientCertificate)
            );
        }
        assert_eq!(
            unbound.check(Required, Some(&a).into()),
            Err(Rejection::UnboundToken)
        );
        assert_eq!(unbound.check(IfBound, Some(&a).into()), Ok(()));
        assert_eq!(unbound.check(IfBound, None.into()), Ok(()));
        let empty = Confirmation::from_cnf(Some(&json!({}))).unwrap();
        assert!(!empty.is_bound());
        assert_eq!(empty.check(IfBound, None.into()), Ok(()));
    }

    #[test]
    fn methods_we_cannot_verify_are_never_unbound() {
        let a = tp(b"a");
        for cnf in [json!({"jwk": {"kty": "EC"}}), json!({"kid": "k"})] {
            let c = Confirmation::from_cnf(Some(&cnf)).unwrap();
            assert!(c.is_bound());
            for policy in [BindingPolicy::Required, BindingPolicy::IfBound] {
                assert_eq!(
                    c.check(policy, Some(&a).into()),
                    Err(Rejection::UnsupportedBinding),
                    "{cnf}"
                );
            }
        }
        // Other members beside a certificate binding do not matter.
        let c = Confirmation::from_cnf(Some(&json!({"x5t#S256": a.to_string(), "ext": {"n": 1}})))
            .unwrap();
        assert_eq!(c.check(BindingPolicy::Required, Some(&a).into()), Ok(()));
    }

    #[test]
    fn dpop_key_binding() {
        let (cert, key, other) = (tp(b"cert"), tp(b"dpop key"), tp(b"another key"));
        let jkt = Confirmation::from_cnf(Some(&json!({"jkt": key.to_string()}))).unwrap();
        let both = Confirmation::from_cnf(Some(
            &json!({"jkt": key.to_string(), "x5t#S256": cert.to_string()}),
        ))
        .unwrap();
        let unbound = Confirmation::default();
        fn dpop<'a>(c: Option<&'a Thumbprint>, k: &'a Thumbprint) -> Presented<'a> {
            Presented::certificate(c).with_dpop_key(k)
        }
        for policy in [BindingPolicy::Required, BindingPolicy::IfBound] {
            assert_eq!(jkt.check(policy, dpop(None, &key)), Ok(()));
            assert_eq!(
                jkt.check(policy, dpop(None, &other)),
                Err(Rejection::DpopKeyMismatch)
            );
            assert_eq!(
                jkt.check(policy, None.into()),
                Err(Rejection::DpopBoundTokenAsBearer)
            );
            assert_eq!(
                jkt.check(
                    policy,
                    Presented::certificate(None).with_scheme(Scheme::Dpop)
                ),
                Err(Rejection::MissingDpopProof)
            );
            // Both methods must hold.
            assert_eq!(both.check(policy, dpop(Some(&cert), &key)), Ok(()));
            assert_eq!(
                both.check(policy, dpop(None, &key)),
                Err(Rejection::MissingClientCertificate)
            );
            assert_eq!(
                both.check(policy, dpop(Some(&other), &key)),
                Err(Rejection::BindingMismatch)
            );
            assert_eq!(
                both.check(policy, Some(&cert).into()),
                Err(Rejection::DpopBoundTokenAsBearer)
            );
            // A proof for a token that is not bound to its key.
            assert_eq!(
                unbound.check(policy, dpop(None, &key)),
                Err(Rejection::DpopKeyMismatch)
            );
        }
    }

    #[test]
    fn malformed_members() {
        for cnf in [
            json!("x"),
            json!([]),
            json!({"x5t#S256": 1}),
            json!({"x5t#S256": "abc"}),
            json!({"jkt": "abc"}),
            json!({"x5t#S256": format!("{}=", tp(b"a"))}),
        ] {
            assert_eq!(
                Confirmation::from_cnf(Some(&cnf)),
                Err(Rejection::MalformedBinding),
                "{cnf}"
            );
        }
    }

    #[test]
    fn policy_names() {
        assert_eq!("required".parse(), Ok(BindingPolicy::Required));
        assert_eq!("if-bound".parse(), Ok(BindingPolicy::IfBound));
        let err = "maybe".parse::<BindingPolicy>().unwrap_err();
        assert!(err.to_string().contains("required or if-bound"));
    }
}
