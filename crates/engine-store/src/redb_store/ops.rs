//! The [`Store`] operations of [`RedbStore`], each in one transaction.

use std::ops::Bound;

use nosplit_engine_core::model::{Disk, Domain, EngineEvent, HaSettings, Host, Strategy, Task, Vm};
use redb::{ReadableTable, ReadableTableMetadata, Table, TableDefinition, TableHandle};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{backend, get_bytes, RedbStore, EVENTS, SETTINGS, TASKS};
use crate::record::{
    check_same_id, check_strategy, decode, decode_record, encode, Record, VmRecord,
};
use crate::{EventQuery, Store, StoreError};

type Keyed = TableDefinition<'static, &'static str, &'static [u8]>;
type Log = TableDefinition<'static, u64, &'static [u8]>;

pub(super) const DOMAINS: Keyed = TableDefinition::new(Domain::TABLE);
pub(super) const HOSTS: Keyed = TableDefinition::new(Host::TABLE);
pub(super) const VMS: Keyed = TableDefinition::new(VmRecord::TABLE);

fn keyed<R: Record>() -> Keyed {
    TableDefinition::new(R::TABLE)
}

/// A log entry (task or event) whose id is its key.
trait Entry: Serialize + DeserializeOwned {
    fn id(&self) -> u64;
}

impl Entry for Task {
    fn id(&self) -> u64 {
        self.id
    }
}

impl Entry for EngineEvent {
    fn id(&self) -> u64 {
        self.seq
    }
}

fn decode_entry<E: Entry>(table: Log, key: u64, bytes: &[u8]) -> Result<E, StoreError> {
    let name = table.name();
    let e: E = decode(name, key, bytes)?;
    if e.id() != key {
        return Err(StoreError::corrupt(
            name,
            key,
            format!("the entry names itself {}", e.id()),
        ));
    }
    Ok(e)
}

/// Appends under the next id (`make` builds the entry for that id), then
/// drops the oldest beyond `max`.
fn append<E: Entry>(
    t: &mut Table<'_, u64, &'static [u8]>,
    what: &'static str,
    max: usize,
    make: impl FnOnce(u64) -> E,
) -> Result<u64, StoreError> {
    let last = t
        .last()
        .map_err(backend("read last"))?
        .map(|(k, _)| k.value());
    let id = last.map_or(1, |k| k.saturating_add(1));
    let bytes = encode(what, &make(id))?;
    t.insert(id, bytes.as_slice()).map_err(backend("insert"))?;
    let max = u64::try_from(max).unwrap_or(u64::MAX);
    while t.len().map_err(backend("count"))? > max {
        if t.pop_first().map_err(backend("drop oldest"))?.is_none() {
            break;
        }
    }
    Ok(id)
}

impl RedbStore {
    fn create<R: Record>(&self, rec: &R) -> Result<(), StoreError> {
        let bytes = encode(R::WHAT, rec)?;
        self.write("create", |tx| {
            let mut t = tx.open_table(keyed::<R>()).map_err(backend("open table"))?;
            if get_bytes(&t, rec.key())?.is_some() {
                return Err(StoreError::exists(R::WHAT, rec.key()));
            }
            t.insert(rec.key(), bytes.as_slice())
                .map_err(backend("insert"))?;
            Ok(())
        })
    }

    fn get<R: Record>(&self, key: &str) -> Result<R, StoreError> {
        self.read(|tx| {
            let t = tx.open_table(keyed::<R>()).map_err(backend("open table"))?;
            let bytes = get_bytes(&t, key)?.ok_or_else(|| StoreError::not_found(R::WHAT, key))?;
            decode_record(key, &bytes)
        })
    }

    fn update<R: Record>(&self, rec: &R) -> Result<(), StoreError> {
        let bytes = encode(R::WHAT, rec)?;
        self.write("update", |tx| {
            let mut t = tx.open_table(keyed::<R>()).map_err(backend("open table"))?;
            if get_bytes(&t, rec.key())?.is_none() {
                return Err(StoreError::not_found(R::WHAT, rec.key()));
            }
            t.insert(rec.key(), bytes.as_slice())
                .map_err(backend("insert"))?;
            Ok(())
        })
    }

    fn delete<R: Record>(&self, key: &str) -> Result<(), StoreError> {
        self.write("delete", |tx| {
            let mut t = tx.open_table(keyed::<R>()).map_err(backend("open table"))?;
            let removed = t.remove(key).map_err(backend("remove"))?.is_some();
            if removed {
                Ok(())
            } else {
                Err(StoreError::not_found(R::WHAT, key))
            }
        })
    }

    fn list<R: Record>(&self) -> Result<Vec<R>, StoreError> {
        self.read(|tx| {
            let t = tx.open_table(keyed::<R>()).map_err(backend("open table"))?;
            let mut out = Vec::new();
            for item in t.iter().map_err(backend("scan"))? {
                let (k, v) = item.map_err(backend("scan"))?;
                out.push(decode_record(k.value(), v.value())?);
            }
            Ok(out)
        })
    }

    fn setting<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        self.read(|tx| {
            let t = tx.open_table(SETTINGS).map_err(backend("open table"))?;
            get_bytes(&t, key)?
                .map(|b| decode(SETTINGS.name(), key, &b))
                .transpose()
        })
    }

    fn set_setting<T: Serialize>(
        &self,
        key: &str,
        what: &'static str,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = encode(what, value)?;
        self.write("set setting", |tx| {
            let mut t = tx.open_table(SETTINGS).map_err(backend("open table"))?;
            t.insert(key, bytes.as_slice()).map_err(backend("insert"))?;
            Ok(())
        })
    }
}

impl Store for RedbStore {
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
        self.write("modify vm", |tx| {
            let mut t = tx.open_table(VMS).map_err(backend("open table"))?;
            let bytes =
                get_bytes(&t, id)?.ok_or_else(|| StoreError::not_found(VmRecord::WHAT, id))?;
            let mut rec: VmRecord = decode_record(id, &bytes)?;
            f(&mut rec.vm);
            check_same_id(id, &rec.vm)?;
            let bytes = encode(VmRecord::WHAT, &rec)?;
            t.insert(id, bytes.as_slice()).map_err(backend("insert"))?;
            Ok(rec.vm)
        })
    }

    fn strategy(&self) -> Result<Strategy, StoreError> {
        match self.setting::<Strategy>("strategy")? {
            None => Ok(Strategy::default_table()),
            Some(s) => match s.validate() {
                Ok(()) => Ok(s),
                Err(detail) => Err(StoreError::corrupt(SETTINGS.name(), "strategy", detail)),
            },
        }
    }
    fn set_strategy(&self, strategy: &Strategy) -> Result<(), StoreError> {
        check_strategy(strategy)?;
        self.set_setting("strategy", "strategy", strategy)
    }
    fn ha_settings(&self) -> Result<HaSettings, StoreError> {
        Ok(self.setting("ha")?.unwrap_or_default())
    }
    fn set_ha_settings(&self, settings: &HaSettings) -> Result<(), StoreError> {
        self.set_setting("ha", "ha settings", settings)
    }

    fn append_task(&self, task: &Task) -> Result<u64, StoreError> {
        let max = self.limits.max_tasks;
        self.write("append task", |tx| {
            let mut t = tx.open_table(TASKS).map_err(backend("open table"))?;
            append(&mut t, "task", max, |id| Task { id, ..task.clone() })
        })
    }
    fn get_task(&self, id: u64) -> Result<Task, StoreError> {
        self.read(|tx| {
            let t = tx.open_table(TASKS).map_err(backend("open table"))?;
            let bytes = get_bytes(&t, id)?.ok_or_else(|| StoreError::not_found("task", id))?;
            decode_entry(TASKS, id, &bytes)
        })
    }
    fn update_task(&self, task: &Task) -> Result<(), StoreError> {
        let bytes = encode("task", task)?;
        self.write("update task", |tx| {
            let mut t = tx.open_table(TASKS).map_err(backend("open table"))?;
            if get_bytes(&t, task.id)?.is_none() {
                return Err(StoreError::not_found("task", task.id));
            }
            t.insert(task.id, bytes.as_slice())
                .map_err(backend("insert"))?;
            Ok(())
        })
    }
    fn list_tasks(&self, vm: Option<&str>, limit: usize) -> Result<Vec<Task>, StoreError> {
        self.read(|tx| {
            let t = tx.open_table(TASKS).map_err(backend("open table"))?;
            let mut out = Vec::new();
            for item in t.iter().map_err(backend("scan"))?.rev() {
                if out.len() >= limit {
                    break;
                }
                let (k, v) = item.map_err(backend("scan"))?;
                let task: Task = decode_entry(TASKS, k.value(), v.value())?;
                if vm.is_none_or(|want| task.vm == want) {
                    out.push(task);
                }
            }
            out.reverse();
            Ok(out)
        })
    }

    fn append_event(&self, event: &EngineEvent) -> Result<u64, StoreError> {
        let max = self.limits.max_events;
        self.write("append event", |tx| {
            let mut t = tx.open_table(EVENTS).map_err(backend("open table"))?;
            append(&mut t, "event", max, |seq| EngineEvent {
                seq,
                ..event.clone()
            })
        })
    }
    fn list_events(&self, query: &EventQuery) -> Result<Vec<EngineEvent>, StoreError> {
        let limit = query.limit.unwrap_or(usize::MAX);
        self.read(|tx| {
            let t = tx.open_table(EVENTS).map_err(backend("open table"))?;
            let mut out = Vec::new();
            let range = (Bound::Excluded(query.after), Bound::Unbounded);
            for item in t.range::<u64>(range).map_err(backend("scan"))? {
                if out.len() >= limit {
                    break;
                }
                let (k, v) = item.map_err(backend("scan"))?;
                let e: EngineEvent = decode_entry(EVENTS, k.value(), v.value())?;
                if query.matches(&e) {
                    out.push(e);
                }
            }
            Ok(out)
        })
    }
}
