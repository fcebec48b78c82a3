//! Health, metrics.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use baton_api as api;

use crate::error::ApiError;
use crate::state::AppState;

/// Healthy when the store answers a read.
#[utoipa::path(get, path = "/healthz", tag = "meta", responses((status = 200, body = api::Health), (status = 500, body = api::ErrorBody)))]
pub async fn health(State(state): State<Arc<AppState>>) -> Result<Json<api::Health>, ApiError> {
    state.run(|store| store.last_event_seq()).await?;
    Ok(Json(api::Health { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into() }))
}

/// Prometheus text exposition.
pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    match state.run(|store| store.fleet_gauges()).await {
        Ok(gauges) => state.metrics.set_fleet(&gauges.queue, &gauges.runners),
        Err(error) => tracing::warn!(error = %error.message, "reading the fleet gauges failed"),
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.render(),
    )
}
