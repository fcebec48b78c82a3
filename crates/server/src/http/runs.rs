//! Workflow runs: submit a workflow file, read a run, list runs, cancel a run. Every call takes
//! the admin token. Secrets go in with the submission and never come back out.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use baton_api as api;
use baton_core::{JobState, RunId};
use baton_engine::{Phase, RunState};
use baton_store::{NewRun, RunView};

use super::{ApiJson, ApiPath, ApiQuery};
use crate::auth::Admin;
use crate::clock::rfc3339;
use crate::error::ApiError;
use crate::state::AppState;

const DEFAULT_PAGE: usize = 20;
/// Errors of an invalid workflow shown in one answer, at most.
const WORKFLOW_ERRORS_SHOWN: usize = 50;

/// Submits a workflow run: the jobs that need nothing are queued at once.
#[utoipa::path(post, path = "/api/v1/runs", tag = "runs", security(("bearer" = [])), request_body = api::SubmitRunRequest,
    responses((status = 201, body = api::Run), (status = 422, body = api::ErrorBody)))]
pub async fn submit_run(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiJson(request): ApiJson<api::SubmitRunRequest>,
) -> Result<(StatusCode, Json<api::Run>), ApiError> {
    let file_name = request.file_name.clone().unwrap_or_else(|| "workflow.yml".to_string());
    if file_name.is_empty() || file_name.len() > 256 || file_name.chars().any(char::is_control) {
        return Err(invalid("invalid_input", "file_name: 1 to 256 characters without control characters"));
    }
    let SubmitParts { workflow, inputs } = state
        .execute({
            let file_name = file_name.clone();
            let text = request.workflow.clone();
            let given = request.inputs.clone();
            move || prepare(&file_name, &text, &given)
        })
        .await
        .map_err(|error| ApiError::internal("parse workflow", error))??;
    let new = NewRun {
        file_name,
        text: request.workflow,
        workflow: Arc::new(workflow),
        inputs,
        secrets: request.secrets,
        only: request.job,
        any_runner: request.any_runner,
    };
    let now = state.now();
    let view = state.run(move |store| store.submit_run(&new, now)).await?;
    Ok((StatusCode::CREATED, Json(run(&view))))
}

struct SubmitParts {
    workflow: baton_workflow::Workflow,
    inputs: baton_expr::Object,
}

/// Parses and validates the workflow and types the inputs; every problem in one answer.
fn prepare(
    file_name: &str,
    text: &str,
    given: &std::collections::BTreeMap<String, String>,
) -> Result<SubmitParts, ApiError> {
    let workflow = baton_workflow::parse_workflow(file_name, text).map_err(|errors| {
        let mut lines: Vec<String> = errors.iter().take(WORKFLOW_ERRORS_SHOWN).map(ToString::to_string).collect();
        if errors.len() > WORKFLOW_ERRORS_SHOWN {
            lines.push(format!("... and {} more", errors.len() - WORKFLOW_ERRORS_SHOWN));
        }
        invalid("invalid_workflow", lines.join("\n")).with_hint("fix the places named above and submit again")
    })?;
    let inputs = baton_engine::typed_inputs(&workflow, given).map_err(|problems| {
        invalid("invalid_input", problems.join("\n")).with_hint("give inputs as --input NAME=VALUE")
    })?;
    Ok(SubmitParts { workflow, inputs })
}

fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

/// A run with its jobs and their legs.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}", tag = "runs", security(("bearer" = [])), params(("run_id" = i64, Path)),
    responses((status = 200, body = api::Run), (status = 404, body = api::ErrorBody)))]
pub async fn get_run(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiPath(run_id): ApiPath<i64>,
) -> Result<Json<api::Run>, ApiError> {
    let view = state.run(move |store| store.run_view(RunId(run_id))).await?;
    Ok(Json(run(&view)))
}

/// Lists runs, newest first.
#[utoipa::path(get, path = "/api/v1/runs", tag = "runs", security(("bearer" = [])), params(api::RunPageQuery),
    responses((status = 200, body = api::RunList)))]
pub async fn list_runs(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiQuery(page): ApiQuery<api::RunPageQuery>,
) -> Result<Json<api::RunList>, ApiError> {
    let before = RunId(page.before.unwrap_or(i64::MAX));
    let limit = page.limit.unwrap_or(DEFAULT_PAGE).min(baton_store::runs::RUNS_PAGE_MAX);
    let views = state.run(move |store| store.runs(before, limit)).await?;
    Ok(Json(api::RunList { runs: views.iter().map(run).collect() }))
}

/// Cancels a run: running legs are stopped, jobs not started are skipped unless they run on
/// `cancelled()` or `always()`. Cancelling a finished run changes nothing.
#[utoipa::path(post, path = "/api/v1/runs/{run_id}/cancel", tag = "runs", security(("bearer" = [])), params(("run_id" = i64, Path)),
    responses((status = 200, body = api::Run), (status = 404, body = api::ErrorBody)))]
pub async fn cancel_run(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiPath(run_id): ApiPath<i64>,
) -> Result<Json<api::Run>, ApiError> {
    let now = state.now();
    let view = state.run(move |store| store.cancel_run(RunId(run_id), now)).await?;
    Ok(Json(run(&view)))
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Waiting => "waiting",
        Phase::Running => "running",
        Phase::Completed => "completed",
    }
}

/// The API form of a run. Secrets are not part of it.
pub fn run(view: &RunView) -> api::Run {
    let RunView { run, state, jobs } = view;
    api::Run {
        id: run.id.0,
        name: run.name.clone(),
        file_name: run.file_name.clone(),
        status: if run.completed_at.is_some() { "completed" } else { "in_progress" }.to_string(),
        conclusion: run.conclusion.clone(),
        cancel_requested: run.cancel_requested,
        created_at: rfc3339(run.created_at),
        completed_at: run.completed_at.map(rfc3339),
        jobs: run_jobs(state, jobs),
    }
}

fn run_jobs(
    state: &RunState,
    jobs: &std::collections::BTreeMap<baton_core::JobId, baton_store::JobView>,
) -> Vec<api::RunJob> {
    state
        .jobs
        .iter()
        .map(|job| api::RunJob {
            id: job.key.clone(),
            name: job.name.clone(),
            needs: job.needs.clone(),
            status: phase_name(job.phase).to_string(),
            conclusion: job.result.map(|result| result.to_string()),
            outputs: job.outputs.clone(),
            message: job.message.clone(),
            legs: job
                .legs
                .iter()
                .map(|leg| {
                    let baton = leg.job_id.and_then(|id| jobs.get(&baton_core::JobId(id)));
                    let current = baton.and_then(|view| view.attempts.iter().max_by_key(|attempt| attempt.number));
                    let status = match baton.map(|view| view.job.state) {
                        None => phase_name(leg.phase),
                        Some(JobState::Queued) => "queued",
                        Some(JobState::Running) => "running",
                        Some(JobState::Completed) => "completed",
                    };
                    let first_start =
                        baton.and_then(|view| view.attempts.iter().find_map(|attempt| attempt.started_at));
                    api::RunLeg {
                        name: leg.name.clone(),
                        matrix: leg.matrix.clone(),
                        job_id: leg.job_id,
                        attempt: current.map(|attempt| attempt.number.0),
                        status: status.to_string(),
                        conclusion: leg.result.map(|result| result.to_string()),
                        outputs: current.map(|attempt| attempt.outputs.clone()).unwrap_or_default(),
                        summary: current.and_then(|attempt| attempt.summary.clone()),
                        message: leg.message.clone().or_else(|| baton.and_then(|view| view.job.reason.clone())),
                        started_at: first_start.map(rfc3339),
                        completed_at: baton.and_then(|view| view.job.completed_at).map(rfc3339),
                    }
                })
                .collect(),
        })
        .collect()
}
