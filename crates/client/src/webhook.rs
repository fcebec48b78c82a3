//! The reference verifier for Baton's webhooks (the Standard Webhooks scheme): a receiver
//! checks `webhook-signature` against its secret and refuses a `webhook-timestamp` outside the
//! tolerance, so a captured delivery cannot be replayed later.
//!
//! ```
//! # use std::time::Duration;
//! let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
//! let body = br#"{"test": 2432232314}"#;
//! let signature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
//! let verified = baton_client::webhook::verify(
//!     secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", signature, body, 1614265330, Duration::from_secs(300));
//! assert!(verified.is_ok());
//! let replayed = baton_client::webhook::verify(
//!     secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", signature, body, 1614265330 + 3600, Duration::from_secs(300));
//! assert!(replayed.is_err());
//! ```

use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Why a delivery was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the secret is not whsec_ followed by base64")]
    BadSecret,
    #[error("webhook-timestamp is not a number of seconds")]
    BadTimestamp,
    #[error("webhook-timestamp is {0} s away from now, outside the tolerance: a replay or a wrong clock")]
    OutsideTolerance(i64),
    #[error("no signature in webhook-signature matches")]
    NoMatch,
}

/// Verifies one delivery. `signatures` is the `webhook-signature` header (space-separated
/// `v1,<base64>` values; any one matching is enough, which lets secrets rotate);
/// `now` is the receiver's clock in Unix seconds.
pub fn verify(
    secret: &str,
    message_id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|encoded| base64::engine::general_purpose::STANDARD.decode(encoded).ok())
        .ok_or(VerifyError::BadSecret)?;
    let sent: i64 = timestamp.trim().parse().map_err(|_| VerifyError::BadTimestamp)?;
    let skew = now.saturating_sub(sent);
    if skew.unsigned_abs() > tolerance.as_secs() {
        return Err(VerifyError::OutsideTolerance(skew));
    }
    for candidate in signatures.split_whitespace() {
        let Some(encoded) = candidate.strip_prefix("v1,") else { continue };
        let Ok(given) = base64::engine::general_purpose::STANDARD.decode(encoded) else { continue };
        let mut check = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).map_err(|_| VerifyError::BadSecret)?;
        check.update(format!("{message_id}.{sent}.").as_bytes());
        check.update(body);
        // Constant-time comparison.
        if check.verify_slice(&given).is_ok() {
            return Ok(());
        }
    }
    Err(VerifyError::NoMatch)
}
