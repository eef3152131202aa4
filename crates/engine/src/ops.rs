//! The REST API's operations ([`EngineOps`]) on the running engine: the
//! store is the record, the core is told every change, and storage-domain
//! work (lockspace, lease index, leases, disks) is done here.

use std::path::Path;
use std::time::{Duration, Instant};

use nosplit_agent::client::CallError;
use nosplit_agent::model::AgentError;
use nosplit_engine_api::ops::EngineOps;
use nosplit_engine_api::types::{
    host_state_name, EngineError, EventQuery, HaPatch, HostView, NewHost, NewVm, Status, TaskQuery,
    VmPatch,
};
use nosplit_engine_core::engine::Input;
use nosplit_engine_core::model::{
    Desired, Disk, Domain, EngineEvent, HaSettings, HostState, Strategy, Task, Vm,
};
use nosplit_engine_core::Command;
use nosplit_engine_store::StoreError;

use crate::runtime::{lock, Engine};

pub(crate) fn store_err(e: StoreError) -> EngineError {
    match e {
        StoreError::NotFound { .. } => EngineError::NotFound(e.to_string()),
        StoreError::Exists { .. } => EngineError::Conflict(e.to_string()),
        StoreError::Invalid { .. } => EngineError::Invalid(e.to_string()),
        _ => EngineError::Internal(e.to_string()),
    }
}

pub(crate) fn core_err(e: nosplit_engine_core::CoreError) -> EngineError {
    EngineError::Invalid(e.to_string())
}

impl Engine {
    pub(crate) fn view(&self, h: nosplit_engine_core::model::Host) -> HostView {
        let state = lock(&self.core)
            .host_state(&h.name)
            .unwrap_or(HostState::Suspect);
        HostView { host: h, state }
    }

    fn up_hosts(&self) -> Vec<String> {
        lock(&self.core)
            .host_states()
            .into_iter()
            .filter(|(_, s)| *s == HostState::Up)
            .map(|(h, _)| h)
            .collect()
    }

    /// The steps of a VM creation that touch storage and the store: the
    /// lease, the disks, the record; `made` remembers what they made.
    fn make_vm(
        &self,
        made: &mut crate::domainops::Undo,
        dir: &Path,
        n: NewVm,
        disks: &[Disk],
    ) -> Result<Vm, EngineError> {
        let lease_offset = made.add_lease().map_err(|e| {
            EngineError::Unavailable(format!("creating the lease of {}: {e}", n.id))
        })?;
        for (i, d) in disks.iter().enumerate() {
            let bytes = d.size_mib.checked_mul(1 << 20).ok_or_else(|| {
                EngineError::Invalid(format!("disk {}: {} MiB is too large", d.name, d.size_mib))
            })?;
            let path = crate::domainops::vm_disk(dir, &n.id, i, &d.name);
            made.create_disk(path, bytes).map_err(|e| {
                EngineError::Unavailable(format!("creating disk {} of {}: {e}", d.name, n.id))
            })?;
        }
        let vm = Vm {
            id: n.id,
            kind: n.kind,
            vcpus: n.vcpus,
            memory_mib: n.memory_mib,
            domain: n.domain,
            ha: n.ha,
            priority: n.priority,
            lease_offset,
            desired: Desired::Stopped,
            host: None,
        };
        self.store
            .create_vm_with_disks(&vm, disks)
            .map_err(store_err)?;
        Ok(vm)
    }

    /// Tells the agent of host `h` to stop VM `id`; `Ok` when it stopped
    /// it, or does not know it (then it does not run there either).
    fn stop_on(&self, id: &str, h: &str) -> Result<(), String> {
        let host = self.store.get_host(h).map_err(|e| e.to_string())?;
        let c = self.agent_client(&host)?;
        match c.stop(id) {
            Ok(_) | Err(CallError::Agent(AgentError::NotFound(_))) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl EngineOps for Engine {
    fn create_domain(&self, d: Domain) -> Result<Domain, EngineError> {
        if self.store.get_domain(&d.name).is_ok() {
            return Err(EngineError::Conflict(format!("domain {} exists", d.name)));
        }
        crate::domainops::create(Path::new(&d.path), &d.name, d.io_timeout_ms)
            .map_err(|e| EngineError::Invalid(format!("domain {}: {e}", d.name)))?;
        self.store.create_domain(&d).map_err(store_err)?;
        self.watch(&d);
        Ok(d)
    }

    fn list_domains(&self) -> Result<Vec<Domain>, EngineError> {
        self.store.list_domains().map_err(store_err)
    }

    fn get_domain(&self, name: &str) -> Result<Domain, EngineError> {
        self.store.get_domain(name).map_err(store_err)
    }

    fn delete_domain(&self, name: &str) -> Result<(), EngineError> {
        let users: Vec<String> = self
            .store
            .list_vms()
            .map_err(store_err)?
            .into_iter()
            .filter(|v| v.domain == name)
            .map(|v| v.id)
            .collect();
        if !users.is_empty() {
            return Err(EngineError::Conflict(format!(
                "domain {name} holds VMs: {}",
                users.join(", ")
            )));
        }
        self.store.delete_domain(name).map_err(store_err)?;
        lock(&self.watches).remove(name);
        Ok(())
    }

    fn add_host(&self, h: NewHost) -> Result<HostView, EngineError> {
        let host = h.into_host();
        if self
            .store
            .list_hosts()
            .map_err(store_err)?
            .iter()
            .any(|x| x.host_id == host.host_id)
        {
            return Err(EngineError::Conflict(format!(
                "host id {} is taken",
                host.host_id
            )));
        }
        self.store.create_host(&host).map_err(store_err)?;
        self.input(Input::UpsertHost(host.clone()))
            .map_err(core_err)?;
        Ok(self.view(host))
    }

    fn host_token_matches(&self, host: &str, token: &[u8]) -> bool {
        self.cfg.agent_tokens.verify(host, token)
    }

    fn register_host(&self, h: NewHost) -> Result<HostView, EngineError> {
        self.register(h)
    }

    fn list_hosts(&self) -> Result<Vec<HostView>, EngineError> {
        Ok(self
            .store
            .list_hosts()
            .map_err(store_err)?
            .into_iter()
            .map(|h| self.view(h))
            .collect())
    }

    fn get_host(&self, name: &str) -> Result<HostView, EngineError> {
        Ok(self.view(self.store.get_host(name).map_err(store_err)?))
    }

    fn delete_host(&self, name: &str) -> Result<(), EngineError> {
        self.store.delete_host(name).map_err(store_err)?;
        self.input(Input::RemoveHost(name.into())).map_err(core_err)
    }

    fn set_host_maintenance(&self, name: &str, on: bool) -> Result<HostView, EngineError> {
        let mut h = self.store.get_host(name).map_err(store_err)?;
        h.maintenance = on;
        self.store.update_host(&h).map_err(store_err)?;
        self.input(Input::HostMaintenance {
            host: name.into(),
            on,
        })
        .map_err(core_err)?;
        Ok(self.view(h))
    }

    fn create_vm(&self, n: NewVm) -> Result<Vm, EngineError> {
        self.create_vm_with_disks(n, Disk::default_list())
    }

    fn vm_disks(&self, id: &str) -> Result<Vec<Disk>, EngineError> {
        self.store.vm_disks(id).map_err(store_err)
    }

    fn create_vm_with_disks(&self, n: NewVm, disks: Vec<Disk>) -> Result<Vm, EngineError> {
        let d = self.store.get_domain(&n.domain).map_err(store_err)?;
        if self.store.get_vm(&n.id).is_ok() {
            return Err(EngineError::Conflict(format!("VM {} exists", n.id)));
        }
        // Lease, disks, record: if a step fails, what the steps before it
        // made is taken back, so a failure leaves nothing half-made.
        let dir = Path::new(&d.path);
        let mut made = crate::domainops::Undo::new(dir, &n.id);
        let vm = match self.make_vm(&mut made, dir, n, &disks) {
            Ok(vm) => {
                made.keep();
                vm
            }
            Err(e) => {
                return Err(match made.undo() {
                    Ok(()) => e,
                    Err(left) => EngineError::Internal(format!("{e}; undoing it: {left}")),
                })
            }
        };
        self.input(Input::UpsertVm(vm.clone())).map_err(core_err)?;
        Ok(vm)
    }

    fn list_vms(&self) -> Result<Vec<Vm>, EngineError> {
        self.store.list_vms().map_err(store_err)
    }

    fn get_vm(&self, id: &str) -> Result<Vm, EngineError> {
        self.store.get_vm(id).map_err(store_err)
    }

    fn delete_vm(&self, id: &str) -> Result<(), EngineError> {
        let v = self.store.get_vm(id).map_err(store_err)?;
        if v.desired == Desired::Running {
            return Err(EngineError::Conflict(format!(
                "VM {id} should run: stop it first"
            )));
        }
        if let Ok(d) = self.store.get_domain(&v.domain) {
            crate::domainops::remove_lease(Path::new(&d.path), id)
                .map_err(|e| EngineError::Conflict(format!("the lease of {id}: {e}")))?;
        }
        self.store.delete_vm(id).map_err(store_err)?;
        self.input(Input::RemoveVm(id.into())).map_err(core_err)
    }

    fn start_vm(&self, id: &str, host: Option<String>) -> Result<Vm, EngineError> {
        let v = self.store.get_vm(id).map_err(store_err)?;
        let host = match host {
            Some(h) => h,
            None => {
                // The up host running the fewest VMs.
                let vms = self.store.list_vms().map_err(store_err)?;
                let count = |h: &str| {
                    vms.iter()
                        .filter(|x| x.desired == Desired::Running && x.host.as_deref() == Some(h))
                        .count()
                };
                self.up_hosts()
                    .into_iter()
                    .min_by_key(|h| (count(h), h.clone()))
                    .ok_or_else(|| EngineError::Unavailable("no host is up".into()))?
            }
        };
        let job = self.start_job(&v.id, &host).map_err(EngineError::Invalid)?;
        match job.run() {
            nosplit_engine_core::StartOutcome::Ok => {}
            nosplit_engine_core::StartOutcome::Busy => {
                return Err(EngineError::Conflict(format!(
                    "the lease of {id} is held elsewhere"
                )))
            }
            nosplit_engine_core::StartOutcome::Failed(m) => {
                return Err(EngineError::Unavailable(m))
            }
        }
        let mut h2 = Some(host.clone());
        let vm = self
            .store
            .modify_vm(id, &mut |v| {
                v.desired = Desired::Running;
                v.host = h2.take().or(v.host.take());
            })
            .map_err(store_err)?;
        self.input(Input::UpsertVm(vm.clone())).map_err(core_err)?;
        self.input(Input::SetDesired {
            vm: id.into(),
            desired: Desired::Running,
        })
        .map_err(core_err)?;
        self.input(Input::VmRunning {
            vm: id.into(),
            host,
        })
        .map_err(core_err)?;
        Ok(vm)
    }

    fn stop_vm(&self, id: &str) -> Result<Vm, EngineError> {
        // Desired first: the scheduler must not restart it meanwhile.
        self.input(Input::SetDesired {
            vm: id.into(),
            desired: Desired::Stopped,
        })
        .map_err(core_err)?;
        let vm = self
            .store
            .modify_vm(id, &mut |v| v.desired = Desired::Stopped)
            .map_err(store_err)?;
        // The VM stays stopped on purpose whatever the agent says; the
        // caller learns (502, and an event) if the agent did not confirm.
        let Some(h) = vm.host.clone() else {
            return Ok(vm);
        };
        match self.stop_on(id, &h) {
            Ok(()) => Ok(vm),
            Err(why) => {
                let msg = format!(
                    "VM {id} is marked stopped (HA will not restart it), but the agent of host {h} did not confirm the stop: {why}"
                );
                let mut ev = self.event("warning", "vm-stop-unconfirmed", Some(&h), msg.clone());
                ev.vm = Some(id.to_string());
                self.publish(vec![Command::Event(ev)]);
                Err(EngineError::BadGateway(msg))
            }
        }
    }

    fn patch_vm(&self, id: &str, p: VmPatch) -> Result<Vm, EngineError> {
        let vm = self
            .store
            .modify_vm(id, &mut |v| {
                if let Some(ha) = p.ha {
                    v.ha = ha;
                }
                if let Some(pr) = p.priority {
                    v.priority = pr;
                }
            })
            .map_err(store_err)?;
        self.input(Input::UpsertVm(vm.clone())).map_err(core_err)?;
        Ok(vm)
    }

    fn get_strategy(&self) -> Result<Strategy, EngineError> {
        self.store.strategy().map_err(store_err)
    }

    fn put_strategy(&self, s: Strategy) -> Result<Strategy, EngineError> {
        s.validate().map_err(EngineError::Invalid)?;
        self.store.set_strategy(&s).map_err(store_err)?;
        self.input(Input::Strategy(s.clone())).map_err(core_err)?;
        Ok(s)
    }

    fn get_ha(&self) -> Result<HaSettings, EngineError> {
        self.store.ha_settings().map_err(store_err)
    }

    fn patch_ha(&self, p: HaPatch) -> Result<HaSettings, EngineError> {
        let cur = self.store.ha_settings().map_err(store_err)?;
        let new = p.apply(&cur)?;
        nosplit_engine_core::engine::validate_settings(&new).map_err(EngineError::Invalid)?;
        self.store.set_ha_settings(&new).map_err(store_err)?;
        self.input(Input::Settings(new)).map_err(core_err)?;
        Ok(new)
    }

    fn tasks(&self, q: TaskQuery) -> Result<Vec<Task>, EngineError> {
        self.store
            .list_tasks(q.vm.as_deref(), q.limit.max(1))
            .map_err(store_err)
    }

    fn events(&self, q: EventQuery) -> Result<Vec<EngineEvent>, EngineError> {
        let sq = nosplit_engine_store::EventQuery {
            after: q.after,
            limit: Some(q.limit.max(1)),
            kind: q.kind.clone(),
            host: q.host.clone(),
            vm: q.vm.clone(),
            severity: q.severity.clone(),
        };
        let end = Instant::now() + q.wait;
        loop {
            let got = self.store.list_events(&sq).map_err(store_err)?;
            if !got.is_empty() || Instant::now() >= end {
                return Ok(got);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn status(&self) -> Result<Status, EngineError> {
        let core = lock(&self.core);
        let mut s = Status::default();
        for (_, st) in core.host_states() {
            *s.hosts.entry(host_state_name(st).to_string()).or_default() += 1;
        }
        for v in self.store.list_vms().map_err(store_err)? {
            let k = match v.desired {
                Desired::Running => "running",
                Desired::Stopped => "stopped",
            };
            *s.vms.entry(k.to_string()).or_default() += 1;
        }
        s.queue = u64::try_from(core.queue_len()).unwrap_or(u64::MAX);
        s.self_defense = core.self_defense();
        s.maintenance = core.settings().maintenance;
        Ok(s)
    }
}
