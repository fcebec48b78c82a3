//! The HTTP API: routes, extractors that turn bad input into clear 4xx errors, and the
//! rendering of store records as wire types.

pub mod events;
pub mod meta;
pub mod operator;
pub mod runner;
pub mod runs;
pub mod scaler;
pub mod webhooks;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use baton_api as api;
use baton_core::{Attempt, Job, Session, limits};
use baton_store::{JobView, RunnerView};
use serde::de::DeserializeOwned;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::clock::rfc3339;
use crate::error::ApiError;
use crate::metrics::{HttpLabels, RouteLabels};
use crate::state::AppState;

/// The routes and the OpenAPI document generated from them.
pub fn routes() -> (Router<Arc<AppState>>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(<crate::openapi::ApiDoc as utoipa::OpenApi>::openapi())
        .routes(routes!(runner::register))
        .routes(routes!(runner::register_jit))
        .routes(routes!(runner::open_session))
        .routes(routes!(runner::poll))
        .routes(routes!(runner::goodbye))
        .routes(routes!(runner::accept))
        .routes(routes!(runner::renew))
        .routes(routes!(runner::upload_log))
        .routes(routes!(runner::complete))
        .routes(routes!(operator::create_registration_token))
        .routes(routes!(operator::create_jit_config))
        .routes(routes!(operator::enqueue_job, operator::list_jobs))
        .routes(routes!(operator::get_job))
        .routes(routes!(operator::cancel_job))
        .routes(routes!(operator::job_logs))
        .routes(routes!(operator::list_runners))
        .routes(routes!(operator::get_runner, operator::remove_runner))
        .routes(routes!(operator::retire_runner))
        .routes(routes!(operator::drain_runner))
        .routes(routes!(operator::resume_runner))
        .routes(routes!(runs::submit_run, runs::list_runs))
        .routes(routes!(runs::get_run))
        .routes(routes!(runs::cancel_run))
        .routes(routes!(scaler::snapshot))
        .routes(routes!(scaler::retire))
        .routes(routes!(scaler::retire_name))
        .routes(routes!(scaler::record))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::remove))
        .routes(routes!(webhooks::rotate))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(webhooks::redeliver))
        .routes(routes!(events::stream))
        .routes(routes!(meta::health))
        .split_for_parts()
}

/// The OpenAPI document, as served at `/api/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().1
}

pub fn router(state: Arc<AppState>) -> Router {
    let (routes, openapi) = routes();
    let openapi = Arc::new(openapi);
    routes
        .route("/metrics", axum::routing::get(meta::metrics))
        .route(
            "/api/openapi.json",
            axum::routing::get(move || {
                let openapi = openapi.clone();
                async move { axum::Json(openapi.as_ref().clone()) }
            }),
        )
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), record_request))
        .layer(axum::extract::DefaultBodyLimit::max(limits::REQUEST_BODY_BYTES_MAX))
        .fallback(not_found)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint").with_hint("see /api/openapi.json for the API")
}

async fn record_request(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|path| path.as_str().to_string()).unwrap_or_default();
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    state.metrics.http_requests.get_or_create(&HttpLabels { method, route: route.clone(), status }).inc();
    state.metrics.http_duration.get_or_create(&RouteLabels { route }).observe(started.elapsed().as_secs_f64());
    response
}

// ----- extractors -----

/// JSON body whose rejection is an [`ApiError`] naming what was wrong.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is over the limit of {} bytes", limits::REQUEST_BODY_BYTES_MAX),
        )
        .with_hint("send less per request: log uploads go in chunks of at most 64 KiB"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", rejection.body_text())
                .with_hint("send `Content-Type: application/json`")
        }
        _ => ApiError::bad_request("invalid_json", rejection.body_text())
            .with_hint("fix the named field and send the request again"),
    }
}

/// Query string whose rejection is an [`ApiError`].
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::bad_request("invalid_query", rejection.body_text())
}

/// Path parameters whose rejection is an [`ApiError`].
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    ApiError::bad_request("invalid_path", rejection.body_text())
}

// ----- rendering -----

pub fn runner_info(view: &RunnerView, now: baton_core::Timestamp) -> api::RunnerInfo {
    use baton_core::RunnerState as S;
    let runner = &view.runner;
    let online = view.session.as_ref().is_some_and(|session: &Session| session.is_live(now));
    let busy = view.busy();
    let status = match runner.state {
        S::Gone => "gone",
        S::Retiring => "retiring",
        S::Registered => "registered",
        S::Offline => "offline",
        S::Draining => "draining",
        S::Active if busy => "busy",
        S::Active if !online => "offline",
        S::Active => "idle",
    };
    api::RunnerInfo {
        id: runner.id.0,
        name: runner.name.clone(),
        labels: runner.labels.clone(),
        pool: runner.pool.clone(),
        capacity: runner.capacity,
        ephemeral: runner.ephemeral,
        state: runner.state.to_string(),
        status: status.to_string(),
        busy,
        online,
        jobs: view
            .held
            .iter()
            .map(|attempt| api::HeldAttempt {
                job_id: attempt.job_id.0,
                attempt: attempt.number.0,
                state: attempt.state.to_string(),
            })
            .collect(),
        created_at: rfc3339(runner.created_at),
        last_seen_at: rfc3339(runner.last_seen_at),
        as_of_event: view.as_of.0,
    }
}

pub fn attempt_result(result: baton_core::AttemptResult) -> api::AttemptResult {
    match result {
        baton_core::AttemptResult::Success => api::AttemptResult::Success,
        baton_core::AttemptResult::Failure => api::AttemptResult::Failure,
        baton_core::AttemptResult::Cancelled => api::AttemptResult::Cancelled,
    }
}

pub fn core_result(result: api::AttemptResult) -> baton_core::AttemptResult {
    match result {
        api::AttemptResult::Success => baton_core::AttemptResult::Success,
        api::AttemptResult::Failure => baton_core::AttemptResult::Failure,
        api::AttemptResult::Cancelled => baton_core::AttemptResult::Cancelled,
    }
}

fn attempt(attempt: &Attempt) -> api::Attempt {
    api::Attempt {
        number: attempt.number.0,
        state: attempt.state.to_string(),
        runner_id: attempt.runner_id.map(|id| id.0),
        epoch: attempt.epoch.map(|epoch| epoch.0),
        result: attempt.result.map(attempt_result),
        outputs: attempt.outputs.clone(),
        summary: attempt.summary.clone(),
        reason: attempt.reason.clone(),
        queued_at: rfc3339(attempt.queued_at),
        started_at: attempt.started_at.map(rfc3339),
        ended_at: attempt.ended_at.map(rfc3339),
    }
}

/// The spec a job was submitted with. It was validated before it was stored.
pub fn job_spec(job: &Job) -> Result<api::JobSpec, ApiError> {
    serde_json::from_str(&job.spec).map_err(|error| ApiError::internal("decode stored job spec", error))
}

pub fn job(view: &JobView) -> Result<api::Job, ApiError> {
    let job = &view.job;
    Ok(api::Job {
        id: job.id.0,
        name: job.name.clone(),
        labels: job.labels.clone(),
        state: job.state.to_string(),
        conclusion: job.conclusion.map(|conclusion| conclusion.to_string()),
        reason: job.reason.clone(),
        max_attempts: job.max_attempts,
        cancel_requested: job.cancel_requested,
        created_at: rfc3339(job.created_at),
        completed_at: job.completed_at.map(rfc3339),
        attempts: view.attempts.iter().map(attempt).collect(),
        spec: job_spec(job)?,
        run_id: job.run_id.map(|id| id.0),
    })
}

pub fn event(event: &baton_store::Event) -> api::Event {
    api::Event {
        seq: event.seq.0,
        at: rfc3339(event.at),
        kind: event.kind.to_string(),
        job_id: event.job_id.map(|id| id.0),
        attempt: event.attempt.map(|number| number.0),
        runner_id: event.runner_id.map(|id| id.0),
        data: serde_json::from_str(&event.data).unwrap_or(serde_json::Value::Null),
    }
}
