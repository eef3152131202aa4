//! The API's error responses: every failure, ours or axum's, leaves as
//! `{"error": kind, "message": ...}` with a fitting status. The kinds of
//! [`EngineError`] keep their serde names (`invalid`, `forbidden`,
//! `not-found`, `conflict`, `unavailable`, `bad-gateway`, `internal`); the HTTP layer adds
//! `unauthorized` (401), `method-not-allowed` (405) and `too-large` (413).
//! The shape itself is [`nosplit_httpserve::error`]'s; this module maps
//! [`EngineError`] into it.

use axum::http::StatusCode;

pub use nosplit_httpserve::ApiError;

use crate::types::EngineError;

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        let (status, kind, message) = match e {
            EngineError::Invalid(m) => (StatusCode::BAD_REQUEST, "invalid", m),
            EngineError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "unauthorized", m),
            EngineError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m),
            EngineError::NotFound(m) => (StatusCode::NOT_FOUND, "not-found", m),
            EngineError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m),
            EngineError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
            EngineError::BadGateway(m) => (StatusCode::BAD_GATEWAY, "bad-gateway", m),
            EngineError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", m),
        };
        ApiError::new(status, kind, message)
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
            EngineError::Unauthorized("u".into()),
            EngineError::Forbidden("f".into()),
            EngineError::NotFound("b".into()),
            EngineError::Conflict("c".into()),
            EngineError::Unavailable("d".into()),
            EngineError::BadGateway("g".into()),
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
