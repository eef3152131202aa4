#![allow(clippy::unwrap_used)]
//! The HTTP API over real TCP on 127.0.0.1 against a fake `AgentOps`: auth,
//! route-to-call mapping, input validation, error mapping, long polls, and
//! `openapi.yaml` agreeing with the server: the same routes, and every
//! request and answer valid against the documented schemas.

use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use nosplit_agent::http::{routes, spawn_server, ServerHandle, Token};
use nosplit_agent::model::*;
use nosplit_httpserve::openapi::Spec;
use nosplit_httpserve::testing;
use serde_json::{json, Value};

const TOKEN: &str = "test-token-0123456789abcdef-0123456789";

/// Records every call; answers with `fail` when set, else a canned VM.
#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<String>>,
    fail: Mutex<Option<AgentError>>,
    events: Mutex<Vec<AgentEvent>>,
    new_event: Condvar,
}

impl Fake {
    fn call(&self, c: String) -> Result<VmInfo, AgentError> {
        let id = c.split(' ').nth(1).unwrap_or("").to_string();
        self.calls.lock().unwrap().push(c);
        match self.fail.lock().unwrap().clone() {
            Some(e) => Err(e),
            None => Ok(VmInfo {
                id,
                inst: "i1".into(),
                kind: VmKind::Process,
                status: VmStatus::Running,
                pid: 42,
                lver: Some(3),
                uptime_s: 1,
            }),
        }
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn push_event(&self, seq: u64) {
        let ev = AgentEvent {
            seq,
            at_ms: 5,
            kind: "vm-started".into(),
            vm: Some("vm1".into()),
            detail: String::new(),
        };
        self.events.lock().unwrap().push(ev);
        self.new_event.notify_all();
    }
}

impl AgentOps for Fake {
    fn host(&self) -> HostInfo {
        self.calls.lock().unwrap().push("host".into());
        HostInfo {
            name: "hostA".into(),
            host_id: 1,
            cpus: 2,
            memory_mib: 1024,
            planes: vec![],
            agent_boot: "b1".into(),
            vms_running: 0,
        }
    }
    fn list_vms(&self) -> Vec<VmInfo> {
        vec![self.call("list x".into()).unwrap()]
    }
    fn get_vm(&self, id: &str) -> Result<VmInfo, AgentError> {
        self.call(format!("get {id}"))
    }
    fn start_vm(&self, req: StartVm) -> Result<VmInfo, AgentError> {
        let extra = if req.extra_disks.is_empty() {
            String::new()
        } else {
            format!(" +{}", req.extra_disks.join(","))
        };
        self.call(format!("start {} {}{extra}", req.id, req.memory_mib))
    }
    fn stop_vm(&self, id: &str, timeout: Duration) -> Result<VmInfo, AgentError> {
        self.call(format!("stop {id} {}", timeout.as_millis()))
    }
    fn kill_vm(&self, id: &str) -> Result<VmInfo, AgentError> {
        self.call(format!("kill {id}"))
    }
    fn pause_vm(&self, id: &str) -> Result<VmInfo, AgentError> {
        self.call(format!("pause {id}"))
    }
    fn resume_vm(&self, id: &str) -> Result<VmInfo, AgentError> {
        self.call(format!("resume {id}"))
    }
    fn leases(&self) -> Result<Value, AgentError> {
        self.call("leases x".into())?;
        Ok(json!({"lockspaces": []}))
    }
    fn events_since(&self, after: u64, wait: Duration) -> Vec<AgentEvent> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("events {after} {}", wait.as_millis()));
        let guard = self.events.lock().unwrap();
        let (guard, _) = self
            .new_event
            .wait_timeout_while(guard, wait, |evs| !evs.iter().any(|e| e.seq > after))
            .unwrap();
        guard.iter().filter(|e| e.seq > after).cloned().collect()
    }
}

fn start() -> (ServerHandle, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = spawn_server(addr, Token::new(TOKEN).unwrap(), fake.clone()).unwrap();
    (server, fake)
}

/// One raw HTTP/1.1 request; fails the test if the token comes back.
fn send(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, Value) {
    testing::send(addr, head, body, &[TOKEN])
}

fn call(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    testing::call(addr, TOKEN, method, path, body)
}

/// A concrete path for a route template.
fn concrete(path: &str) -> String {
    path.replace("{id}", "vm1")
}

/// The checked-in API document.
fn spec() -> Spec {
    Spec::load(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap()
}

/// The route template a concrete path (query stripped) was made from.
fn template(method: &str, path: &str) -> &'static str {
    let path = path.split('?').next().unwrap_or(path);
    routes()
        .find(|(m, t)| *m == method && concrete(t) == path)
        .map(|(_, t)| t)
        .unwrap_or_else(|| panic!("no route for {method} {path}"))
}

/// Checks a request and its answer against the document.
fn conforms(spec: &Spec, method: &str, path: &str, body: &str, status: u16, answer: &Value) {
    let t = template(method, path);
    let req: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap()
    };
    if status < 400 {
        spec.check_request(method, t, &req).unwrap();
    }
    spec.check_response(method, t, status, answer).unwrap();
}

#[test]
fn no_or_wrong_token_is_401_and_reaches_nothing() {
    let (server, fake) = start();
    let addr = server.local_addr();
    let wrong = format!("{TOKEN}x");
    let auths = [
        String::new(),
        format!("Authorization: Bearer {wrong}\r\n"),
        format!("Authorization: Bearer {}\r\n", &TOKEN[..TOKEN.len() - 1]),
        format!("Authorization: Basic {TOKEN}\r\n"),
        format!("Authorization: bearer{TOKEN}\r\n"),
    ];
    for (method, path) in routes() {
        for auth in &auths {
            let head = format!("{method} {} HTTP/1.1\r\n{auth}", concrete(path));
            let (status, v) = send(addr, &head, b"{}");
            assert_eq!(status, 401, "{method} {path} with {auth:?}");
            assert_eq!(v["error"], "unauthorized");
        }
    }
    let (status, _) = send(addr, "GET /nowhere HTTP/1.1\r\n", b"");
    assert_eq!(status, 401);
    assert!(fake.calls().is_empty(), "calls: {:?}", fake.calls());
}

#[test]
fn each_route_makes_its_call() {
    let (server, fake) = start();
    let a = server.local_addr();
    let start = r#"{"id":"vm1","kind":"process","disk":"/d/vm1","memory_mib":64,
        "lease":{"lockspace":"ls1","path":"/s/xleases","offset":1048576}}"#;
    let start_disks = r#"{"id":"vm1","kind":"qemu","disk":"/d/vm1.img",
        "extra_disks":["/d/vm1@data.img","/d/vm1@logs,1.img"]}"#;
    let cases: &[(&str, &str, &str, u16, &str)] = &[
        ("GET", "/v1/host", "", 200, "host"),
        ("GET", "/v1/vms", "", 200, "list x"),
        ("POST", "/v1/vms", start, 201, "start vm1 64"),
        (
            "POST",
            "/v1/vms",
            start_disks,
            201,
            "start vm1 128 +/d/vm1@data.img,/d/vm1@logs,1.img",
        ),
        ("GET", "/v1/vms/vm1", "", 200, "get vm1"),
        ("POST", "/v1/vms/vm1/stop", "", 200, "stop vm1 10000"),
        (
            "POST",
            "/v1/vms/vm1/stop",
            r#"{"timeout_ms":250}"#,
            200,
            "stop vm1 250",
        ),
        ("POST", "/v1/vms/vm1/kill", "", 200, "kill vm1"),
        ("POST", "/v1/vms/vm1/pause", "{}", 200, "pause vm1"),
        ("POST", "/v1/vms/vm1/resume", "", 200, "resume vm1"),
        ("GET", "/v1/leases", "", 200, "leases x"),
        ("GET", "/v1/events?after=3&wait_ms=0", "", 200, "events 3 0"),
        ("GET", "/v1/events", "", 200, "events 0 0"),
    ];
    let spec = spec();
    fake.push_event(1);
    for &(method, path, body, want, what) in cases {
        let (status, v) = call(a, method, path, body);
        assert_eq!(status, want, "{method} {path}: {v}");
        conforms(&spec, method, path, body, status, &v);
        assert_eq!(fake.calls().last().map(String::as_str), Some(what));
        match what {
            "host" => assert_eq!(v["name"], "hostA"),
            "leases x" => assert_eq!(v, json!({"lockspaces": []})),
            w if w.starts_with("list") || w.starts_with("events") => assert!(v.is_array()),
            _ => assert_eq!(
                (v["id"].as_str(), v["status"].as_str()),
                (Some("vm1"), Some("running"))
            ),
        }
    }
    // Every route of the table was exercised.
    for (method, path) in routes() {
        let prefix = concrete(path);
        assert!(cases
            .iter()
            .any(|c| c.0 == method && c.1.split('?').next() == Some(&prefix)));
    }
}

#[test]
fn bad_input_is_a_json_400_or_413_and_reaches_nothing() {
    let (server, fake) = start();
    let a = server.local_addr();
    let huge = format!(r#"{{"id":"vm1","pad":"{}"}}"#, "x".repeat(70 * 1024));
    let cases: &[(&str, &str, &str, u16, &[&str])] = &[
        ("POST", "/v1/vms", "{\"id\":", 400, &["invalid JSON"]),
        ("POST", "/v1/vms", "[]", 400, &["expected a JSON object"]),
        (
            "POST",
            "/v1/vms",
            r#"{"id":"vm1","kind":"qemu","disk":"/d","colour":1}"#,
            400,
            &["colour: unknown field (expected one of: id, kind,"],
        ),
        (
            "POST",
            "/v1/vms",
            r#"{"id":"a/b","kind":"qemu","disk":"d","vcpus":65}"#,
            400,
            &["id:", "disk:", "vcpus:"],
        ),
        (
            "POST",
            "/v1/vms",
            r#"{"id":"v","kind":"qemu","disk":"/d","lease":{"lockspace":"l","path":"/p","offset":7}}"#,
            400,
            &["lease.offset: 7 is not a multiple of 512"],
        ),
        (
            "POST",
            "/v1/vms",
            r#"{"id":"v","kind":"qemu","disk":"/d","extra_disks":["/e","e","/e"]}"#,
            400,
            &[
                "extra_disks[1]: \"e\" is not an absolute path",
                "extra_disks[2]: \"/e\" is given twice",
            ],
        ),
        ("POST", "/v1/vms", &huge, 413, &["body"]),
        ("GET", "/v1/vms/bad%20id", "", 400, &["id:"]),
        (
            "GET",
            &format!("/v1/vms/{}", "a".repeat(49)),
            "",
            400,
            &["id:"],
        ),
        (
            "POST",
            "/v1/vms/vm1/stop",
            r#"{"timeout_ms":600001}"#,
            400,
            &["timeout_ms:"],
        ),
        (
            "POST",
            "/v1/vms/vm1/stop",
            r#"{"timeout":5}"#,
            400,
            &["timeout: unknown field"],
        ),
        (
            "POST",
            "/v1/vms/vm1/kill",
            r#"{"force":true}"#,
            400,
            &["force: unknown field"],
        ),
        (
            "GET",
            "/v1/events?after=x&wait_ms=30001&foo=1",
            "",
            400,
            &["after:", "wait_ms:", "foo:"],
        ),
        ("GET", "/v1/nothing", "", 404, &["no route"]),
        ("DELETE", "/v1/vms/vm1", "", 405, &["DELETE"]),
    ];
    for &(method, path, body, want, needles) in cases {
        let (status, v) = call(a, method, path, body);
        assert_eq!(status, want, "{method} {path}: {v}");
        assert!(v["error"].is_string(), "{v}");
        let msg = v["message"].as_str().unwrap();
        for n in needles {
            assert!(msg.contains(n), "{method} {path}: {msg:?} lacks {n:?}");
        }
    }
    assert!(fake.calls().is_empty(), "calls: {:?}", fake.calls());
}

#[test]
fn agent_errors_map_to_statuses() {
    let (server, fake) = start();
    let a = server.local_addr();
    let cases = [
        (AgentError::Invalid("i".into()), 400, "invalid"),
        (AgentError::NotFound("n".into()), 404, "not-found"),
        (AgentError::Conflict("c".into()), 409, "conflict"),
        (AgentError::Unavailable("u".into()), 503, "unavailable"),
        (AgentError::Internal("x".into()), 500, "internal"),
    ];
    for (err, want, kind) in cases {
        *fake.fail.lock().unwrap() = Some(err.clone());
        for (method, path) in [
            ("GET", "/v1/vms/vm1"),
            ("POST", "/v1/vms/vm1/pause"),
            ("GET", "/v1/leases"),
        ] {
            let (status, v) = call(a, method, path, "");
            assert_eq!(status, want, "{method} {path}");
            spec()
                .check_response(method, template(method, path), status, &v)
                .unwrap();
            assert_eq!(v, serde_json::to_value(&err).unwrap());
            assert_eq!(v["error"], kind);
        }
    }
}

#[test]
fn long_poll_returns_when_an_event_arrives() {
    let (server, fake) = start();
    let a = server.local_addr();
    fake.push_event(1);
    let poller = std::thread::spawn(move || call(a, "GET", "/v1/events?after=1&wait_ms=30000", ""));
    // Wait until the poll is parked in the fake, then publish.
    while !fake.calls().iter().any(|c| c == "events 1 30000") {
        std::thread::sleep(Duration::from_millis(10));
    }
    fake.push_event(2);
    let (status, v) = poller.join().unwrap();
    assert_eq!(status, 200);
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["seq"], 2);
}

#[test]
fn shutdown_stops_listening() {
    let (server, _fake) = start();
    let a = server.local_addr();
    assert_eq!(call(a, "GET", "/v1/host", "").0, 200);
    server.shutdown().unwrap();
    assert!(TcpStream::connect(a).is_err());
}

#[test]
fn openapi_lists_exactly_the_served_routes() {
    let mut documented: Vec<(String, String)> = spec()
        .operations()
        .unwrap()
        .into_iter()
        .map(|o| (o.method, o.path))
        .collect();
    let mut served: Vec<(String, String)> = routes()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    documented.sort();
    served.sort();
    assert_eq!(documented, served);
}

/// The checks can fail: answers the document does not allow are refused.
#[test]
fn the_document_refuses_what_it_does_not_allow() {
    let spec = spec();
    let vm = json!({"id": "vm1", "inst": "i1", "kind": "process", "status": "running",
        "pid": 42, "lver": 3, "uptime_s": 1});
    spec.check_response("GET", "/v1/vms/{id}", 200, &vm)
        .unwrap();
    let mut bad = vm.clone();
    bad["status"] = json!("flying");
    assert!(spec
        .check_response("GET", "/v1/vms/{id}", 200, &bad)
        .is_err());
    let mut missing = vm.clone();
    missing.as_object_mut().unwrap().remove("pid");
    assert!(spec
        .check_response("GET", "/v1/vms/{id}", 200, &missing)
        .is_err());
    assert!(spec
        .check_response("GET", "/v1/vms/{id}", 299, &vm)
        .is_err());
    let start =
        json!({"id": "vm1", "kind": "process", "disk": "/d", "memory_mib": 64, "colour": 1});
    assert!(spec.check_request("POST", "/v1/vms", &start).is_err());
    let disks = |n: usize| {
        let paths: Vec<String> = (0..n).map(|i| format!("/d/{i}")).collect();
        json!({"id": "vm1", "kind": "qemu", "disk": "/d", "extra_disks": paths})
    };
    spec.check_request("POST", "/v1/vms", &disks(15)).unwrap();
    assert!(spec.check_request("POST", "/v1/vms", &disks(16)).is_err());
    let twice = json!({"id": "vm1", "kind": "qemu", "disk": "/d", "extra_disks": ["/e", "/e"]});
    assert!(spec.check_request("POST", "/v1/vms", &twice).is_err());
}
