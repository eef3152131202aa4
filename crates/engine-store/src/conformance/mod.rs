//! The conformance suite: every rule of [`Store`] (see [`crate::Store`]'s
//! module rules), checked against any backend. It is a test harness: it
//! panics, naming the check and the broken rule, at the first failure.
//!
//! Each check gets a fresh, empty store from the factory, which receives
//! the [`Limits`] the check needs (most use the defaults; the bound checks
//! use small ones).

mod logs;
mod records;

use std::fmt::Debug;

use nosplit_engine_core::model::{Desired, Domain, EngineEvent, Host, Plane, Task, Vm, VmKind};

use crate::{Limits, Store, StoreError};

/// Makes a fresh, empty store with these limits.
pub type Factory<'a> = &'a dyn Fn(Limits) -> Box<dyn Store>;

type Check = fn(Factory<'_>);

const CHECKS: &[(&str, Check)] = &[
    (
        "domains_follow_the_crud_rules",
        records::domains_follow_the_crud_rules,
    ),
    (
        "hosts_follow_the_crud_rules",
        records::hosts_follow_the_crud_rules,
    ),
    (
        "vms_follow_the_crud_rules",
        records::vms_follow_the_crud_rules,
    ),
    (
        "vm_disks_are_written_with_the_vm_and_kept",
        records::vm_disks_are_written_with_the_vm_and_kept,
    ),
    (
        "record_kinds_do_not_share_keys",
        records::record_kinds_do_not_share_keys,
    ),
    (
        "modify_vm_reads_modifies_and_writes",
        records::modify_vm_reads_modifies_and_writes,
    ),
    (
        "modify_vm_is_atomic_between_threads",
        records::modify_vm_is_atomic_between_threads,
    ),
    (
        "settings_read_as_defaults_until_set",
        records::settings_read_as_defaults_until_set,
    ),
    (
        "tasks_get_ids_in_order_and_update_by_id",
        logs::tasks_get_ids_in_order_and_update_by_id,
    ),
    (
        "tasks_list_the_latest_n_filtered_by_vm",
        logs::tasks_list_the_latest_n_filtered_by_vm,
    ),
    ("tasks_are_bounded", logs::tasks_are_bounded),
    (
        "events_get_seqs_and_list_after_with_limit",
        logs::events_get_seqs_and_list_after_with_limit,
    ),
    (
        "events_filter_by_kind_host_vm_severity",
        logs::events_filter_by_kind_host_vm_severity,
    ),
    ("events_are_bounded", logs::events_are_bounded),
    (
        "zero_limits_keep_the_newest_entry",
        logs::zero_limits_keep_the_newest_entry,
    ),
];

/// The names of all checks, in the order [`run_all`] runs them.
pub fn check_names() -> Vec<&'static str> {
    CHECKS.iter().map(|(name, _)| *name).collect()
}

/// Runs every check, each on a fresh store from `make`; panics at the
/// first broken rule.
pub fn run_all(make: Factory<'_>) {
    for (name, check) in CHECKS {
        eprintln!("conformance: {name}");
        check(make);
    }
}

/// The value, or a panic naming the step and the error.
fn ok<T>(r: Result<T, StoreError>, step: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{step}: unexpected error: {e}"),
    }
}

fn expect_not_found<T: Debug>(r: Result<T, StoreError>, what: &str, key: &str, step: &str) {
    match r {
        Err(StoreError::NotFound { what: w, key: k }) if w == what && k == key => {}
        other => panic!("{step}: expected NotFound {{ what: {what}, key: {key} }}, got {other:?}"),
    }
}

fn expect_exists<T: Debug>(r: Result<T, StoreError>, what: &str, key: &str, step: &str) {
    match r {
        Err(StoreError::Exists { what: w, key: k }) if w == what && k == key => {}
        other => panic!("{step}: expected Exists {{ what: {what}, key: {key} }}, got {other:?}"),
    }
}

fn expect_invalid<T: Debug>(r: Result<T, StoreError>, what: &str, step: &str) {
    match r {
        Err(StoreError::Invalid { what: w, .. }) if w == what => {}
        other => panic!("{step}: expected Invalid {{ what: {what} }}, got {other:?}"),
    }
}

fn domain(name: &str) -> Domain {
    Domain {
        name: name.to_string(),
        path: format!("/srv/{name}"),
        host_path: "/mnt/{host}/shared".to_string(),
        io_timeout_ms: 10_000,
    }
}

fn host(name: &str) -> Host {
    Host {
        name: name.to_string(),
        host_id: 7,
        agent: "127.0.0.1:7000".to_string(),
        planes: vec![
            (Plane::Mgmt, "10.0.0.7".to_string()),
            (Plane::Stor, "10.2.0.7".to_string()),
        ],
        cpus: 16,
        memory_mib: 65_536,
        maintenance: false,
    }
}

fn vm(id: &str) -> Vm {
    Vm {
        id: id.to_string(),
        kind: VmKind::Process,
        vcpus: 0,
        memory_mib: 512,
        domain: "d1".to_string(),
        ha: true,
        priority: 50,
        lease_offset: 1_048_576,
        desired: Desired::Running,
        host: None,
    }
}

fn task(vm: &str, attempt: u32) -> Task {
    Task {
        id: 999,
        vm: vm.to_string(),
        host: "h1".to_string(),
        attempt,
        state: "running".to_string(),
        detail: String::new(),
        created_ms: 1000 + u64::from(attempt),
        finished_ms: None,
    }
}

fn event(kind: &str, severity: &str, host: Option<&str>, vm: Option<&str>) -> EngineEvent {
    EngineEvent {
        seq: 777,
        at_ms: 5000,
        severity: severity.to_string(),
        kind: kind.to_string(),
        host: host.map(str::to_string),
        vm: vm.map(str::to_string),
        detail: format!("{kind} because of a test"),
    }
}
