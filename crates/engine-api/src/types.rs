//! Request and response shapes of the API that the shared records in
//! [`nosplit_engine_core::model`] do not cover, and [`EngineError`], what an
//! [`crate::ops::EngineOps`] call fails with. The server builds these only
//! from input that passed [`crate::validate`].

use std::collections::BTreeMap;
use std::time::Duration;

use nosplit_engine_core::model::{
    Disk, EngineEvent, HaSettings, Host, HostState, Plane, Task, Vm, VmKind,
};
use serde::{Deserialize, Serialize};

/// What an engine call failed with; the server maps it to a status code.
/// Serialised as `{"error": kind, "message": text}`, the API's error body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "error", content = "message", rename_all = "kebab-case")]
pub enum EngineError {
    /// Bad input (400).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The caller did not prove who it is (401), e.g. a host registering
    /// with a token that is not that host's.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// Not allowed, whoever asks (403), e.g. confirming a host dead while
    /// the storage shows it alive.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// No such object (404).
    #[error("not found: {0}")]
    NotFound(String),
    /// Conflicts with the current state, e.g. the name exists or the VM
    /// runs (409).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The engine cannot serve this now, e.g. the store is down (503).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A host's agent failed or did not answer while the engine acted on
    /// it (502); what the engine itself did stands, the message says what.
    #[error("agent failed: {0}")]
    BadGateway(String),
    /// Anything else (500).
    #[error("internal error: {0}")]
    Internal(String),
}

/// `POST /v1/hosts`: a host to add (not in maintenance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewHost {
    /// Name, `[A-Za-z0-9._-]{1,64}`.
    pub name: String,
    /// Host id in the lockspaces, 1..=2000.
    pub host_id: u32,
    /// The agent's API address, `ip:port`.
    pub agent: String,
    /// Plane addresses, each plane at most once: `[["mgmt", "10.0.0.1"], ...]`.
    pub planes: Vec<(Plane, String)>,
    /// vCPUs.
    pub cpus: u32,
    /// Memory, MiB.
    pub memory_mib: u64,
}

impl NewHost {
    /// The host record it becomes (maintenance off).
    pub fn into_host(self) -> Host {
        Host {
            name: self.name,
            host_id: self.host_id,
            agent: self.agent,
            planes: self.planes,
            cpus: self.cpus,
            memory_mib: self.memory_mib,
            maintenance: false,
        }
    }
}

/// A host with the engine's view of its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostView {
    /// The inventory record.
    pub host: Host,
    /// Its state.
    pub state: HostState,
}

/// `POST /v1/vms`: a VM to create. The runtime picks its lease slot
/// (`lease_offset`), creates the lease, and records it `stopped`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewVm {
    /// Id, `[A-Za-z0-9._-]{1,48}`.
    pub id: String,
    /// Kind.
    pub kind: VmKind,
    /// vCPUs, 1..=64.
    pub vcpus: u32,
    /// Memory, MiB, 16..=1048576.
    pub memory_mib: u32,
    /// Storage domain of its disk and lease.
    pub domain: String,
    /// Restart it when its host is lost (default false).
    #[serde(default)]
    pub ha: bool,
    /// Higher first, 0..=100 (default 0).
    #[serde(default)]
    pub priority: u8,
}

/// A VM as the API answers it: the record's fields and, beside them, its
/// `disks`. It derefs to the [`Vm`], so `view.host` reads the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmView {
    /// The record.
    #[serde(flatten)]
    pub vm: Vm,
    /// Its disks, the first the one its host's agent is given.
    pub disks: Vec<Disk>,
}

impl std::ops::Deref for VmView {
    type Target = Vm;
    fn deref(&self) -> &Vm {
        &self.vm
    }
}

/// `PATCH /v1/vms/{id}`: what to change; at least one field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmPatch {
    /// New HA flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha: Option<bool>,
    /// New priority, 0..=100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
}

/// `PATCH /v1/ha`: the settings to change; at least one field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaPatch {
    /// Cluster-wide HA maintenance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<bool>,
    /// Restarts per second, 0..=100000 (0 = no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_rate: Option<u32>,
    /// Restarts in flight per host, 0..=100000 (0 = no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_host_limit: Option<u32>,
    /// Attempts per VM, 1..=100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Self-defense threshold, percent of hosts lost, 1..=100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defense_pct: Option<u8>,
    /// Self-recovery threshold, percent of hosts up, 1..=100, above `defense_pct`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recover_pct: Option<u8>,
    /// Grace before acting on a silent host, ms, 0..=3600000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_ms: Option<u64>,
}

impl HaPatch {
    /// Applies the patch to `current` and checks the result's cross-field
    /// rule (`recover_pct > defense_pct`), which the edge can only check
    /// when both are in the patch. The runtime calls this under its lock.
    pub fn apply(&self, current: &HaSettings) -> Result<HaSettings, EngineError> {
        let mut s = *current;
        if let Some(v) = self.maintenance {
            s.maintenance = v;
        }
        if let Some(v) = self.global_rate {
            s.global_rate = v;
        }
        if let Some(v) = self.per_host_limit {
            s.per_host_limit = v;
        }
        if let Some(v) = self.max_attempts {
            s.max_attempts = v;
        }
        if let Some(v) = self.defense_pct {
            s.defense_pct = v;
        }
        if let Some(v) = self.recover_pct {
            s.recover_pct = v;
        }
        if let Some(v) = self.grace_ms {
            s.grace_ms = v;
        }
        if s.recover_pct <= s.defense_pct {
            return Err(EngineError::Invalid(format!(
                "recover_pct ({}) must be above defense_pct ({})",
                s.recover_pct, s.defense_pct
            )));
        }
        Ok(s)
    }
}

/// Default number of tasks returned.
pub const DEFAULT_TASK_LIMIT: usize = 100;
/// Default number of events returned.
pub const DEFAULT_EVENT_LIMIT: usize = 1000;

/// `GET /v1/tasks?vm=&limit=`: the most recent `limit` tasks, of one VM if set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskQuery {
    /// Only this VM's tasks.
    pub vm: Option<String>,
    /// At most this many, 1..=10000, the newest.
    pub limit: usize,
}

impl Default for TaskQuery {
    fn default() -> Self {
        TaskQuery {
            vm: None,
            limit: DEFAULT_TASK_LIMIT,
        }
    }
}

impl TaskQuery {
    /// Whether `t` passes the filter (not the limit).
    pub fn matches(&self, t: &Task) -> bool {
        self.vm.as_ref().is_none_or(|vm| *vm == t.vm)
    }
}

/// `GET /v1/events?after=&kind=&host=&vm=&severity=&limit=&wait_ms=`:
/// events with `seq > after` passing every filter set, oldest first, at
/// most `limit`; when there are none yet, wait up to `wait` for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    /// Only events after this sequence number.
    pub after: u64,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only about this host.
    pub host: Option<String>,
    /// Only about this VM.
    pub vm: Option<String>,
    /// Only this severity (`info`, `warning`, `alarm`).
    pub severity: Option<String>,
    /// At most this many, 1..=10000.
    pub limit: usize,
    /// Long poll: how long to wait for a first match, at most 30 s.
    pub wait: Duration,
}

impl Default for EventQuery {
    fn default() -> Self {
        EventQuery {
            after: 0,
            kind: None,
            host: None,
            vm: None,
            severity: None,
            limit: DEFAULT_EVENT_LIMIT,
            wait: Duration::ZERO,
        }
    }
}

impl EventQuery {
    /// Whether `e` passes `after` and the filters (not the limit).
    pub fn matches(&self, e: &EngineEvent) -> bool {
        let opt = |want: &Option<String>, have: Option<&String>| {
            want.as_ref().is_none_or(|w| Some(w) == have)
        };
        e.seq > self.after
            && opt(&self.kind, Some(&e.kind))
            && opt(&self.severity, Some(&e.severity))
            && opt(&self.host, e.host.as_ref())
            && opt(&self.vm, e.vm.as_ref())
    }
}

/// `GET /v1/status`: the cluster at a glance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    /// Hosts per state, keyed by the [`HostState`] name (`up`, `suspect`,
    /// `non-responsive`, `recovering`, `down`; see [`host_state_name`]).
    pub hosts: BTreeMap<String, u64>,
    /// VMs per state as the runtime names them (e.g. `running`, `stopped`,
    /// `restarting`, `failed`).
    pub vms: BTreeMap<String, u64>,
    /// Restarts waiting in the recovery queue.
    pub queue: u64,
    /// Self-defense holds automatic recovery.
    pub self_defense: bool,
    /// Cluster-wide HA maintenance is on.
    pub maintenance: bool,
}

/// The API name of a host state (its serde name).
pub fn host_state_name(s: HostState) -> &'static str {
    match s {
        HostState::Up => "up",
        HostState::Suspect => "suspect",
        HostState::NonResponsive => "non-responsive",
        HostState::Recovering => "recovering",
        HostState::Down => "down",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_state_names_are_the_serde_names() {
        use HostState::*;
        for s in [Up, Suspect, NonResponsive, Recovering, Down] {
            assert_eq!(serde_json::to_value(s).unwrap(), host_state_name(s));
        }
    }

    #[test]
    fn ha_patch_checks_the_merged_result() {
        let cur = HaSettings::default(); // 50 / 70
        let p = HaPatch {
            defense_pct: Some(80),
            ..HaPatch::default()
        };
        assert!(p
            .apply(&cur)
            .unwrap_err()
            .to_string()
            .contains("recover_pct (70)"));
        let p = HaPatch {
            defense_pct: Some(60),
            global_rate: Some(9),
            ..HaPatch::default()
        };
        let s = p.apply(&cur).unwrap();
        assert_eq!((s.defense_pct, s.recover_pct, s.global_rate), (60, 70, 9));
    }

    #[test]
    fn event_query_filters() {
        let e = EngineEvent {
            seq: 5,
            at_ms: 1,
            severity: "alarm".into(),
            kind: "host-down".into(),
            host: Some("h1".into()),
            vm: None,
            detail: String::new(),
        };
        let mut q = EventQuery::default();
        assert!(q.matches(&e));
        q.host = Some("h1".into());
        q.severity = Some("alarm".into());
        assert!(q.matches(&e));
        q.vm = Some("v".into());
        assert!(!q.matches(&e));
        q.vm = None;
        q.after = 5;
        assert!(!q.matches(&e));
    }
}
