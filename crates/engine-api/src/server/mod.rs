//! The engine's HTTP API (axum 0.8 on tokio), serving an [`EngineOps`].
//!
//! - Every request needs `Authorization: Bearer <token>`; the token's role
//!   is looked up in constant time ([`Tokens::role_of`]); no match is 401
//!   `unauthorized`, a role below the route's is 403 `forbidden`. Tokens
//!   never appear in logs, errors or responses.
//! - Bodies are JSON, at most [`BODY_LIMIT`] bytes (413 `too-large`
//!   beyond), checked at the edge ([`crate::validate`]); every error is
//!   `{"error": kind, "message": ...}` ([`error`]).
//! - The routes are in [`routes`] and in `crates/engine-api/openapi.yaml`.
//! - [`serve`] runs in the caller's tokio runtime; [`spawn_server`] brings
//!   its own on a thread, for a synchronous `main`.

pub mod error;
mod handlers;
mod routes;

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
pub use nosplit_httpserve::{ServeError, ServerHandle, BODY_LIMIT, SHUTDOWN_GRACE};
pub use routes::routes;

use crate::auth::{Role, Tokens};
use crate::ops::EngineOps;

/// What every handler sees.
#[derive(Clone)]
struct AppState {
    ops: Arc<dyn EngineOps>,
    tokens: Arc<Tokens>,
}

/// The whole API as an axum router (useful for in-process tests).
pub fn router(tokens: Tokens, ops: Arc<dyn EngineOps>) -> Router {
    let state = AppState {
        ops,
        tokens: Arc::new(tokens),
    };
    with_fallbacks(routes::add_all(Router::new()))
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Finds the caller's role and hands it to the routes (as a request
/// extension), or answers 401.
async fn auth(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let bearer = nosplit_httpserve::bearer(req.headers());
    let role = match bearer.and_then(|t| s.tokens.role_of(t)) {
        Some(role) => Some(role),
        // Not an API token: maybe a host's own, on the route that takes it
        // (its handler checks it against that host's token).
        None if bearer.is_some() && routes::is_registration(&req) => Some(Role::Host),
        None => None,
    };
    match role {
        Some(role) => {
            req.extensions_mut().insert(role);
            next.run(req).await
        }
        None => refuse_unauthorized(&req),
    }
}

/// Serves the API on `listener` until `shutdown` completes, then lets
/// requests in flight finish for up to [`SHUTDOWN_GRACE`]. Must run inside
/// a tokio runtime; connections still open after the grace period end when
/// that runtime does.
pub async fn serve(
    listener: TcpListener,
    tokens: Tokens,
    ops: Arc<dyn EngineOps>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    nosplit_httpserve::serve(listener, router(tokens, ops), shutdown).await
}

/// Binds `addr` (port 0 picks one) and serves the API on a new thread;
/// dropping the handle shuts it down.
pub fn spawn_server(
    addr: SocketAddr,
    tokens: Tokens,
    ops: Arc<dyn EngineOps>,
) -> Result<ServerHandle, ServeError> {
    nosplit_httpserve::spawn_server(addr, "engine-api", router(tokens, ops))
}
