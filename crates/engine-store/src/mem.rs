//! [`MemStore`]: the [`Store`] rules in memory, behind one mutex (tests,
//! simulations). Nothing survives the process.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

use nosplit_engine_core::model::{Disk, Domain, EngineEvent, HaSettings, Host, Strategy, Task, Vm};

use crate::record::{check_same_id, check_strategy, Record, VmRecord};
use crate::{EventQuery, Limits, Store, StoreError};

/// The in-memory store.
#[derive(Debug, Default)]
pub struct MemStore {
    limits: Limits,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    domains: BTreeMap<String, Domain>,
    hosts: BTreeMap<String, Host>,
    vms: BTreeMap<String, VmRecord>,
    strategy: Option<Strategy>,
    ha: Option<HaSettings>,
    tasks: BTreeMap<u64, Task>,
    events: BTreeMap<u64, EngineEvent>,
}

/// Which map of [`Inner`] holds a record kind.
trait MemRecord: Record {
    fn map(inner: &mut Inner) -> &mut BTreeMap<String, Self>;
}

impl MemRecord for Domain {
    fn map(inner: &mut Inner) -> &mut BTreeMap<String, Self> {
        &mut inner.domains
    }
}

impl MemRecord for Host {
    fn map(inner: &mut Inner) -> &mut BTreeMap<String, Self> {
        &mut inner.hosts
    }
}

impl MemRecord for VmRecord {
    fn map(inner: &mut Inner) -> &mut BTreeMap<String, Self> {
        &mut inner.vms
    }
}

/// Next id of a log: one past the newest kept (the newest is never dropped).
fn next_id<T>(log: &BTreeMap<u64, T>) -> u64 {
    log.last_key_value().map_or(1, |(k, _)| k.saturating_add(1))
}

/// Drops the oldest entries beyond `max`.
fn prune<T>(log: &mut BTreeMap<u64, T>, max: usize) {
    while log.len() > max {
        log.pop_first();
    }
}

impl MemStore {
    /// An empty store keeping the default number of tasks and events.
    pub fn new() -> MemStore {
        MemStore::with_limits(Limits::default())
    }

    /// An empty store with these limits.
    pub fn with_limits(limits: Limits) -> MemStore {
        MemStore {
            limits: limits.effective(),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while the lock is held cannot leave a half-written record:
        // every write is a single map operation after all checks passed.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn create<R: MemRecord>(&self, rec: &R) -> Result<(), StoreError> {
        let mut g = self.lock();
        let map = R::map(&mut g);
        if map.contains_key(rec.key()) {
            return Err(StoreError::exists(R::WHAT, rec.key()));
        }
        map.insert(rec.key().to_string(), rec.clone());
        Ok(())
    }

    fn get<R: MemRecord>(&self, key: &str) -> Result<R, StoreError> {
        R::map(&mut self.lock())
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::not_found(R::WHAT, key))
    }

    fn update<R: MemRecord>(&self, rec: &R) -> Result<(), StoreError> {
        let mut g = self.lock();
        let slot = R::map(&mut g)
            .get_mut(rec.key())
            .ok_or_else(|| StoreError::not_found(R::WHAT, rec.key()))?;
        *slot = rec.clone();
        Ok(())
    }

    fn delete<R: MemRecord>(&self, key: &str) -> Result<(), StoreError> {
        R::map(&mut self.lock())
            .remove(key)
            .map(drop)
            .ok_or_else(|| StoreError::not_found(R::WHAT, key))
    }

    fn list<R: MemRecord>(&self) -> Result<Vec<R>, StoreError> {
        Ok(R::map(&mut self.lock()).values().cloned().collect())
    }
}

impl Store for MemStore {
    fn create_domain(&self, domain: &Domain) -> Result<(), StoreError> {
        self.create(domain)
    }
    fn get_domain(&self, name: &str) -> Result<Domain, StoreError> {
        self.get(name)
    }
    fn update_domain(&self, domain: &Domain) -> Result<(), StoreError> {
        self.update(domain)
    }
    fn delete_domain(&self, name: &str) -> Result<(), StoreError> {
        self.delete::<Domain>(name)
    }
    fn list_domains(&self) -> Result<Vec<Domain>, StoreError> {
        self.list()
    }

    fn create_host(&self, host: &Host) -> Result<(), StoreError> {
        self.create(host)
    }
    fn get_host(&self, name: &str) -> Result<Host, StoreError> {
        self.get(name)
    }
    fn update_host(&self, host: &Host) -> Result<(), StoreError> {
        self.update(host)
    }
    fn delete_host(&self, name: &str) -> Result<(), StoreError> {
        self.delete::<Host>(name)
    }
    fn list_hosts(&self) -> Result<Vec<Host>, StoreError> {
        self.list()
    }

    fn create_vm_with_disks(&self, vm: &Vm, disks: &[Disk]) -> Result<(), StoreError> {
        self.create(&VmRecord {
            vm: vm.clone(),
            disks: disks.to_vec(),
        })
    }
    fn vm_disks(&self, id: &str) -> Result<Vec<Disk>, StoreError> {
        Ok(self.get::<VmRecord>(id)?.disks)
    }
    fn get_vm(&self, id: &str) -> Result<Vm, StoreError> {
        Ok(self.get::<VmRecord>(id)?.vm)
    }
    fn update_vm(&self, vm: &Vm) -> Result<(), StoreError> {
        self.modify_vm(&vm.id, &mut |v| *v = vm.clone()).map(drop)
    }
    fn delete_vm(&self, id: &str) -> Result<(), StoreError> {
        self.delete::<VmRecord>(id)
    }
    fn list_vms(&self) -> Result<Vec<Vm>, StoreError> {
        Ok(self.list::<VmRecord>()?.into_iter().map(|r| r.vm).collect())
    }
    fn modify_vm(&self, id: &str, f: &mut dyn FnMut(&mut Vm)) -> Result<Vm, StoreError> {
        let mut g = self.lock();
        let slot = g
            .vms
            .get_mut(id)
            .ok_or_else(|| StoreError::not_found(VmRecord::WHAT, id))?;
        let mut vm = slot.vm.clone();
        f(&mut vm);
        check_same_id(id, &vm)?;
        slot.vm = vm.clone();
        Ok(vm)
    }

    fn strategy(&self) -> Result<Strategy, StoreError> {
        Ok(self
            .lock()
            .strategy
            .clone()
            .unwrap_or_else(Strategy::default_table))
    }
    fn set_strategy(&self, strategy: &Strategy) -> Result<(), StoreError> {
        check_strategy(strategy)?;
        self.lock().strategy = Some(strategy.clone());
        Ok(())
    }
    fn ha_settings(&self) -> Result<HaSettings, StoreError> {
        Ok(self.lock().ha.unwrap_or_default())
    }
    fn set_ha_settings(&self, settings: &HaSettings) -> Result<(), StoreError> {
        self.lock().ha = Some(*settings);
        Ok(())
    }

    fn append_task(&self, task: &Task) -> Result<u64, StoreError> {
        let mut g = self.lock();
        let id = next_id(&g.tasks);
        g.tasks.insert(id, Task { id, ..task.clone() });
        prune(&mut g.tasks, self.limits.max_tasks);
        Ok(id)
    }
    fn get_task(&self, id: u64) -> Result<Task, StoreError> {
        self.lock()
            .tasks
            .get(&id)
            .cloned()
            .ok_or_else(|| StoreError::not_found("task", id))
    }
    fn update_task(&self, task: &Task) -> Result<(), StoreError> {
        let mut g = self.lock();
        let slot = g
            .tasks
            .get_mut(&task.id)
            .ok_or_else(|| StoreError::not_found("task", task.id))?;
        *slot = task.clone();
        Ok(())
    }
    fn list_tasks(&self, vm: Option<&str>, limit: usize) -> Result<Vec<Task>, StoreError> {
        let g = self.lock();
        let mut out: Vec<Task> = g
            .tasks
            .values()
            .rev()
            .filter(|t| vm.is_none_or(|v| t.vm == v))
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        Ok(out)
    }

    fn append_event(&self, event: &EngineEvent) -> Result<u64, StoreError> {
        let mut g = self.lock();
        let seq = next_id(&g.events);
        g.events.insert(
            seq,
            EngineEvent {
                seq,
                ..event.clone()
            },
        );
        prune(&mut g.events, self.limits.max_events);
        Ok(seq)
    }
    fn list_events(&self, query: &EventQuery) -> Result<Vec<EngineEvent>, StoreError> {
        let g = self.lock();
        let after = g
            .events
            .range((Bound::Excluded(query.after), Bound::Unbounded));
        Ok(after
            .map(|(_, e)| e)
            .filter(|e| query.matches(e))
            .take(query.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }
}
