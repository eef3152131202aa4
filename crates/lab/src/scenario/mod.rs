//! Scenario files: a lab, its VMs, and the faults to inject over time
//! (TOML). [`parse`] checks every field and returns a checked [`Scenario`]
//! or every problem at once.
//!
//! ```toml
//! name = "host power-off"          # required
//! description = "..."              # optional
//! hosts = 3                        # 1..=16, default 3
//! io_timeout_ms = 1000             # lockspace io_timeout, default 1000
//! protection = true                # VMs under leases; false = control run
//! engine = false                   # true: the real engine places and recovers
//!                                  # the VMs (nosplit engine); false: the lab's policy
//! duration_s = 40                  # run length after every VM first ran; required
//! net_timeout_ms = 3000            # a host unreachable on its management plane
//!                                  # this long is presumed lost (naive detection)
//!
//! [[vm]]
//! name = "g1"                      # required, [A-Za-z0-9._-], at most 32
//!                                  # characters with the count suffix
//! kind = "qemu"                    # "qemu" | "process"; required
//! host = 1                         # first host; default: least loaded
//! ha = true                        # default true
//! count = 4                        # process only: g1-1 .. g1-4
//!
//! [[step]]
//! at_s = 5                         # seconds after every VM first ran
//! action = "power-off"             # power-off | power-on | storage | net
//!                                  # | leased-kill | leased-start | heal
//! host = 1                         # a host, or "all" (storage, net, heal)
//! mode = "hang"                    # storage: ok | eio | eio-read | eio-write
//!                                  # | hang | delay:<ms>
//! plane = "mgmt"                   # net: mgmt | svc | stor | all
//! fault = "down"                   # net: down | drop | drop-in | drop-out | ok
//!
//! [expect]                         # optional; `lab run` fails when not met
//! split_brain = false              # whether the oracle must fire
//! ```

pub mod parse;
pub mod report;
pub mod run;

use std::time::Duration;

pub use parse::{net_fault, parse, parse_file, plane, storage_mode, ScenarioErrors, STORAGE_MODES};
pub use report::RunReport;
pub use run::{run, RunOpts};

/// Longest instance id: heartbeat records and the agent's API allow 48.
pub const MAX_INSTANCE_ID: usize = nosplit_heartbeat::record::MAX_ID_LEN;

/// Room an instance id needs after its VM id: the lab's `.<n>.h<host>`
/// with up to 11 digits of `n`, the engine's `.<run>-<n>.h<host>` with up
/// to 6 (`run` is 4 hex digits), hosts up to 64.
pub const INSTANCE_SUFFIX: usize = 16;

/// Longest VM id (a `count` suffix `-<k>` included), so that every
/// instance id `<vm>.<n>.h<host>` fits [`MAX_INSTANCE_ID`].
pub const MAX_VM_ID: usize = MAX_INSTANCE_ID - INSTANCE_SUFFIX;

/// Checks a VM id: 1 to [`MAX_VM_ID`] of `A-Z a-z 0-9 . _ -`.
pub fn check_vm_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(format!("{id:?}: use 1 to {MAX_VM_ID} of A-Z a-z 0-9 . _ -"));
    }
    if id.len() > MAX_VM_ID {
        return Err(format!(
            "{id:?} has {} characters; a VM id may have at most {MAX_VM_ID}, so that its instance ids (<vm>.<n>.h<host>) fit in {MAX_INSTANCE_ID}",
            id.len()
        ));
    }
    Ok(())
}

/// How a VM runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VmKind {
    /// A QEMU guest under TCG with the heartbeat initramfs.
    Qemu,
    /// A process VM (`nosplit vm-proc`).
    Process,
}

/// One VM of a scenario.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VmSpec {
    /// Id.
    pub name: String,
    /// Kind.
    pub kind: VmKind,
    /// First host.
    pub host: Option<u32>,
    /// Restart when lost.
    pub ha: bool,
}

/// Which hosts a step acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hosts {
    /// One host.
    One(u32),
    /// Every host.
    All,
}

/// A network plane, or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlaneSel {
    /// Management.
    Mgmt,
    /// Service.
    Svc,
    /// Storage.
    Stor,
    /// All three.
    All,
}

/// A network fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetFault {
    /// Link down.
    Down,
    /// Drop both ways.
    Drop,
    /// Drop what comes in.
    DropIn,
    /// Drop what goes out.
    DropOut,
    /// No fault.
    Ok,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Kill every process of the host at once.
    PowerOff,
    /// Start the host's daemons again.
    PowerOn,
    /// Set the host's storage fault mode (faultfs syntax: `hang`, `delay 200`).
    Storage {
        /// Mode.
        mode: String,
    },
    /// Set a network fault.
    Net {
        /// Plane.
        plane: PlaneSel,
        /// Fault.
        fault: NetFault,
    },
    /// SIGKILL the host's leased (its holders stay).
    LeasedKill,
    /// Start the host's leased again.
    LeasedStart,
    /// Clear every storage and network fault.
    Heal,
}

/// A fault at a time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Step {
    /// When, after every VM first ran.
    pub at: Duration,
    /// Hosts.
    pub hosts: Hosts,
    /// What.
    pub action: Action,
}

/// A checked scenario.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Scenario {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Hosts.
    pub hosts: u32,
    /// Lockspace io_timeout.
    pub io_timeout_ms: u32,
    /// VMs under leases.
    pub protection: bool,
    /// The real engine recovers (not the lab's policy).
    pub engine: bool,
    /// Run length after every VM first ran.
    pub duration: Duration,
    /// Naive network detection time.
    pub net_timeout: Duration,
    /// VMs (process `count`s expanded).
    pub vms: Vec<VmSpec>,
    /// Steps, by time.
    pub steps: Vec<Step>,
    /// Whether the oracle must fire (`None`: no expectation).
    pub expect_split_brain: Option<bool>,
}
