//! Webhook endpoints and their delivery log. Every call takes the admin token. A secret is
//! answered only when it is made (creation, rotation).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use baton_api as api;
use baton_core::{Delivery, Webhook};
use baton_store::webhooks::{NewWebhook, live_secrets};

use super::{ApiJson, ApiPath, ApiQuery};
use crate::auth::Admin;
use crate::clock::rfc3339;
use crate::error::ApiError;
use crate::state::AppState;
use crate::webhooks::{check_url, generate_secret, valid_secret};

const DEFAULT_OVERLAP: Duration = Duration::from_secs(24 * 3600);
const OVERLAP_MAX: Duration = Duration::from_secs(30 * 24 * 3600);

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message)
}

fn info(webhook: &Webhook, now: baton_core::Timestamp) -> api::WebhookInfo {
    api::WebhookInfo {
        id: webhook.id,
        url: webhook.url.clone(),
        events: webhook.events.clone(),
        ordered: webhook.ordered,
        active_secrets: live_secrets(webhook, now).len(),
        created_at: rfc3339(webhook.created_at),
    }
}

fn delivery(delivery: &Delivery) -> api::DeliveryInfo {
    api::DeliveryInfo {
        id: delivery.id,
        webhook_id: delivery.webhook_id,
        message_id: delivery.message_id.clone(),
        event: delivery.event.clone(),
        event_seq: delivery.event_seq.0,
        status: delivery.status.clone(),
        attempts: delivery.attempts,
        response_code: delivery.response_code,
        error: delivery.error.clone(),
        latency_ms: delivery.latency_ms,
        next_attempt_at: (delivery.status == "pending").then(|| rfc3339(delivery.next_attempt_at)),
        created_at: rfc3339(delivery.created_at),
        completed_at: delivery.completed_at.map(rfc3339),
    }
}

/// Adds an endpoint; it receives the events from now on. Answers its secret, once.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", security(("bearer" = [])), request_body = api::CreateWebhookRequest,
    responses((status = 201, body = api::WebhookSecretResponse), (status = 422, body = api::ErrorBody)))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiJson(request): ApiJson<api::CreateWebhookRequest>,
) -> Result<(StatusCode, Json<api::WebhookSecretResponse>), ApiError> {
    check_url(&request.url).map_err(|message| invalid(format!("url: {message}")))?;
    let secret = match request.secret {
        Some(secret) if valid_secret(&secret) => secret,
        Some(_) => {
            return Err(invalid("secret: write whsec_ followed by base64 of 24 to 64 random bytes, or leave it out"));
        }
        None => generate_secret(),
    };
    let new = NewWebhook { url: request.url, events: request.events, secret: secret.clone(), ordered: request.ordered };
    let now = state.now();
    let webhook = state.run(move |store| store.add_webhook(&new, now)).await?;
    state.hub.webhook_added();
    Ok((StatusCode::CREATED, Json(api::WebhookSecretResponse { webhook: info(&webhook, now), secret })))
}

/// Lists endpoints (without secrets).
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, body = api::WebhookList)))]
pub async fn list(State(state): State<Arc<AppState>>, _admin: Admin) -> Result<Json<api::WebhookList>, ApiError> {
    let webhooks = state.run(|store| store.webhooks()).await?;
    let now = state.now();
    Ok(Json(api::WebhookList { webhooks: webhooks.iter().map(|webhook| info(webhook, now)).collect() }))
}

/// Removes an endpoint: nothing more is delivered to it.
#[utoipa::path(delete, path = "/api/v1/webhooks/{webhook_id}", tag = "webhooks", security(("bearer" = [])),
    params(("webhook_id" = i64, Path)), responses((status = 200, body = api::WebhookInfo), (status = 404, body = api::ErrorBody)))]
pub async fn remove(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiPath(webhook_id): ApiPath<i64>,
) -> Result<Json<api::WebhookInfo>, ApiError> {
    let webhook = state.run(move |store| store.remove_webhook(webhook_id)).await?;
    Ok(Json(info(&webhook, state.now())))
}

/// Rotates the signing secret: deliveries carry signatures with the new and the old secret
/// until the overlap ends. Answers the new secret, once.
#[utoipa::path(post, path = "/api/v1/webhooks/{webhook_id}/rotate", tag = "webhooks", security(("bearer" = [])),
    params(("webhook_id" = i64, Path)), request_body = api::RotateWebhookRequest,
    responses((status = 200, body = api::WebhookSecretResponse), (status = 404, body = api::ErrorBody)))]
pub async fn rotate(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiPath(webhook_id): ApiPath<i64>,
    ApiJson(request): ApiJson<api::RotateWebhookRequest>,
) -> Result<Json<api::WebhookSecretResponse>, ApiError> {
    let overlap = request.overlap_secs.map(Duration::from_secs).unwrap_or(DEFAULT_OVERLAP);
    if overlap > OVERLAP_MAX {
        return Err(invalid("overlap_secs: at most 30 days"));
    }
    let secret = generate_secret();
    let now = state.now();
    let new = secret.clone();
    let overlap_ms = u64::try_from(overlap.as_millis()).unwrap_or(u64::MAX);
    let webhook = state.run(move |store| store.rotate_webhook_secret(webhook_id, &new, overlap_ms, now)).await?;
    Ok(Json(api::WebhookSecretResponse { webhook: info(&webhook, now), secret }))
}

/// An endpoint's delivery log: status, response code, latency and attempts of each message.
#[utoipa::path(get, path = "/api/v1/webhooks/{webhook_id}/deliveries", tag = "webhooks", security(("bearer" = [])),
    params(("webhook_id" = i64, Path), api::PageQuery),
    responses((status = 200, body = api::DeliveryList), (status = 404, body = api::ErrorBody)))]
pub async fn deliveries(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiPath(webhook_id): ApiPath<i64>,
    ApiQuery(page): ApiQuery<api::PageQuery>,
) -> Result<Json<api::DeliveryList>, ApiError> {
    let after = page.after.unwrap_or(0);
    let limit = page.limit.unwrap_or(100).min(baton_core::limits::PAGE_SIZE_MAX);
    let list = state.run(move |store| store.deliveries(webhook_id, after, limit)).await?;
    Ok(Json(api::DeliveryList { deliveries: list.iter().map(delivery).collect() }))
}

/// Delivers a message again, with the same `webhook-id` (receivers that already processed it
/// can recognise it).
#[utoipa::path(post, path = "/api/v1/webhook-deliveries/{delivery_id}/redeliver", tag = "webhooks", security(("bearer" = [])),
    params(("delivery_id" = i64, Path)), responses((status = 201, body = api::DeliveryInfo), (status = 404, body = api::ErrorBody)))]
pub async fn redeliver(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiPath(delivery_id): ApiPath<i64>,
) -> Result<(StatusCode, Json<api::DeliveryInfo>), ApiError> {
    let now = state.now();
    let fresh = state.run(move |store| store.redeliver(delivery_id, now)).await?;
    state.hub.wake_events();
    Ok((StatusCode::CREATED, Json(delivery(&fresh))))
}
