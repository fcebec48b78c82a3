//! The operator API: tokens, jobs, runners. Every call takes the admin token.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use baton_api as api;
use baton_core::{AttemptNo, JobId, RunnerId, Timestamp, limits};
use baton_store::{NewJitRunner, NewJob, RetireOutcome, Store};

use super::{ApiJson, ApiPath, ApiQuery, runner_info};
use crate::auth::{self, Admin, JIT_PREFIX, REGISTRATION_PREFIX};
use crate::clock::rfc3339;
use crate::error::ApiError;
use crate::state::AppState;

const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);
const DEFAULT_PAGE: usize = 100;
const DEFAULT_POOL: &str = "default";

fn token_ttl(ttl_secs: Option<u64>) -> Result<Duration, ApiError> {
    let ttl = ttl_secs.map(Duration::from_secs).unwrap_or(DEFAULT_TOKEN_TTL);
    if ttl.is_zero() || ttl > limits::TOKEN_TTL_MAX {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            "ttl_secs: must be 1 second to 30 days",
        ));
    }
    Ok(ttl)
}

/// Creates a registration token.
#[utoipa::path(post, path = "/api/v1/registration-tokens", tag = "operator", security(("bearer" = [])),
    request_body = api::CreateRegistrationTokenRequest,
    responses((status = 201, body = api::RegistrationTokenResponse), (status = 401, body = api::ErrorBody)))]
pub async fn create_registration_token(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiJson(request): ApiJson<api::CreateRegistrationTokenRequest>,
) -> Result<(StatusCode, Json<api::RegistrationTokenResponse>), ApiError> {
    let ttl = token_ttl(request.ttl_secs)?;
    let token = auth::generate(REGISTRATION_PREFIX);
    let hash = auth::hash(&token);
    let now = state.now();
    let expires_at = now.plus(ttl);
    let pool = request.pool.unwrap_or_else(|| DEFAULT_POOL.to_string());
    let labels = request.labels;
    let max_uses = request.max_uses;
    state.run(move |store| store.create_registration_token(&hash, &labels, &pool, expires_at, max_uses, now)).await?;
    Ok((StatusCode::CREATED, Json(api::RegistrationTokenResponse { token, expires_at: rfc3339(expires_at) })))
}

/// Creates a runner ahead of its machine and a single-use JIT config to start it with.
#[utoipa::path(post, path = "/api/v1/jit-configs", tag = "operator", security(("bearer" = [])),
    request_body = api::CreateJitConfigRequest,
    responses((status = 201, body = api::JitConfigResponse), (status = 409, body = api::ErrorBody)))]
pub async fn create_jit_config(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiJson(request): ApiJson<api::CreateJitConfigRequest>,
) -> Result<(StatusCode, Json<api::JitConfigResponse>), ApiError> {
    let ttl = token_ttl(request.ttl_secs)?;
    let jit_config = auth::generate(JIT_PREFIX);
    let now = state.now();
    let expires_at = now.plus(ttl);
    let new = NewJitRunner {
        name: request.name,
        labels: request.labels,
        pool: request.pool.unwrap_or_else(|| DEFAULT_POOL.to_string()),
        capacity: request.capacity,
        ephemeral: request.ephemeral,
        jit_hash: auth::hash(&jit_config),
        expires_at,
    };
    let runner = state.run(move |store| store.create_jit_runner(&new, now)).await?;
    let id = runner.id;
    let view = state.run(move |store| store.runner_view(id)).await?;
    Ok((
        StatusCode::CREATED,
        Json(api::JitConfigResponse {
            runner: runner_info(&view, state.now()),
            jit_config,
            expires_at: rfc3339(expires_at),
        }),
    ))
}

/// Checks a job spec against the limits before it is stored.
fn validate_spec(spec: &api::JobSpec) -> Result<(), ApiError> {
    let invalid = |message: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message);
    if spec.steps.is_empty() {
        return Err(invalid("steps: a job needs at least one step".into()));
    }
    if spec.steps.len() > limits::STEPS_MAX {
        return Err(invalid(format!("steps: at most {} steps", limits::STEPS_MAX)));
    }
    check_env("env", &spec.env).map_err(invalid)?;
    for (index, step) in spec.steps.iter().enumerate() {
        if step.run.len() > limits::SCRIPT_BYTES_MAX {
            return Err(invalid(format!("steps[{index}].run: at most {} bytes", limits::SCRIPT_BYTES_MAX)));
        }
        check_env(&format!("steps[{index}].env"), &step.env).map_err(invalid)?;
        for (field, value) in [
            ("name", &step.name),
            ("id", &step.id),
            ("shell", &step.shell),
            ("working_directory", &step.working_directory),
            ("if", &step.condition),
        ] {
            if value.as_ref().is_some_and(|value| value.len() > 4096) {
                return Err(invalid(format!("steps[{index}].{field}: at most 4096 bytes")));
            }
        }
        if let Some(condition) = &step.condition {
            let options = baton_expr::ParseOptions::with_named_values(baton_expr::WORKFLOW_CONTEXT_NAMES);
            if let Err(error) = baton_expr::parse_if_condition(condition, &options) {
                return Err(invalid(format!("steps[{index}].if: {error}")));
            }
        }
    }
    Ok(())
}

fn check_env(field: &str, env: &std::collections::BTreeMap<String, String>) -> Result<(), String> {
    if env.len() > limits::ENV_ENTRIES_MAX {
        return Err(format!("{field}: at most {} entries", limits::ENV_ENTRIES_MAX));
    }
    for (name, value) in env {
        let valid_name = !name.is_empty()
            && name.len() <= 256
            && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
            && !name.as_bytes()[0].is_ascii_digit();
        if !valid_name {
            return Err(format!(
                "{field}: {name:?} is not a valid variable name (letters, digits and _, not starting with a digit)"
            ));
        }
        if value.len() > limits::ENV_VALUE_BYTES_MAX {
            return Err(format!("{field}.{name}: at most {} bytes", limits::ENV_VALUE_BYTES_MAX));
        }
    }
    Ok(())
}

/// Enqueues a job given as a raw job spec.
#[utoipa::path(post, path = "/api/v1/jobs", tag = "operator", security(("bearer" = [])), request_body = api::JobSpec,
    responses((status = 201, body = api::Job), (status = 400, body = api::ErrorBody), (status = 422, body = api::ErrorBody)))]
pub async fn enqueue_job(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiJson(spec): ApiJson<api::JobSpec>,
) -> Result<(StatusCode, Json<api::Job>), ApiError> {
    validate_spec(&spec)?;
    let new = NewJob {
        name: spec.name.clone(),
        labels: spec.labels.clone(),
        spec: serde_json::to_string(&spec).map_err(|error| ApiError::internal("encode job spec", error))?,
        max_attempts: spec.max_attempts.unwrap_or(baton_core::limits::MAX_ATTEMPTS_DEFAULT),
    };
    let now = state.now();
    let view = state.run_short(move |store| store.enqueue(&new, now)).await?;
    Ok((StatusCode::CREATED, Json(super::job(&view)?)))
}

/// Lists jobs by id.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "operator", security(("bearer" = [])), params(api::PageQuery),
    responses((status = 200, body = api::JobList)))]
pub async fn list_jobs(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiQuery(page): ApiQuery<api::PageQuery>,
) -> Result<Json<api::JobList>, ApiError> {
    let after = JobId(page.after.unwrap_or(0));
    let limit = page.limit.unwrap_or(DEFAULT_PAGE).min(limits::PAGE_SIZE_MAX);
    let views = state.run(move |store| store.jobs(after, limit)).await?;
    let jobs = views.iter().map(super::job).collect::<Result<_, _>>()?;
    Ok(Json(api::JobList { jobs }))
}

/// A job with its attempts.
#[utoipa::path(get, path = "/api/v1/jobs/{job_id}", tag = "operator", security(("bearer" = [])), params(("job_id" = i64, Path)),
    responses((status = 200, body = api::Job), (status = 404, body = api::ErrorBody)))]
pub async fn get_job(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiPath(job_id): ApiPath<i64>,
) -> Result<Json<api::Job>, ApiError> {
    let view = state.run(move |store| store.job_view(JobId(job_id))).await?;
    Ok(Json(super::job(&view)?))
}

/// Cancels a job: at once if it has not started, else by telling its runner to stop.
#[utoipa::path(post, path = "/api/v1/jobs/{job_id}/cancel", tag = "operator", security(("bearer" = [])), params(("job_id" = i64, Path)),
    responses((status = 200, body = api::Job), (status = 409, body = api::ErrorBody)))]
pub async fn cancel_job(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiPath(job_id): ApiPath<i64>,
) -> Result<Json<api::Job>, ApiError> {
    let now = state.now();
    let job_id = JobId(job_id);
    state.run(move |store| store.cancel_job(job_id, now)).await?;
    let view = state.run(move |store| store.job_view(job_id)).await?;
    Ok(Json(super::job(&view)?))
}

/// Log chunks of one attempt, in order, after sequence `after`.
#[utoipa::path(get, path = "/api/v1/jobs/{job_id}/attempts/{attempt}/logs", tag = "operator", security(("bearer" = [])),
    params(("job_id" = i64, Path), ("attempt" = u32, Path), api::PageQuery),
    responses((status = 200, body = api::LogPage), (status = 404, body = api::ErrorBody)))]
pub async fn job_logs(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiPath((job_id, attempt)): ApiPath<(i64, u32)>,
    ApiQuery(page): ApiQuery<api::PageQuery>,
) -> Result<Json<api::LogPage>, ApiError> {
    let after = u64::try_from(page.after.unwrap_or(0)).unwrap_or(0);
    let limit = page.limit.unwrap_or(limits::PAGE_SIZE_MAX).min(limits::PAGE_SIZE_MAX);
    let chunks = state.run(move |store| store.logs(JobId(job_id), AttemptNo(attempt), after, limit)).await?;
    Ok(Json(api::LogPage {
        chunks: chunks
            .into_iter()
            .map(|chunk| api::LogChunk { seq: chunk.seq, at: rfc3339(chunk.at), data: chunk.data })
            .collect(),
    }))
}

/// Lists runners by id, with `busy` and `status` computed from attempts at read time.
#[utoipa::path(get, path = "/api/v1/runners", tag = "operator", security(("bearer" = [])), params(api::PageQuery),
    responses((status = 200, body = api::RunnerList)))]
pub async fn list_runners(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiQuery(page): ApiQuery<api::PageQuery>,
) -> Result<Json<api::RunnerList>, ApiError> {
    let after = RunnerId(page.after.unwrap_or(0));
    let limit = page.limit.unwrap_or(DEFAULT_PAGE).min(limits::PAGE_SIZE_MAX);
    let views = state.run(move |store| store.runners(after, limit)).await?;
    let now = state.now();
    Ok(Json(api::RunnerList { runners: views.iter().map(|view| runner_info(view, now)).collect() }))
}

/// One runner. `busy` is read in the same snapshot as the attempts it is computed from.
#[utoipa::path(get, path = "/api/v1/runners/{runner_id}", tag = "operator", security(("bearer" = [])), params(("runner_id" = i64, Path)),
    responses((status = 200, body = api::RunnerInfo), (status = 404, body = api::ErrorBody)))]
pub async fn get_runner(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiPath(runner_id): ApiPath<i64>,
) -> Result<Json<api::RunnerInfo>, ApiError> {
    let view = state.run(move |store| store.runner_view(RunnerId(runner_id))).await?;
    Ok(Json(runner_info(&view, state.now())))
}

/// Retire-if-idle: atomically retires the runner if it holds no offered or running attempt,
/// else answers `busy` with the job. Terminate a runner's machine only after `retired`.
#[utoipa::path(post, path = "/api/v1/runners/{runner_id}/retire", tag = "operator", security(("bearer" = [])), params(("runner_id" = i64, Path)),
    responses((status = 200, body = api::RetireResponse), (status = 404, body = api::ErrorBody)))]
pub async fn retire_runner(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiPath(runner_id): ApiPath<i64>,
) -> Result<Json<api::RetireResponse>, ApiError> {
    let now = state.now();
    let outcome = state.run(move |store| store.retire_if_idle(RunnerId(runner_id), now)).await?;
    Ok(Json(match outcome {
        RetireOutcome::Retired => api::RetireResponse::Retired,
        RetireOutcome::Busy { job_id, attempt } => api::RetireResponse::Busy { job_id: job_id.0, attempt: attempt.0 },
    }))
}

/// Runs a lifecycle script on one runner and answers with the runner as it is afterwards.
async fn runner_action(
    state: &Arc<AppState>,
    runner_id: i64,
    action: impl FnOnce(&Store, RunnerId, Timestamp) -> Result<baton_core::Runner, baton_store::Error> + Send + 'static,
) -> Result<Json<api::RunnerInfo>, ApiError> {
    let now = state.now();
    let runner_id = RunnerId(runner_id);
    state.run(move |store| action(store, runner_id, now)).await?;
    let view = state.run(move |store| store.runner_view(runner_id)).await?;
    Ok(Json(runner_info(&view, state.now())))
}

/// Stops new offers to a runner; it finishes what it runs.
#[utoipa::path(post, path = "/api/v1/runners/{runner_id}/drain", tag = "operator", security(("bearer" = [])), params(("runner_id" = i64, Path)),
    responses((status = 200, body = api::RunnerInfo), (status = 409, body = api::ErrorBody)))]
pub async fn drain_runner(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiPath(runner_id): ApiPath<i64>,
) -> Result<Json<api::RunnerInfo>, ApiError> {
    runner_action(&state, runner_id, |store, runner_id, now| store.drain(runner_id, now)).await
}

/// Lifts a drain.
#[utoipa::path(post, path = "/api/v1/runners/{runner_id}/resume", tag = "operator", security(("bearer" = [])), params(("runner_id" = i64, Path)),
    responses((status = 200, body = api::RunnerInfo), (status = 409, body = api::ErrorBody)))]
pub async fn resume_runner(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiPath(runner_id): ApiPath<i64>,
) -> Result<Json<api::RunnerInfo>, ApiError> {
    runner_action(&state, runner_id, |store, runner_id, now| store.resume(runner_id, now)).await
}

/// Marks a retiring runner gone after its machine was terminated.
#[utoipa::path(delete, path = "/api/v1/runners/{runner_id}", tag = "operator", security(("bearer" = [])), params(("runner_id" = i64, Path)),
    responses((status = 200, body = api::RunnerInfo), (status = 409, body = api::ErrorBody)))]
pub async fn remove_runner(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiPath(runner_id): ApiPath<i64>,
) -> Result<Json<api::RunnerInfo>, ApiError> {
    runner_action(&state, runner_id, |store, runner_id, now| store.remove_runner(runner_id, now)).await
}
