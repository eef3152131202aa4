//! The [`Store`] trait: the rules every backend follows, plus the small
//! types its methods take ([`EventQuery`], [`Limits`]).
//!
//! Rules (checked by [`crate::conformance`]):
//! - Domains, hosts and VMs are keyed by name / id. `create_*` fails with
//!   [`StoreError::Exists`] if the key is taken; `get_*`, `update_*` and
//!   `delete_*` fail with [`StoreError::NotFound`] if it is absent; `list_*`
//!   returns records sorted by key (byte order).
//! - [`Store::modify_vm`] is an atomic read-modify-write: no other write
//!   lands between its read and its write.
//! - A VM's disks are written with it ([`Store::create_vm_with_disks`];
//!   [`Store::create_vm`] gives [`Disk::default_list`]) and kept by every
//!   update; a VM recorded before disks were kept reads as the default.
//! - The strategy and the HA settings read as their defaults
//!   ([`Strategy::default_table`], [`HaSettings::default`]) until set; an
//!   invalid strategy is refused.
//! - Tasks and events get their id / seq from the store: 1, 2, 3... never
//!   reused, even after old entries are dropped. Only the last
//!   [`Limits::max_tasks`] tasks and [`Limits::max_events`] events are kept.
//! - Every write is atomic: it lands whole or not at all.

use nosplit_engine_core::model::{Disk, Domain, EngineEvent, HaSettings, Host, Strategy, Task, Vm};

use crate::StoreError;

/// Default number of tasks and of events kept.
pub const DEFAULT_LOG_LIMIT: usize = 100_000;

/// How many tasks and events a store keeps (the oldest are dropped first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Tasks kept (at least 1; 0 is taken as 1).
    pub max_tasks: usize,
    /// Events kept (at least 1; 0 is taken as 1).
    pub max_events: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tasks: DEFAULT_LOG_LIMIT,
            max_events: DEFAULT_LOG_LIMIT,
        }
    }
}

impl Limits {
    /// The limits with 0 raised to 1 (the newest entry is always kept, so
    /// the next id is always known from the log itself).
    pub(crate) fn effective(self) -> Limits {
        Limits {
            max_tasks: self.max_tasks.max(1),
            max_events: self.max_events.max(1),
        }
    }
}

/// Which events [`Store::list_events`] returns: those with `seq > after`
/// matching every filter that is set, oldest first, at most `limit`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Only events after this seq (0 = from the oldest kept).
    pub after: u64,
    /// At most this many (None = all).
    pub limit: Option<usize>,
    /// Only this kind (e.g. `host-down`).
    pub kind: Option<String>,
    /// Only events about this host.
    pub host: Option<String>,
    /// Only events about this VM.
    pub vm: Option<String>,
    /// Only this severity (`info`, `warning`, `alarm`).
    pub severity: Option<String>,
}

impl EventQuery {
    /// Whether an event passes the filters (not `after` / `limit`).
    pub fn matches(&self, e: &EngineEvent) -> bool {
        fn ok(want: &Option<String>, have: Option<&str>) -> bool {
            want.as_deref().is_none_or(|w| have == Some(w))
        }
        ok(&self.kind, Some(&e.kind))
            && ok(&self.severity, Some(&e.severity))
            && ok(&self.host, e.host.as_deref())
            && ok(&self.vm, e.vm.as_deref())
    }
}

/// The engine's persistent state. Synchronous; shared between threads.
pub trait Store: Send + Sync {
    /// Adds a domain; [`StoreError::Exists`] if the name is taken.
    fn create_domain(&self, domain: &Domain) -> Result<(), StoreError>;
    /// The domain with this name.
    fn get_domain(&self, name: &str) -> Result<Domain, StoreError>;
    /// Replaces the domain with the same name; [`StoreError::NotFound`] if absent.
    fn update_domain(&self, domain: &Domain) -> Result<(), StoreError>;
    /// Removes a domain; [`StoreError::NotFound`] if absent.
    fn delete_domain(&self, name: &str) -> Result<(), StoreError>;
    /// All domains, sorted by name.
    fn list_domains(&self) -> Result<Vec<Domain>, StoreError>;

    /// Adds a host; [`StoreError::Exists`] if the name is taken.
    fn create_host(&self, host: &Host) -> Result<(), StoreError>;
    /// The host with this name.
    fn get_host(&self, name: &str) -> Result<Host, StoreError>;
    /// Replaces the host with the same name; [`StoreError::NotFound`] if absent.
    fn update_host(&self, host: &Host) -> Result<(), StoreError>;
    /// Removes a host; [`StoreError::NotFound`] if absent.
    fn delete_host(&self, name: &str) -> Result<(), StoreError>;
    /// All hosts, sorted by name.
    fn list_hosts(&self) -> Result<Vec<Host>, StoreError>;

    /// Adds a VM with [`Disk::default_list`]; [`StoreError::Exists`] if the
    /// id is taken.
    fn create_vm(&self, vm: &Vm) -> Result<(), StoreError> {
        self.create_vm_with_disks(vm, &Disk::default_list())
    }
    /// Adds a VM and its disks in one write; [`StoreError::Exists`] if the
    /// id is taken.
    fn create_vm_with_disks(&self, vm: &Vm, disks: &[Disk]) -> Result<(), StoreError>;
    /// The disks of the VM with this id.
    fn vm_disks(&self, id: &str) -> Result<Vec<Disk>, StoreError>;
    /// The VM with this id.
    fn get_vm(&self, id: &str) -> Result<Vm, StoreError>;
    /// Replaces the VM with the same id (its disks stay);
    /// [`StoreError::NotFound`] if absent.
    fn update_vm(&self, vm: &Vm) -> Result<(), StoreError>;
    /// Removes a VM; [`StoreError::NotFound`] if absent.
    fn delete_vm(&self, id: &str) -> Result<(), StoreError>;
    /// All VMs, sorted by id.
    fn list_vms(&self) -> Result<Vec<Vm>, StoreError>;
    /// Atomic read-modify-write of one VM: `f` is called exactly once with
    /// the stored VM, and what it leaves is stored and returned. If `f`
    /// changes the id, nothing is stored ([`StoreError::Invalid`]).
    fn modify_vm(&self, id: &str, f: &mut dyn FnMut(&mut Vm)) -> Result<Vm, StoreError>;

    /// The HA strategy ([`Strategy::default_table`] until set).
    fn strategy(&self) -> Result<Strategy, StoreError>;
    /// Stores the HA strategy; an invalid one is refused ([`StoreError::Invalid`]).
    fn set_strategy(&self, strategy: &Strategy) -> Result<(), StoreError>;
    /// The HA settings ([`HaSettings::default`] until set).
    fn ha_settings(&self) -> Result<HaSettings, StoreError>;
    /// Stores the HA settings.
    fn set_ha_settings(&self, settings: &HaSettings) -> Result<(), StoreError>;

    /// Appends a task under a new id (the task's own `id` is ignored) and
    /// returns that id; drops the oldest tasks beyond [`Limits::max_tasks`].
    fn append_task(&self, task: &Task) -> Result<u64, StoreError>;
    /// The task with this id.
    fn get_task(&self, id: u64) -> Result<Task, StoreError>;
    /// Replaces the task with the same id; [`StoreError::NotFound`] if
    /// absent (never appended, or already dropped).
    fn update_task(&self, task: &Task) -> Result<(), StoreError>;
    /// The latest `limit` tasks (of this VM, if given), oldest first.
    fn list_tasks(&self, vm: Option<&str>, limit: usize) -> Result<Vec<Task>, StoreError>;

    /// Appends an event under a new seq (the event's own `seq` is ignored)
    /// and returns that seq; drops the oldest beyond [`Limits::max_events`].
    fn append_event(&self, event: &EngineEvent) -> Result<u64, StoreError>;
    /// The events the query selects, oldest first.
    fn list_events(&self, query: &EventQuery) -> Result<Vec<EngineEvent>, StoreError>;
}
