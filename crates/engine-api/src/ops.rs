//! [`EngineOps`]: what the API asks of the engine runtime. The server
//! calls it only with input that passed [`crate::validate`] and a caller
//! whose role allows the route; every call runs on a blocking thread, so
//! implementations may block (take locks, write the store, long-poll).

use nosplit_engine_core::model::{Disk, Domain, EngineEvent, HaSettings, Strategy, Task, Vm};

use crate::types::{
    EngineError, EventQuery, HaPatch, HostView, NewHost, NewVm, Status, TaskQuery, VmPatch,
};

/// The engine runtime, as the API sees it.
pub trait EngineOps: Send + Sync + 'static {
    /// Creates a storage domain (409 if the name exists).
    fn create_domain(&self, domain: Domain) -> Result<Domain, EngineError>;
    /// Every domain.
    fn list_domains(&self) -> Result<Vec<Domain>, EngineError>;
    /// One domain.
    fn get_domain(&self, name: &str) -> Result<Domain, EngineError>;
    /// Deletes a domain (409 while VMs use it).
    fn delete_domain(&self, name: &str) -> Result<(), EngineError>;

    /// Adds a host (409 if the name or host id is taken).
    fn add_host(&self, host: NewHost) -> Result<HostView, EngineError>;
    /// Whether `token` is host `host`'s own agent token (constant time in
    /// the secret). The default knows no host tokens.
    fn host_token_matches(&self, host: &str, token: &[u8]) -> bool {
        let _ = (host, token);
        false
    }
    /// A host registers itself (the caller proved it is that host, or is
    /// an admin): adds the host, or updates its agent address, plane
    /// addresses and capacity (409 if its name and host id disagree with
    /// what is registered), keeping its maintenance switch.
    fn register_host(&self, host: NewHost) -> Result<HostView, EngineError>;
    /// Every host with its state.
    fn list_hosts(&self) -> Result<Vec<HostView>, EngineError>;
    /// One host.
    fn get_host(&self, name: &str) -> Result<HostView, EngineError>;
    /// Removes a host (409 while VMs run on it).
    fn delete_host(&self, name: &str) -> Result<(), EngineError>;
    /// Switches a host's HA maintenance on or off.
    fn set_host_maintenance(&self, name: &str, on: bool) -> Result<HostView, EngineError>;

    /// Creates a VM: picks its lease slot, creates the lease, records it
    /// with `desired: stopped` and no host.
    fn create_vm(&self, vm: NewVm) -> Result<Vm, EngineError>;
    /// Creates a VM with these disks (checked at the edge: 1 to
    /// [`crate::validate::MAX_DISKS`], names unique), each made in the
    /// VM's domain. The default serves only [`Disk::default_list`], through
    /// [`EngineOps::create_vm`].
    fn create_vm_with_disks(&self, vm: NewVm, disks: Vec<Disk>) -> Result<Vm, EngineError> {
        if disks == Disk::default_list() {
            self.create_vm(vm)
        } else {
            Err(EngineError::Invalid(
                "disks: this engine makes only the default disk".into(),
            ))
        }
    }
    /// The disks of a VM. The default: [`Disk::default_list`].
    fn vm_disks(&self, id: &str) -> Result<Vec<Disk>, EngineError> {
        let _ = id;
        Ok(Disk::default_list())
    }
    /// Every VM.
    fn list_vms(&self) -> Result<Vec<Vm>, EngineError>;
    /// One VM.
    fn get_vm(&self, id: &str) -> Result<Vm, EngineError>;
    /// Deletes a VM (409 while it runs) and its lease.
    fn delete_vm(&self, id: &str) -> Result<(), EngineError>;
    /// Asks for the VM to run, on `host` or where placement puts it.
    fn start_vm(&self, id: &str, host: Option<String>) -> Result<Vm, EngineError>;
    /// Asks for the VM to stop (never restarted by HA afterwards).
    fn stop_vm(&self, id: &str) -> Result<Vm, EngineError>;
    /// Changes a VM's HA flag and/or priority (at least one is set).
    fn patch_vm(&self, id: &str, patch: VmPatch) -> Result<Vm, EngineError>;

    /// The HA strategy.
    fn get_strategy(&self) -> Result<Strategy, EngineError>;
    /// Replaces the HA strategy (already checked with `Strategy::validate`).
    fn put_strategy(&self, strategy: Strategy) -> Result<Strategy, EngineError>;

    /// Rate limits and thresholds.
    fn get_ha(&self) -> Result<HaSettings, EngineError>;
    /// Changes some settings; the runtime applies it with
    /// [`HaPatch::apply`], which checks the merged result.
    fn patch_ha(&self, patch: HaPatch) -> Result<HaSettings, EngineError>;

    /// The newest `q.limit` restart tasks passing [`TaskQuery::matches`].
    fn tasks(&self, q: TaskQuery) -> Result<Vec<Task>, EngineError>;
    /// The first `q.limit` events passing [`EventQuery::matches`], oldest
    /// first; if there are none, waits up to `q.wait` for one.
    fn events(&self, q: EventQuery) -> Result<Vec<EngineEvent>, EngineError>;
    /// The summary.
    fn status(&self) -> Result<Status, EngineError>;
}
