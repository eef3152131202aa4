//! The route table: method, path, handler and the least role allowed.
//! The router is built from [`TABLE`], the one list of routes, so
//! [`routes`] (checked against `openapi.yaml`, roles included) cannot
//! drift from what is served.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put, MethodRouter};

use super::error::ApiError;
use super::handlers as h;
use super::AppState;
use crate::auth::Role;

/// What a route does.
#[derive(Debug, Clone, Copy)]
enum Op {
    Status,
    ListDomains,
    CreateDomain,
    GetDomain,
    DeleteDomain,
    ListHosts,
    AddHost,
    GetHost,
    DeleteHost,
    Maintenance,
    ListVms,
    CreateVm,
    GetVm,
    DeleteVm,
    PatchVm,
    StartVm,
    StopVm,
    GetStrategy,
    PutStrategy,
    GetHa,
    PatchHa,
    Tasks,
    Events,
    Register,
}

use Role::{Admin, Host, User};

/// Whether `req` is a registration (`POST /v1/hosts/{name}/register`,
/// the one route a host's own token may call).
pub(super) fn is_registration(req: &Request) -> bool {
    let name = req
        .uri()
        .path()
        .strip_prefix("/v1/hosts/")
        .and_then(|r| r.strip_suffix("/register"));
    req.method() == axum::http::Method::POST && name.is_some_and(|n| !n.contains('/'))
}

/// Every route: method, path (axum 0.8 / OpenAPI `{param}` syntax), op,
/// and the least role that may call it.
const TABLE: &[(&str, &str, Op, Role)] = &[
    ("GET", "/v1/status", Op::Status, User),
    ("GET", "/v1/domains", Op::ListDomains, Admin),
    ("POST", "/v1/domains", Op::CreateDomain, Admin),
    ("GET", "/v1/domains/{name}", Op::GetDomain, Admin),
    ("DELETE", "/v1/domains/{name}", Op::DeleteDomain, Admin),
    ("GET", "/v1/hosts", Op::ListHosts, Admin),
    ("POST", "/v1/hosts", Op::AddHost, Admin),
    ("GET", "/v1/hosts/{name}", Op::GetHost, Admin),
    ("DELETE", "/v1/hosts/{name}", Op::DeleteHost, Admin),
    (
        "PUT",
        "/v1/hosts/{name}/maintenance",
        Op::Maintenance,
        Admin,
    ),
    ("GET", "/v1/vms", Op::ListVms, User),
    ("POST", "/v1/vms", Op::CreateVm, User),
    ("GET", "/v1/vms/{id}", Op::GetVm, User),
    ("DELETE", "/v1/vms/{id}", Op::DeleteVm, User),
    ("PATCH", "/v1/vms/{id}", Op::PatchVm, User),
    ("POST", "/v1/vms/{id}/start", Op::StartVm, User),
    ("POST", "/v1/vms/{id}/stop", Op::StopVm, User),
    ("GET", "/v1/strategy", Op::GetStrategy, Admin),
    ("PUT", "/v1/strategy", Op::PutStrategy, Admin),
    ("GET", "/v1/ha", Op::GetHa, Admin),
    ("PATCH", "/v1/ha", Op::PatchHa, Admin),
    ("GET", "/v1/tasks", Op::Tasks, User),
    ("GET", "/v1/events", Op::Events, User),
    ("POST", "/v1/hosts/{name}/register", Op::Register, Host),
];

/// Every route the server serves, as `(method, path, least role)`.
pub fn routes() -> impl Iterator<Item = (&'static str, &'static str, Role)> {
    TABLE.iter().map(|&(m, p, _, r)| (m, p, r))
}

/// The routes of the table, each behind its role check, for [`super::router`].
pub(super) fn add_all(mut router: axum::Router<AppState>) -> axum::Router<AppState> {
    for &(_, path, op, needed) in TABLE {
        let guarded =
            method_router(op).route_layer(middleware::from_fn(move |req: Request, next: Next| {
                require(needed, req, next)
            }));
        router = router.route(path, guarded);
    }
    router
}

/// Refuses (403) a caller whose role (set by the auth layer) is below `needed`.
async fn require(needed: Role, req: Request, next: Next) -> Response {
    match req.extensions().get::<Role>().copied() {
        Some(role) if role.allows(needed) => next.run(req).await,
        role => {
            let role = role.map_or("none", Role::as_str);
            tracing::warn!(role, method = %req.method(), path = %req.uri().path(), "request refused: role too low");
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "{} {} needs the {needed} role; this token has the {role} role",
                    req.method(),
                    req.uri().path()
                ),
            )
            .into_response()
        }
    }
}

fn method_router(op: Op) -> MethodRouter<AppState> {
    match op {
        Op::Status => get(h::status),
        Op::ListDomains => get(h::list_domains),
        Op::CreateDomain => post(h::create_domain),
        Op::GetDomain => get(h::get_domain),
        Op::DeleteDomain => delete(h::delete_domain),
        Op::ListHosts => get(h::list_hosts),
        Op::AddHost => post(h::add_host),
        Op::GetHost => get(h::get_host),
        Op::DeleteHost => delete(h::delete_host),
        Op::Maintenance => put(h::maintenance),
        Op::ListVms => get(h::list_vms),
        Op::CreateVm => post(h::create_vm),
        Op::GetVm => get(h::get_vm),
        Op::DeleteVm => delete(h::delete_vm),
        Op::PatchVm => patch(h::patch_vm),
        Op::StartVm => post(h::start_vm),
        Op::StopVm => post(h::stop_vm),
        Op::GetStrategy => get(h::get_strategy),
        Op::PutStrategy => put(h::put_strategy),
        Op::GetHa => get(h::get_ha),
        Op::PatchHa => patch(h::patch_ha),
        Op::Tasks => get(h::tasks),
        Op::Events => get(h::events),
        Op::Register => post(h::register),
    }
}
