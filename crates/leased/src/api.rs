//! The client protocol: one JSON object per line over the daemon's Unix
//! stream socket. A client writes a [`Request`] and reads one [`Response`]
//! (a `Subscribe` request turns the connection into a stream of
//! [`Response::Event`] lines until the client closes it).
//!
//! Holders are processes, identified by pid and start time (so a reused
//! pid is never mistaken for a holder). A request acts for the connecting
//! process unless it names another `pid`, which only root and the
//! configured group may do (an agent acquires a VM's lease for the VM
//! process it is about to start).

use nosplit_lease::paxos::LeaseMode;
use serde::{Deserialize, Serialize};

/// Where a resource lease lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRef {
    /// Lockspace name (must be joined).
    pub lockspace: String,
    /// Resource name.
    pub resource: String,
    /// File or device holding the lease.
    pub path: String,
    /// Byte offset of the lease area.
    #[serde(default)]
    pub offset: u64,
}

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Register a process as a (future) lease holder.
    Register {
        /// The process; default: the caller.
        #[serde(default)]
        pid: Option<u32>,
        /// Command run (with the pid appended) at the renewal warning. It
        /// must exit 0 only once the process is paused with no I/O in
        /// flight (QMP `stop`; SIGSTOP and every thread in state `T`):
        /// such a holder is frozen instead of killed, and may run again
        /// only after `leased` revalidated its leases (event
        /// `revalidated`). Any other exit, or the hook timeout: not
        /// frozen, the holder is stopped by signals.
        #[serde(default)]
        freeze_hook: Option<Vec<String>>,
    },
    /// Acquire a resource lease for a registered process.
    Acquire {
        /// The holder; default: the caller.
        #[serde(default)]
        pid: Option<u32>,
        /// The lease.
        lease: LeaseRef,
        /// Exclusive or shared.
        #[serde(default = "exclusive")]
        mode: LeaseMode,
        /// Only at this lease version.
        #[serde(default)]
        lver: Option<u64>,
    },
    /// Release a lease held for a process.
    Release {
        /// The holder; default: the caller.
        #[serde(default)]
        pid: Option<u32>,
        /// Lockspace name.
        lockspace: String,
        /// Resource name.
        resource: String,
    },
    /// The leases a process holds.
    Inquire {
        /// The holder; default: the caller.
        #[serde(default)]
        pid: Option<u32>,
    },
    /// Join a lockspace at run time.
    AddLockspace {
        /// Lockspace name.
        name: String,
        /// File or device.
        path: String,
        /// Byte offset.
        #[serde(default)]
        offset: u64,
        /// Our host id in it.
        host_id: u32,
        /// 512 or 4096.
        #[serde(default = "sector_512")]
        sector_size: u32,
    },
    /// Leave a lockspace (refused while it has holders).
    RemLockspace {
        /// Lockspace name.
        name: String,
    },
    /// Where a holder is after a freeze: answers [`Response::Holder`]
    /// (`frozen`, `revalidating` or `thawed`) or an error (`failing`: not
    /// frozen but a lockspace of its leases is not healthy;
    /// `revalidation_failed`: it was killed because a lease could not be
    /// revalidated; `not_found`). For an agent that missed the events.
    Revalidate {
        /// The holder; default: the caller.
        #[serde(default)]
        pid: Option<u32>,
    },
    /// Everything the daemon knows.
    Status,
    /// Stream events on this connection.
    Subscribe,
}

fn exclusive() -> LeaseMode {
    LeaseMode::Exclusive
}

fn sector_512() -> u32 {
    512
}

/// A lease a holder holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldLease {
    /// Where.
    pub lease: LeaseRef,
    /// Mode.
    pub mode: LeaseMode,
    /// Lease version at acquire.
    pub lver: u64,
}

/// A host as seen from here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostState {
    /// Host id.
    pub host_id: u32,
    /// Host name from its slot.
    pub name: String,
    /// Generation from its slot.
    pub generation: u64,
    /// FREE, LIVE, FAIL or DEAD.
    pub state: String,
}

/// One joined lockspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockspaceStatus {
    /// Name.
    pub name: String,
    /// Storage.
    pub path: String,
    /// Offset.
    pub offset: u64,
    /// Our host id.
    pub host_id: u32,
    /// Our generation (0 until joined).
    pub generation: u64,
    /// joining, joined, failing, lost.
    pub state: String,
    /// io_timeout of the lockspace, ms.
    pub io_timeout_ms: u64,
    /// Milliseconds since the last successful renewal.
    pub since_renewal_ms: Option<u64>,
    /// Recent renewal write latencies, ms (oldest first).
    pub renewal_latency_ms: Vec<f64>,
    /// Other hosts.
    pub hosts: Vec<HostState>,
}

/// One holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderStatus {
    /// Process id.
    pub pid: u32,
    /// Its start time (clock ticks since boot).
    pub start_time: u64,
    /// Its leases.
    pub leases: Vec<HeldLease>,
    /// `running`, `frozen` (leases suspended) or `revalidating`.
    #[serde(default)]
    pub state: String,
}

/// What the daemon reports about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Host name.
    pub host_name: String,
    /// Watchdog backend.
    pub watchdog: String,
    /// Lockspaces.
    pub lockspaces: Vec<LockspaceStatus>,
    /// Holders.
    pub holders: Vec<HolderStatus>,
}

/// An event pushed to subscribers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Renewal is late (warning time passed).
    RenewalWarning {
        /// Lockspace.
        lockspace: String,
    },
    /// Renewal failed: holders are being stopped.
    RenewalFailed {
        /// Lockspace.
        lockspace: String,
    },
    /// Renewal works again.
    RenewalRecovered {
        /// Lockspace.
        lockspace: String,
    },
    /// The host lease is lost; its leases are void.
    LeaseLost {
        /// Lockspace.
        lockspace: String,
        /// Why.
        reason: String,
    },
    /// Another host's liveness changed.
    HostState {
        /// Lockspace.
        lockspace: String,
        /// Host id.
        host_id: u32,
        /// New state.
        state: String,
    },
    /// A holder was signalled or its hook run.
    HolderAction {
        /// Holder pid.
        pid: u32,
        /// What was done.
        action: String,
    },
    /// A holder exited and its leases were released.
    HolderGone {
        /// Holder pid.
        pid: u32,
    },
    /// Every lease of a frozen holder was re-acquired by a fresh ballot at
    /// the version it held: it may be resumed (by its agent; `leased`
    /// never resumes anything).
    Revalidated {
        /// Holder pid.
        pid: u32,
        /// Its leases, with their new versions.
        leases: Vec<HeldLease>,
    },
    /// A lease of a frozen holder could not be revalidated: the holder was
    /// sent SIGKILL and its leases are released when it is gone.
    RevalidationFailed {
        /// Holder pid.
        pid: u32,
        /// Why.
        reason: String,
    },
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    /// Done, nothing to report.
    Ok,
    /// Registered.
    Registered {
        /// Holder pid.
        pid: u32,
    },
    /// Acquired.
    Acquired {
        /// Lease version.
        lver: u64,
    },
    /// Leases held.
    Leases {
        /// The leases.
        leases: Vec<HeldLease>,
    },
    /// Joined.
    Joined {
        /// Our generation.
        generation: u64,
    },
    /// A holder's freeze state (answer to `Revalidate`).
    Holder {
        /// Holder pid.
        pid: u32,
        /// `frozen`, `revalidating` or `thawed` (running with valid leases).
        state: String,
        /// Its leases.
        leases: Vec<HeldLease>,
    },
    /// Status.
    Status(Box<Status>),
    /// An event (subscriptions only).
    Event(Event),
    /// Failed.
    Error {
        /// Machine-readable kind: busy, not_found, denied, invalid, io,
        /// corrupt, failing, frozen, revalidation_failed, internal.
        kind: String,
        /// Human-readable message.
        message: String,
    },
}

impl Response {
    /// An error response.
    pub fn error(kind: &str, message: impl Into<String>) -> Response {
        Response::Error {
            kind: kind.to_string(),
            message: message.into(),
        }
    }
}
