//! The API's error responses: every failure, ours or axum's, leaves as
//! `{"error": kind, "message": ...}` with a fitting status. The kinds of
//! [`EngineError`] keep their serde names (`invalid`, `forbidden`,
//! `not-found`, `conflict`, `unavailable`, `internal`); the HTTP layer adds
//! `unauthorized` (401), `method-not-allowed` (405) and `too-large` (413).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::types::EngineError;
use crate::validate::Invalid;

/// One error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The `error` field.
    pub kind: &'static str,
    /// The `message` field.
    pub message: String,
}

impl ApiError {
    /// Any status and kind.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
        }
    }

    /// A 500 `internal`.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// An axum extractor's rejection, mapped to our shape: a body over the
    /// limit is 413 `too-large`, anything else about the request is 400.
    pub fn rejection(status: StatusCode, what: &str, text: String) -> ApiError {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(status, "too-large", format!("{what}: {text}"))
        } else if status.is_server_error() {
            ApiError::internal(format!("{what}: {text}"))
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                format!("{what}: {text}"),
            )
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        let (status, kind, message) = match e {
            EngineError::Invalid(m) => (StatusCode::BAD_REQUEST, "invalid", m),
            EngineError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m),
            EngineError::NotFound(m) => (StatusCode::NOT_FOUND, "not-found", m),
            EngineError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m),
            EngineError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
            EngineError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", m),
        };
        ApiError::new(status, kind, message)
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid", e.0)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(kind = self.kind, message = %self.message, "request failed");
        }
        let body = serde_json::json!({ "error": self.kind, "message": self.message });
        (self.status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our kinds for EngineError are exactly its serde tags.
    #[test]
    fn kinds_match_engine_error_serde() {
        let all = [
            EngineError::Invalid("a".into()),
            EngineError::Forbidden("f".into()),
            EngineError::NotFound("b".into()),
            EngineError::Conflict("c".into()),
            EngineError::Unavailable("d".into()),
            EngineError::Internal("e".into()),
        ];
        for e in all {
            let ser = serde_json::to_value(&e).unwrap();
            let api = ApiError::from(e);
            assert_eq!(ser["error"], api.kind);
            assert_eq!(ser["message"], api.message.as_str());
        }
    }
}
