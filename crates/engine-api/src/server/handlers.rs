//! The handlers: each checks its input at the edge ([`crate::validate`]),
//! then runs its [`EngineOps`] call on a blocking thread and answers JSON
//! (201 for creations, 204 for deletions). A VM is answered with its
//! disks ([`VmView`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::error::ApiError;
use super::AppState;
use crate::ops::EngineOps;
use crate::types::{EngineError, VmView};
use crate::validate::{self as v, Invalid};
use nosplit_engine_core::model::Vm;

type Body = Result<Bytes, BytesRejection>;
type Param = Result<Path<String>, PathRejection>;
type Out = Result<Response, ApiError>;

/// Runs `f` on a blocking thread and answers its value as JSON with
/// `status`; a panic in it is a 500.
async fn run<T, F>(s: &AppState, status: StatusCode, f: F) -> Out
where
    T: Serialize + Send + 'static,
    F: FnOnce(&dyn EngineOps) -> Result<T, EngineError> + Send + 'static,
{
    let ops = Arc::clone(&s.ops);
    match tokio::task::spawn_blocking(move || f(ops.as_ref())).await {
        Ok(Ok(v)) => Ok((status, Json(v)).into_response()),
        Ok(Err(e)) => Err(ApiError::from(e)),
        Err(e) => Err(ApiError::internal(format!("the operation failed: {e}"))),
    }
}

/// Like [`run`] for a deletion: 204, no body.
async fn gone<F>(s: &AppState, f: F) -> Out
where
    F: FnOnce(&dyn EngineOps) -> Result<(), EngineError> + Send + 'static,
{
    run(s, StatusCode::OK, f).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

const OK: StatusCode = StatusCode::OK;
const CREATED: StatusCode = StatusCode::CREATED;

fn body(b: Body) -> Result<Bytes, ApiError> {
    b.map_err(|r| ApiError::rejection(r.status(), "body", r.body_text()))
}

/// The path parameter, checked by `check`.
fn param(p: Param, check: fn(&str) -> Result<(), Invalid>) -> Result<String, ApiError> {
    let Path(s) = p.map_err(|r| ApiError::rejection(r.status(), "path", r.body_text()))?;
    check(&s)?;
    Ok(s)
}

pub(super) async fn status(State(s): State<AppState>) -> Out {
    run(&s, OK, |o| o.status()).await
}

pub(super) async fn list_domains(State(s): State<AppState>) -> Out {
    run(&s, OK, |o| o.list_domains()).await
}

pub(super) async fn create_domain(State(s): State<AppState>, b: Body) -> Out {
    let d = v::domain(&body(b)?)?;
    run(&s, CREATED, move |o| o.create_domain(d)).await
}

pub(super) async fn get_domain(State(s): State<AppState>, p: Param) -> Out {
    let n = param(p, v::domain_name)?;
    run(&s, OK, move |o| o.get_domain(&n)).await
}

pub(super) async fn delete_domain(State(s): State<AppState>, p: Param, b: Body) -> Out {
    let n = param(p, v::domain_name)?;
    v::no_body(&body(b)?)?;
    gone(&s, move |o| o.delete_domain(&n)).await
}

pub(super) async fn list_hosts(State(s): State<AppState>) -> Out {
    run(&s, OK, |o| o.list_hosts()).await
}

pub(super) async fn add_host(State(s): State<AppState>, b: Body) -> Out {
    let h = v::new_host(&body(b)?)?;
    run(&s, CREATED, move |o| o.add_host(h)).await
}

/// `POST /v1/hosts/{name}/register`: a host's agent registers itself (or
/// refreshes its facts). A caller with the `host` role (no API token) must
/// present that host's own token, checked before anything else is read;
/// an admin may register any host.
pub(super) async fn register(
    State(s): State<AppState>,
    axum::Extension(role): axum::Extension<crate::auth::Role>,
    headers: axum::http::HeaderMap,
    p: Param,
    b: Body,
) -> Out {
    let n = param(p, v::host_name)?;
    if role == crate::auth::Role::Host {
        let token = nosplit_httpserve::bearer(&headers)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        let (ops, name) = (Arc::clone(&s.ops), n.clone());
        let ok = tokio::task::spawn_blocking(move || ops.host_token_matches(&name, &token))
            .await
            .unwrap_or(false);
        if !ok {
            return Err(ApiError::from(EngineError::Unauthorized(format!(
                "not the agent token of host {n}"
            ))));
        }
    }
    let h = v::new_host(&body(b)?)?;
    if h.name != n {
        return Err(ApiError::from(EngineError::Invalid(format!(
            "name: {:?} in the body, {n:?} in the path",
            h.name
        ))));
    }
    run(&s, OK, move |o| o.register_host(h)).await
}

pub(super) async fn get_host(State(s): State<AppState>, p: Param) -> Out {
    let n = param(p, v::host_name)?;
    run(&s, OK, move |o| o.get_host(&n)).await
}

pub(super) async fn delete_host(State(s): State<AppState>, p: Param, b: Body) -> Out {
    let n = param(p, v::host_name)?;
    v::no_body(&body(b)?)?;
    gone(&s, move |o| o.delete_host(&n)).await
}

pub(super) async fn maintenance(State(s): State<AppState>, p: Param, b: Body) -> Out {
    let n = param(p, v::host_name)?;
    let on = v::maintenance(&body(b)?)?;
    run(&s, OK, move |o| o.set_host_maintenance(&n, on)).await
}

/// A VM answer: the record with its disks.
fn with_disks(o: &dyn EngineOps, vm: Vm) -> Result<VmView, EngineError> {
    Ok(VmView {
        disks: o.vm_disks(&vm.id)?,
        vm,
    })
}

pub(super) async fn list_vms(State(s): State<AppState>) -> Out {
    run(&s, OK, |o| {
        o.list_vms()?
            .into_iter()
            .map(|vm| with_disks(o, vm))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
}

pub(super) async fn create_vm(State(s): State<AppState>, b: Body) -> Out {
    let (vm, disks) = v::new_vm_request(&body(b)?)?;
    run(&s, CREATED, move |o| {
        with_disks(o, o.create_vm_with_disks(vm, disks)?)
    })
    .await
}

pub(super) async fn get_vm(State(s): State<AppState>, p: Param) -> Out {
    let id = param(p, v::vm_id)?;
    run(&s, OK, move |o| with_disks(o, o.get_vm(&id)?)).await
}

pub(super) async fn delete_vm(State(s): State<AppState>, p: Param, b: Body) -> Out {
    let id = param(p, v::vm_id)?;
    v::no_body(&body(b)?)?;
    gone(&s, move |o| o.delete_vm(&id)).await
}

pub(super) async fn patch_vm(State(s): State<AppState>, p: Param, b: Body) -> Out {
    let id = param(p, v::vm_id)?;
    let patch = v::vm_patch(&body(b)?)?;
    run(&s, OK, move |o| with_disks(o, o.patch_vm(&id, patch)?)).await
}

pub(super) async fn start_vm(State(s): State<AppState>, p: Param, b: Body) -> Out {
    let id = param(p, v::vm_id)?;
    let host = v::start_vm(&body(b)?)?;
    run(&s, OK, move |o| with_disks(o, o.start_vm(&id, host)?)).await
}

pub(super) async fn stop_vm(State(s): State<AppState>, p: Param, b: Body) -> Out {
    let id = param(p, v::vm_id)?;
    v::no_body(&body(b)?)?;
    run(&s, OK, move |o| with_disks(o, o.stop_vm(&id)?)).await
}

pub(super) async fn get_strategy(State(s): State<AppState>) -> Out {
    run(&s, OK, |o| o.get_strategy()).await
}

pub(super) async fn put_strategy(State(s): State<AppState>, b: Body) -> Out {
    let st = v::strategy(&body(b)?)?;
    run(&s, OK, move |o| o.put_strategy(st)).await
}

pub(super) async fn get_ha(State(s): State<AppState>) -> Out {
    run(&s, OK, |o| o.get_ha()).await
}

pub(super) async fn patch_ha(State(s): State<AppState>, b: Body) -> Out {
    let patch = v::ha_patch(&body(b)?)?;
    run(&s, OK, move |o| o.patch_ha(patch)).await
}

pub(super) async fn tasks(State(s): State<AppState>, RawQuery(q): RawQuery) -> Out {
    let q = v::tasks_query(q.as_deref())?;
    run(&s, OK, move |o| o.tasks(q)).await
}

pub(super) async fn events(State(s): State<AppState>, RawQuery(q): RawQuery) -> Out {
    let q = v::events_query(q.as_deref())?;
    run(&s, OK, move |o| o.events(q)).await
}
