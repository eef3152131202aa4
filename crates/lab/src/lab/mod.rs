//! A running lab, owned by one process (the scenario runner, the demo or
//! the keeper): hosts with their daemons, the storage domain, VM instances,
//! the watchers and the oracle. Every action is logged on a timeline.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nosplit_agent::model::{AgentError, LeaseSpec, StartVm, VmKind as AgentKind, VmStatus};
use nosplit_clock::{Clock, MonoTime, RealClock};
use nosplit_heartbeat::oracle::OracleHandle;
use nosplit_labnet::{DropMode, LabName, Plane};
use nosplit_lease::Liveness;

use crate::domain::LeaseOffsets;
use crate::host::{Daemons, HostCtx};
use crate::layout::Layout;
use crate::netprobe::NetProbe;
use crate::scenario::{NetFault, PlaneSel, VmKind as Kind};
use crate::LabError;
use nosplit_agent::client::CallError;
use nosplit_lease_runtime::watch::LockspaceWatch;

/// What a lab is made of.
#[derive(Debug, Clone)]
pub struct LabSpec {
    /// Lab name (`[a-z][a-z0-9]{0,4}`).
    pub name: String,
    /// Hosts.
    pub hosts: u32,
    /// Lockspace io_timeout.
    pub io_timeout_ms: u32,
    /// Root directory (default `/run/nosplit-lab/<name>`).
    pub root: Option<PathBuf>,
    /// The `nosplit` binary the hosts run.
    pub bin: PathBuf,
    /// VMs under leases.
    pub protection: bool,
    /// The VMs (id, kind).
    pub vms: Vec<(String, Kind)>,
    /// Heartbeat interval.
    pub interval_ms: u32,
    /// Address prefix of the planes (`a.b`: 10.77 gives 10.77.{1,2,3}.0/24);
    /// labs that run at the same time need different prefixes.
    pub prefix: nosplit_labnet::Prefix,
    /// Run the real engine (`nosplit engine`) and let it place and recover
    /// the VMs; otherwise the lab's own policy does.
    pub engine: bool,
    /// A lab of the same name that is up already is removed first; without
    /// this, [`Lab::up`] refuses ([`LabError::Exists`]).
    pub replace: bool,
}

/// One host at run time.
#[derive(Debug)]
pub struct HostRt {
    /// How to act on it.
    pub ctx: HostCtx,
    /// Its daemons (`None`: powered off).
    pub daemons: Option<Daemons>,
    /// Its storage fault mode.
    pub storage: String,
}

/// One VM instance at run time.
#[derive(Debug)]
pub struct Instance {
    /// Instance id.
    pub inst: String,
    /// Host.
    pub host: u32,
    /// The VM's process on its host.
    pub pid: u32,
    /// Exit already reported.
    pub reported_exit: bool,
}

/// A running lab.
#[derive(Debug)]
pub struct Lab {
    /// Its spec.
    pub spec: LabSpec,
    /// Its name.
    pub name: LabName,
    /// Its paths.
    pub layout: Layout,
    /// Hosts by number.
    pub hosts: BTreeMap<u32, HostRt>,
    /// Lease offsets per VM.
    pub leases: LeaseOffsets,
    /// VM kinds.
    pub kinds: BTreeMap<String, Kind>,
    /// Live and dead instances (dead ones until the lab ends).
    pub instances: Vec<(String, Instance)>,
    counter: u64,
    /// When the lab came up (`CLOCK_BOOTTIME`).
    pub t0: MonoTime,
    /// `(time since t0, what)`.
    pub timeline: Vec<(Duration, String)>,
    /// The storage truth.
    pub store: Option<LockspaceWatch>,
    /// Naive network detection.
    pub net: Option<NetProbe>,
    /// The oracle.
    pub oracle: Option<OracleHandle>,
    /// When the probes started.
    pub probes_since: Instant,
    /// The real engine, when the spec asks for it.
    pub engine: Option<crate::engine::LabEngine>,
    engine_epoch: MonoTime,
}

mod up;

pub use up::existing;

/// Why a start failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    /// The lease is held by another (live) owner.
    #[error("lease busy: {0}")]
    Busy(String),
    /// The host is not ready (its leased is still joining).
    #[error("host not ready: {0}")]
    NotReady(String),
    /// Anything else.
    #[error("{0}")]
    Failed(String),
}

/// Removes whatever a lab named `name` left behind (processes, mounts,
/// namespaces, links, cgroups, files). Safe to run twice.
pub fn down(name: &str, root: Option<PathBuf>) -> Result<String, LabError> {
    let lab = LabName::new(name)?;
    let layout = Layout::new(root.unwrap_or_else(|| Layout::default_root(name)));
    let report = nosplit_labnet::down(&lab)?;
    let mut mounts = 0;
    if let Ok(entries) = std::fs::read_dir(layout.root().join("hosts")) {
        for e in entries.flatten() {
            let mnt = e.path().join("mnt");
            if crate::host::is_mounted(&mnt) {
                crate::host::detach_mount(&mnt)?;
                mounts += 1;
            }
        }
    }
    let had_files = layout.root().exists();
    if had_files {
        std::fs::remove_dir_all(layout.root())
            .map_err(|e| LabError::io("removing", layout.root(), e))?;
    }
    let left = if report.stragglers.is_empty() && report.cgroups_left.is_empty() {
        String::new()
    } else {
        format!(
            "; STILL THERE (run down again): processes {:?}, cgroups {:?}",
            report.stragglers, report.cgroups_left
        )
    };
    Ok(format!(
        "lab {name} down: {} process(es) killed, {} link(s), {} namespace(s), {} cgroup(s), {mounts} mount(s) removed; files {}{left}",
        report.killed.len(),
        report.links.len(),
        report.namespaces.len(),
        report.cgroups.len(),
        if had_files { "removed" } else { "already gone" }
    ))
}

/// Sets a network fault on host `n` of lab `lab`, on one plane or all.
pub fn net_fault(lab: &LabName, n: u32, plane: PlaneSel, fault: NetFault) -> Result<(), LabError> {
    let planes: &[Plane] = match plane {
        PlaneSel::Mgmt => &[Plane::Management],
        PlaneSel::Svc => &[Plane::Service],
        PlaneSel::Stor => &[Plane::Storage],
        PlaneSel::All => &[Plane::Management, Plane::Service, Plane::Storage],
    };
    for &p in planes {
        let (up, drop) = match fault {
            NetFault::Down => (false, DropMode::None),
            NetFault::Drop => (true, DropMode::Both),
            NetFault::DropIn => (true, DropMode::In),
            NetFault::DropOut => (true, DropMode::Out),
            NetFault::Ok => (true, DropMode::None),
        };
        nosplit_labnet::set_link(lab, n, p, up)?;
        nosplit_labnet::set_drop(lab, n, p, drop)?;
    }
    Ok(())
}

impl Lab {
    /// When the engine's clock started (its events count from there).
    pub fn engine_epoch(&self) -> MonoTime {
        self.engine_epoch
    }

    /// Seconds since the lab came up.
    pub fn elapsed(&self) -> Duration {
        RealClock.now().saturating_since(self.t0)
    }

    /// Adds a line to the timeline.
    pub fn log(&mut self, what: impl Into<String>) {
        let t = self.elapsed();
        self.timeline.push((t, what.into()));
    }

    fn host(&self, n: u32) -> Result<&HostRt, LabError> {
        self.hosts.get(&n).ok_or_else(|| {
            LabError::Invalid(format!("no host {n} (hosts are 1..={})", self.spec.hosts))
        })
    }

    /// Is host `n` powered on?
    pub fn is_on(&self, n: u32) -> bool {
        self.hosts.get(&n).is_some_and(|h| h.daemons.is_some())
    }

    /// Kills every process of host `n` at once.
    pub fn power_off(&mut self, n: u32) -> Result<(), LabError> {
        let stragglers = {
            let h = self
                .hosts
                .get_mut(&n)
                .ok_or_else(|| LabError::Invalid(format!("no host {n}")))?;
            let mut d = h.daemons.take().unwrap_or_default();
            h.ctx.power_off(&mut d)?
        };
        // A host without power does not answer on any network either.
        net_fault(&self.name, n, PlaneSel::All, NetFault::Down)?;
        self.log(format!(
            "h{n}: power off{}",
            if stragglers.is_empty() {
                String::new()
            } else {
                format!(" ({} processes still exiting)", stragglers.len())
            }
        ));
        Ok(())
    }

    /// Notices hosts whose lab watchdog fired (the watchdog kills the whole
    /// host, itself included): they are off now, as after a reset that
    /// does not come back; their dead mount is taken away.
    pub fn check_resets(&mut self) {
        let mut reset = Vec::new();
        for (n, h) in &mut self.hosts {
            let fired = h
                .daemons
                .as_mut()
                .and_then(|d| d.watchdog.as_mut())
                .is_some_and(|w| matches!(w.try_wait(), Ok(Some(_))));
            if fired {
                reset.push(*n);
            }
        }
        for n in reset {
            let tail = std::fs::read_to_string(self.layout.log(n, "watchdog")).unwrap_or_default();
            let why = tail
                .lines()
                .rev()
                .find(|l| l.contains("SIGKILL"))
                .unwrap_or("")
                .to_string();
            let _ = self.power_off(n);
            self.log(format!("h{n}: reset by its watchdog: {why}"));
        }
    }

    /// Starts host `n`'s daemons again (it rejoins in the background).
    pub fn power_on(&mut self, n: u32) -> Result<(), LabError> {
        let h = self
            .hosts
            .get_mut(&n)
            .ok_or_else(|| LabError::Invalid(format!("no host {n}")))?;
        if h.daemons.is_some() {
            return Err(LabError::Invalid(format!("host {n} is already on")));
        }
        net_fault(&h.ctx.lab, n, PlaneSel::All, NetFault::Ok)?;
        h.daemons = Some(h.ctx.power_on()?);
        h.storage = "ok".into();
        self.log(format!("h{n}: power on"));
        Ok(())
    }

    /// Sets host `n`'s storage fault.
    pub fn storage(&mut self, n: u32, mode: &str) -> Result<(), LabError> {
        if !self.is_on(n) {
            return Err(LabError::Invalid(format!("host {n} is off")));
        }
        let reply = self.host(n)?.ctx.storage_fault(mode)?;
        if let Some(h) = self.hosts.get_mut(&n) {
            h.storage = mode.to_string();
        }
        self.log(format!("h{n}: storage {mode} ({reply})"));
        Ok(())
    }

    /// Sets a network fault on host `n`. A powered-off host has no links
    /// (power on brings them back): there the fault is only logged as not
    /// applied.
    pub fn net(&mut self, n: u32, plane: PlaneSel, fault: NetFault) -> Result<(), LabError> {
        self.host(n)?;
        if !self.is_on(n) {
            self.log(format!(
                "h{n}: net {plane:?} {fault:?} not applied: powered off, no links"
            ));
            return Ok(());
        }
        net_fault(&self.name, n, plane, fault)?;
        self.log(format!("h{n}: net {plane:?} {fault:?}"));
        Ok(())
    }

    /// A powered-on host's context and daemons.
    fn daemons(&mut self, n: u32) -> Result<(&HostCtx, &mut Daemons), LabError> {
        let h = self
            .hosts
            .get_mut(&n)
            .ok_or_else(|| LabError::Invalid(format!("no host {n}")))?;
        let d = h
            .daemons
            .as_mut()
            .ok_or_else(|| LabError::Invalid(format!("host {n} is off")))?;
        Ok((&h.ctx, d))
    }

    /// SIGKILLs host `n`'s `leased` (its holders keep running).
    pub fn leased_kill(&mut self, n: u32) -> Result<(), LabError> {
        let (_, d) = self.daemons(n)?;
        if let Some(mut c) = d.leased.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.log(format!("h{n}: leased killed"));
        Ok(())
    }

    /// Starts host `n`'s `leased` again.
    pub fn leased_start(&mut self, n: u32) -> Result<(), LabError> {
        let (ctx, d) = self.daemons(n)?;
        if d.leased.is_some() {
            return Err(LabError::Invalid(format!("host {n}: leased is running")));
        }
        d.leased = Some(ctx.start_leased()?);
        self.log(format!("h{n}: leased started"));
        Ok(())
    }

    /// Clears every storage and network fault on every powered-on host.
    /// Powered-off hosts keep their links down (power on clears them).
    pub fn heal(&mut self) -> Result<(), LabError> {
        let hosts: Vec<u32> = self.hosts.keys().copied().collect();
        for n in hosts {
            if self.is_on(n) {
                self.net(n, PlaneSel::All, NetFault::Ok)?;
                self.storage(n, "ok")?;
            } else {
                self.log(format!("h{n}: heal: powered off, its links stay down"));
            }
        }
        Ok(())
    }

    /// The host's liveness on storage, as the lab reads it.
    pub fn liveness(&self, n: u32) -> Option<Liveness> {
        self.store.as_ref().and_then(|s| s.liveness(n))
    }

    /// Has host `n` been silent on its management plane for `timeout`?
    pub fn net_lost(&self, n: u32, timeout: Duration) -> bool {
        self.net
            .as_ref()
            .is_some_and(|p| p.lost(n, timeout, self.probes_since))
    }

    /// Is `vm`'s lease visibly held by a live owner other than `host`? A
    /// cheap read that spares spawning a guest that could not get its
    /// lease; the lease itself still decides.
    pub fn lease_busy(&self, vm: &str) -> Option<String> {
        let off = *self.leases.get(vm)?;
        let mut s = nosplit_lease_runtime::direct::open(&self.layout.xleases(), None, None).ok()?;
        let info = nosplit_lease_runtime::direct::read_resource(&mut s, off).ok()?;
        let owner = info.leader.owner?;
        let store = self.store.as_ref()?;
        let (_, l, gen) = store
            .hosts()
            .into_iter()
            .find(|(h, _, _)| *h == owner.host_id)?;
        (l != Liveness::Dead && gen == owner.generation).then(|| {
            format!(
                "held by host {} generation {} ({l:?})",
                owner.host_id, owner.generation
            )
        })
    }

    /// Starts `vm` on host `n` through the host's agent, under its lease
    /// (unless protection is off).
    pub fn start_vm(&mut self, vm: &str, n: u32) -> Result<(), LaunchError> {
        if !self.is_on(n) {
            return Err(LaunchError::Failed(format!("host {n} is off")));
        }
        let kind = *self
            .kinds
            .get(vm)
            .ok_or_else(|| LaunchError::Failed(format!("no VM {vm}")))?;
        if let Some(e) = &self.engine {
            let v = e
                .client
                .start_vm(vm, Some(&format!("h{n}")))
                .map_err(|e| LaunchError::Failed(format!("engine: {e}")))?;
            let placed = v.host.as_deref().unwrap_or("no host yet");
            self.log(format!(
                "{vm}: started on h{n} by the engine (placed on {placed})"
            ));
            return Ok(());
        }
        if self.spec.protection {
            if let Some(why) = self.lease_busy(vm) {
                return Err(LaunchError::Busy(why));
            }
        }
        self.counter += 1;
        let inst = format!("{vm}.{}.h{n}", self.counter);
        if inst.len() > crate::scenario::MAX_INSTANCE_ID {
            return Err(LaunchError::Failed(format!(
                "instance id {inst:?} is longer than {} characters",
                crate::scenario::MAX_INSTANCE_ID
            )));
        }
        let ctx = self
            .hosts
            .get(&n)
            .map(|h| h.ctx.clone())
            .ok_or_else(|| LaunchError::Failed(format!("no host {n}")))?;
        let via = |p: &std::path::Path| self.layout.via(n, p).to_string_lossy().into_owned();
        let req = StartVm {
            id: vm.into(),
            kind: match kind {
                Kind::Qemu => AgentKind::Qemu,
                Kind::Process => AgentKind::Process,
            },
            disk: via(&self.layout.disk(vm)),
            extra_disks: vec![],
            memory_mib: 128,
            vcpus: 1,
            lease: match (self.spec.protection, self.leases.get(vm)) {
                (true, Some(off)) => Some(LeaseSpec {
                    lockspace: crate::layout::LOCKSPACE.into(),
                    path: via(&self.layout.xleases()),
                    offset: *off,
                }),
                _ => None,
            },
            inst: Some(inst.clone()),
        };
        let client = ctx
            .agent_client()
            .map_err(|e| LaunchError::Failed(e.to_string()))?;
        match client.start(&req) {
            Ok(info) => {
                self.log(format!(
                    "{vm}: started on h{n} as {inst} (pid {})",
                    info.pid
                ));
                self.instances.push((
                    vm.into(),
                    Instance {
                        inst,
                        host: n,
                        pid: info.pid,
                        reported_exit: false,
                    },
                ));
                Ok(())
            }
            Err(CallError::Agent(AgentError::Conflict(m))) => Err(LaunchError::Busy(m)),
            Err(CallError::Agent(AgentError::Unavailable(m))) if m.contains("still joining") => {
                Err(LaunchError::NotReady(m))
            }
            Err(e) => Err(LaunchError::Failed(format!("h{n}: {e}"))),
        }
    }

    /// Instances that exited since the last call, as reported by the
    /// agents of powered-on, reachable hosts (a powered-off or cut-off host
    /// reports nothing): `(vm, host, inst)`.
    pub fn exits(&mut self) -> Vec<(String, u32, String)> {
        let hosts: Vec<u32> = self
            .instances
            .iter()
            .filter(|(_, i)| !i.reported_exit && self.is_on(i.host))
            .map(|(_, i)| i.host)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut out = Vec::new();
        for n in hosts {
            let Some(client) = self.hosts.get(&n).and_then(|h| h.ctx.agent_client().ok()) else {
                continue;
            };
            let Ok(vms) = client.list() else { continue };
            for (vm, i) in &mut self.instances {
                if i.reported_exit || i.host != n {
                    continue;
                }
                let alive = vms.iter().any(|v| {
                    v.inst == i.inst && !matches!(v.status, VmStatus::Stopped | VmStatus::Crashed)
                });
                if !alive {
                    i.reported_exit = true;
                    out.push((vm.clone(), n, i.inst.clone()));
                }
            }
        }
        for (vm, host, inst) in &out {
            self.log(format!("{vm}: {inst} exited on h{host}"));
        }
        out
    }

    /// Stops every VM, powers every host off, and removes the lab.
    pub fn down(mut self) -> Result<String, LabError> {
        self.oracle = None;
        self.store = None;
        self.net = None;
        let hosts: Vec<u32> = self.hosts.keys().copied().collect();
        for n in hosts {
            if self.is_on(n) {
                let _ = self.power_off(n);
            }
        }
        down(&self.spec.name, Some(self.layout.root().to_path_buf()))
    }
}
