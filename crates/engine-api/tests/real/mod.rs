//! The real engine for API tests: `nosplit_engine::Engine` on a
//! [`MemStore`] (one task already kept, as a recovery would leave it)
//! behind a [`FaultyStore`] whose writes a test can make fail, its
//! API served over TCP on 127.0.0.1, and a stand-in agent (the agent's own
//! HTTP server over a recording [`AgentOps`]) that the engine starts and
//! stops VMs through.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nosplit_agent::model::{
    AgentError, AgentEvent, AgentOps, HostInfo, StartVm, VmInfo, VmKind, VmStatus,
};
use nosplit_engine_api::auth::Tokens;
use nosplit_engine_api::server::{spawn_server, ServerHandle};
use nosplit_engine_core::model::Task;
use nosplit_engine_store::faulty::{Faults, FaultyStore};
use nosplit_engine_store::{MemStore, Store};
use serde_json::Value;

pub const ADMIN: &str = "admin-token-0123456789abcdef-0123456789";
pub const USER: &str = "user-token-0123456789abcdef-0123456789x";
/// Host h1's own agent token (the engine's `agent_token_dir/h1.token`).
pub const AGENT: &str = "agent-token-0123456789abcdef-012345678";

/// A recording agent; `fail_stop` makes stops fail; `listed` is what it
/// reports running (and how), `events` what it reports seeing.
#[derive(Default)]
pub struct Agent {
    calls: Mutex<Vec<String>>,
    pub fail_stop: Mutex<Option<AgentError>>,
    pub listed: Mutex<Vec<(String, VmStatus)>>,
    pub events: Mutex<Vec<AgentEvent>>,
    /// How many times the engine asked for the VM list.
    pub polls: Mutex<u32>,
    /// Every start request, as the agent got it.
    pub starts: Mutex<Vec<StartVm>>,
}

impl Agent {
    fn info(&self, call: String, id: &str, status: VmStatus) -> VmInfo {
        self.calls.lock().unwrap().push(call);
        VmInfo {
            id: id.into(),
            inst: format!("{id}.1"),
            kind: VmKind::Process,
            status,
            pid: 42,
            lver: Some(1),
            uptime_s: 0,
        }
    }
}

impl AgentOps for Agent {
    fn host(&self) -> HostInfo {
        HostInfo {
            name: "h1".into(),
            host_id: 1,
            cpus: 4,
            memory_mib: 4096,
            planes: vec![],
            agent_boot: "b1".into(),
            vms_running: 0,
        }
    }
    fn list_vms(&self) -> Vec<VmInfo> {
        *self.polls.lock().unwrap() += 1;
        let listed = self.listed.lock().unwrap().clone();
        listed
            .into_iter()
            .map(|(id, status)| VmInfo {
                id: id.clone(),
                inst: format!("{id}.1"),
                kind: VmKind::Process,
                status,
                pid: 42,
                lver: Some(1),
                uptime_s: 1,
            })
            .collect()
    }
    fn get_vm(&self, id: &str) -> Result<VmInfo, AgentError> {
        Err(AgentError::NotFound(id.into()))
    }
    fn start_vm(&self, req: StartVm) -> Result<VmInfo, AgentError> {
        self.starts.lock().unwrap().push(req.clone());
        Ok(self.info(format!("start {}", req.id), &req.id, VmStatus::Running))
    }
    fn stop_vm(&self, id: &str, _timeout: Duration) -> Result<VmInfo, AgentError> {
        let v = self.info(format!("stop {id}"), id, VmStatus::Stopped);
        match self.fail_stop.lock().unwrap().clone() {
            Some(e) => Err(e),
            None => Ok(v),
        }
    }
    fn kill_vm(&self, id: &str) -> Result<VmInfo, AgentError> {
        Ok(self.info(format!("kill {id}"), id, VmStatus::Stopped))
    }
    fn pause_vm(&self, id: &str) -> Result<VmInfo, AgentError> {
        Ok(self.info(format!("pause {id}"), id, VmStatus::Paused))
    }
    fn resume_vm(&self, id: &str) -> Result<VmInfo, AgentError> {
        Ok(self.info(format!("resume {id}"), id, VmStatus::Running))
    }
    fn leases(&self) -> Result<Value, AgentError> {
        Ok(serde_json::json!({}))
    }
    fn events_since(&self, after: u64, _wait: Duration) -> Vec<AgentEvent> {
        let evs = self.events.lock().unwrap();
        evs.iter().filter(|e| e.seq > after).cloned().collect()
    }
}

/// The running engine and its agent.
pub struct Real {
    pub api: SocketAddr,
    pub agent: SocketAddr,
    /// A domain directory (on the target dir's file system: O_DIRECT).
    pub shared: String,
    pub fake: Arc<Agent>,
    /// Makes the engine's store writes fail.
    pub faults: Faults,
    _server: ServerHandle,
    _agent_server: nosplit_agent::http::ServerHandle,
    /// Where the engine takes management-plane heartbeats.
    beats_to: SocketAddr,
    _beats: nosplit_engine::beats::Listeners,
    _dir: tempfile::TempDir,
}

fn secret(p: &Path, text: &str) {
    std::fs::write(p, text).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

impl Real {
    pub fn start() -> Real {
        let dir = tempfile::Builder::new()
            .prefix("engine-api")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let d = dir.path();
        let tokens = d.join("agents");
        std::fs::create_dir(&tokens).unwrap();
        std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o700)).unwrap();
        secret(&tokens.join("h1.token"), AGENT);
        secret(&d.join("admin.token"), ADMIN);
        let shared = d.join("shared");
        std::fs::create_dir(&shared).unwrap();
        let beats_to = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let text = format!(
            "listen = \"127.0.0.1:0\"\nstore = \"{d}/unused.redb\"\nagent_token_dir = \"{t}\"\n[[token]]\nrole = \"admin\"\nfile = \"{d}/admin.token\"\n[[heartbeat]]\nplane = \"mgmt\"\nlisten = \"{beats_to}\"\n",
            d = d.display(),
            t = tokens.display()
        );
        let cfg = nosplit_engine::config::parse(&text, "test").unwrap();

        let fake = Arc::new(Agent::default());
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let agent_server = nosplit_agent::http::spawn_server(
            any,
            nosplit_agent::http::Token::new(AGENT).unwrap(),
            fake.clone(),
        )
        .unwrap();

        let store = MemStore::new();
        store
            .append_task(&Task {
                id: 0,
                vm: "v0".into(),
                host: "h0".into(),
                attempt: 1,
                state: "succeeded".into(),
                detail: "kept from an earlier run".into(),
                created_ms: 5,
                finished_ms: Some(9),
            })
            .unwrap();
        let store = FaultyStore::new(store);
        let faults = store.faults();
        let (engine, beats) = nosplit_engine::Engine::start(cfg, Box::new(store)).unwrap();
        let tokens = Tokens::parse([("admin", ADMIN), ("user", USER)]).unwrap();
        let server = spawn_server(any, tokens, engine).unwrap();
        Real {
            api: server.local_addr(),
            agent: agent_server.local_addr(),
            shared: shared.display().to_string(),
            fake,
            faults,
            _server: server,
            _agent_server: agent_server,
            beats_to,
            _beats: beats,
            _dir: dir,
        }
    }

    /// Heartbeats of h1's stand-in agent (boot `b1`) on the management
    /// plane, from 127.0.0.1 as h1 registered, until dropped.
    pub fn beat(&self) -> nosplit_agent::heartbeat::Sender {
        nosplit_agent::heartbeat::Sender::start(
            1,
            "h1",
            "b1",
            &[nosplit_agent::heartbeat::PlaneTarget {
                plane: "mgmt".into(),
                local: "127.0.0.1:0".parse().unwrap(),
                engine: self.beats_to,
            }],
            Duration::from_millis(100),
        )
    }

    /// One request (no Authorization header when `token` is None).
    pub fn send(&self, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, Value) {
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let head = format!("{method} {path} HTTP/1.1\r\n{auth}");
        nosplit_httpserve::testing::send(self.api, &head, body.as_bytes(), &[ADMIN, USER, AGENT])
    }

    /// A request as admin that must get `status`; its JSON body.
    pub fn admin(&self, method: &str, path: &str, body: &str, status: u16) -> Value {
        let (got, v) = self.send(method, path, Some(ADMIN), body);
        assert_eq!(got, status, "{method} {path}: {v}");
        v
    }

    /// Domain d1 (in [`Real::shared`]) and host h1 (the stand-in agent).
    pub fn domain_and_host(&self) {
        let dom = serde_json::json!({"name": "d1", "path": self.shared,
            "host_path": self.shared, "io_timeout_ms": 1000});
        self.admin("POST", "/v1/domains", &dom.to_string(), 201);
        let host = serde_json::json!({"name": "h1", "host_id": 1, "agent": self.agent.to_string(),
            "planes": [["mgmt", "127.0.0.1"]], "cpus": 4, "memory_mib": 4096});
        self.admin("POST", "/v1/hosts", &host.to_string(), 201);
    }

    pub fn agent_calls(&self) -> Vec<String> {
        self.fake.calls.lock().unwrap().clone()
    }
}
