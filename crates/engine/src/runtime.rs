//! The engine's loop: heartbeats and the storage truth in, the core's
//! commands out (VM starts through the agents, events into the store).
//! One thread runs the loop; each VM start runs on a thread of its own and
//! reports back through a channel, so a slow agent never stalls detection.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nosplit_agent::client::{AgentClient, CallError};
use nosplit_agent::model::{AgentError, LeaseSpec, StartVm, VmKind as AgentKind, VmStatus};
use nosplit_clock::{Clock, MonoTime, RealClock};
use nosplit_engine_core::engine::{Core, CoreConfig, Input};
use nosplit_engine_core::model::{Disk, Domain, EngineEvent, Host, Vm, VmKind};
use nosplit_engine_core::{Command, LeaseState, StartOutcome};
use nosplit_engine_store::Store;
use nosplit_lease::Liveness;
use nosplit_lease_runtime::watch::LockspaceWatch;

use crate::beats::{Listeners, Received};
use crate::config::EngineConfig;

/// Loop period.
const TICK: Duration = Duration::from_millis(100);
/// How often the agents are asked what runs on them.
const POLL_AGENTS: Duration = Duration::from_secs(2);

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The running engine.
pub struct Engine {
    pub(crate) cfg: EngineConfig,
    pub(crate) store: Box<dyn Store>,
    pub(crate) core: Mutex<Core>,
    pub(crate) watches: Mutex<BTreeMap<String, LockspaceWatch>>,
    pub(crate) epoch: MonoTime,
    results: Mutex<Sender<Input>>,
    /// The core's task ids (restart at 1 with the process) to the store's
    /// (stable across restarts).
    task_ids: Mutex<BTreeMap<u64, u64>>,
    /// Per host: the agent's boot id and the last event imported.
    cursors: Mutex<BTreeMap<String, (String, u64)>>,
    /// Per host: the agent boot id its latest heartbeat carried.
    boots: Mutex<BTreeMap<String, String>>,
    /// Hosts whose agent poll is in flight.
    polling: Mutex<std::collections::BTreeSet<String>>,
    /// Hosts (or host/plane keys) with a warning raised and not yet cleared.
    warned: Mutex<std::collections::BTreeSet<String>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store.
    #[error("store: {0}")]
    Store(#[from] nosplit_engine_store::StoreError),
    /// The core refused the stored settings.
    #[error("core: {0}")]
    Core(#[from] nosplit_engine_core::CoreError),
    /// Heartbeat listeners.
    #[error(transparent)]
    Listen(#[from] crate::beats::ListenError),
    /// A thread.
    #[error("starting the engine loop: {0}")]
    Thread(std::io::Error),
}

/// A host's view of a domain directory: `host_path` with `{host}` replaced.
pub fn host_dir(d: &Domain, host: &str) -> PathBuf {
    PathBuf::from(d.host_path.replace("{host}", host))
}

fn lease_state(l: Liveness) -> LeaseState {
    match l {
        Liveness::Free => LeaseState::Free,
        Liveness::Live => LeaseState::Live,
        Liveness::Fail => LeaseState::Fail,
        Liveness::Dead => LeaseState::Dead,
    }
}

impl Engine {
    /// Opens the store, loads the inventory into the core, starts the
    /// heartbeat listeners, the lockspace watchers and the loop.
    pub fn start(
        cfg: EngineConfig,
        store: Box<dyn Store>,
    ) -> Result<(Arc<Engine>, Listeners), StartError> {
        let now = RealClock.now();
        let core_cfg = CoreConfig {
            plane_timeout: cfg.plane_timeout,
            epoch: now,
            ..CoreConfig::default()
        };
        let mut core = Core::new(core_cfg, store.ha_settings()?, store.strategy()?, now)?;
        for h in store.list_hosts()? {
            core.on_event(Input::UpsertHost(h), now)?;
        }
        for v in store.list_vms()? {
            core.on_event(Input::UpsertVm(v), now)?;
        }
        let (tx, rx) = channel();
        let (btx, brx) = channel();
        let listeners = Listeners::start(&cfg.heartbeats, btx)?;
        let engine = Arc::new(Engine {
            cfg,
            store,
            core: Mutex::new(core),
            watches: Mutex::new(BTreeMap::new()),
            epoch: now,
            results: Mutex::new(tx),
            task_ids: Mutex::new(BTreeMap::new()),
            cursors: Mutex::new(BTreeMap::new()),
            boots: Mutex::new(BTreeMap::new()),
            polling: Mutex::new(std::collections::BTreeSet::new()),
            warned: Mutex::new(std::collections::BTreeSet::new()),
        });
        for d in engine.store.list_domains()? {
            engine.watch(&d);
        }
        let e = engine.clone();
        std::thread::Builder::new()
            .name("engine-loop".into())
            .spawn(move || e.run(&brx, &rx))
            .map_err(StartError::Thread)?;
        Ok((engine, listeners))
    }

    /// Starts watching a domain's lockspace (the storage truth).
    pub(crate) fn watch(&self, d: &Domain) {
        match LockspaceWatch::start(&crate::domainops::ids(Path::new(&d.path))) {
            Ok(w) => {
                lock(&self.watches).insert(d.name.clone(), w);
            }
            Err(e) => self.publish(vec![Command::Event(self.event(
                "warning",
                "domain-unreadable",
                None,
                format!("domain {}: {e}", d.name),
            ))]),
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(RealClock.now().saturating_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn event(
        &self,
        severity: &str,
        kind: &str,
        host: Option<&str>,
        detail: String,
    ) -> EngineEvent {
        EngineEvent {
            seq: 0,
            at_ms: self.now_ms(),
            severity: severity.into(),
            kind: kind.into(),
            host: host.map(str::to_string),
            vm: None,
            detail,
        }
    }

    /// Feeds one input to the core and carries out what it asks.
    pub(crate) fn input(&self, i: Input) -> Result<(), nosplit_engine_core::CoreError> {
        let cmds = lock(&self.core).on_event(i, RealClock.now())?;
        self.publish(cmds);
        Ok(())
    }

    fn run(self: Arc<Self>, beats: &Receiver<Received>, results: &Receiver<Input>) {
        let mut last_lease: BTreeMap<String, LeaseState> = BTreeMap::new();
        let mut last_poll = RealClock.now();
        loop {
            let hosts: Vec<Host> = self.store.list_hosts().unwrap_or_default();
            let by_id: BTreeMap<u32, &Host> = hosts.iter().map(|h| (h.host_id, h)).collect();
            while let Ok(b) = beats.try_recv() {
                let Some(h) = by_id.get(&b.host_id) else {
                    continue;
                };
                if crate::beats::from_host(h, &b) {
                    let mut boots = lock(&self.boots);
                    if boots.get(&h.name) != Some(&b.boot) {
                        boots.insert(h.name.clone(), b.boot.clone());
                    }
                    drop(boots);
                    let _ = self.input(Input::Heartbeat {
                        host: h.name.clone(),
                        plane: b.plane,
                    });
                } else {
                    self.warn_once(
                        &format!("{}/beat-{}", h.name, b.plane.name()),
                        &h.name,
                        "heartbeat-spoofed",
                        format!(
                            "a {} heartbeat for host {} came from {}, not from its address on that plane; ignored",
                            b.plane.name(), h.name, b.from
                        ),
                    );
                }
            }
            while let Ok(r) = results.try_recv() {
                let _ = self.input(r);
            }
            // The storage truth: every host's lease in the first domain that knows it.
            let mut seen: BTreeMap<u32, Liveness> = BTreeMap::new();
            for w in lock(&self.watches).values() {
                for (h, l, _) in w.hosts() {
                    seen.entry(h).or_insert(l);
                }
            }
            for h in &hosts {
                let st = seen
                    .get(&h.host_id)
                    .map_or(LeaseState::Unknown, |l| lease_state(*l));
                if last_lease.insert(h.name.clone(), st) != Some(st) {
                    let _ = self.input(Input::Lease {
                        host: h.name.clone(),
                        state: st,
                    });
                }
            }
            let now = RealClock.now();
            if now.saturating_since(last_poll) >= POLL_AGENTS {
                last_poll = now;
                self.poll_agents(&hosts);
            }
            let cmds = lock(&self.core).tick(RealClock.now());
            self.publish(cmds);
            std::thread::sleep(TICK);
        }
    }

    /// A client of `h`'s agent, with `h`'s own token.
    pub(crate) fn agent_client(&self, h: &Host) -> Result<AgentClient, String> {
        let addr = h
            .agent
            .parse()
            .map_err(|_| format!("host {}: bad agent address {}", h.name, h.agent))?;
        let token = self
            .cfg
            .agent_tokens
            .token(&h.name)
            .map_err(|e| e.to_string())?;
        Ok(AgentClient::new(addr, token.expose()))
    }

    /// Asks every agent what runs on it, each on a thread of its own (a
    /// dead or hung agent never stalls the loop, nor the other polls); the
    /// answers come back through the results channel. A host whose last
    /// poll has not answered yet is skipped.
    fn poll_agents(self: &Arc<Self>, hosts: &[Host]) {
        for h in hosts {
            if !lock(&self.polling).insert(h.name.clone()) {
                continue;
            }
            let (e, h) = (self.clone(), h.clone());
            let name = h.name.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("poll-{}", h.name))
                .spawn(move || {
                    e.poll_agent(&h);
                    lock(&e.polling).remove(&h.name);
                });
            if spawned.is_err() {
                lock(&self.polling).remove(&name);
            }
        }
    }

    /// One agent's VMs, as inputs for the core.
    fn poll_agent(&self, h: &Host) {
        let c = match self.agent_client(h) {
            Ok(c) => c,
            Err(m) => {
                self.warn_once(&h.name, &h.name, "agent-unusable", m);
                return;
            }
        };
        let Ok(vms) = c.list() else { return };
        lock(&self.warned).remove(&h.name);
        self.import_agent_events(h, &c);
        let tx = lock(&self.results).clone();
        for v in vms {
            // Unknown: its process lives (and holds its lease) though the
            // agent cannot see its state just now.
            let input = if matches!(
                v.status,
                VmStatus::Running
                    | VmStatus::Paused
                    | VmStatus::Frozen
                    | VmStatus::IoError
                    | VmStatus::Unknown
            ) {
                Input::VmRunning {
                    vm: v.id,
                    host: h.name.clone(),
                }
            } else if v.status == VmStatus::Stopped {
                self.stopped_there(&v.id, &h.name);
                continue;
            } else if v.status == VmStatus::Crashed {
                // Ignored by the core unless the VM runs there in its view.
                Input::VmExited {
                    vm: v.id,
                    host: h.name.clone(),
                }
            } else {
                continue;
            };
            if tx.send(input).is_err() {
                return;
            }
        }
    }

    /// A VM its host reports stopped (its guest shut down, or someone
    /// stopped it through the agent) was stopped on purpose: recorded as
    /// wanted stopped, in the store and the core, so HA never restarts it,
    /// this engine or the next. Only for the instance the core believes
    /// runs there.
    fn stopped_there(&self, vm: &str, host: &str) {
        if !lock(&self.core).runs_on(vm, host) {
            return;
        }
        let desired = nosplit_engine_core::model::Desired::Stopped;
        if self
            .store
            .modify_vm(vm, &mut |v| v.desired = desired)
            .is_err()
        {
            return;
        }
        let _ = self.input(Input::SetDesired {
            vm: vm.to_string(),
            desired,
        });
        let _ = self.input(Input::VmExited {
            vm: vm.to_string(),
            host: host.to_string(),
        });
    }

    /// Copies the agent's new events into the engine's (kind prefixed
    /// `agent-`, host and VM kept), so `nosplit events` shows what each
    /// host saw: VMs paused, frozen, crashed, leases lost or revalidated.
    /// The cursor is the agent's boot id (from its heartbeats, which carry
    /// it) and last sequence number: a new boot starts from its first
    /// event; an agent seen for the first time (engine start) starts from
    /// now, its older events are in its log. Before its first heartbeat an
    /// agent's events wait.
    fn import_agent_events(&self, h: &Host, c: &AgentClient) {
        let Some(boot) = lock(&self.boots).get(&h.name).cloned() else {
            return;
        };
        let cursor = lock(&self.cursors).get(&h.name).cloned();
        let after = match &cursor {
            Some((b, seq)) if *b == boot => *seq,
            _ => 0,
        };
        let Ok(events) = c.events(after) else { return };
        let last = events.iter().map(|e| e.seq).max().unwrap_or(after);
        lock(&self.cursors).insert(h.name.clone(), (boot, last));
        if cursor.is_none() {
            return;
        }
        let cmds = events
            .into_iter()
            .filter(|e| e.seq > after)
            .map(|e| {
                let mut ev = self.event(
                    agent_event_severity(&e.kind),
                    &format!("agent-{}", e.kind),
                    Some(&h.name),
                    e.detail,
                );
                ev.vm = e.vm;
                Command::Event(ev)
            })
            .collect();
        self.publish(cmds);
    }

    /// A warning event about `host`, once per `key` until the condition
    /// clears (the key is removed from `warned`).
    fn warn_once(&self, key: &str, host: &str, kind: &str, detail: String) {
        if lock(&self.warned).insert(key.to_string()) {
            self.publish(vec![Command::Event(self.event(
                "warning",
                kind,
                Some(host),
                detail,
            ))]);
        }
    }

    /// Stores events, and starts VMs on their own threads.
    pub(crate) fn publish(&self, cmds: Vec<Command>) {
        for c in cmds {
            match c {
                Command::Event(e) => {
                    eprintln!(
                        "engine: {} {} {} {}",
                        e.severity,
                        e.kind,
                        e.host.as_deref().or(e.vm.as_deref()).unwrap_or("-"),
                        e.detail
                    );
                    let _ = self.store.append_event(&e);
                }
                Command::TaskUpdate(t) => self.record_task(t),
                Command::StartVm { vm, host, task } => {
                    let job = self.start_job(&vm, &host);
                    let tx = lock(&self.results).clone();
                    let spawned = std::thread::Builder::new()
                        .name(format!("start-{vm}"))
                        .spawn(move || {
                            let outcome = match job {
                                Ok(j) => j.run(),
                                Err(e) => StartOutcome::Failed(e),
                            };
                            let _ = tx.send(Input::StartResult { task, outcome });
                        });
                    if spawned.is_err() {
                        let _ = lock(&self.results).send(Input::StartResult {
                            task,
                            outcome: StartOutcome::Failed("no thread for the start".into()),
                        });
                    }
                }
            }
        }
    }

    /// Keeps a task in the store (tasks survive an engine restart; their
    /// ids there are the store's, the core's id is kept in the detail).
    fn record_task(&self, mut t: nosplit_engine_core::model::Task) {
        let core_id = t.id;
        let mut ids = lock(&self.task_ids);
        if !t.detail.contains("engine task") {
            t.detail = format!("{} (engine task {core_id})", t.detail)
                .trim_start()
                .to_string();
        }
        match ids.get(&core_id) {
            Some(id) => {
                t.id = *id;
                let _ = self.store.update_task(&t);
            }
            None => {
                if let Ok(id) = self.store.append_task(&t) {
                    ids.insert(core_id, id);
                }
            }
        }
    }

    /// Everything a start needs, read now (the thread does only the call).
    pub(crate) fn start_job(&self, vm: &str, host: &str) -> Result<StartJob, String> {
        let v = self.store.get_vm(vm).map_err(|e| e.to_string())?;
        let h = self.store.get_host(host).map_err(|e| e.to_string())?;
        let d = self
            .store
            .get_domain(&v.domain)
            .map_err(|e| e.to_string())?;
        let disks = self.store.vm_disks(vm).map_err(|e| e.to_string())?;
        Ok(StartJob {
            client: self.agent_client(&h)?,
            req: start_request(&v, &d, &disks, host),
        })
    }
}

/// How serious an agent's event is, by its kind.
fn agent_event_severity(kind: &str) -> &'static str {
    const BAD: &[&str] = &[
        "crashed",
        "killed",
        "lost",
        "failed",
        "orphan",
        "gone",
        "io-error",
        "unconfirmed",
        "trouble",
        "unreachable",
    ];
    if BAD.iter().any(|b| kind.contains(b)) {
        "warning"
    } else {
        "info"
    }
}

/// The agent request that starts `v` (with its `disks`, the first one
/// `disk`, the rest `extra_disks` in order) on `host`, every path as that
/// host sees its domain.
pub(crate) fn start_request(v: &Vm, d: &Domain, disks: &[Disk], host: &str) -> StartVm {
    let dir = host_dir(d, host);
    let extra_disks = disks
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, k)| {
            crate::domainops::vm_disk(&dir, &v.id, i, &k.name)
                .display()
                .to_string()
        })
        .collect();
    StartVm {
        id: v.id.clone(),
        kind: match v.kind {
            VmKind::Qemu => AgentKind::Qemu,
            VmKind::Process => AgentKind::Process,
        },
        disk: crate::domainops::disk(&dir, &v.id).display().to_string(),
        extra_disks,
        memory_mib: v.memory_mib,
        vcpus: v.vcpus,
        lease: Some(LeaseSpec {
            lockspace: d.name.clone(),
            path: crate::domainops::xleases(&dir).display().to_string(),
            offset: v.lease_offset,
        }),
        inst: Some(format!(
            "{}.{:04x}-{}.{host}",
            v.id,
            RUN.get_or_init(rand::random::<u16>),
            INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        )),
    }
}

/// This engine process's random tag in instance ids, so ids never repeat
/// across engine restarts.
static RUN: std::sync::OnceLock<u16> = std::sync::OnceLock::new();

/// Numbers the instances this engine starts (`<vm>.<run>-<n>.<host>`).
static INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// One VM start, ready to run on its own thread.
#[derive(Debug)]
pub(crate) struct StartJob {
    client: AgentClient,
    req: StartVm,
}

impl StartJob {
    pub(crate) fn run(&self) -> StartOutcome {
        match self.client.start(&self.req) {
            Ok(_) => StartOutcome::Ok,
            Err(CallError::Agent(AgentError::Conflict(m))) if m.contains("lease") => {
                StartOutcome::Busy
            }
            Err(CallError::Agent(AgentError::Unavailable(m))) if m.contains("still joining") => {
                StartOutcome::Busy
            }
            Err(e) => StartOutcome::Failed(e.to_string()),
        }
    }
}
