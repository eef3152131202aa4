#![allow(clippy::unwrap_used)]
//! `openapi.yaml` tested against the server: the document (parsed as
//! YAML) lists exactly the served routes with their roles, and the real
//! engine (`nosplit_engine::Engine` on an in-memory store, its API over
//! TCP, a stand-in agent on 127.0.0.1) answers every documented operation
//! with a documented status and a body that validates against the
//! documented schema. The checker itself is shown to reject wrong answers.

mod real;

use nosplit_engine_api::server::routes;
use nosplit_httpserve::openapi::{Operation, Spec};
use serde_json::{json, Value};

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");

#[test]
fn openapi_lists_exactly_the_served_routes_and_roles() {
    let documented: Vec<Operation> = Spec::load(DOC).unwrap().operations().unwrap();
    let mut served: Vec<Operation> = routes()
        .map(|(m, p, r)| Operation {
            method: m.to_string(),
            path: p.to_string(),
            role: Some(r.to_string()),
        })
        .collect();
    served.sort();
    assert_eq!(documented, served);
}

/// One request of the walk: method, template, concrete path (with the
/// query), token (None: no Authorization), body, the status it must get.
struct Step {
    method: &'static str,
    template: &'static str,
    path: String,
    token: Option<&'static str>,
    body: String,
    status: u16,
}

fn step(method: &'static str, template: &'static str, path: &str, body: &str, status: u16) -> Step {
    Step {
        method,
        template,
        path: path.to_string(),
        token: Some(real::ADMIN),
        body: body.to_string(),
        status,
    }
}

fn as_user(mut s: Step) -> Step {
    s.token = Some(real::USER);
    s
}

fn as_agent(mut s: Step) -> Step {
    s.token = Some(real::AGENT);
    s
}

fn anonymous(mut s: Step) -> Step {
    s.token = None;
    s
}

/// The walk through every operation, on a fresh engine: create, read,
/// change, start (through the stand-in agent), stop, delete; errors on the
/// way (400, 401, 403, 404, 409, 413). Host h1's agent also registers
/// itself with its own token (none is refused).
fn walk(r: &real::Real) -> Vec<Step> {
    let dom = json!({"name": "d1", "path": r.shared, "host_path": r.shared, "io_timeout_ms": 1000});
    let host = json!({"name": "h1", "host_id": 1, "agent": r.agent.to_string(),
        "planes": [["mgmt", "127.0.0.1"]], "cpus": 4, "memory_mib": 4096});
    let vm = r#"{"id":"v1","kind":"process","vcpus":1,"memory_mib":64,"domain":"d1","ha":true,"priority":50,
        "disks":[{"name":"boot","size_mib":2},{"name":"data","size_mib":1}]}"#;
    let strategy =
        serde_json::to_string(&nosplit_engine_core::model::Strategy::default_table()).unwrap();
    let big = format!(r#"{{"id":"{}"}}"#, "x".repeat(70 * 1024));
    vec![
        step("GET", "/v1/status", "/v1/status", "", 200),
        anonymous(step("GET", "/v1/status", "/v1/status", "", 401)),
        step("POST", "/v1/domains", "/v1/domains", &dom.to_string(), 201),
        step("POST", "/v1/domains", "/v1/domains", r#"{"name":"D"}"#, 400),
        step("GET", "/v1/domains", "/v1/domains", "", 200),
        as_user(step("GET", "/v1/domains", "/v1/domains", "", 403)),
        step("GET", "/v1/domains/{name}", "/v1/domains/d1", "", 200),
        step("GET", "/v1/domains/{name}", "/v1/domains/nope", "", 404),
        step("POST", "/v1/hosts", "/v1/hosts", &host.to_string(), 201),
        step("POST", "/v1/hosts", "/v1/hosts", &host.to_string(), 409),
        step("GET", "/v1/hosts", "/v1/hosts", "", 200),
        step("GET", "/v1/hosts/{name}", "/v1/hosts/h1", "", 200),
        as_agent(step(
            "POST",
            "/v1/hosts/{name}/register",
            "/v1/hosts/h1/register",
            &host.to_string(),
            200,
        )),
        anonymous(step(
            "POST",
            "/v1/hosts/{name}/register",
            "/v1/hosts/h1/register",
            &host.to_string(),
            401,
        )),
        step(
            "PUT",
            "/v1/hosts/{name}/maintenance",
            "/v1/hosts/h1/maintenance",
            r#"{"maintenance":true}"#,
            200,
        ),
        step(
            "PUT",
            "/v1/hosts/{name}/maintenance",
            "/v1/hosts/h1/maintenance",
            r#"{"maintenance":false}"#,
            200,
        ),
        as_user(step("POST", "/v1/vms", "/v1/vms", vm, 201)),
        as_user(step("POST", "/v1/vms", "/v1/vms", vm, 409)),
        as_user(step("POST", "/v1/vms", "/v1/vms", &big, 413)),
        as_user(step("GET", "/v1/vms", "/v1/vms", "", 200)),
        as_user(step("GET", "/v1/vms/{id}", "/v1/vms/v1", "", 200)),
        as_user(step("GET", "/v1/vms/{id}", "/v1/vms/nope", "", 404)),
        as_user(step(
            "PATCH",
            "/v1/vms/{id}",
            "/v1/vms/v1",
            r#"{"priority":60}"#,
            200,
        )),
        as_user(step(
            "POST",
            "/v1/vms/{id}/start",
            "/v1/vms/v1/start",
            r#"{"host":"h1"}"#,
            200,
        )),
        as_user(step("DELETE", "/v1/vms/{id}", "/v1/vms/v1", "", 409)),
        step("DELETE", "/v1/domains/{name}", "/v1/domains/d1", "", 409),
        as_user(step(
            "POST",
            "/v1/vms/{id}/stop",
            "/v1/vms/v1/stop",
            "",
            200,
        )),
        step("GET", "/v1/strategy", "/v1/strategy", "", 200),
        step("PUT", "/v1/strategy", "/v1/strategy", &strategy, 200),
        step("GET", "/v1/ha", "/v1/ha", "", 200),
        step("PATCH", "/v1/ha", "/v1/ha", r#"{"global_rate":50}"#, 200),
        step("PATCH", "/v1/ha", "/v1/ha", r#"{"defense_pct":90}"#, 400),
        as_user(step("GET", "/v1/tasks", "/v1/tasks?limit=10", "", 200)),
        as_user(step(
            "GET",
            "/v1/events",
            "/v1/events?after=0&wait_ms=5000",
            "",
            200,
        )),
        as_user(step("GET", "/v1/events", "/v1/events?wait_ms=-1", "", 400)),
        as_user(step("DELETE", "/v1/vms/{id}", "/v1/vms/v1", "", 204)),
        step("DELETE", "/v1/hosts/{name}", "/v1/hosts/h1", "", 204),
        step("DELETE", "/v1/domains/{name}", "/v1/domains/d1", "", 204),
        step("GET", "/v1/domains", "/v1/domains", "", 200),
    ]
}

#[test]
fn every_documented_operation_answers_as_documented_on_the_real_engine() {
    let spec = Spec::load(DOC).unwrap();
    let r = real::Real::start();
    let mut covered = std::collections::BTreeSet::new();
    let mut non_empty = std::collections::BTreeSet::new();
    for s in walk(&r) {
        let (status, body) = r.send(s.method, &s.path, s.token, &s.body);
        let what = format!(
            "{} {} (as {:?})",
            s.method,
            s.path,
            s.token.map(|_| "token")
        );
        assert_eq!(status, s.status, "{what}: {body}");
        if let Err(e) = spec.check_response(s.method, s.template, status, &body) {
            panic!("{what}: {e}");
        }
        if (200..300).contains(&status) {
            if !s.body.is_empty() {
                let sent: Value = serde_json::from_str(&s.body).unwrap();
                spec.check_request(s.method, s.template, &sent).unwrap();
            }
            covered.insert((s.method.to_string(), s.template.to_string()));
            if body.as_array().is_some_and(|a| !a.is_empty()) {
                non_empty.insert(s.template);
            }
        }
    }
    let all: std::collections::BTreeSet<(String, String)> = spec
        .operations()
        .unwrap()
        .into_iter()
        .map(|o| (o.method, o.path))
        .collect();
    assert_eq!(covered, all, "every documented operation answered 2xx");
    // The lists whose item schemas were really exercised.
    for list in [
        "/v1/domains",
        "/v1/hosts",
        "/v1/vms",
        "/v1/tasks",
        "/v1/events",
    ] {
        assert!(non_empty.contains(list), "{list} answered only []");
    }
    assert!(
        r.agent_calls().iter().any(|c| c == "start v1"),
        "the agent was asked"
    );
}

#[test]
fn the_checker_rejects_what_the_document_does_not_allow() {
    let spec = Spec::load(DOC).unwrap();
    let host = json!({"host": {"name": "h1", "host_id": 1, "agent": "127.0.0.1:9",
        "planes": [["mgmt", "127.0.0.1"]], "cpus": 1, "memory_mib": 64, "maintenance": false},
        "state": "up"});
    spec.check_response("GET", "/v1/hosts/{name}", 200, &host)
        .unwrap();
    let mut debug_state = host.clone();
    debug_state["state"] = json!("Up");
    let mut extra = host.clone();
    extra["host"]["colour"] = json!("red");
    let mut missing = host.clone();
    missing["host"]
        .as_object_mut()
        .unwrap()
        .remove("maintenance");
    for bad in [debug_state, extra, missing] {
        assert!(
            spec.check_response("GET", "/v1/hosts/{name}", 200, &bad)
                .is_err(),
            "{bad}"
        );
    }
    // A success status the operation does not list, a body where none is
    // documented, an error that is not the error shape.
    assert!(spec
        .check_response("GET", "/v1/vms", 201, &json!([]))
        .is_err());
    assert!(spec
        .check_response("DELETE", "/v1/vms/{id}", 204, &json!({}))
        .is_err());
    assert!(spec
        .check_response(
            "GET",
            "/v1/vms",
            404,
            &json!({"error": "gone", "message": "m"})
        )
        .is_err());
    assert!(spec
        .check_response(
            "GET",
            "/v1/vms",
            404,
            &json!({"error": "not-found", "message": "m"})
        )
        .is_ok());
    assert!(spec
        .check_response("GET", "/v1/nowhere", 200, &json!([]))
        .is_err());
    assert!(spec
        .check_request("POST", "/v1/vms", &json!({"id": "v1"}))
        .is_err());
}
