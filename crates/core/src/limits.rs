//! Bounds on everything that comes from outside.
//!
//! Every string, list and wait that a client can send has a limit here; the server checks them
//! before anything is written, and each violation is a 4xx that names the limit.

use std::time::Duration;

/// Request bodies, except log uploads.
pub const REQUEST_BODY_BYTES_MAX: usize = 1024 * 1024;
/// One log chunk as uploaded by a runner.
pub const LOG_CHUNK_BYTES_MAX: usize = 64 * 1024;
/// Runner and job names.
pub const NAME_LEN_MAX: usize = 64;
/// One label.
pub const LABEL_LEN_MAX: usize = 64;
/// Labels on one runner or job.
pub const LABELS_MAX: usize = 32;
/// Slots on one runner.
pub const CAPACITY_MAX: u32 = 256;
/// Attempts of one job.
pub const MAX_ATTEMPTS_MAX: u32 = 10;
/// Attempts of a job that does not say.
pub const MAX_ATTEMPTS_DEFAULT: u32 = 3;
/// Steps in one job spec.
pub const STEPS_MAX: usize = 256;
/// Environment entries in one job or step.
pub const ENV_ENTRIES_MAX: usize = 256;
/// One environment name or value, one step script.
pub const ENV_VALUE_BYTES_MAX: usize = 64 * 1024;
pub const SCRIPT_BYTES_MAX: usize = 256 * 1024;
/// Outputs one attempt may report, and the size of one output value.
pub const OUTPUTS_MAX: usize = 256;
pub const OUTPUT_VALUE_BYTES_MAX: usize = 1024 * 1024;
/// The step summary one attempt may report.
pub const SUMMARY_BYTES_MAX: usize = 1024 * 1024;
/// Messages returned by one poll.
pub const POLL_MESSAGES_MAX: usize = 64;
/// Rows returned by one list call.
pub const PAGE_SIZE_MAX: usize = 1000;
/// Token lifetimes an operator may ask for.
pub const TOKEN_TTL_MAX: Duration = Duration::from_secs(30 * 24 * 3600);

/// Checks a runner or job name: 1 to [`NAME_LEN_MAX`] characters of ASCII letters, digits,
/// `.`, `_` and `-`.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > NAME_LEN_MAX {
        return Err("must be 1 to 64 characters");
    }
    if !name.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-')) {
        return Err("may contain only ASCII letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

/// Checks a label list before normalisation.
pub fn check_labels(labels: &[String]) -> Result<(), &'static str> {
    if labels.len() > LABELS_MAX {
        return Err("at most 32 labels");
    }
    for label in labels {
        let label = label.trim();
        if label.is_empty() || label.len() > LABEL_LEN_MAX {
            return Err("each label must be 1 to 64 characters");
        }
        if label.chars().any(|ch| ch.is_control() || ch == ',') {
            return Err("labels may not contain commas or control characters");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("runner-1.example_a").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name(&"a".repeat(65)).is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("ü").is_err());
    }

    #[test]
    fn labels() {
        assert!(check_labels(&["linux".into(), "x64".into()]).is_ok());
        assert!(check_labels(&[" ".into()]).is_err());
        assert!(check_labels(&["a,b".into()]).is_err());
        assert!(check_labels(&vec!["l".to_string(); 33]).is_err());
    }
}
