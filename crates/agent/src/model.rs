//! The agent's API data types (JSON) and [`AgentOps`], the seam between the
//! HTTP layer and the core that does the work. The HTTP layer validates
//! input into these types; the core never sees raw requests.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a VM runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmKind {
    /// A QEMU guest.
    Qemu,
    /// A process VM (`nosplit vm-proc`).
    Process,
}

/// Where a VM's lease lives (passed to `leased`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseSpec {
    /// Lockspace name (joined by this host's leased).
    pub lockspace: String,
    /// File or device holding the lease, as this host sees it.
    pub path: String,
    /// Byte offset of the lease.
    pub offset: u64,
}

/// A start request, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartVm {
    /// VM id, `[A-Za-z0-9._-]{1,48}`.
    pub id: String,
    /// Kind.
    pub kind: VmKind,
    /// Its first disk (raw), as this host sees it.
    pub disk: String,
    /// Its further disks (raw), in order after `disk`, as this host sees
    /// them: absolute, at most [`MAX_EXTRA_DISKS`], no two alike (nor like
    /// `disk`). Absent in older requests: none.
    #[serde(default)]
    pub extra_disks: Vec<String>,
    /// Memory, MiB (QEMU), 16..=65536.
    #[serde(default = "default_mem")]
    pub memory_mib: u32,
    /// vCPUs (QEMU), 1..=64.
    #[serde(default = "one")]
    pub vcpus: u32,
    /// Its lease. Required unless the agent's config allows unleased VMs
    /// (lab control runs only).
    #[serde(default)]
    pub lease: Option<LeaseSpec>,
    /// Instance id (unique per start); the agent makes one when absent.
    #[serde(default)]
    pub inst: Option<String>,
}

/// Most further disks a VM may have (16 in all with its first).
pub const MAX_EXTRA_DISKS: usize = 15;

fn default_mem() -> u32 {
    128
}

fn one() -> u32 {
    1
}

/// A VM's state as the agent reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VmStatus {
    /// Created, lease being acquired, no guest code run.
    Starting,
    /// Guest runs.
    Running,
    /// Paused on request.
    Paused,
    /// Frozen because lease renewal is failing (waits for revalidation).
    Frozen,
    /// Paused by QEMU after a disk I/O error.
    IoError,
    /// Stopped on request.
    Stopped,
    /// Exited on its own or was killed.
    Crashed,
    /// Its process lives but the agent cannot see its state (QMP
    /// unreachable); kept, and reached again when QMP answers.
    Unknown,
}

/// One VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmInfo {
    /// VM id.
    pub id: String,
    /// Instance id.
    pub inst: String,
    /// Kind.
    pub kind: VmKind,
    /// State.
    pub status: VmStatus,
    /// Process id (0 once gone).
    pub pid: u32,
    /// Lease version held (None: unleased).
    pub lver: Option<u64>,
    /// Seconds since the agent started it (or adopted it).
    pub uptime_s: u64,
}

/// One network plane of this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaneInfo {
    /// `mgmt`, `svc` or `stor`.
    pub name: String,
    /// This host's address on it.
    pub address: String,
}

/// Host facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Host name.
    pub name: String,
    /// Host id (the lockspace host id).
    pub host_id: u32,
    /// CPUs.
    pub cpus: u32,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Planes.
    pub planes: Vec<PlaneInfo>,
    /// Agent boot id (changes at every agent start).
    pub agent_boot: String,
    /// VMs by state.
    pub vms_running: u32,
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentEvent {
    /// Sequence number (increasing; for `events_since`).
    pub seq: u64,
    /// Milliseconds since the agent started.
    pub at_ms: u64,
    /// `vm-started`, `vm-stopped`, `vm-paused`, `vm-resumed`, `vm-frozen`,
    /// `vm-thawed`, `vm-crashed`, `vm-io-error`, `vm-adopted`, `vm-gone`,
    /// `vm-killed`, `vm-unreachable`, `vm-reachable`,
    /// `vm-lease-unconfirmed`, `vm-lease-confirmed`, `lease-trouble`,
    /// `lease-lost`, `lease-recovered`, `lease-revalidated`,
    /// `lease-revalidation-failed`, `lease-orphan`, ... (lease events name
    /// each VM they concern, one event per VM)
    pub kind: String,
    /// The VM, if any.
    pub vm: Option<String>,
    /// Details.
    pub detail: String,
}

/// What a request failed with; the HTTP layer maps it to a status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "error", content = "message", rename_all = "kebab-case")]
pub enum AgentError {
    /// Bad input (400).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// No such VM (404).
    #[error("no such VM: {0}")]
    NotFound(String),
    /// Conflicts with the current state, e.g. the lease is held elsewhere or
    /// the VM already runs (409).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A dependency (leased, QEMU) is unavailable (503).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Anything else (500).
    #[error("internal error: {0}")]
    Internal(String),
}

/// What the HTTP layer asks of the agent's core. Calls may block (they run
/// on a blocking thread).
pub trait AgentOps: Send + Sync + 'static {
    /// Host facts.
    fn host(&self) -> HostInfo;
    /// Every VM this agent knows.
    fn list_vms(&self) -> Vec<VmInfo>;
    /// One VM.
    fn get_vm(&self, id: &str) -> Result<VmInfo, AgentError>;
    /// Starts a VM under its lease.
    fn start_vm(&self, req: StartVm) -> Result<VmInfo, AgentError>;
    /// Stops a VM gracefully (SIGKILL after `timeout`), then releases its lease.
    fn stop_vm(&self, id: &str, timeout: Duration) -> Result<VmInfo, AgentError>;
    /// Kills a VM at once.
    fn kill_vm(&self, id: &str) -> Result<VmInfo, AgentError>;
    /// Pauses a VM.
    fn pause_vm(&self, id: &str) -> Result<VmInfo, AgentError>;
    /// Resumes a paused VM (not a frozen one: only revalidation thaws those).
    fn resume_vm(&self, id: &str) -> Result<VmInfo, AgentError>;
    /// `leased`'s view (lockspaces, hosts, leases), as JSON.
    fn leases(&self) -> Result<serde_json::Value, AgentError>;
    /// Events with `seq > after`, waiting up to `wait` for one to come.
    fn events_since(&self, after: u64, wait: Duration) -> Vec<AgentEvent>;
}
