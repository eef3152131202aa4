//! The agent's HTTP API (axum on tokio), serving an [`AgentOps`].
//!
//! - Every request needs `Authorization: Bearer <token>`, compared in
//!   constant time ([`Token::matches`]); otherwise 401 `unauthorized`. The
//!   token never appears in logs, errors or responses.
//! - Bodies are JSON, at most [`BODY_LIMIT`] bytes (413 `too-large`
//!   beyond). Input is checked at the edge ([`validate`]); every error is
//!   `{"error": kind, "message": ...}` ([`error`]).
//! - The routes are in [`routes`] and in `crates/agent/openapi.yaml`.
//! - [`serve`] runs in the caller's tokio runtime; [`spawn_server`] brings
//!   its own on a thread, for a synchronous `main`.

pub mod error;
mod routes;
pub mod validate;

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use nosplit_httpserve::error::refuse_unauthorized;
use nosplit_httpserve::server::with_fallbacks;

pub use error::ApiError;
pub use nosplit_httpserve::token::TokenFileError;
pub use nosplit_httpserve::{
    ServeError as HttpError, ServerHandle, Token, TokenError, BODY_LIMIT, MAX_TOKEN_LEN,
    MIN_TOKEN_LEN, SHUTDOWN_GRACE,
};
pub use routes::routes;

use crate::model::AgentOps;

/// What every handler sees.
#[derive(Clone)]
struct AppState {
    ops: Arc<dyn AgentOps>,
    token: Arc<Token>,
}

/// The whole API as an axum router (useful for in-process tests).
pub fn router(token: Token, ops: Arc<dyn AgentOps>) -> Router {
    let state = AppState {
        ops,
        token: Arc::new(token),
    };
    with_fallbacks(routes::add_all(Router::new()))
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

async fn auth(State(s): State<AppState>, req: Request, next: Next) -> Response {
    match nosplit_httpserve::bearer(req.headers()) {
        Some(t) if s.token.matches(t) => next.run(req).await,
        _ => refuse_unauthorized(&req),
    }
}

/// Serves the API on `listener` until `shutdown` completes, then lets
/// requests in flight finish for up to [`SHUTDOWN_GRACE`]. Must run inside
/// a tokio runtime; connections still open after the grace period end when
/// that runtime does.
pub async fn serve(
    listener: TcpListener,
    token: Token,
    ops: Arc<dyn AgentOps>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    nosplit_httpserve::serve(listener, router(token, ops), shutdown).await
}

/// Binds `addr` (port 0 picks one) and serves the API on a new thread.
pub fn spawn_server(
    addr: SocketAddr,
    token: Token,
    ops: Arc<dyn AgentOps>,
) -> Result<ServerHandle, HttpError> {
    nosplit_httpserve::spawn_server(addr, "agent-http", router(token, ops))
}
