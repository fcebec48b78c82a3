//! Credentials.
//!
//! Every secret Baton hands out is a random 256-bit value behind a prefix that says what it is
//! (`bat_admin_`, `bat_reg_`, `bat_run_`, `bat_jit_`), so a leaked one can be recognised. The
//! store keeps only SHA-256 hashes; a high-entropy secret needs no slow hash. Comparisons of
//! secrets are constant-time.
//!
//! Job tokens (`bat_job_`) are not stored at all: a token is an HMAC over the job, attempt,
//! epoch and runner, keyed by a secret kept in the store, so it is revoked the moment the
//! attempt's epoch moves on or the attempt ends.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use baton_core::{AttemptNo, JobId, LeaseEpoch, RunnerId, RunnerState};
use hmac::{KeyInit, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

pub const ADMIN_PREFIX: &str = "bat_admin_";
pub const REGISTRATION_PREFIX: &str = "bat_reg_";
pub const RUNNER_PREFIX: &str = "bat_run_";
pub const JIT_PREFIX: &str = "bat_jit_";
pub const JOB_PREFIX: &str = "bat_job_";

/// Longest bearer token accepted; anything longer is rejected before hashing.
const TOKEN_LEN_MAX: usize = 256;

/// A new random secret with `prefix`.
pub fn generate(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// SHA-256 of a secret, hex: what the store keeps.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Derives job tokens from the store's job-token key.
#[derive(Clone)]
pub struct JobTokens {
    key: Vec<u8>,
}

impl std::fmt::Debug for JobTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobTokens(..)")
    }
}

impl JobTokens {
    pub fn new(key: Vec<u8>) -> JobTokens {
        JobTokens { key }
    }

    pub fn token(&self, job_id: JobId, attempt: AttemptNo, epoch: LeaseEpoch, runner_id: RunnerId) -> String {
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(format!("baton-job-token/v1/{job_id}/{attempt}/{epoch}/{runner_id}").as_bytes());
        format!("{JOB_PREFIX}{}", hex::encode(mac.finalize().into_bytes()))
    }

    /// True when `presented` is the token of this attempt, epoch and runner.
    pub fn verify(
        &self,
        presented: &str,
        job_id: JobId,
        attempt: AttemptNo,
        epoch: LeaseEpoch,
        runner_id: RunnerId,
    ) -> bool {
        let expected = self.token(job_id, attempt, epoch, runner_id);
        presented.len() == expected.len() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
    }
}

/// Compares two hex hashes in constant time.
pub fn hashes_equal(left: &str, right: &str) -> bool {
    left.len() == right.len() && bool::from(left.as_bytes().ct_eq(right.as_bytes()))
}

/// The bearer token of a request, if well-formed.
fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "no credential: the Authorization header is missing",
            "send `Authorization: Bearer <token>` (the admin token, or the runner's credential)",
        ));
    };
    let text = value.to_str().map_err(|_| {
        ApiError::unauthorized("the Authorization header is not ASCII", "send `Authorization: Bearer <token>`")
    })?;
    let token = text
        .strip_prefix("Bearer ")
        .ok_or_else(|| {
            ApiError::unauthorized(
                "the Authorization header is not a bearer token",
                "send `Authorization: Bearer <token>`",
            )
        })?
        .trim();
    if token.is_empty() || token.len() > TOKEN_LEN_MAX {
        return Err(ApiError::unauthorized(
            "the bearer token is empty or too long",
            "send the token exactly as it was issued",
        ));
    }
    Ok(token)
}

/// An operator: the caller presented the admin token.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?;
        if hashes_equal(&hash(token), state.admin_token_hash()) {
            return Ok(Admin);
        }
        if token.starts_with(RUNNER_PREFIX) {
            return Err(ApiError::forbidden("a runner credential cannot call operator endpoints"));
        }
        Err(ApiError::unauthorized(
            "the admin token is not valid",
            "use the admin token printed at the server's first start, or set BATON_ADMIN_TOKEN",
        ))
    }
}

/// Runner credentials recently verified against the store, by hash, so that a runner's calls
/// need no extra read each. An entry is dropped the moment its runner becomes gone (the hub
/// sees the commit), so a revoked credential is refused at once; a full cache starts over.
#[derive(Debug, Default)]
pub struct CredentialCache {
    runners: std::sync::Mutex<std::collections::HashMap<String, RunnerId>>,
}

/// Entries kept before the cache starts over.
const CREDENTIAL_CACHE_MAX: usize = 100_000;

impl CredentialCache {
    fn get(&self, hash: &str) -> Option<RunnerId> {
        self.runners.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(hash).copied()
    }

    fn insert(&self, hash: String, runner_id: RunnerId) {
        let mut runners = self.runners.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if runners.len() >= CREDENTIAL_CACHE_MAX {
            runners.clear();
        }
        runners.insert(hash, runner_id);
    }

    /// Forgets every credential: anything may have changed.
    pub fn clear(&self) {
        self.runners.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
    }

    /// Forgets the credentials of runners that are gone.
    pub fn revoke(&self, gone: &[RunnerId]) {
        let mut runners = self.runners.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        runners.retain(|_, runner_id| !gone.contains(runner_id));
    }
}

/// A registered runner that is not gone, authenticated by its credential.
#[derive(Debug, Clone, Copy)]
pub struct RunnerCaller(pub RunnerId);

impl FromRequestParts<Arc<AppState>> for RunnerCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?;
        if !token.starts_with(RUNNER_PREFIX) {
            if hashes_equal(&hash(token), state.admin_token_hash()) {
                return Err(ApiError::forbidden(
                    "the admin token cannot act as a runner; runner calls take the runner's credential",
                ));
            }
            return Err(ApiError::unauthorized(
                "not a runner credential",
                "register the runner first; its credential starts with bat_run_",
            ));
        }
        let credential_hash = hash(token);
        if let Some(runner_id) = state.credentials.get(&credential_hash) {
            return Ok(RunnerCaller(runner_id));
        }
        let lookup = credential_hash.clone();
        let runner = state
            .run(move |store| store.runner_by_credential(&lookup))
            .await?
            .ok_or_else(|| ApiError::unauthorized("unknown runner credential", "register the runner again"))?;
        if runner.state == RunnerState::Gone {
            return Err(ApiError::unauthorized(
                format!("runner {} is gone; its credential is revoked", runner.id),
                "register a new runner",
            ));
        }
        state.credentials.insert(credential_hash, runner.id);
        Ok(RunnerCaller(runner.id))
    }
}
