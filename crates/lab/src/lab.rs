//! A running lab, owned by one process (the scenario runner, the demo or
//! the keeper): hosts with their daemons, the storage domain, VM instances,
//! the watchers and the oracle. Every action is logged on a timeline.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nosplit_clock::{Clock, MonoTime, RealClock};
use nosplit_heartbeat::oracle::{Oracle, OracleHandle};
use nosplit_labnet::{DropMode, LabName, NetPlan, Plane};
use nosplit_lease::Liveness;
use nosplit_vmrt::driver::{RunningVm, VmDriver, VmKind};

use crate::domain::{self, LeaseOffsets};
use crate::host::{Daemons, HostCtx};
use crate::launch::{launch, LaunchError, LaunchReq};
use crate::layout::Layout;
use crate::netprobe::NetProbe;
use crate::scenario::{NetFault, PlaneSel, VmKind as Kind};
use crate::storewatch::StoreWatch;
use crate::LabError;

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
    /// The process.
    pub vm: Box<dyn RunningVm>,
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
    qemu: Option<Arc<dyn VmDriver>>,
    process: Arc<dyn VmDriver>,
    counter: u64,
    /// When the lab came up (`CLOCK_BOOTTIME`).
    pub t0: MonoTime,
    /// `(time since t0, what)`.
    pub timeline: Vec<(Duration, String)>,
    /// The storage truth.
    pub store: Option<StoreWatch>,
    /// Naive network detection.
    pub net: Option<NetProbe>,
    /// The oracle.
    pub oracle: Option<OracleHandle>,
    /// When the probes started.
    pub probes_since: Instant,
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
    /// Builds the lab: network, cgroups, storage domain, host daemons
    /// (joined), watchers and oracle. Leftovers of an earlier lab of the
    /// same name are removed first. `progress` gets one line per stage.
    pub fn up(spec: LabSpec, progress: &mut dyn FnMut(&str)) -> Result<Lab, LabError> {
        let name = LabName::new(&spec.name)?;
        let layout = Layout::new(
            spec.root
                .clone()
                .unwrap_or_else(|| Layout::default_root(&spec.name)),
        );
        down(&spec.name, Some(layout.root().to_path_buf()))?;
        progress(&format!("network: {} hosts, 3 planes each", spec.hosts));
        let plan = NetPlan::new(name.clone(), spec.hosts)?.with_prefix(spec.prefix);
        nosplit_labnet::up(&plan)?;
        let vms: Vec<String> = spec.vms.iter().map(|(v, _)| v.clone()).collect();
        progress(&format!(
            "storage domain: lockspace (io_timeout {} ms), {} VM leases and disks",
            spec.io_timeout_ms,
            vms.len()
        ));
        let leases = domain::create(&layout, spec.io_timeout_ms, &vms)?;
        let qemu: Option<Arc<dyn VmDriver>> = if spec.vms.iter().any(|(_, k)| *k == Kind::Qemu) {
            progress("guest image: kernel + initramfs from Debian packages (cached)");
            let img = nosplit_vmrt::image::build_guest(&layout.guest_cache())
                .map_err(|e| LabError::Invalid(format!("guest image: {e}")))?;
            Some(Arc::new(nosplit_vmrt::driver::QemuDriver::new(img)))
        } else {
            None
        };
        let clock = RealClock;
        let mut lab = Lab {
            kinds: spec.vms.iter().cloned().collect(),
            spec,
            name: name.clone(),
            layout: layout.clone(),
            hosts: BTreeMap::new(),
            leases,
            instances: Vec::new(),
            qemu,
            process: Arc::new(nosplit_vmrt::driver::ProcessDriver::new()),
            counter: 0,
            t0: clock.now(),
            timeline: Vec::new(),
            store: None,
            net: None,
            oracle: None,
            probes_since: Instant::now(),
        };
        for n in 1..=lab.spec.hosts {
            let ctx = HostCtx {
                lab: name.clone(),
                layout: layout.clone(),
                bin: lab.spec.bin.clone(),
                n,
            };
            progress(&format!("host h{n}: fault filesystem, watchdog, leased"));
            let daemons = ctx.power_on()?;
            lab.hosts.insert(
                n,
                HostRt {
                    ctx,
                    daemons: Some(daemons),
                    storage: "ok".into(),
                },
            );
        }
        progress("hosts joining the lockspace");
        for h in lab.hosts.values() {
            h.ctx.wait_joined(Duration::from_secs(30))?;
        }
        lab.store = Some(StoreWatch::start(&layout)?);
        let addrs = (1..=lab.spec.hosts)
            .map(|n| plan.host_addrs(n).map(|a| (n, a.get(Plane::Management))))
            .collect::<Result<Vec<_>, _>>()?;
        lab.net = Some(NetProbe::start(&addrs));
        lab.probes_since = Instant::now();
        let mut oracle = Oracle::new(Duration::from_secs(1));
        for v in &vms {
            oracle.add_disk(v.clone(), layout.disk(v));
        }
        lab.oracle = Some(oracle.spawn(Duration::from_millis(50)));
        lab.t0 = clock.now();
        lab.log("lab up");
        Ok(lab)
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
        for (_, i) in &mut self.instances {
            if i.host == n {
                // Its processes are dead; reap what is ours.
                let _ = i.vm.kill();
            }
        }
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

    /// Sets a network fault on host `n`.
    pub fn net(&mut self, n: u32, plane: PlaneSel, fault: NetFault) -> Result<(), LabError> {
        self.host(n)?;
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
    pub fn heal(&mut self) -> Result<(), LabError> {
        let hosts: Vec<u32> = self.hosts.keys().copied().collect();
        for n in hosts {
            self.net(n, PlaneSel::All, NetFault::Ok)?;
            if self.is_on(n) {
                self.storage(n, "ok")?;
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

    /// Starts `vm` on host `n` under its lease (unless protection is off).
    pub fn start_vm(&mut self, vm: &str, n: u32) -> Result<(), LaunchError> {
        if !self.is_on(n) {
            return Err(LaunchError::Failed(format!("host {n} is off")));
        }
        let kind = *self
            .kinds
            .get(vm)
            .ok_or_else(|| LaunchError::Failed(format!("no VM {vm}")))?;
        if self.spec.protection {
            if let Some(why) = self.lease_busy(vm) {
                return Err(LaunchError::Busy(why));
            }
        }
        self.counter += 1;
        let inst = format!("{vm}.{}.h{n}", self.counter);
        let ctx = self
            .hosts
            .get(&n)
            .map(|h| h.ctx.clone())
            .ok_or_else(|| LaunchError::Failed(format!("no host {n}")))?;
        let (driver, vkind) = match kind {
            Kind::Qemu => (
                self.qemu
                    .clone()
                    .ok_or_else(|| LaunchError::Failed("no guest image".into()))?,
                VmKind::Qemu {
                    interval_ms: self.spec.interval_ms,
                    extra_args: Vec::new(),
                },
            ),
            Kind::Process => (
                self.process.clone(),
                VmKind::Process {
                    program: self.spec.bin.clone(),
                    args: vec![
                        "vm-proc".into(),
                        "--disk".into(),
                        self.layout
                            .via(n, &self.layout.disk(vm))
                            .to_string_lossy()
                            .into_owned(),
                        "--vm".into(),
                        vm.into(),
                        "--inst".into(),
                        inst.clone(),
                        "--interval-ms".into(),
                        self.spec.interval_ms.to_string(),
                    ],
                    env: Vec::new(),
                },
            ),
        };
        let req = LaunchReq {
            vm: vm.into(),
            inst: inst.clone(),
            host: ctx,
            kind: vkind,
            lease_offset: self
                .spec
                .protection
                .then(|| self.leases.get(vm).copied())
                .flatten(),
        };
        match launch(driver.as_ref(), &req) {
            Ok(running) => {
                self.log(format!("{vm}: started on h{n} as {inst}"));
                self.instances.push((
                    vm.into(),
                    Instance {
                        inst,
                        host: n,
                        vm: running,
                        reported_exit: false,
                    },
                ));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Instances that exited since the last call, on powered-on hosts
    /// (a powered-off host reports nothing): `(vm, host, inst)`.
    pub fn exits(&mut self) -> Vec<(String, u32, String)> {
        let on: Vec<u32> = self
            .hosts
            .iter()
            .filter(|(_, h)| h.daemons.is_some())
            .map(|(n, _)| *n)
            .collect();
        let mut out = Vec::new();
        for (vm, i) in &mut self.instances {
            if i.reported_exit {
                continue;
            }
            let dead = i.vm.state().map(|s| s.is_dead()).unwrap_or(true);
            if dead {
                i.reported_exit = true;
                if on.contains(&i.host) {
                    out.push((vm.clone(), i.host, i.inst.clone()));
                }
            }
        }
        for (vm, host, inst) in &out {
            self.timeline.push((
                RealClock.now().saturating_since(self.t0),
                format!("{vm}: {inst} exited on h{host}"),
            ));
        }
        out
    }

    /// Stops every VM, powers every host off, and removes the lab.
    pub fn down(mut self) -> Result<String, LabError> {
        for (_, i) in &mut self.instances {
            let _ = i.vm.kill();
        }
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
