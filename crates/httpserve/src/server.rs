//! Running an API's axum [`Router`]: [`serve`] in the caller's tokio
//! runtime until a shutdown future completes, then a grace period for
//! requests in flight; [`spawn_server`] on a thread with its own runtime,
//! for a synchronous `main`, stopped through its [`ServerHandle`].

use std::future::{Future, IntoFuture};
use std::net::{SocketAddr, TcpListener};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;

use crate::error::{no_route, wrong_method};

/// Largest request body, bytes (for `DefaultBodyLimit`).
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
    #[error("HTTP server: {0}")]
    Io(#[from] std::io::Error),
    /// The server thread panicked.
    #[error("the HTTP server thread panicked")]
    Panicked,
}

/// Adds the JSON 404 and 405 answers ([`crate::error`]) to a route table.
pub fn with_fallbacks<S: Clone + Send + Sync + 'static>(routes: Router<S>) -> Router<S> {
    routes
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
}

/// Serves `router` on `listener` until `shutdown` completes, then lets
/// requests in flight finish for up to [`SHUTDOWN_GRACE`]. Must run inside
/// a tokio runtime; connections still open after the grace period end when
/// that runtime does.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let (fired_tx, fired_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, router)
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

/// Binds `addr` (port 0 picks one) and serves `router` on a new thread
/// (and runtime threads) called `name`.
pub fn spawn_server(
    addr: SocketAddr,
    name: &str,
    router: Router,
) -> Result<ServerHandle, ServeError> {
    let listener = TcpListener::bind(addr).map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let r = rt.block_on(serve(listener, router, async move {
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
            tracing::warn!("HTTP server ended with an error: {e}");
        }
    }
}
