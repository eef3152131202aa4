//! The route table and its handlers. Each handler checks its input at the
//! edge ([`super::validate`]), then runs the [`AgentOps`] call on a blocking
//! thread. The router is built from [`TABLE`], the one list of routes, so
//! [`routes`] (checked against `openapi.yaml`) cannot drift from it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Json;

use super::error::ApiError;
use super::validate;
use super::AppState;
use crate::model::{AgentError, AgentOps};

/// What a route does.
#[derive(Debug, Clone, Copy)]
enum Op {
    Host,
    ListVms,
    StartVm,
    GetVm,
    Stop,
    Kill,
    Pause,
    Resume,
    Leases,
    Events,
}

/// Every route: method, path (axum 0.8 / OpenAPI `{param}` syntax), op.
const TABLE: &[(&str, &str, Op)] = &[
    ("GET", "/v1/host", Op::Host),
    ("GET", "/v1/vms", Op::ListVms),
    ("POST", "/v1/vms", Op::StartVm),
    ("GET", "/v1/vms/{id}", Op::GetVm),
    ("POST", "/v1/vms/{id}/stop", Op::Stop),
    ("POST", "/v1/vms/{id}/kill", Op::Kill),
    ("POST", "/v1/vms/{id}/pause", Op::Pause),
    ("POST", "/v1/vms/{id}/resume", Op::Resume),
    ("GET", "/v1/leases", Op::Leases),
    ("GET", "/v1/events", Op::Events),
];

/// Every route the server serves, as `(method, path)`.
pub fn routes() -> impl Iterator<Item = (&'static str, &'static str)> {
    TABLE.iter().map(|&(m, p, _)| (m, p))
}

/// The routes of the table, for [`super::router`].
pub(super) fn add_all(mut router: axum::Router<AppState>) -> axum::Router<AppState> {
    for &(_, path, op) in TABLE {
        router = router.route(path, method_router(op));
    }
    router
}

fn method_router(op: Op) -> MethodRouter<AppState> {
    match op {
        Op::Host => get(host),
        Op::ListVms => get(list_vms),
        Op::StartVm => post(start_vm),
        Op::GetVm => get(get_vm),
        Op::Stop => post(stop_vm),
        Op::Kill => post(|s, id, b| vm_action(s, id, b, |ops, id| ops.kill_vm(id))),
        Op::Pause => post(|s, id, b| vm_action(s, id, b, |ops, id| ops.pause_vm(id))),
        Op::Resume => post(|s, id, b| vm_action(s, id, b, |ops, id| ops.resume_vm(id))),
        Op::Leases => get(leases),
        Op::Events => get(events),
    }
}

type Body = Result<Bytes, BytesRejection>;
type Id = Result<Path<String>, PathRejection>;

/// Runs `f` on a blocking thread; a panic in it is a 500.
async fn blocking<T, F>(state: &AppState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&dyn AgentOps) -> Result<T, AgentError> + Send + 'static,
{
    let ops = Arc::clone(&state.ops);
    match tokio::task::spawn_blocking(move || f(ops.as_ref())).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::internal(format!("the operation failed: {e}"))),
    }
}

fn body(b: Body) -> Result<Bytes, ApiError> {
    b.map_err(|r| ApiError::rejection(r.status(), "body", r.body_text()))
}

fn id(p: Id) -> Result<String, ApiError> {
    let Path(id) = p.map_err(|r| ApiError::rejection(r.status(), "path", r.body_text()))?;
    validate::vm_id(&id)?;
    Ok(id)
}

async fn host(State(s): State<AppState>) -> Result<Response, ApiError> {
    let h = blocking(&s, |ops| Ok(ops.host())).await?;
    Ok(Json(h).into_response())
}

async fn list_vms(State(s): State<AppState>) -> Result<Response, ApiError> {
    let v = blocking(&s, |ops| Ok(ops.list_vms())).await?;
    Ok(Json(v).into_response())
}

async fn start_vm(State(s): State<AppState>, b: Body) -> Result<Response, ApiError> {
    let req = validate::start_vm(&body(b)?)?;
    let v = blocking(&s, move |ops| ops.start_vm(req)).await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

async fn get_vm(State(s): State<AppState>, p: Id) -> Result<Response, ApiError> {
    let id = id(p)?;
    let v = blocking(&s, move |ops| ops.get_vm(&id)).await?;
    Ok(Json(v).into_response())
}

async fn stop_vm(State(s): State<AppState>, p: Id, b: Body) -> Result<Response, ApiError> {
    let id = id(p)?;
    let timeout: Duration = validate::stop_timeout(&body(b)?)?;
    let v = blocking(&s, move |ops| ops.stop_vm(&id, timeout)).await?;
    Ok(Json(v).into_response())
}

async fn vm_action<F>(State(s): State<AppState>, p: Id, b: Body, f: F) -> Result<Response, ApiError>
where
    F: FnOnce(&dyn AgentOps, &str) -> Result<crate::model::VmInfo, AgentError> + Send + 'static,
{
    let id = id(p)?;
    validate::no_body(&body(b)?)?;
    let v = blocking(&s, move |ops| f(ops, &id)).await?;
    Ok(Json(v).into_response())
}

async fn leases(State(s): State<AppState>) -> Result<Response, ApiError> {
    let v = blocking(&s, |ops| ops.leases()).await?;
    Ok(Json(v).into_response())
}

async fn events(State(s): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let (after, wait) = validate::events_query(q.as_deref())?;
    let v = blocking(&s, move |ops| Ok(ops.events_since(after, wait))).await?;
    Ok(Json(v).into_response())
}
