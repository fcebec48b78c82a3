//! The runner protocol (DESIGN §4): register, session, long-poll, and the fenced job calls.
//!
//! Every job call carries the attempt's fencing epoch and its job token. The token is checked
//! here (it is an HMAC over job, attempt, epoch and runner); the epoch is checked again inside
//! the store transaction, so a stale call can never change state.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use baton_api as api;
use baton_core::{AttemptNo, JobId, LeaseEpoch, Message, MessageId, RunnerId, SessionId, Timestamp};
use baton_store::{LogAppend, NewRunner, Store};

use super::{ApiJson, ApiPath, ApiQuery, runner_info};
use crate::auth::{self, JIT_PREFIX, REGISTRATION_PREFIX, RUNNER_PREFIX, RunnerCaller};
use crate::clock::rfc3339;
use crate::error::ApiError;
use crate::state::AppState;

/// Registers a runner with a registration token.
#[utoipa::path(post, path = "/api/v1/runners/register", tag = "runner", request_body = api::RegisterRequest,
    responses((status = 201, body = api::RegisterResponse), (status = 401, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub async fn register(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<api::RegisterRequest>,
) -> Result<(StatusCode, Json<api::RegisterResponse>), ApiError> {
    if !request.token.starts_with(REGISTRATION_PREFIX) || request.token.len() > 256 {
        return Err(ApiError::unauthorized(
            "not a registration token",
            "registration tokens start with bat_reg_; create one with `baton token create`",
        ));
    }
    let credential = auth::generate(RUNNER_PREFIX);
    let credential_hash = auth::hash(&credential);
    let token_hash = auth::hash(&request.token);
    let new = NewRunner {
        name: request.name,
        labels: request.labels,
        capacity: request.capacity,
        ephemeral: request.ephemeral,
    };
    let now = state.now();
    let runner = state.run(move |store| store.register_runner(&token_hash, &new, &credential_hash, now)).await?;
    let id = runner.id;
    let view = state.run(move |store| store.runner_view(id)).await?;
    Ok((StatusCode::CREATED, Json(api::RegisterResponse { runner: runner_info(&view, state.now()), credential })))
}

/// Registers the runner a JIT config was created for. Works once.
#[utoipa::path(post, path = "/api/v1/runners/register-jit", tag = "runner", request_body = api::RegisterJitRequest,
    responses((status = 201, body = api::RegisterResponse), (status = 401, body = api::ErrorBody)))]
pub async fn register_jit(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<api::RegisterJitRequest>,
) -> Result<(StatusCode, Json<api::RegisterResponse>), ApiError> {
    if !request.jit_config.starts_with(JIT_PREFIX) || request.jit_config.len() > 256 {
        return Err(ApiError::unauthorized(
            "not a JIT config",
            "JIT configs start with bat_jit_; create one with `POST /api/v1/jit-configs`",
        ));
    }
    let credential = auth::generate(RUNNER_PREFIX);
    let credential_hash = auth::hash(&credential);
    let jit_hash = auth::hash(&request.jit_config);
    let now = state.now();
    let runner = state.run(move |store| store.register_jit(&jit_hash, &credential_hash, now)).await?;
    let id = runner.id;
    let view = state.run(move |store| store.runner_view(id)).await?;
    Ok((StatusCode::CREATED, Json(api::RegisterResponse { runner: runner_info(&view, state.now()), credential })))
}

/// Opens a session, replacing any session the runner had.
#[utoipa::path(post, path = "/api/v1/sessions", tag = "runner", security(("bearer" = [])),
    responses((status = 201, body = api::SessionResponse), (status = 401, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub async fn open_session(
    State(state): State<Arc<AppState>>,
    RunnerCaller(runner_id): RunnerCaller,
) -> Result<(StatusCode, Json<api::SessionResponse>), ApiError> {
    let now = state.now();
    let session = state.run(move |store| store.open_session(runner_id, now)).await?;
    let timeouts = *state.store().timeouts();
    Ok((
        StatusCode::CREATED,
        Json(api::SessionResponse {
            session_id: session.id.0,
            runner_id: runner_id.0,
            timeouts: api::ProtocolTimeouts {
                lease_ttl_ms: millis(timeouts.lease_ttl),
                renew_interval_ms: millis(timeouts.renew_interval()),
                accept_timeout_ms: millis(timeouts.accept_timeout),
                session_ttl_ms: millis(timeouts.session_ttl),
                long_poll_max_ms: millis(timeouts.long_poll_max),
            },
        }),
    ))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Long-polls for messages. Returns at once when a message is waiting; otherwise waits up to
/// `wait` seconds for one, woken by the commit that queues it.
#[utoipa::path(get, path = "/api/v1/sessions/{session_id}/messages", tag = "runner", security(("bearer" = [])),
    params(("session_id" = i64, Path), api::PollQuery),
    responses((status = 200, body = api::PollResponse), (status = 409, body = api::ErrorBody)))]
pub async fn poll(
    State(state): State<Arc<AppState>>,
    RunnerCaller(runner_id): RunnerCaller,
    ApiPath(session_id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<api::PollQuery>,
) -> Result<Json<api::PollResponse>, ApiError> {
    let long_poll_max = state.store().timeouts().long_poll_max;
    let wait_secs = query.wait.unwrap_or(0);
    if Duration::from_secs(wait_secs) > long_poll_max {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("wait: at most {} seconds", long_poll_max.as_secs()),
        )
        .with_hint("poll again when the wait ends"));
    }
    let free_slots = query.free_slots.unwrap_or(0);
    let ack = MessageId(query.ack.unwrap_or(0).max(0));
    let session_id = SessionId(session_id);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait_secs);
    let notify = state.hub.runner(runner_id);
    let mut shutdown = state.shutdown.clone();
    let _waiting = WaitingGauge::new(&state);
    let mut first = true;
    let outcome = loop {
        // Register for the wake-up before reading, so a commit between the read and the wait
        // still wakes this poll.
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now = state.now();
        // The first pass records the poll (session, free slots, ack) and offers what waits;
        // after a wake-up, reading the messages is enough.
        let polled = if std::mem::take(&mut first) {
            state.run_short(move |store| store.poll(runner_id, session_id, free_slots, ack, now)).await?
        } else {
            state.run_short(move |store| store.repoll(runner_id, session_id, ack, now)).await?
        };
        if !polled.messages.is_empty() || tokio::time::Instant::now() >= deadline || *shutdown.borrow() {
            break polled;
        }
        tokio::select! {
            biased;
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
    };
    drop(notify);
    state.hub.forget_idle(runner_id);
    let mut messages = Vec::with_capacity(outcome.messages.len());
    for (id, message) in outcome.messages {
        let body = match message {
            Message::JobOffer { job_id, attempt, epoch } => {
                let job = outcome
                    .offered_jobs
                    .iter()
                    .find(|job| job.id == job_id)
                    .ok_or_else(|| ApiError::internal("poll", format!("offer for job {job_id} without its job")))?;
                api::MessageBody::JobOffer(api::JobOffer {
                    job_id: job_id.0,
                    attempt: attempt.0,
                    epoch: epoch.0,
                    token: state.job_tokens.token(job_id, attempt, epoch, runner_id),
                    spec: super::job_spec(job)?,
                    secrets: outcome.secrets.get(&job_id).cloned().unwrap_or_default(),
                })
            }
            Message::Cancel { job_id, attempt, epoch } => {
                api::MessageBody::Cancel { job_id: job_id.0, attempt: attempt.0, epoch: epoch.0 }
            }
            Message::Drain => api::MessageBody::Drain,
            Message::Retire => api::MessageBody::Retire,
        };
        messages.push(api::RunnerMessage { id: id.0, body });
    }
    Ok(Json(api::PollResponse { messages }))
}

/// Counts waiting long-polls for as long as it lives.
struct WaitingGauge(Arc<crate::metrics::Metrics>);

impl WaitingGauge {
    fn new(state: &AppState) -> WaitingGauge {
        state.metrics.long_polls_waiting.inc();
        WaitingGauge(state.metrics.clone())
    }
}

impl Drop for WaitingGauge {
    fn drop(&mut self) {
        self.0.long_polls_waiting.dec();
    }
}

/// Says goodbye: closes the session. Ephemeral and retiring runners are then gone.
#[utoipa::path(delete, path = "/api/v1/sessions/{session_id}", tag = "runner", security(("bearer" = [])),
    params(("session_id" = i64, Path)),
    responses((status = 200, body = api::RunnerInfo), (status = 403, body = api::ErrorBody)))]
pub async fn goodbye(
    State(state): State<Arc<AppState>>,
    RunnerCaller(runner_id): RunnerCaller,
    ApiPath(session_id): ApiPath<i64>,
) -> Result<Json<api::RunnerInfo>, ApiError> {
    let now = state.now();
    state.run(move |store| store.goodbye(runner_id, SessionId(session_id), now)).await?;
    let view = state.run(move |store| store.runner_view(runner_id)).await?;
    Ok(Json(runner_info(&view, state.now())))
}

/// Checks the job token of a fenced call. A token minted for another runner is a credential
/// used outside its scope (403); anything else that does not verify is unknown (401).
async fn check_job_token(
    state: &Arc<AppState>,
    runner_id: RunnerId,
    job_id: JobId,
    attempt: AttemptNo,
    epoch: LeaseEpoch,
    token: &str,
) -> Result<(), ApiError> {
    if state.job_tokens.verify(token, job_id, attempt, epoch, runner_id) {
        return Ok(());
    }
    let recorded = state.run(move |store| store.attempt(job_id, attempt)).await?;
    if let Some(owner) = recorded.runner_id
        && owner != runner_id
        && state.job_tokens.verify(token, job_id, attempt, epoch, owner)
    {
        return Err(ApiError::forbidden(format!("job {job_id} attempt {attempt} belongs to another runner")));
    }
    Err(ApiError::unauthorized(
        "the job token is not valid for this attempt and epoch",
        "use the token from the job offer",
    ))
}

fn count_stale(state: &AppState, error: ApiError) -> ApiError {
    if error.is_stale_lease() {
        state.metrics.stale_lease_rejections.inc();
    }
    error
}

fn lease_response(lease: baton_store::Lease) -> api::LeaseResponse {
    api::LeaseResponse {
        lease_deadline: rfc3339(lease.deadline),
        lease_ttl_ms: millis(lease.ttl),
        cancel_requested: lease.cancel_requested,
    }
}

/// The store script behind a lease call.
type LeaseScript =
    fn(&Store, RunnerId, JobId, AttemptNo, LeaseEpoch, Timestamp) -> Result<baton_store::Lease, baton_store::Error>;

/// Checks the fence of a lease call, runs its script, and renders the lease.
async fn lease_call(
    state: &Arc<AppState>,
    runner_id: RunnerId,
    (job_id, attempt): (i64, u32),
    request: api::FencedRequest,
    script: LeaseScript,
) -> Result<Json<api::LeaseResponse>, ApiError> {
    let (job_id, attempt, epoch) = (JobId(job_id), AttemptNo(attempt), LeaseEpoch(request.epoch));
    check_job_token(state, runner_id, job_id, attempt, epoch, &request.token).await?;
    let now = state.now();
    let lease = state
        .run_short(move |store| script(store, runner_id, job_id, attempt, epoch, now))
        .await
        .map_err(|error| count_stale(state, error))?;
    Ok(Json(lease_response(lease)))
}

/// Accepts an offer; the attempt starts running under a lease.
#[utoipa::path(post, path = "/api/v1/jobs/{job_id}/attempts/{attempt}/accept", tag = "runner", security(("bearer" = [])),
    params(("job_id" = i64, Path), ("attempt" = u32, Path)), request_body = api::FencedRequest,
    responses((status = 200, body = api::LeaseResponse), (status = 409, body = api::ErrorBody)))]
pub async fn accept(
    State(state): State<Arc<AppState>>,
    RunnerCaller(runner_id): RunnerCaller,
    ApiPath(path): ApiPath<(i64, u32)>,
    ApiJson(request): ApiJson<api::FencedRequest>,
) -> Result<Json<api::LeaseResponse>, ApiError> {
    lease_call(&state, runner_id, path, request, Store::accept).await
}

/// Renews the lease of a running attempt.
#[utoipa::path(post, path = "/api/v1/jobs/{job_id}/attempts/{attempt}/renew", tag = "runner", security(("bearer" = [])),
    params(("job_id" = i64, Path), ("attempt" = u32, Path)), request_body = api::FencedRequest,
    responses((status = 200, body = api::LeaseResponse), (status = 409, body = api::ErrorBody)))]
pub async fn renew(
    State(state): State<Arc<AppState>>,
    RunnerCaller(runner_id): RunnerCaller,
    ApiPath(path): ApiPath<(i64, u32)>,
    ApiJson(request): ApiJson<api::FencedRequest>,
) -> Result<Json<api::LeaseResponse>, ApiError> {
    lease_call(&state, runner_id, path, request, Store::renew).await
}

/// Uploads one chunk of a running attempt's log. Chunks are numbered from 1; a retried chunk
/// is acknowledged without being stored twice.
#[utoipa::path(post, path = "/api/v1/jobs/{job_id}/attempts/{attempt}/logs", tag = "runner", security(("bearer" = [])),
    params(("job_id" = i64, Path), ("attempt" = u32, Path)), request_body = api::LogUploadRequest,
    responses((status = 200, body = api::LogUploadResponse), (status = 409, body = api::ErrorBody)))]
pub async fn upload_log(
    State(state): State<Arc<AppState>>,
    RunnerCaller(runner_id): RunnerCaller,
    ApiPath((job_id, attempt)): ApiPath<(i64, u32)>,
    ApiJson(request): ApiJson<api::LogUploadRequest>,
) -> Result<Json<api::LogUploadResponse>, ApiError> {
    let (job_id, attempt, epoch) = (JobId(job_id), AttemptNo(attempt), LeaseEpoch(request.epoch));
    check_job_token(&state, runner_id, job_id, attempt, epoch, &request.token).await?;
    let now = state.now();
    let (seq, data) = (request.seq, request.data);
    let appended = state
        .run_short(move |store| store.append_log(runner_id, job_id, attempt, epoch, seq, &data, now))
        .await
        .map_err(|error| count_stale(&state, error))?;
    Ok(Json(api::LogUploadResponse { stored: appended == LogAppend::Appended }))
}

/// Completes a running attempt. Answers after the commit; a retry with the same result is
/// acknowledged again.
#[utoipa::path(post, path = "/api/v1/jobs/{job_id}/attempts/{attempt}/complete", tag = "runner", security(("bearer" = [])),
    params(("job_id" = i64, Path), ("attempt" = u32, Path)), request_body = api::CompleteRequest,
    responses((status = 200, body = api::Job), (status = 409, body = api::ErrorBody)))]
pub async fn complete(
    State(state): State<Arc<AppState>>,
    RunnerCaller(runner_id): RunnerCaller,
    ApiPath((job_id, attempt)): ApiPath<(i64, u32)>,
    ApiJson(request): ApiJson<api::CompleteRequest>,
) -> Result<Json<api::Job>, ApiError> {
    let (job_id, attempt, epoch) = (JobId(job_id), AttemptNo(attempt), LeaseEpoch(request.epoch));
    check_job_token(&state, runner_id, job_id, attempt, epoch, &request.token).await?;
    let now = state.now();
    let result = super::core_result(request.result);
    let outputs = request.outputs;
    let summary = request.summary.unwrap_or_default();
    let view = state
        .run_short(move |store| store.complete(runner_id, job_id, attempt, epoch, result, &outputs, &summary, now))
        .await
        .map_err(|error| count_stale(&state, error))?;
    Ok(Json(super::job(&view)?))
}
