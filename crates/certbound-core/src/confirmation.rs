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
//! assert_eq!(confirmation.check(policy, Some(&cert)), Ok(()));
//! let other = Thumbprint::of_der(b"another certificate");
//! assert_eq!(confirmation.check(policy, Some(&other)), Err(Rejection::BindingMismatch));
//! assert_eq!(confirmation.check(policy, None), Err(Rejection::MissingClientCertificate));
//! ```

use serde_json::Value;

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

    /// The binding decision, in one place: every confirmation method in `cnf` must hold for the
    /// certificate this request presented (`presented`, its thumbprint).
    ///
    /// - `x5t#S256` must equal `presented` (compared in constant time):
    ///   [`BindingMismatch`](Rejection::BindingMismatch) or
    ///   [`MissingClientCertificate`](Rejection::MissingClientCertificate) otherwise;
    /// - `jkt`, or only methods certbound does not verify: [`UnsupportedBinding`](Rejection::UnsupportedBinding)
    ///   under either policy — such a token is sender-constrained to a key this service never sees,
    ///   never "unbound";
    /// - no `cnf` (or an empty one): [`UnboundToken`](Rejection::UnboundToken) under
    ///   [`BindingPolicy::Required`], accepted under [`BindingPolicy::IfBound`].
    pub fn check(
        &self,
        policy: BindingPolicy,
        presented: Option<&Thumbprint>,
    ) -> Result<(), Rejection> {
        if self.jwk.is_some() || (self.other && self.certificate.is_none()) {
            return Err(Rejection::UnsupportedBinding);
        }
        match (&self.certificate, presented) {
            (Some(bound), Some(presented)) if bound == presented => Ok(()),
            (Some(_), Some(_)) => Err(Rejection::BindingMismatch),
            (Some(_), None) => Err(Rejection::MissingClientCertificate),
            (None, _) => match policy {
                BindingPolicy::Required => Err(Rejection::UnboundToken),
                BindingPolicy::IfBound => Ok(()),
            },
        }
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
            assert_eq!(bound.check(policy, Some(&a)), Ok(()));
            assert_eq!(
                bound.check(policy, Some(&b)),
                Err(Rejection::BindingMismatch)
            );
            assert_eq!(
                bound.check(policy, None),
                Err(Rejection::MissingClientCertificate)
            );
        }
        assert_eq!(
            unbound.check(Required, Some(&a)),
            Err(Rejection::UnboundToken)
        );
        assert_eq!(unbound.check(IfBound, Some(&a)), Ok(()));
        assert_eq!(unbound.check(IfBound, None), Ok(()));
        let empty = Confirmation::from_cnf(Some(&json!({}))).unwrap();
        assert!(!empty.is_bound());
        assert_eq!(empty.check(IfBound, None), Ok(()));
    }

    #[test]
    fn methods_we_cannot_verify_are_never_unbound() {
        let a = tp(b"a");
        let jkt = tp(b"dpop key").to_string();
        for cnf in [
            json!({"jkt": jkt}),
            json!({"jkt": jkt, "x5t#S256": a.to_string()}),
            json!({"jwk": {"kty": "EC"}}),
            json!({"kid": "k"}),
        ] {
            let c = Confirmation::from_cnf(Some(&cnf)).unwrap();
            assert!(c.is_bound());
            for policy in [BindingPolicy::Required, BindingPolicy::IfBound] {
                assert_eq!(
                    c.check(policy, Some(&a)),
                    Err(Rejection::UnsupportedBinding),
                    "{cnf}"
                );
            }
        }
        // Other members beside a certificate binding do not matter.
        let c = Confirmation::from_cnf(Some(&json!({"x5t#S256": a.to_string(), "ext": {"n": 1}})))
            .unwrap();
        assert_eq!(c.check(BindingPolicy::Required, Some(&a)), Ok(()));
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
