//! Envoy's `x-forwarded-client-cert` (XFCC): a strict tokenizer for its grammar, and the
//! choice of the element — and of `Cert` / `Hash` within it — that carries the client's
//! certificate.

use super::formats::leaf_from_escaped_pem;
use super::trust::ForwardedResult;
use crate::{Rejection, Thumbprint};

/// One `key=value` pair of an XFCC element, the value unquoted.
struct XfccPair<'a> {
    key: &'a str,
    value: std::borrow::Cow<'a, str>,
}

/// Envoy's `x-forwarded-client-cert`, parsed strictly into elements of pairs.
///
/// Grammar (Envoy's documentation): elements separated by `,`, pairs by `;`, `key=value`; a
/// value containing `,`, `;` or `=` is double-quoted with `\"` escapes. Envoy writes the URI
/// and DNS SANs *unquoted*, so a certificate whose SAN contains `,` or `;` adds elements or
/// pairs of the client's choosing. Hence: a `"` anywhere but around a whole value is malformed
/// (it could hide separators), and the callers refuse a repeated `Hash`/`Cert` and any element
/// count other than the configured one.
fn xfcc_elements(value: &str) -> Option<Vec<Vec<XfccPair<'_>>>> {
    let bytes = value.as_bytes();
    let mut elements = vec![Vec::new()];
    let mut i = 0;
    loop {
        // Optional whitespace, then a pair (or an empty one, which we skip).
        while bytes.get(i).is_some_and(|b| *b == b' ' || *b == b'\t') {
            i += 1;
        }
        match bytes.get(i) {
            None => break,
            Some(b';') => {
                i += 1;
                continue;
            }
            Some(b',') => {
                elements.push(Vec::new());
                i += 1;
                continue;
            }
            Some(_) => {}
        }
        let key_start = i;
        while bytes
            .get(i)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            i += 1;
        }
        if i == key_start || bytes.get(i) != Some(&b'=') {
            return None;
        }
        let key = value.get(key_start..i)?;
        i += 1;
        let pair_value = if bytes.get(i) == Some(&b'"') {
            i += 1;
            let start = i;
            let mut escaped = false;
            loop {
                match bytes.get(i)? {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => break,
                    _ => {}
                }
                i += 1;
            }
            let inner = value.get(start..i)?;
            i += 1; // the closing quote
            unescape(inner)?
        } else {
            let start = i;
            while bytes
                .get(i)
                .is_some_and(|b| !matches!(b, b',' | b';' | b'"'))
            {
                i += 1;
            }
            if bytes.get(i) == Some(&b'"') {
                return None; // a quote inside an unquoted value
            }
            std::borrow::Cow::Borrowed(value.get(start..i)?.trim_end_matches([' ', '\t']))
        };
        // After a value: whitespace, then a separator or the end.
        while bytes.get(i).is_some_and(|b| *b == b' ' || *b == b'\t') {
            i += 1;
        }
        if !matches!(bytes.get(i), None | Some(b',' | b';')) {
            return None;
        }
        elements.last_mut()?.push(XfccPair {
            key,
            value: pair_value,
        });
    }
    Some(elements)
}

fn unescape(inner: &str) -> Option<std::borrow::Cow<'_, str>> {
    if !inner.contains('\\') {
        return Some(std::borrow::Cow::Borrowed(inner));
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next()? } else { c });
    }
    Some(std::borrow::Cow::Owned(out))
}

/// Envoy's `x-forwarded-client-cert`. The header must hold exactly `hops` elements — one per
/// trusted Envoy that wrote or appended one, the outermost (edge) one using `SANITIZE_SET` —
/// and the client's certificate is in the first: the element the edge wrote. A count is never
/// taken from the value itself, because a client's certificate SAN can add commas.
pub(super) fn xfcc(value: &str, hash_only: bool, hops: usize) -> ForwardedResult {
    let malformed = Rejection::MalformedForwardedCertificate;
    let elements = xfcc_elements(value).ok_or(malformed)?;
    if elements.len() != hops {
        return Err(malformed);
    }
    let element = elements.first().ok_or(malformed)?;
    let (mut cert, mut hash) = (None, None);
    for pair in element {
        let slot = if pair.key.eq_ignore_ascii_case("cert") {
            &mut cert
        } else if pair.key.eq_ignore_ascii_case("hash") {
            &mut hash
        } else {
            continue;
        };
        if slot.replace(&pair.value).is_some() {
            return Err(malformed); // Cert= or Hash= twice in one element: a SAN injection
        }
    }
    let from_hash = hash
        .map(|h| Thumbprint::from_hex(h).map_err(|_| malformed))
        .transpose()?;
    let from_cert = cert.map(|c| leaf_from_escaped_pem(c)).transpose()?;
    match (from_cert, from_hash) {
        (Some(c), Some(h)) if c == h => Ok(Some(c)),
        (Some(_), Some(_)) => Err(malformed),
        (Some(c), None) => Ok(Some(c)),
        (None, Some(h)) if hash_only => Ok(Some(h)),
        (None, Some(_)) => Err(malformed),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xfcc_grammar() {
        let parsed = xfcc_elements(r#"By=a;Subject="CN=x,O=\"y;z\"";URI=u,Hash=h"#).unwrap();
        assert_eq!(parsed.len(), 2);
        let first: Vec<(&str, &str)> = parsed[0].iter().map(|p| (p.key, &*p.value)).collect();
        assert_eq!(
            first,
            vec![("By", "a"), ("Subject", r#"CN=x,O="y;z""#), ("URI", "u")]
        );
        assert_eq!(parsed[1][0].key, "Hash");
        // Quotes anywhere but around a whole value could hide separators.
        for bad in [
            r#"a="unterminated"#,
            r#"URI=urn:"x"#,
            r#"URI=urn:x";Hash=1"#,
            r#"Subject="a"b;Hash=1"#,
            "=value",
            "novalue",
            "Hash",
        ] {
            assert!(xfcc_elements(bad).is_none(), "{bad}");
        }
        assert_eq!(xfcc_elements("").unwrap().len(), 1);
        assert_eq!(xfcc_elements("Hash=1;;URI=").unwrap()[0].len(), 2);
    }
}
