//! The APIs' error responses: every failure, the API's own or axum's,
//! leaves as `{"error": kind, "message": ...}` with a fitting status. This
//! module owns that shape and the kinds the HTTP layer adds itself:
//! `invalid` (400), `unauthorized` (401), `not-found` (404, no route),
//! `method-not-allowed` (405), `too-large` (413) and `internal` (500). Each
//! API maps its own domain errors into [`ApiError`] with a `From` impl.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

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

    /// A 400 `invalid`.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid", message)
    }

    /// A 500 `internal`.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The 401 `unauthorized` for a request without a valid token.
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid `Authorization: Bearer <token>` header is required",
        )
    }

    /// An axum extractor's rejection, mapped to our shape: a body over the
    /// limit is 413 `too-large`, anything else about the request is 400.
    pub fn rejection(status: StatusCode, what: &str, text: String) -> ApiError {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(status, "too-large", format!("{what}: {text}"))
        } else if status.is_server_error() {
            ApiError::internal(format!("{what}: {text}"))
        } else {
            ApiError::invalid(format!("{what}: {text}"))
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> ApiError {
        ApiError::invalid(e.0)
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

/// The router fallback: 404 `not-found` naming the method and path.
pub async fn no_route(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        format!("no route {} {}", req.method(), req.uri().path()),
    )
}

/// The router's method-not-allowed fallback: 405 `method-not-allowed`.
pub async fn wrong_method(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// The 401 answer for `req` (logged without the token).
pub fn refuse_unauthorized(req: &Request) -> Response {
    tracing::warn!(method = %req.method(), path = %req.uri().path(), "request without a valid token refused");
    ApiError::unauthorized().into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_map_by_status() {
        let e = ApiError::rejection(StatusCode::PAYLOAD_TOO_LARGE, "body", "big".into());
        assert_eq!((e.status.as_u16(), e.kind), (413, "too-large"));
        assert_eq!(e.message, "body: big");
        let e = ApiError::rejection(StatusCode::UNSUPPORTED_MEDIA_TYPE, "body", "x".into());
        assert_eq!((e.status.as_u16(), e.kind), (400, "invalid"));
        let e = ApiError::rejection(StatusCode::INTERNAL_SERVER_ERROR, "body", "x".into());
        assert_eq!((e.status.as_u16(), e.kind), (500, "internal"));
        let e = ApiError::from(Invalid("id: bad".into()));
        assert_eq!((e.status.as_u16(), e.kind), (400, "invalid"));
        assert_eq!(e.message, "id: bad");
    }
}
