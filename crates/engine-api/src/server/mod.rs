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

use std::future::{Future, IntoFuture};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;

pub use error::ApiError;
pub use routes::routes;

use crate::auth::Tokens;
use crate::ops::EngineOps;

/// Largest request body, bytes.
pub const BODY_LIMIT: usize = 64 * 1024;
/// How long [`serve`] lets requests in flight finish after shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Binding the listen address failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Any other I/O failure (runtime, listener, accept loop).
    #[error("engine API server: {0}")]
    Io(#[from] std::io::Error),
    /// The server thread panicked.
    #[error("the engine API server thread panicked")]
    Panicked,
}

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
    routes::add_all(Router::new())
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Finds the caller's role and hands it to the routes (as a request
/// extension), or answers 401.
async fn auth(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let role = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .and_then(|t| s.tokens.role_of(t));
    match role {
        Some(role) => {
            req.extensions_mut().insert(role);
            next.run(req).await
        }
        None => {
            tracing::warn!(method = %req.method(), path = %req.uri().path(), "request without a valid token refused");
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid `Authorization: Bearer <token>` header is required",
            )
            .into_response()
        }
    }
}

async fn no_route(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        format!("no route {} {}", req.method(), req.uri().path()),
    )
}

async fn wrong_method(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
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
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let (fired_tx, fired_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, router(tokens, ops))
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = fired_tx.send(());
        })
        .into_future();
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => return r.map_err(ServeError::Io),
        _ = fired_rx => {}
    }
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(r) => r.map_err(ServeError::Io),
        Err(_) => Ok(()),
    }
}

/// A server running on its own thread and tokio runtime; dropping it
/// shuts it down.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), ServeError>>>,
}

/// Binds `addr` (port 0 picks one) and serves the API on a new thread.
pub fn spawn_server(
    addr: SocketAddr,
    tokens: Tokens,
    ops: Arc<dyn EngineOps>,
) -> Result<ServerHandle, ServeError> {
    let listener = TcpListener::bind(addr).map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("engine-api")
        .enable_all()
        .build()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("engine-api".into())
        .spawn(move || {
            let r = rt.block_on(serve(listener, tokens, ops, async move {
                let _ = stopped.await;
            }));
            rt.shutdown_timeout(Duration::from_millis(200));
            r
        })?;
    Ok(ServerHandle {
        addr: local,
        stop: Some(stop),
        thread: Some(thread),
    })
}

impl ServerHandle {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets requests in flight finish (up to
    /// [`SHUTDOWN_GRACE`]) and waits for the thread.
    pub fn shutdown(mut self) -> Result<(), ServeError> {
        self.stop_and_join()
    }

    /// Blocks until the server ends on its own (an accept-loop failure).
    pub fn wait(mut self) -> Result<(), ServeError> {
        self.wait_inner()
    }

    fn stop_and_join(&mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.wait_inner()
    }

    fn wait_inner(&mut self) -> Result<(), ServeError> {
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| ServeError::Panicked)?,
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Err(e) = self.stop_and_join() {
            tracing::warn!("engine API server ended with an error: {e}");
        }
    }
}
