//! What an autoscaler needs beyond the operator API: a pool's snapshot, retire-if-idle with its
//! audit event, and the audit events of its other decisions. Every call takes the admin token.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use baton_api as api;
use baton_core::{EventKind, RunnerId};
use baton_store::RetireOutcome;

use super::{ApiJson, ApiPath, ApiQuery};
use crate::auth::Admin;
use crate::clock::rfc3339;
use crate::error::ApiError;
use crate::state::AppState;

/// Largest readings object kept with one audit event, in bytes of JSON.
const READINGS_BYTES_MAX: usize = 16 * 1024;

/// A pool's demand (queued attempts of every pool, with labels) and its runners, in one snapshot.
#[utoipa::path(get, path = "/api/v1/scaler/snapshot", tag = "scaler", security(("bearer" = [])), params(api::PoolQuery),
    responses((status = 200, body = api::PoolSnapshot)))]
pub async fn snapshot(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<api::PoolQuery>,
) -> Result<Json<api::PoolSnapshot>, ApiError> {
    if baton_core::limits::check_name(&query.pool).is_err() {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", "pool: not a valid pool name"));
    }
    let now = state.now();
    let pool = query.pool.clone();
    let snapshot = state.run(move |store| store.pool_snapshot(&pool, now)).await?;
    Ok(Json(api::PoolSnapshot {
        as_of_event: snapshot.as_of.0,
        now: rfc3339(now),
        queued: snapshot
            .queued
            .iter()
            .map(|(attempt, labels)| api::QueuedAttempt {
                job_id: attempt.job_id.0,
                attempt: attempt.number.0,
                labels: labels.clone(),
                queued_at: rfc3339(attempt.queued_at),
            })
            .collect(),
        runners: snapshot
            .runners
            .iter()
            .map(|entry| api::PoolRunner {
                id: entry.runner.id.0,
                name: entry.runner.name.clone(),
                labels: entry.runner.labels.clone(),
                state: entry.runner.state.to_string(),
                ephemeral: entry.runner.ephemeral,
                online: entry.online,
                held: entry.held,
                attempts: entry.attempts,
                idle_since: entry.idle_since.map(rfc3339),
                created_at: rfc3339(entry.runner.created_at),
                last_seen_at: rfc3339(entry.runner.last_seen_at),
            })
            .collect(),
    }))
}

fn check_readings(value: &serde_json::Value) -> Result<(), ApiError> {
    let size = serde_json::to_string(value).map(|text| text.len()).unwrap_or(usize::MAX);
    if !(value.is_object() || value.is_null()) || size > READINGS_BYTES_MAX {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            format!("readings: a JSON object of at most {READINGS_BYTES_MAX} bytes"),
        ));
    }
    Ok(())
}

/// Retire-if-idle for an autoscaler: the same atomic decision as `POST /runners/{id}/retire`,
/// recorded as a `scaler.retire` event with its answer and the readings, in one transaction.
/// Terminate the runner's machine only after `retired`.
#[utoipa::path(post, path = "/api/v1/scaler/runners/{runner_id}/retire", tag = "scaler", security(("bearer" = [])),
    params(("runner_id" = i64, Path)), request_body = api::ScalerRetireRequest,
    responses((status = 200, body = api::RetireResponse), (status = 404, body = api::ErrorBody)))]
pub async fn retire(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiPath(runner_id): ApiPath<i64>,
    ApiJson(request): ApiJson<api::ScalerRetireRequest>,
) -> Result<Json<api::RetireResponse>, ApiError> {
    check_readings(&request.readings)?;
    let now = state.now();
    let outcome = state.run(move |store| store.scaler_retire(RunnerId(runner_id), &request.readings, now)).await?;
    Ok(Json(match outcome {
        RetireOutcome::Retired => api::RetireResponse::Retired,
        RetireOutcome::Busy { job_id, attempt } => api::RetireResponse::Busy { job_id: job_id.0, attempt: attempt.0 },
    }))
}

/// Retire-if-idle by runner name, for a machine whose runner the scaler does not know: the live
/// runner of that name is retired as by id; with none, the answer is `retired` (nothing can run
/// there). Recorded as a `scaler.retire` event in the same transaction.
#[utoipa::path(post, path = "/api/v1/scaler/names/{name}/retire", tag = "scaler", security(("bearer" = [])),
    params(("name" = String, Path)), request_body = api::ScalerRetireRequest,
    responses((status = 200, body = api::RetireResponse), (status = 422, body = api::ErrorBody)))]
pub async fn retire_name(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiPath(name): ApiPath<String>,
    ApiJson(request): ApiJson<api::ScalerRetireRequest>,
) -> Result<Json<api::RetireResponse>, ApiError> {
    check_readings(&request.readings)?;
    if baton_core::limits::check_name(&name).is_err() {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", "name: not a valid runner name"));
    }
    let now = state.now();
    let outcome = state.run(move |store| store.scaler_retire_name(&name, &request.readings, now)).await?;
    Ok(Json(match outcome {
        RetireOutcome::Retired => api::RetireResponse::Retired,
        RetireOutcome::Busy { job_id, attempt } => api::RetireResponse::Busy { job_id: job_id.0, attempt: attempt.0 },
    }))
}

/// Records a scaler decision (`create`, `terminate`, `cleanup`) in the events stream.
#[utoipa::path(post, path = "/api/v1/scaler/events", tag = "scaler", security(("bearer" = [])),
    request_body = api::ScalerEventRequest,
    responses((status = 201, body = Object), (status = 422, body = api::ErrorBody)))]
pub async fn record(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiJson(request): ApiJson<api::ScalerEventRequest>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let kind = match request.action.as_str() {
        "create" => EventKind::ScalerCreate,
        "terminate" => EventKind::ScalerTerminate,
        "cleanup" => EventKind::ScalerCleanup,
        other => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
                format!("action: {other:?} is not a scaler decision; use create, terminate or cleanup"),
            ));
        }
    };
    check_readings(&request.data)?;
    if !request.data.is_object() {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", "data: must be a JSON object"));
    }
    let now = state.now();
    let runner_id = request.runner_id.map(RunnerId);
    let seq = state.run(move |store| store.record_scaler_event(kind, runner_id, &request.data, now)).await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "seq": seq.0 }))))
}
