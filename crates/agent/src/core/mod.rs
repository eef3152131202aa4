//! The agent's core: the VMs of this host, each bound to its lease through
//! `leased`, watched for exits and I/O errors, frozen by `leased`'s freeze
//! hook when renewal fails and thawed only when `leased` reports the lease
//! revalidated. It implements [`AgentOps`] for the HTTP layer.
//!
//! Restart: the VMs are recorded in `<run_dir>/agent.json`; a new agent
//! adopts the ones still running (pid + start time, then QMP) and checks
//! with `leased` that each still holds its lease. Only `leased`'s answer
//! "not held by this process" kills a VM; no answer keeps it as it is and
//! the check is retried (see [`reconcile`]). A live VM the agent cannot
//! reach (QMP) is kept, reported `unknown`, and reached again later.
//!
//! - [`vms`]: one VM's life cycle on request (start, stop, pause, ...).
//! - [`adopt`] and [`observe`]: seeing VMs, after a restart and all along.
//! - [`reconcile`]: the periodic check against `leased`'s own view.
//! - [`policy`]: the pure rules all of these apply.

mod adopt;
mod events;
mod leasewatch;
mod observe;
pub mod persist;
mod policy;
mod reconcile;
#[cfg(test)]
mod tests;
mod vms;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nosplit_leased::api::{Request, Response};
use nosplit_leased::client::Client;
use nosplit_vmrt::driver::{ProcIdentity, ProcessDriver, RunningVm, VmDriver};

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
    /// The handle; `None` for an adopted VM not reached yet (QMP).
    pub(crate) vm: Option<Box<dyn RunningVm>>,
    /// Its process; kept once it is gone (leased may still list it).
    pub(crate) ident: Option<ProcIdentity>,
    /// The last known state (reported `unknown` while `unreachable`).
    status: VmStatus,
    pub(crate) pid: u32,
    pub(crate) since: Instant,
    /// Why the agent cannot see the live VM now (QMP failing).
    pub(crate) unreachable: Option<String>,
    /// When to try to reach it again.
    pub(crate) retry_at: Instant,
    /// `leased` confirmed the process holds the lease (false after an
    /// adoption until it answers).
    pub(crate) lease_confirmed: bool,
    /// "Lease unconfirmed" was reported.
    pub(crate) unconfirmed_said: bool,
    /// When it was frozen.
    pub(crate) frozen_since: Option<Instant>,
    /// QEMU reported the guest powered itself off.
    pub(crate) guest_shutdown: bool,
    /// Counts status changes (a decision made on an older view is dropped).
    pub(crate) epoch: u64,
}

impl VmEntry {
    pub(crate) fn new(
        rec: VmRecord,
        vm: Option<Box<dyn RunningVm>>,
        ident: ProcIdentity,
    ) -> VmEntry {
        let now = Instant::now();
        VmEntry {
            rec,
            vm,
            ident: Some(ident),
            status: VmStatus::Running,
            pid: ident.pid,
            since: now,
            unreachable: None,
            retry_at: now,
            lease_confirmed: true,
            unconfirmed_said: false,
            frozen_since: None,
            guest_shutdown: false,
            epoch: 0,
        }
    }

    fn info(&self) -> VmInfo {
        VmInfo {
            id: self.rec.id.clone(),
            inst: self.rec.inst.clone(),
            kind: self.rec.kind,
            status: self.reported(),
            pid: self.pid,
            lver: self.rec.lver,
            uptime_s: self.since.elapsed().as_secs(),
        }
    }

    /// The status as reported.
    pub(crate) fn reported(&self) -> VmStatus {
        if self.alive() && self.unreachable.is_some() {
            VmStatus::Unknown
        } else {
            self.status
        }
    }

    pub(crate) fn status(&self) -> VmStatus {
        self.status
    }

    /// Changes the status (and when it was frozen).
    pub(crate) fn set_status(&mut self, s: VmStatus) {
        if s == self.status {
            return;
        }
        self.frozen_since = (s == VmStatus::Frozen).then(Instant::now);
        self.status = s;
        self.epoch += 1;
        if !self.alive() {
            self.pid = 0;
        }
    }

    pub(crate) fn alive(&self) -> bool {
        !matches!(self.status, VmStatus::Stopped | VmStatus::Crashed)
    }

    /// The process still exists (same pid and start time, no zombie).
    pub(crate) fn process_alive(&self) -> bool {
        self.ident.is_some_and(|i| i.is_alive())
    }
}

/// A thread of the agent's.
type Worker = fn(&Agent);

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
    /// Pids being started (registered with leased, not yet in `vms`).
    pub(crate) starting: Mutex<BTreeSet<u32>>,
    /// Orphan holders (pid, start time) already reported.
    pub(crate) orphans_said: Mutex<BTreeSet<(u32, u64)>>,
    /// Ask for a reconciliation with leased now.
    pub(crate) reconcile_now: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Agent {
    /// The core without its threads and without adopting anything.
    pub(crate) fn new(cfg: CoreConfig) -> Result<Agent, AgentError> {
        std::fs::create_dir_all(cfg.run_dir.join("vms")).map_err(|e| {
            AgentError::Internal(format!("creating {}: {e}", cfg.run_dir.display()))
        })?;
        Ok(Agent {
            events: EventLog::new(Instant::now()),
            vms: Mutex::new(BTreeMap::new()),
            qemu: Mutex::new(None),
            process: Arc::new(ProcessDriver::new()),
            boot: format!("{:016x}", rand::random::<u64>()),
            counter: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            starting: Mutex::new(BTreeSet::new()),
            orphans_said: Mutex::new(BTreeSet::new()),
            reconcile_now: AtomicBool::new(false),
            cfg,
        })
    }

    /// Starts the core: adopts recorded VMs and checks their leases with
    /// leased, then watches VMs and leases on threads of its own.
    pub fn start(cfg: CoreConfig) -> Result<Arc<Agent>, AgentError> {
        let agent = Arc::new(Agent::new(cfg)?);
        agent.adopt_all()?;
        let threads: [(&str, Worker); 3] = [
            ("agent-monitor", Agent::monitor_loop),
            ("agent-leases", leasewatch::run),
            ("agent-reconcile", reconcile::run),
        ];
        for (name, f) in threads {
            let a = agent.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || f(&a))
                .map_err(|e| AgentError::Internal(format!("{name} thread: {e}")))?;
        }
        agent
            .events
            .push("agent-started", None, format!("boot {}", agent.boot));
        Ok(agent)
    }

    /// Asks the threads to end (they notice within a second) and lets go
    /// of every VM (their QMP connections close; the VMs run on, and a new
    /// agent adopts them).
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        for e in self.entries() {
            lock(&e).vm = None;
        }
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

    /// The entries, without holding the map's lock.
    pub(crate) fn entries(&self) -> Vec<Arc<Mutex<VmEntry>>> {
        lock(&self.vms).values().cloned().collect()
    }

    fn monitor_loop(&self) {
        while !self.stopping() {
            let mut changed = false;
            for e in self.entries() {
                let mut e = lock(&e);
                if self.stopping() {
                    return;
                }
                changed |= observe::observe(self, &mut e);
            }
            if changed {
                self.persist();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Thaws the VM whose process is `pid` (its lease was revalidated).
    pub(crate) fn thaw_pid(&self, pid: u32) {
        for e in self.entries() {
            let mut e = lock(&e);
            if e.pid == pid && e.alive() {
                vms::thaw(self, &mut e, "lease revalidated");
            }
        }
    }

    /// Marks the VM whose process is `pid` frozen (leased ran its hook).
    pub(crate) fn frozen_pid(&self, pid: u32, why: &str) {
        for e in self.entries() {
            let mut e = lock(&e);
            if e.pid == pid && e.alive() && e.status != VmStatus::Frozen {
                e.set_status(VmStatus::Frozen);
                let id = e.rec.id.clone();
                self.events
                    .push("vm-frozen", Some(&id), format!("pid {pid}: {why}"));
            }
        }
    }

    /// The VM ids of the live VMs matching `f`.
    pub(crate) fn vm_ids(&self, f: impl Fn(&VmEntry) -> bool) -> Vec<String> {
        self.entries()
            .iter()
            .filter_map(|e| {
                let e = lock(e);
                (e.alive() && f(&e)).then(|| e.rec.id.clone())
            })
            .collect()
    }

    fn adopt_all(&self) -> Result<(), AgentError> {
        let recs =
            persist::load(&self.cfg.run_dir.join("agent.json")).map_err(AgentError::Internal)?;
        for rec in recs {
            adopt::adopt(self, rec);
        }
        reconcile::once(self);
        self.persist();
        Ok(())
    }
}

impl AgentOps for Agent {
    fn host(&self) -> HostInfo {
        let running = lock(&self.vms)
            .values()
            .filter(|e| lock(e).reported() == VmStatus::Running)
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
        self.persist();
        Ok(info)
    }

    fn resume_vm(&self, id: &str) -> Result<VmInfo, AgentError> {
        let e = self.entry(id)?;
        let info = vms::resume(self, &mut lock(&e))?;
        self.persist();
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
