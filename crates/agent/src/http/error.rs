//! The API's error responses: every failure, ours or axum's, leaves as
//! `{"error": kind, "message": ...}` with a fitting status. The kinds of
//! [`AgentError`] keep their serde names (`invalid`, `not-found`,
//! `conflict`, `unavailable`, `internal`); the HTTP layer adds
//! `unauthorized` (401), `too-large` (413) and `method-not-allowed` (405).
//! The shape itself is [`nosplit_httpserve::error`]'s; this module maps
//! [`AgentError`] into it.

use axum::http::StatusCode;

pub use nosplit_httpserve::ApiError;

use crate::model::AgentError;

impl From<AgentError> for ApiError {
    fn from(e: AgentError) -> ApiError {
        let (status, kind, message) = match e {
            AgentError::Invalid(m) => (StatusCode::BAD_REQUEST, "invalid", m),
            AgentError::NotFound(m) => (StatusCode::NOT_FOUND, "not-found", m),
            AgentError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m),
            AgentError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
            AgentError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", m),
        };
        ApiError::new(status, kind, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our kinds for AgentError are exactly its serde tags.
    #[test]
    fn kinds_match_agent_error_serde() {
        let all = [
            AgentError::Invalid("a".into()),
            AgentError::NotFound("b".into()),
            AgentError::Conflict("c".into()),
            AgentError::Unavailable("d".into()),
            AgentError::Internal("e".into()),
        ];
        for e in all {
            let ser = serde_json::to_value(&e).unwrap();
            let api = ApiError::from(e);
            assert_eq!(ser["error"], api.kind);
            assert_eq!(ser["message"], api.message.as_str());
        }
    }
}
