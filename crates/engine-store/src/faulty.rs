//! [`FaultyStore`]: a test double that wraps any [`Store`] and makes the
//! chosen writes fail with [`StoreError::Backend`] (as a redb commit that
//! cannot land would), so callers can show that a failed write leaves
//! nothing half-made. Reads always pass through.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use nosplit_engine_core::model::{Disk, Domain, EngineEvent, HaSettings, Host, Strategy, Task, Vm};

use crate::{EventQuery, Store, StoreError};

/// A write [`FaultyStore`] can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Write {
    /// `create_domain`.
    CreateDomain,
    /// `create_host`.
    CreateHost,
    /// `create_vm` and `create_vm_with_disks`.
    CreateVm,
    /// `update_vm` and `modify_vm`.
    UpdateVm,
    /// `delete_vm`.
    DeleteVm,
}

/// Which writes fail; a clone switches the same store (keep one after
/// handing the store away, e.g. to an engine).
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<Mutex<BTreeSet<Write>>>);

impl Faults {
    /// Makes `w` fail (`on`) or pass again.
    pub fn fail(&self, w: Write, on: bool) {
        let mut f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if on {
            f.insert(w);
        } else {
            f.remove(&w);
        }
    }

    fn failing(&self, w: Write) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&w)
    }
}

/// Wraps a store; the writes its [`Faults`] name fail, everything else is
/// the inner store's.
#[derive(Debug)]
pub struct FaultyStore<S> {
    inner: S,
    faults: Faults,
}

impl<S: Store> FaultyStore<S> {
    /// `inner`, with no write failing yet.
    pub fn new(inner: S) -> FaultyStore<S> {
        FaultyStore {
            inner,
            faults: Faults::default(),
        }
    }

    /// The switch of this store's faults.
    pub fn faults(&self) -> Faults {
        self.faults.clone()
    }

    fn check(&self, w: Write) -> Result<(), StoreError> {
        if self.faults.failing(w) {
            Err(StoreError::Backend {
                op: "commit",
                detail: format!("injected failure of {w:?}"),
            })
        } else {
            Ok(())
        }
    }
}

impl<S: Store> Store for FaultyStore<S> {
    fn create_domain(&self, domain: &Domain) -> Result<(), StoreError> {
        self.check(Write::CreateDomain)?;
        self.inner.create_domain(domain)
    }
    fn get_domain(&self, name: &str) -> Result<Domain, StoreError> {
        self.inner.get_domain(name)
    }
    fn update_domain(&self, domain: &Domain) -> Result<(), StoreError> {
        self.inner.update_domain(domain)
    }
    fn delete_domain(&self, name: &str) -> Result<(), StoreError> {
        self.inner.delete_domain(name)
    }
    fn list_domains(&self) -> Result<Vec<Domain>, StoreError> {
        self.inner.list_domains()
    }
    fn create_host(&self, host: &Host) -> Result<(), StoreError> {
        self.check(Write::CreateHost)?;
        self.inner.create_host(host)
    }
    fn get_host(&self, name: &str) -> Result<Host, StoreError> {
        self.inner.get_host(name)
    }
    fn update_host(&self, host: &Host) -> Result<(), StoreError> {
        self.inner.update_host(host)
    }
    fn delete_host(&self, name: &str) -> Result<(), StoreError> {
        self.inner.delete_host(name)
    }
    fn list_hosts(&self) -> Result<Vec<Host>, StoreError> {
        self.inner.list_hosts()
    }
    fn create_vm_with_disks(&self, vm: &Vm, disks: &[Disk]) -> Result<(), StoreError> {
        self.check(Write::CreateVm)?;
        self.inner.create_vm_with_disks(vm, disks)
    }
    fn vm_disks(&self, id: &str) -> Result<Vec<Disk>, StoreError> {
        self.inner.vm_disks(id)
    }
    fn get_vm(&self, id: &str) -> Result<Vm, StoreError> {
        self.inner.get_vm(id)
    }
    fn update_vm(&self, vm: &Vm) -> Result<(), StoreError> {
        self.check(Write::UpdateVm)?;
        self.inner.update_vm(vm)
    }
    fn delete_vm(&self, id: &str) -> Result<(), StoreError> {
        self.check(Write::DeleteVm)?;
        self.inner.delete_vm(id)
    }
    fn list_vms(&self) -> Result<Vec<Vm>, StoreError> {
        self.inner.list_vms()
    }
    fn modify_vm(&self, id: &str, f: &mut dyn FnMut(&mut Vm)) -> Result<Vm, StoreError> {
        self.check(Write::UpdateVm)?;
        self.inner.modify_vm(id, f)
    }
    fn strategy(&self) -> Result<Strategy, StoreError> {
        self.inner.strategy()
    }
    fn set_strategy(&self, strategy: &Strategy) -> Result<(), StoreError> {
        self.inner.set_strategy(strategy)
    }
    fn ha_settings(&self) -> Result<HaSettings, StoreError> {
        self.inner.ha_settings()
    }
    fn set_ha_settings(&self, settings: &HaSettings) -> Result<(), StoreError> {
        self.inner.set_ha_settings(settings)
    }
    fn append_task(&self, task: &Task) -> Result<u64, StoreError> {
        self.inner.append_task(task)
    }
    fn get_task(&self, id: u64) -> Result<Task, StoreError> {
        self.inner.get_task(id)
    }
    fn update_task(&self, task: &Task) -> Result<(), StoreError> {
        self.inner.update_task(task)
    }
    fn list_tasks(&self, vm: Option<&str>, limit: usize) -> Result<Vec<Task>, StoreError> {
        self.inner.list_tasks(vm, limit)
    }
    fn append_event(&self, event: &EngineEvent) -> Result<u64, StoreError> {
        self.inner.append_event(event)
    }
    fn list_events(&self, query: &EventQuery) -> Result<Vec<EngineEvent>, StoreError> {
        self.inner.list_events(query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemStore;

    #[test]
    fn chosen_writes_fail_and_leave_the_inner_store_alone() {
        let s = FaultyStore::new(MemStore::new());
        let f = s.faults();
        let d = Domain {
            name: "d".into(),
            path: "/d".into(),
            host_path: "/d".into(),
            io_timeout_ms: 1000,
        };
        f.fail(Write::CreateDomain, true);
        let e = s.create_domain(&d).unwrap_err();
        assert!(matches!(e, StoreError::Backend { .. }), "{e}");
        assert!(s.list_domains().unwrap().is_empty());
        f.fail(Write::CreateDomain, false);
        s.create_domain(&d).unwrap();
        assert_eq!(s.get_domain("d").unwrap(), d);
    }
}
