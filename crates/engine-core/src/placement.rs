//! Placement: which host a VM is restarted on. Among the eligible targets
//! (Up, lease Live, not in maintenance: the caller's job) with room under
//! the per-host in-flight limit and enough free memory and vCPUs, the one
//! with the most free memory, then the most free vCPUs, then the smallest
//! name. The host the last attempt failed on is taken only when no other
//! fits.

use std::collections::BTreeMap;

use crate::model::Vm;

/// A host a VM may be started on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name.
    pub name: String,
    /// Capacity: vCPUs.
    pub cpus: u32,
    /// Capacity: memory, MiB.
    pub memory_mib: u64,
}

/// What runs (or is starting) on a host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    /// vCPUs used.
    pub cpus: u64,
    /// Memory used, MiB.
    pub memory_mib: u64,
    /// Starts in flight to it.
    pub in_flight: u32,
}

/// Load per host name.
pub type Loads = BTreeMap<String, Load>;

fn free(t: &Target, l: &Load) -> (u64, u64) {
    (
        t.memory_mib.saturating_sub(l.memory_mib),
        u64::from(t.cpus).saturating_sub(l.cpus),
    )
}

fn has_room(l: &Load, per_host_limit: u32) -> bool {
    per_host_limit == 0 || l.in_flight < per_host_limit
}

/// Whether any target can take one more start under the per-host limit.
pub fn any_room(targets: &[Target], loads: &Loads, per_host_limit: u32) -> bool {
    targets.iter().any(|t| {
        let l = loads.get(&t.name).copied().unwrap_or_default();
        has_room(&l, per_host_limit)
    })
}

/// The best target for `vm`, or `None` when nothing fits now.
pub fn pick<'a>(
    targets: &'a [Target],
    loads: &Loads,
    vm: &Vm,
    per_host_limit: u32,
    avoid: Option<&str>,
) -> Option<&'a Target> {
    let fits = |t: &&Target| {
        let l = loads.get(&t.name).copied().unwrap_or_default();
        let (mem, cpus) = free(t, &l);
        has_room(&l, per_host_limit)
            && mem >= u64::from(vm.memory_mib)
            && cpus >= u64::from(vm.vcpus)
    };
    let key = |t: &&Target| {
        let l = loads.get(&t.name).copied().unwrap_or_default();
        let (mem, cpus) = free(t, &l);
        (mem, cpus, std::cmp::Reverse(t.name.clone()))
    };
    targets
        .iter()
        .filter(fits)
        .filter(|t| Some(t.name.as_str()) != avoid)
        .max_by_key(key)
        .or_else(|| targets.iter().filter(fits).max_by_key(key))
}

/// Adds `vm` to `host`'s load (as a start in flight when `starting`).
pub fn add(loads: &mut Loads, host: &str, vm: &Vm, starting: bool) {
    let l = match loads.get_mut(host) {
        Some(l) => l,
        None => loads.entry(host.to_string()).or_default(),
    };
    l.cpus += u64::from(vm.vcpus);
    l.memory_mib += u64::from(vm.memory_mib);
    if starting {
        l.in_flight += 1;
    }
}
