//! The engine's inventory and records, shared by the core, the store, the
//! REST API and the CLI. All serde, all validated at the API edge.

use serde::{Deserialize, Serialize};

/// A network plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plane {
    /// Management.
    Mgmt,
    /// Service (VM traffic).
    Svc,
    /// Storage.
    Stor,
}

impl Plane {
    /// Its name in configs, the API and messages: `mgmt`, `svc`, `stor`.
    pub fn name(self) -> &'static str {
        match self {
            Plane::Mgmt => "mgmt",
            Plane::Svc => "svc",
            Plane::Stor => "stor",
        }
    }
}

/// A storage domain: a directory on shared storage with the lockspace
/// (`ids`), the lease index and leases (`xleases`) and the VM disks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Domain {
    /// Name (also the lockspace name), `[a-z][a-z0-9_-]{0,47}`.
    pub name: String,
    /// The directory as the engine sees it.
    pub path: String,
    /// The same directory as the hosts see it (`{host}` is replaced by the host name), e.g. `/mnt/shared`.
    pub host_path: String,
    /// Lockspace io_timeout, ms.
    pub io_timeout_ms: u32,
}

/// A host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// Name, `[A-Za-z0-9._-]{1,64}`.
    pub name: String,
    /// Host id in the lockspaces, 1..=2000.
    pub host_id: u32,
    /// The agent's API address (`ip:port`).
    pub agent: String,
    /// Plane addresses the heartbeats come from: (plane, ip).
    pub planes: Vec<(Plane, String)>,
    /// Capacity: vCPUs.
    pub cpus: u32,
    /// Capacity: memory, MiB.
    pub memory_mib: u64,
    /// HA maintenance for this host: its VMs are not recovered, no fencing event.
    #[serde(default)]
    pub maintenance: bool,
}

/// How a VM runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmKind {
    /// QEMU guest.
    Qemu,
    /// Process VM.
    Process,
}

/// What the user wants a VM to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Desired {
    /// Running.
    Running,
    /// Stopped on purpose (never restarted by HA).
    Stopped,
}

/// A VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vm {
    /// Id, `[A-Za-z0-9._-]{1,48}`.
    pub id: String,
    /// Kind.
    pub kind: VmKind,
    /// vCPUs.
    pub vcpus: u32,
    /// Memory, MiB.
    pub memory_mib: u32,
    /// Storage domain of its disk and lease.
    pub domain: String,
    /// Restart it when its host is lost.
    pub ha: bool,
    /// Higher first, 0..=100.
    pub priority: u8,
    /// Byte offset of its lease in the domain's `xleases`.
    pub lease_offset: u64,
    /// What the user wants.
    pub desired: Desired,
    /// Where it runs (or last ran).
    pub host: Option<String>,
}

/// One disk of a VM: a sparse raw file in its storage domain, made when
/// the VM is created. The first disk is the one a host's agent is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// Name, `[a-z0-9][a-z0-9_-]{0,31}`, unique among the VM's disks.
    pub name: String,
    /// Size, MiB.
    pub size_mib: u64,
}

impl Disk {
    /// The disks of a VM created without a disk list, and of a VM recorded
    /// before VMs had one: a single 1 MiB disk `root`.
    pub fn default_list() -> Vec<Disk> {
        vec![Disk {
            name: "root".into(),
            size_mib: 1,
        }]
    }
}

/// One row of the HA strategy: a state of the three planes (true = up)
/// and whether to recover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategyRow {
    /// Management plane up.
    pub mgmt: bool,
    /// Service plane up.
    pub svc: bool,
    /// Storage plane up.
    pub stor: bool,
    /// Recover the host's HA VMs.
    pub recover: bool,
}

/// The HA strategy: exactly one row for each of the 8 plane states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Strategy {
    /// The rows.
    pub rows: Vec<StrategyRow>,
}

impl Strategy {
    /// Seed 002's table: recover when storage is down, or when management
    /// and service are both down; leave the host alone otherwise.
    pub fn default_table() -> Strategy {
        let mut rows = Vec::new();
        for bits in 0..8u8 {
            let (mgmt, svc, stor) = (bits & 4 != 0, bits & 2 != 0, bits & 1 != 0);
            let recover = !stor || (!mgmt && !svc);
            rows.push(StrategyRow {
                mgmt,
                svc,
                stor,
                recover,
            });
        }
        Strategy { rows }
    }

    /// Checks that every plane state appears exactly once.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = [0u8; 8];
        for r in &self.rows {
            let i = usize::from(r.mgmt) * 4 + usize::from(r.svc) * 2 + usize::from(r.stor);
            seen[i] += 1;
        }
        let missing: Vec<usize> = (0..8).filter(|i| seen[*i] == 0).collect();
        let dup: Vec<usize> = (0..8).filter(|i| seen[*i] > 1).collect();
        if missing.is_empty() && dup.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the strategy needs exactly one row per plane state (mgmt,svc,stor); missing {missing:?}, repeated {dup:?} (index = mgmt*4+svc*2+stor)"
            ))
        }
    }

    /// Whether to recover for this plane state.
    pub fn recover(&self, mgmt: bool, svc: bool, stor: bool) -> bool {
        self.rows
            .iter()
            .find(|r| (r.mgmt, r.svc, r.stor) == (mgmt, svc, stor))
            .is_some_and(|r| r.recover)
    }
}

/// Rate limits and thresholds, changeable at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaSettings {
    /// Cluster-wide HA switch off (maintenance): nothing is recovered.
    pub maintenance: bool,
    /// Restarts started per second, cluster-wide (0 = no limit).
    pub global_rate: u32,
    /// Restarts in flight per target host (0 = no limit).
    pub per_host_limit: u32,
    /// Attempts per VM before giving up.
    pub max_attempts: u32,
    /// Self-defense: stop automatic recovery when at least this percent of hosts are lost.
    pub defense_pct: u8,
    /// Self-recovery: resume when at least this percent of hosts are up again.
    pub recover_pct: u8,
    /// Grace before a host with missing heartbeats is acted on, ms.
    pub grace_ms: u64,
}

impl Default for HaSettings {
    fn default() -> Self {
        HaSettings {
            maintenance: false,
            global_rate: 0,
            per_host_limit: 0,
            max_attempts: 5,
            defense_pct: 50,
            recover_pct: 70,
            grace_ms: 2000,
        }
    }
}

/// A host's state in the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostState {
    /// Every plane heartbeats, lease renewed.
    Up,
    /// Some heartbeat missing, within the grace.
    Suspect,
    /// Past the grace; the strategy says leave it (or self-defense holds).
    NonResponsive,
    /// Its HA VMs are being restarted elsewhere.
    Recovering,
    /// Lost and recovered (or nothing to recover).
    Down,
}

/// One restart attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Task id.
    pub id: u64,
    /// The VM.
    pub vm: String,
    /// Target host.
    pub host: String,
    /// Attempt number (1-based).
    pub attempt: u32,
    /// `running`, `succeeded`, `failed`, `busy`.
    pub state: String,
    /// Details.
    pub detail: String,
    /// Created, ms since the engine's epoch.
    pub created_ms: u64,
    /// Finished, ms.
    pub finished_ms: Option<u64>,
}

/// An event or alarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineEvent {
    /// Sequence number.
    pub seq: u64,
    /// ms since the engine's epoch.
    pub at_ms: u64,
    /// `info`, `warning`, `alarm`.
    pub severity: String,
    /// e.g. `host-suspect`, `host-down`, `vm-restarted`, `self-defense`.
    pub kind: String,
    /// Host, if any.
    pub host: Option<String>,
    /// VM, if any.
    pub vm: Option<String>,
    /// Text with the cause.
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_strategy_is_seed_002s_table() {
        let s = Strategy::default_table();
        s.validate().unwrap();
        // (mgmt, svc, stor) -> recover, rows 0..7 of seed 002.
        let want = [
            (false, false, false, true),
            (false, false, true, true),
            (false, true, false, true),
            (false, true, true, false),
            (true, false, false, true),
            (true, false, true, false),
            (true, true, false, true),
            (true, true, true, false),
        ];
        for (m, v, st, r) in want {
            assert_eq!(s.recover(m, v, st), r, "{m} {v} {st}");
        }
        let mut bad = s.clone();
        bad.rows.pop();
        assert!(bad.validate().unwrap_err().contains("missing [7]"));
    }
}
