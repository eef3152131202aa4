//! Shared by the integration tests: a fake `EngineOps` that records every
//! call (and can be told to fail), a server on 127.0.0.1, and a raw
//! HTTP/1.1 sender that also checks no token leaks into a response.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};

use nosplit_engine_api::auth::Tokens;
use nosplit_engine_api::ops::EngineOps;
use nosplit_engine_api::server::{spawn_server, ServerHandle};
use nosplit_engine_api::types::*;
use nosplit_engine_core::model::*;
use nosplit_httpserve::testing;
use serde_json::Value;

pub const ADMIN: &str = "admin-token-0123456789abcdef-0123456789";
pub const USER: &str = "user-token-0123456789abcdef-0123456789x";

/// Records every call; answers with `fail` when set, else canned records
/// built from the input.
#[derive(Default)]
pub struct Fake {
    calls: Mutex<Vec<String>>,
    pub fail: Mutex<Option<EngineError>>,
    events: Mutex<Vec<EngineEvent>>,
    new_event: Condvar,
}

pub fn domain(name: &str) -> Domain {
    Domain {
        name: name.into(),
        path: "/srv/shared".into(),
        host_path: "/mnt/{host}".into(),
        io_timeout_ms: 1000,
    }
}

pub fn host(name: &str, maintenance: bool) -> HostView {
    let host = Host {
        name: name.into(),
        host_id: 7,
        agent: "10.0.0.7:7070".into(),
        planes: vec![(Plane::Mgmt, "10.0.0.7".into())],
        cpus: 8,
        memory_mib: 8192,
        maintenance,
    };
    HostView {
        host,
        state: HostState::Up,
    }
}

pub fn vm(id: &str) -> Vm {
    Vm {
        id: id.into(),
        kind: VmKind::Process,
        vcpus: 1,
        memory_mib: 64,
        domain: "d1".into(),
        ha: true,
        priority: 10,
        lease_offset: 1_048_576,
        desired: Desired::Stopped,
        host: None,
    }
}

pub fn event(seq: u64, kind: &str) -> EngineEvent {
    EngineEvent {
        seq,
        at_ms: seq * 10,
        severity: "info".into(),
        kind: kind.into(),
        host: Some("h1".into()),
        vm: None,
        detail: String::new(),
    }
}

impl Fake {
    fn rec(&self, c: String) -> Result<(), EngineError> {
        self.calls.lock().unwrap().push(c);
        match self.fail.lock().unwrap().clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    pub fn last(&self) -> Option<String> {
        self.calls.lock().unwrap().last().cloned()
    }

    pub fn push_event(&self, e: EngineEvent) {
        self.events.lock().unwrap().push(e);
        self.new_event.notify_all();
    }
}

impl EngineOps for Fake {
    fn create_domain(&self, d: Domain) -> Result<Domain, EngineError> {
        self.rec(format!("create_domain {} {}", d.name, d.io_timeout_ms))?;
        Ok(d)
    }
    fn list_domains(&self) -> Result<Vec<Domain>, EngineError> {
        self.rec("list_domains".into())?;
        Ok(vec![domain("d1")])
    }
    fn get_domain(&self, name: &str) -> Result<Domain, EngineError> {
        self.rec(format!("get_domain {name}"))?;
        Ok(domain(name))
    }
    fn delete_domain(&self, name: &str) -> Result<(), EngineError> {
        self.rec(format!("delete_domain {name}"))
    }
    fn add_host(&self, h: NewHost) -> Result<HostView, EngineError> {
        self.rec(format!("add_host {} {}", h.name, h.host_id))?;
        Ok(HostView {
            host: h.into_host(),
            state: HostState::Suspect,
        })
    }
    fn register_host(&self, h: NewHost) -> Result<HostView, EngineError> {
        self.rec(format!("register_host {} {}", h.name, h.host_id))?;
        Ok(HostView {
            host: h.into_host(),
            state: HostState::Suspect,
        })
    }
    fn list_hosts(&self) -> Result<Vec<HostView>, EngineError> {
        self.rec("list_hosts".into())?;
        Ok(vec![host("h1", false)])
    }
    fn get_host(&self, name: &str) -> Result<HostView, EngineError> {
        self.rec(format!("get_host {name}"))?;
        Ok(host(name, false))
    }
    fn delete_host(&self, name: &str) -> Result<(), EngineError> {
        self.rec(format!("delete_host {name}"))
    }
    fn set_host_maintenance(&self, name: &str, on: bool) -> Result<HostView, EngineError> {
        self.rec(format!("maintenance {name} {on}"))?;
        Ok(host(name, on))
    }
    fn create_vm(&self, v: NewVm) -> Result<Vm, EngineError> {
        self.rec(format!("create_vm {} {} {}", v.id, v.ha, v.priority))?;
        Ok(Vm {
            kind: v.kind,
            vcpus: v.vcpus,
            memory_mib: v.memory_mib,
            domain: v.domain,
            ha: v.ha,
            priority: v.priority,
            ..vm(&v.id)
        })
    }
    fn list_vms(&self) -> Result<Vec<Vm>, EngineError> {
        self.rec("list_vms".into())?;
        Ok(vec![vm("v1"), vm("v2")])
    }
    fn get_vm(&self, id: &str) -> Result<Vm, EngineError> {
        self.rec(format!("get_vm {id}"))?;
        Ok(vm(id))
    }
    fn delete_vm(&self, id: &str) -> Result<(), EngineError> {
        self.rec(format!("delete_vm {id}"))
    }
    fn start_vm(&self, id: &str, host: Option<String>) -> Result<Vm, EngineError> {
        self.rec(format!("start_vm {id} {host:?}"))?;
        Ok(Vm {
            desired: Desired::Running,
            host: Some(host.unwrap_or_else(|| "placed".into())),
            ..vm(id)
        })
    }
    fn stop_vm(&self, id: &str) -> Result<Vm, EngineError> {
        self.rec(format!("stop_vm {id}"))?;
        Ok(vm(id))
    }
    fn patch_vm(&self, id: &str, p: VmPatch) -> Result<Vm, EngineError> {
        self.rec(format!("patch_vm {id} {:?} {:?}", p.ha, p.priority))?;
        let v = vm(id);
        Ok(Vm {
            ha: p.ha.unwrap_or(v.ha),
            priority: p.priority.unwrap_or(v.priority),
            ..v
        })
    }
    fn get_strategy(&self) -> Result<Strategy, EngineError> {
        self.rec("get_strategy".into())?;
        Ok(Strategy::default_table())
    }
    fn put_strategy(&self, s: Strategy) -> Result<Strategy, EngineError> {
        let recovering = s.rows.iter().filter(|r| r.recover).count();
        self.rec(format!("put_strategy {recovering}"))?;
        Ok(s)
    }
    fn get_ha(&self) -> Result<HaSettings, EngineError> {
        self.rec("get_ha".into())?;
        Ok(HaSettings::default())
    }
    fn patch_ha(&self, p: HaPatch) -> Result<HaSettings, EngineError> {
        self.rec(format!("patch_ha {:?} {:?}", p.global_rate, p.recover_pct))?;
        p.apply(&HaSettings::default())
    }
    fn tasks(&self, q: TaskQuery) -> Result<Vec<Task>, EngineError> {
        self.rec(format!("tasks {:?} {}", q.vm, q.limit))?;
        Ok(vec![Task {
            id: 1,
            vm: q.vm.unwrap_or_else(|| "v1".into()),
            host: "h2".into(),
            attempt: 1,
            state: "succeeded".into(),
            detail: String::new(),
            created_ms: 5,
            finished_ms: Some(9),
        }])
    }
    fn events(&self, q: EventQuery) -> Result<Vec<EngineEvent>, EngineError> {
        self.rec(format!(
            "events {} {:?} {:?} {:?} {:?} {} {}",
            q.after,
            q.kind,
            q.host,
            q.vm,
            q.severity,
            q.limit,
            q.wait.as_millis()
        ))?;
        let guard = self.events.lock().unwrap();
        let (guard, _) = self
            .new_event
            .wait_timeout_while(guard, q.wait, |evs| !evs.iter().any(|e| q.matches(e)))
            .unwrap();
        Ok(guard
            .iter()
            .filter(|e| q.matches(e))
            .take(q.limit)
            .cloned()
            .collect())
    }
    fn status(&self) -> Result<Status, EngineError> {
        self.rec("status".into())?;
        let mut s = Status {
            queue: 3,
            self_defense: true,
            ..Status::default()
        };
        s.hosts.insert("up".into(), 2);
        s.vms.insert("running".into(), 5);
        Ok(s)
    }
}

pub fn start() -> (ServerHandle, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let tokens = Tokens::parse([("admin", ADMIN), ("user", USER)]).unwrap();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = spawn_server(addr, tokens, fake.clone()).unwrap();
    (server, fake)
}

/// One HTTP/1.1 request with `Connection: close`; returns status and JSON
/// body (`Null` when empty). Fails the test if a token is in the answer.
pub fn send(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, Value) {
    testing::send(addr, head, body, &[ADMIN, USER])
}

/// A request with `token`.
pub fn call(addr: SocketAddr, token: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
    let head = format!("{method} {path} HTTP/1.1\r\nAuthorization: Bearer {token}\r\n");
    send(addr, &head, body.as_bytes())
}

/// A concrete path for a route template.
pub fn concrete(path: &str) -> String {
    path.replace("{id}", "v1").replace("{name}", "h1")
}

/// For each route: a valid request (path, body), the status it gets and
/// the call it makes on the fake.
pub fn valid_request(method: &str, path: &str) -> (String, &'static str, u16, &'static str) {
    let strategy = r#"{"rows":[
        {"mgmt":false,"svc":false,"stor":false,"recover":true},{"mgmt":false,"svc":false,"stor":true,"recover":true},
        {"mgmt":false,"svc":true,"stor":false,"recover":true},{"mgmt":false,"svc":true,"stor":true,"recover":false},
        {"mgmt":true,"svc":false,"stor":false,"recover":true},{"mgmt":true,"svc":false,"stor":true,"recover":false},
        {"mgmt":true,"svc":true,"stor":false,"recover":false},{"mgmt":true,"svc":true,"stor":true,"recover":false}]}"#;
    let (p, body, status, call): (&str, &'static str, u16, &'static str) = match (method, path) {
        ("GET", "/v1/status") => (path, "", 200, "status"),
        ("GET", "/v1/domains") => (path, "", 200, "list_domains"),
        ("POST", "/v1/domains") => (
            path,
            r#"{"name":"d1","path":"/srv/d1","host_path":"/mnt/{host}/d1","io_timeout_ms":1000}"#,
            201,
            "create_domain d1 1000",
        ),
        ("GET", "/v1/domains/{name}") => ("/v1/domains/d1", "", 200, "get_domain d1"),
        ("DELETE", "/v1/domains/{name}") => ("/v1/domains/d1", "", 204, "delete_domain d1"),
        ("GET", "/v1/hosts") => (path, "", 200, "list_hosts"),
        ("POST", "/v1/hosts") => (
            path,
            r#"{"name":"h1","host_id":3,"agent":"10.0.0.3:7070","planes":[["mgmt","10.0.0.3"],["svc","10.1.0.3"],["stor","10.2.0.3"]],"cpus":4,"memory_mib":4096}"#,
            201,
            "add_host h1 3",
        ),
        ("POST", "/v1/hosts/{name}/register") => (
            "/v1/hosts/h1/register",
            r#"{"name":"h1","host_id":3,"agent":"10.0.0.3:7070","planes":[["mgmt","10.0.0.3"]],"cpus":4,"memory_mib":4096}"#,
            200,
            "register_host h1 3",
        ),
        ("GET", "/v1/hosts/{name}") => ("/v1/hosts/h1", "", 200, "get_host h1"),
        ("DELETE", "/v1/hosts/{name}") => ("/v1/hosts/h1", "{}", 204, "delete_host h1"),
        ("PUT", "/v1/hosts/{name}/maintenance") => (
            "/v1/hosts/h1/maintenance",
            r#"{"maintenance":true}"#,
            200,
            "maintenance h1 true",
        ),
        ("GET", "/v1/vms") => (path, "", 200, "list_vms"),
        ("POST", "/v1/vms") => (
            path,
            r#"{"id":"v1","kind":"qemu","vcpus":2,"memory_mib":256,"domain":"d1","ha":true,"priority":90}"#,
            201,
            "create_vm v1 true 90",
        ),
        ("GET", "/v1/vms/{id}") => ("/v1/vms/v1", "", 200, "get_vm v1"),
        ("DELETE", "/v1/vms/{id}") => ("/v1/vms/v1", "", 204, "delete_vm v1"),
        ("PATCH", "/v1/vms/{id}") => (
            "/v1/vms/v1",
            r#"{"priority":3}"#,
            200,
            "patch_vm v1 None Some(3)",
        ),
        ("POST", "/v1/vms/{id}/start") => (
            "/v1/vms/v1/start",
            r#"{"host":"h2"}"#,
            200,
            "start_vm v1 Some(\"h2\")",
        ),
        ("POST", "/v1/vms/{id}/stop") => ("/v1/vms/v1/stop", "", 200, "stop_vm v1"),
        ("GET", "/v1/strategy") => (path, "", 200, "get_strategy"),
        ("PUT", "/v1/strategy") => (path, strategy, 200, "put_strategy 4"),
        ("GET", "/v1/ha") => (path, "", 200, "get_ha"),
        ("PATCH", "/v1/ha") => (path, r#"{"global_rate":20}"#, 200, "patch_ha Some(20) None"),
        ("GET", "/v1/tasks") => ("/v1/tasks?vm=v9&limit=5", "", 200, "tasks Some(\"v9\") 5"),
        ("GET", "/v1/events") => (
            "/v1/events?after=4&severity=alarm&limit=7",
            "",
            200,
            "events 4 None None None Some(\"alarm\") 7 0",
        ),
        other => panic!("no valid request for {other:?}"),
    };
    (p.to_string(), body, status, call)
}
