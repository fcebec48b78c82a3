//! The one error type of the HTTP API.
//!
//! Every error is JSON `{code, message, hint}` with a stable machine-readable `code`. A 5xx logs
//! its details and tells the client only "internal error".

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use baton_api::ErrorBody;
use baton_store::Error as StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub hint: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), hint: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> ApiError {
        self.hint = Some(hint.into());
        self
    }

    pub fn unauthorized(message: impl Into<String>, hint: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).with_hint(hint)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn internal(context: &str, error: impl std::fmt::Display) -> ApiError {
        tracing::error!(context, %error, "internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
    }

    pub fn is_stale_lease(&self) -> bool {
        self.code == "stale_lease"
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::NotFound { .. } => ApiError::new(StatusCode::NOT_FOUND, "not_found", error.to_string()),
            StoreError::Unauthorized(message) => {
                let hint = if message.contains("JIT") {
                    "create a new JIT config with `POST /api/v1/jit-configs` (each works once)"
                } else {
                    "create a new registration token with `baton token create`, then register again"
                };
                ApiError::unauthorized(message, hint)
            }
            StoreError::Forbidden(message) => ApiError::forbidden(message),
            StoreError::StaleLease { .. } => ApiError::new(StatusCode::CONFLICT, "stale_lease", error.to_string())
                .with_hint(
                    "this runner no longer holds the lease: stop the attempt's worker and report nothing more for it",
                ),
            StoreError::InvalidTransition(transition) => {
                ApiError::new(StatusCode::CONFLICT, "invalid_transition", transition.to_string())
            }
            StoreError::Conflict { code, message, hint } => {
                ApiError { status: StatusCode::CONFLICT, code, message, hint }
            }
            StoreError::Invalid { field, message } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", format!("{field}: {message}"))
            }
            StoreError::Store(error) => ApiError::internal("store", error),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { code: self.code.to_string(), message: self.message, hint: self.hint };
        (self.status, Json(body)).into_response()
    }
}
