//! The agent's core: the VMs of this host, each bound to its lease through
//! `leased`, watched for exits and I/O errors, frozen by `leased`'s freeze
//! hook when renewal fails and thawed only when `leased` reports the lease
//! revalidated. It implements [`AgentOps`] for the HTTP layer.
//!
//! Restart: the VMs are recorded in `<run_dir>/agent.json`; a new agent
//! adopts the ones still running (QMP socket, pid + start time) and checks
//! with `leased` that each still holds its lease: one that does not is
//! killed (it must not run without its lease).

mod events;
mod leasewatch;
pub mod persist;
mod vms;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nosplit_leased::api::{Request, Response};
use nosplit_leased::client::Client;
use nosplit_vmrt::driver::{ProcessDriver, RunningVm, VmDriver};

pub use events::EventLog;
use persist::VmRecord;

use crate::model::{
    AgentError, AgentEvent, AgentOps, HostInfo, PlaneInfo, StartVm, VmInfo, VmStatus,
};

/// What the core needs to know (the checked configuration's part).
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Host name.
    pub host_name: String,
    /// Host id.
    pub host_id: u32,
    /// `leased`'s socket.
    pub leased_socket: PathBuf,
    /// VM run directories and `agent.json`.
    pub run_dir: PathBuf,
    /// The `nosplit` binary (process VMs, freeze hooks).
    pub bin: PathBuf,
    /// Guest image cache.
    pub guest_cache: PathBuf,
    /// Allow VMs without a lease (lab control runs only).
    pub allow_unleased: bool,
    /// This host's planes.
    pub planes: Vec<PlaneInfo>,
}

/// One VM the agent manages.
#[derive(Debug)]
pub(crate) struct VmEntry {
    pub(crate) rec: VmRecord,
    pub(crate) vm: Option<Box<dyn RunningVm>>,
    pub(crate) status: VmStatus,
    pub(crate) pid: u32,
    pub(crate) since: Instant,
}

impl VmEntry {
    fn info(&self) -> VmInfo {
        VmInfo {
            id: self.rec.id.clone(),
            inst: self.rec.inst.clone(),
            kind: self.rec.kind,
            status: self.status,
            pid: self.pid,
            lver: self.rec.lver,
            uptime_s: self.since.elapsed().as_secs(),
        }
    }

    fn alive(&self) -> bool {
        !matches!(self.status, VmStatus::Stopped | VmStatus::Crashed)
    }
}

/// The agent.
#[derive(Debug)]
pub struct Agent {
    pub(crate) cfg: CoreConfig,
    pub(crate) events: EventLog,
    pub(crate) vms: Mutex<BTreeMap<String, Arc<Mutex<VmEntry>>>>,
    qemu: Mutex<Option<Arc<dyn VmDriver>>>,
    process: Arc<dyn VmDriver>,
    boot: String,
    counter: AtomicU64,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Agent {
    /// Starts the core: adopts recorded VMs, then watches VMs and leases
    /// on threads of its own.
    pub fn start(cfg: CoreConfig) -> Result<Arc<Agent>, AgentError> {
        std::fs::create_dir_all(cfg.run_dir.join("vms")).map_err(|e| {
            AgentError::Internal(format!("creating {}: {e}", cfg.run_dir.display()))
        })?;
        let boot = format!("{:016x}", rand::random::<u64>());
        let agent = Arc::new(Agent {
            events: EventLog::new(Instant::now()),
            vms: Mutex::new(BTreeMap::new()),
            qemu: Mutex::new(None),
            process: Arc::new(ProcessDriver::new()),
            boot,
            counter: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            cfg,
        });
        agent.adopt_all()?;
        let a = agent.clone();
        std::thread::Builder::new()
            .name("agent-monitor".into())
            .spawn(move || a.monitor_loop())
            .map_err(|e| AgentError::Internal(format!("monitor thread: {e}")))?;
        let a = agent.clone();
        std::thread::Builder::new()
            .name("agent-leases".into())
            .spawn(move || leasewatch::run(&a))
            .map_err(|e| AgentError::Internal(format!("lease thread: {e}")))?;
        agent
            .events
            .push("agent-started", None, format!("boot {}", agent.boot));
        Ok(agent)
    }

    /// Asks the threads to end (they notice within a second).
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// One request to `leased`.
    pub(crate) fn leased(&self, req: &Request) -> Result<Response, AgentError> {
        let mut c = Client::connect(&self.cfg.leased_socket)
            .map_err(|e| AgentError::Unavailable(format!("leased: {e}")))?;
        c.set_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| AgentError::Unavailable(format!("leased: {e}")))?;
        c.call(req)
            .map_err(|e| AgentError::Unavailable(format!("leased: {e}")))
    }

    pub(crate) fn driver(
        &self,
        kind: crate::model::VmKind,
    ) -> Result<Arc<dyn VmDriver>, AgentError> {
        match kind {
            crate::model::VmKind::Process => Ok(self.process.clone()),
            crate::model::VmKind::Qemu => {
                let mut q = lock(&self.qemu);
                if let Some(d) = q.as_ref() {
                    return Ok(d.clone());
                }
                let img = nosplit_vmrt::image::build_guest(&self.cfg.guest_cache)
                    .map_err(|e| AgentError::Unavailable(format!("guest image: {e}")))?;
                let d: Arc<dyn VmDriver> = Arc::new(nosplit_vmrt::driver::QemuDriver::new(img));
                *q = Some(d.clone());
                Ok(d)
            }
        }
    }

    pub(crate) fn next_inst(&self, id: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
        format!("{id}.{}.{n}", &self.boot[..8])
    }

    fn entry(&self, id: &str) -> Result<Arc<Mutex<VmEntry>>, AgentError> {
        lock(&self.vms)
            .get(id)
            .cloned()
            .ok_or_else(|| AgentError::NotFound(id.to_string()))
    }

    /// Saves the records of the VMs still alive.
    pub(crate) fn persist(&self) {
        let recs: Vec<VmRecord> = lock(&self.vms)
            .values()
            .filter_map(|e| {
                let e = lock(e);
                e.alive().then(|| e.rec.clone())
            })
            .collect();
        if let Err(e) = persist::save(&self.cfg.run_dir.join("agent.json"), &recs) {
            self.events
                .push("agent-error", None, format!("saving state: {e}"));
        }
    }

    fn monitor_loop(&self) {
        while !self.stopping() {
            let entries: Vec<Arc<Mutex<VmEntry>>> = lock(&self.vms).values().cloned().collect();
            let mut changed = false;
            for e in entries {
                changed |= vms::observe(self, &mut lock(&e));
            }
            if changed {
                self.persist();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Thaws the VM whose process is `pid` (its lease was revalidated).
    pub(crate) fn thaw_pid(&self, pid: u32) {
        let entries: Vec<Arc<Mutex<VmEntry>>> = lock(&self.vms).values().cloned().collect();
        for e in entries {
            let mut e = lock(&e);
            if e.pid == pid && e.alive() {
                vms::thaw(self, &mut e);
            }
        }
    }

    /// Marks the VM whose process is `pid` frozen (leased ran its hook).
    pub(crate) fn frozen_pid(&self, pid: u32) {
        let entries: Vec<Arc<Mutex<VmEntry>>> = lock(&self.vms).values().cloned().collect();
        for e in entries {
            let mut e = lock(&e);
            if e.pid == pid && e.alive() && e.status != VmStatus::Frozen {
                e.status = VmStatus::Frozen;
                let id = e.rec.id.clone();
                self.events.push(
                    "vm-frozen",
                    Some(&id),
                    format!("pid {pid}: lease renewal failing"),
                );
            }
        }
    }

    fn adopt_all(&self) -> Result<(), AgentError> {
        let recs =
            persist::load(&self.cfg.run_dir.join("agent.json")).map_err(AgentError::Internal)?;
        for rec in recs {
            vms::adopt(self, rec);
        }
        self.persist();
        Ok(())
    }
}

impl AgentOps for Agent {
    fn host(&self) -> HostInfo {
        let running = lock(&self.vms)
            .values()
            .filter(|e| lock(e).status == VmStatus::Running)
            .count();
        HostInfo {
            name: self.cfg.host_name.clone(),
            host_id: self.cfg.host_id,
            cpus: std::thread::available_parallelism()
                .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
                .unwrap_or(1),
            memory_mib: meminfo_mib(),
            planes: self.cfg.planes.clone(),
            agent_boot: self.boot.clone(),
            vms_running: u32::try_from(running).unwrap_or(u32::MAX),
        }
    }

    fn list_vms(&self) -> Vec<VmInfo> {
        lock(&self.vms).values().map(|e| lock(e).info()).collect()
    }

    fn get_vm(&self, id: &str) -> Result<VmInfo, AgentError> {
        let e = self.entry(id)?;
        let info = lock(&e).info();
        Ok(info)
    }

    fn start_vm(&self, req: StartVm) -> Result<VmInfo, AgentError> {
        vms::start(self, req)
    }

    fn stop_vm(&self, id: &str, timeout: Duration) -> Result<VmInfo, AgentError> {
        let e = self.entry(id)?;
        let info = vms::stop(self, &mut lock(&e), timeout)?;
        self.persist();
        Ok(info)
    }

    fn kill_vm(&self, id: &str) -> Result<VmInfo, AgentError> {
        let e = self.entry(id)?;
        let info = vms::kill(self, &mut lock(&e))?;
        self.persist();
        Ok(info)
    }

    fn pause_vm(&self, id: &str) -> Result<VmInfo, AgentError> {
        let e = self.entry(id)?;
        let info = vms::pause(self, &mut lock(&e))?;
        Ok(info)
    }

    fn resume_vm(&self, id: &str) -> Result<VmInfo, AgentError> {
        let e = self.entry(id)?;
        let info = vms::resume(self, &mut lock(&e))?;
        Ok(info)
    }

    fn leases(&self) -> Result<serde_json::Value, AgentError> {
        match self.leased(&Request::Status)? {
            Response::Status(st) => serde_json::to_value(st)
                .map_err(|e| AgentError::Internal(format!("encoding leased status: {e}"))),
            other => Err(AgentError::Unavailable(format!(
                "leased answered {other:?}"
            ))),
        }
    }

    fn events_since(&self, after: u64, wait: Duration) -> Vec<AgentEvent> {
        self.events.since(after, wait)
    }
}

fn meminfo_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}
