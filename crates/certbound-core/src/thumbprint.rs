//! The `x5t#S256` certificate thumbprint (RFC 8705 §3.1).
//!
//! ```
//! use certbound_core::Thumbprint;
//!
//! let der = b"not really a certificate, but any bytes hash the same way";
//! let tp = Thumbprint::of_der(der);
//! // The cnf value an authorization server puts in the token:
//! let cnf_value = tp.to_string();
//! assert_eq!(Thumbprint::from_cnf_value(&cnf_value), Ok(tp));
//! // Anything that is not exactly 43 base64url characters decoding to 32 bytes is refused.
//! assert!(Thumbprint::from_cnf_value("not a thumbprint").is_err());
//! ```

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// SHA-256 thumbprint of a DER-encoded X.509 certificate, as carried in `cnf."x5t#S256"`.
///
/// Equality is constant-time. `Display` gives the base64url (no padding) form used in tokens.
#[derive(Clone, Copy)]
pub struct Thumbprint([u8; 32]);

/// Why a `cnf."x5t#S256"` value (or a hex hash from a proxy) is not a thumbprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ThumbprintError {
    /// Not 43 characters of the base64url alphabet without padding.
    #[error("thumbprint is not 43 base64url characters without padding")]
    Syntax,
    /// Base64url that is not the canonical encoding of 32 bytes.
    #[error("thumbprint does not decode to exactly 32 bytes")]
    Length,
    /// Not 64 hexadecimal digits (for hex SHA-256 forms forwarded by proxies).
    #[error("hex SHA-256 is not 64 hexadecimal digits")]
    Hex,
}

impl Thumbprint {
    /// Length of the base64url form: 32 bytes → 43 characters.
    pub const ENCODED_LEN: usize = 43;

    /// Computes the thumbprint of a certificate's DER encoding.
    pub fn of_der(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }

    /// Wraps 32 raw SHA-256 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses the value of `cnf."x5t#S256"` strictly: exactly the base64url alphabet, no padding,
    /// no whitespace, canonical encoding of exactly 32 bytes.
    pub fn from_cnf_value(value: &str) -> Result<Self, ThumbprintError> {
        let bytes = value.as_bytes();
        if bytes.len() != Self::ENCODED_LEN
            || !bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return Err(ThumbprintError::Syntax);
        }
        let mut out = [0u8; 32];
        match URL_SAFE_NO_PAD.decode_slice(bytes, &mut out) {
            Ok(32) => Ok(Self(out)),
            _ => Err(ThumbprintError::Length),
        }
    }

    /// Parses a hex SHA-256 (upper or lower case), as forwarded by Envoy (`Hash=`), Cloudflare or
    /// CloudFront.
    pub fn from_hex(value: &str) -> Result<Self, ThumbprintError> {
        let bytes = value.as_bytes();
        if bytes.len() != 64 {
            return Err(ThumbprintError::Hex);
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = hex_digit(pair[0]).ok_or(ThumbprintError::Hex)?;
            let lo = hex_digit(pair[1]).ok_or(ThumbprintError::Hex)?;
            out[i] = (hi << 4) | lo;
        }
        Ok(Self(out))
    }

    /// The 32 raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex form (what `openssl x509 -fingerprint -sha256` shows, without colons).
    pub fn to_hex(&self) -> String {
        use fmt::Write as _;
        let mut s = String::with_capacity(64);
        for b in self.0 {
            let _ = write!(s, "{b:02x}");
        }
        s
    }

    /// The first characters of the base64url form: enough to correlate logs, too short to matter.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(12);
        s
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl PartialEq for Thumbprint {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Thumbprint {}

impl std::hash::Hash for Thumbprint {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Display for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; Self::ENCODED_LEN];
        // 32 bytes always encode to exactly 43 characters.
        let n = URL_SAFE_NO_PAD
            .encode_slice(self.0, &mut buf)
            .map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Thumbprint({self})")
    }
}

impl std::str::FromStr for Thumbprint {
    type Err = ThumbprintError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_cnf_value(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SHA-256("abc"), a FIPS 180-2 test vector.
    const ABC_HEX: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const ABC_B64URL: &str = "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0";

    #[test]
    fn known_vector_in_both_encodings() {
        let tp = Thumbprint::of_der(b"abc");
        assert_eq!(tp.to_hex(), ABC_HEX);
        assert_eq!(tp.to_string(), ABC_B64URL);
        assert_eq!(Thumbprint::from_hex(ABC_HEX), Ok(tp));
        assert_eq!(Thumbprint::from_hex(&ABC_HEX.to_uppercase()), Ok(tp));
        assert_eq!(Thumbprint::from_cnf_value(ABC_B64URL), Ok(tp));
        assert_eq!(tp.short(), "ungWv48Bz-pB");
    }

    #[test]
    fn strict_cnf_parsing() {
        let padded = format!("{ABC_B64URL}=");
        let standard_alphabet = ABC_B64URL.replace('-', "+").replace('_', "/");
        let with_space = format!(" {}", &ABC_B64URL[1..]);
        for bad in [
            "",
            &padded,
            &standard_alphabet,
            &with_space,
            &ABC_B64URL[..42],
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0A",
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0\n",
            // 43 chars but the last one carries non-zero trailing bits: not canonical.
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa1",
            "ÿngWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa",
        ] {
            assert!(Thumbprint::from_cnf_value(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn equality_distinguishes_every_byte() {
        let a = Thumbprint::of_der(b"abc");
        for i in 0..32 {
            let mut b = *a.as_bytes();
            b[i] ^= 1;
            assert_ne!(a, Thumbprint::from_bytes(b));
        }
    }

    #[test]
    fn hex_rejects_non_hex() {
        assert_eq!(Thumbprint::from_hex("xy"), Err(ThumbprintError::Hex));
        let bad = format!("{}g", &ABC_HEX[..63]);
        assert_eq!(Thumbprint::from_hex(&bad), Err(ThumbprintError::Hex));
    }
}
