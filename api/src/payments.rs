//! The payment provider's webhook signature: `Gather-Signature: t=<unix seconds>,v1=<hex>`
//! where `v1` is HMAC-SHA256, keyed with `GATHER_PAYMENT_WEBHOOK_SECRET`, over
//! `"<t>.<raw body>"`. A delivery is accepted only when the signature matches (compared
//! in constant time) and `t` is within [`TOLERANCE_SECONDS`] of the server's clock, so a
//! captured delivery cannot be replayed later. README.md shows how to sign one with
//! `openssl`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying the timestamp and signature.
pub const SIGNATURE_HEADER: &str = "gather-signature";

/// How far the signed timestamp may be from now (API.md: 5 minutes).
pub const TOLERANCE_SECONDS: i64 = 300;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header value a provider sends for `body` signed at `timestamp`.
pub fn signature_header(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", hex::encode(mac(secret, timestamp, body).finalize().into_bytes()))
}

/// Why a delivery's signature was refused (all answered 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `Gather-Signature` header, or one without `t=` and `v1=`.
    #[error("missing or malformed Gather-Signature header (expected t=<unix seconds>,v1=<hex HMAC-SHA256>)")]
    Malformed,
    /// The timestamp is more than five minutes from now.
    #[error("the signature's timestamp is more than 5 minutes from now")]
    Stale,
    /// No `v1` signature matches the body.
    #[error("the signature does not match the body")]
    Mismatch,
}

/// Checks a `Gather-Signature` header for `body` at `now` (seconds since the epoch).
/// Several `v1=` entries are allowed (a provider rotating its secret sends both).
pub fn verify(secret: &[u8], header: Option<&str>, body: &[u8], now: i64) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Malformed)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => timestamp = Some(v.parse::<i64>().map_err(|_| SignatureError::Malformed)?),
            Some(("v1", v)) => signatures.push(hex::decode(v).map_err(|_| SignatureError::Malformed)?),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - timestamp).abs() > TOLERANCE_SECONDS {
        return Err(SignatureError::Stale);
    }
    // `verify_slice` compares in constant time.
    if signatures.iter().any(|s| mac(secret, timestamp, body).verify_slice(s).is_ok()) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // RFC 4231 test case 2 pins the primitive.
        let mut m = HmacSha256::new_from_slice(b"Jefe").unwrap();
        m.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(m.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // And the header is that HMAC over "<t>.<body>".
        let mut m = HmacSha256::new_from_slice(b"k").unwrap();
        m.update(b"1700000000.{}");
        let expected = format!("t=1700000000,v1={}", hex::encode(m.finalize().into_bytes()));
        assert_eq!(signature_header(b"k", 1_700_000_000, b"{}"), expected);
        // What README.md's `openssl dgst -sha256 -hmac` example computes for the same input.
        assert_eq!(
            signature_header(b"whsec-change-me-0123456789", 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=9c0e2b4a9c19deaecbb9278fe8055ad7ba457e2583b1b5f21895e085262ad3fa"
        );
    }

    #[test]
    fn a_signature_is_checked_for_body_secret_and_age() {
        let h = signature_header(b"secret", 1_000, b"body");
        assert_eq!(verify(b"secret", Some(&h), b"body", 1_000 + 300), Ok(()));
        assert_eq!(verify(b"secret", Some(&h), b"body", 1_000 - 300), Ok(()));
        assert_eq!(verify(b"secret", Some(&h), b"body", 1_000 + 301), Err(SignatureError::Stale));
        assert_eq!(verify(b"secret", Some(&h), b"bodY", 1_000), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"other", Some(&h), b"body", 1_000), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"secret", None, b"body", 1_000), Err(SignatureError::Malformed));
        assert_eq!(verify(b"secret", Some("t=1000"), b"body", 1_000), Err(SignatureError::Malformed));
        assert_eq!(verify(b"secret", Some("v1=00,t=x"), b"body", 1_000), Err(SignatureError::Malformed));
        let rotated = format!("{h},v1={}", "ab".repeat(32));
        assert_eq!(verify(b"secret", Some(&rotated), b"body", 1_000), Ok(()));
    }
}
