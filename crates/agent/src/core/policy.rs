//! The agent's pure decisions about its VMs, kept apart from the I/O that
//! gathers their inputs (so each rule is tested on its own):
//!
//! - what one look at a VM means ([`observation`]): dead, unreachable (the
//!   process lives but QMP failed), or seen in some state;
//! - how a VM ended ([`exit_status`], told by [`describe_exit`]): a guest
//!   that shut itself down (QMP `SHUTDOWN`, reason `guest-shutdown`) or a
//!   process that exited with status 0 stopped, anything else crashed;
//! - the state of a VM seen again after a restart or an outage
//!   ([`seen_status`]): a pause the operator asked for stays a resumable
//!   pause, any other pause is the lease freeze;
//! - whether `leased` holds a VM's lease for its process ([`lease_verdict`]):
//!   only `leased`'s own answer decides, and only "not held" kills;
//! - leases `leased` holds for processes the agent does not know
//!   ([`orphans`]);
//! - what `leased`'s answer about a frozen VM calls for
//!   ([`frozen_verdict`]).

use std::collections::BTreeSet;
use std::time::Duration;

use nosplit_leased::api::{HolderStatus, Response};
use nosplit_vmrt::driver::{DriverError, ProcIdentity, VmEvent, VmState};

use crate::model::{AgentError, VmStatus};

/// A frozen VM is first asked about directly once it has been frozen this
/// long: a hook that paused it may still be running, and `leased` records
/// the freeze only when the hook returns (its timeout is 500 ms by default).
pub(crate) const REVALIDATE_AFTER: Duration = Duration::from_secs(2);

/// What one look at a live VM showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Observation {
    /// The process is gone (exit status, if known).
    Dead(VmState),
    /// The process lives but its state could not be read (QMP failed).
    Lost(String),
    /// The process lives in this state.
    Seen(VmState),
}

/// Interprets a state query, given whether the process (pid and start
/// time) still exists: a failed query of a live process is not a crash.
pub(crate) fn observation(state: Result<VmState, DriverError>, alive: bool) -> Observation {
    match state {
        Ok(s) if s.is_dead() => Observation::Dead(s),
        _ if !alive => Observation::Dead(VmState::Gone),
        Ok(s) => Observation::Seen(s),
        Err(e) => Observation::Lost(e.to_string()),
    }
}

/// Whether `ev` is QEMU reporting that the guest powered itself off.
pub(crate) fn is_guest_shutdown(ev: &VmEvent) -> bool {
    match ev {
        VmEvent::Qmp(q) => {
            q.name == "SHUTDOWN"
                && q.data.get("reason").and_then(|r| r.as_str()) == Some("guest-shutdown")
        }
        _ => false,
    }
}

/// How a VM that is gone ended, and the event to report: stopped when its
/// guest shut down or its process exited with status 0 (a clean end it
/// chose), crashed otherwise (a signal, a failure status, or an adopted
/// process whose status cannot be known).
pub(crate) fn exit_status(guest_shutdown: bool, how: &VmState) -> (VmStatus, &'static str) {
    let clean = matches!(how, VmState::Exited(s) if s.code() == Some(0));
    if guest_shutdown || clean {
        (VmStatus::Stopped, "vm-stopped")
    } else {
        (VmStatus::Crashed, "vm-crashed")
    }
}

/// How a process ended, in words.
pub(crate) fn describe_exit(how: &VmState) -> String {
    use std::os::unix::process::ExitStatusExt;
    match how {
        VmState::Exited(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("exited with status {c}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            (None, None) => "ended".to_string(),
        },
        VmState::Gone => "gone (its exit status is not ours to read)".to_string(),
        other => format!("ended in state {other:?}"),
    }
}

/// The status of a VM seen in `observed` after a time the agent did not
/// see it (adoption, or QMP back), given the status it had (`before`) and
/// whether the operator paused it. A lease freeze ends only by `leased`'s
/// word, never by what the VM looks like.
pub(crate) fn seen_status(before: VmStatus, observed: &VmState, operator_paused: bool) -> VmStatus {
    if before == VmStatus::Frozen {
        return VmStatus::Frozen;
    }
    match observed {
        VmState::Paused if operator_paused => VmStatus::Paused,
        VmState::Paused => VmStatus::Frozen,
        VmState::IoErrorPaused => VmStatus::IoError,
        VmState::Running => VmStatus::Running,
        VmState::Prelaunch | VmState::Other(_) | VmState::Exited(_) | VmState::Gone => before,
    }
}

/// `leased`'s answer about one VM's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LeaseVerdict {
    /// The VM's process holds it; `frozen`: `leased` has it frozen.
    Held {
        /// `leased` froze the holder (or is revalidating it).
        frozen: bool,
        /// The lease version held.
        lver: u64,
    },
    /// It does not: the VM must not run.
    NotHeld(String),
}

/// Whether `holders` (`leased`'s status) shows the process `ident` holding
/// the lease `resource` in `lockspace`.
pub(crate) fn lease_verdict(
    ident: ProcIdentity,
    lockspace: &str,
    resource: &str,
    holders: &[HolderStatus],
) -> LeaseVerdict {
    let pid = ident.pid;
    let Some(h) = holders.iter().find(|h| h.pid == pid) else {
        return LeaseVerdict::NotHeld(format!("leased has no holder with pid {pid}"));
    };
    if h.start_time != ident.start_time {
        return LeaseVerdict::NotHeld(format!(
            "leased's holder {pid} is another process (start time {} not {})",
            h.start_time, ident.start_time
        ));
    }
    match h
        .leases
        .iter()
        .find(|l| l.lease.lockspace == lockspace && l.lease.resource == resource)
    {
        Some(l) => LeaseVerdict::Held {
            frozen: matches!(h.state.as_str(), "frozen" | "revalidating"),
            lver: l.lver,
        },
        None => LeaseVerdict::NotHeld(format!(
            "pid {pid} holds no lease {lockspace}/{resource} in leased"
        )),
    }
}

/// Holders with leases whose process is none of the agent's VMs (`known`:
/// pid and start time of every VM it has) nor a VM being started
/// (`starting`: pids between registration and adoption into the agent).
pub(crate) fn orphans<'a>(
    holders: &'a [HolderStatus],
    known: &BTreeSet<(u32, u64)>,
    starting: &BTreeSet<u32>,
) -> Vec<&'a HolderStatus> {
    holders
        .iter()
        .filter(|h| {
            !h.leases.is_empty()
                && !known.contains(&(h.pid, h.start_time))
                && !starting.contains(&h.pid)
        })
        .collect()
}

/// What to do with a frozen VM, from `leased`'s answer to `Revalidate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrozenVerdict {
    /// Its leases were revalidated: resume it.
    Thaw,
    /// Still frozen, revalidating, or being stopped by `leased`: wait.
    Wait(String),
    /// Its lease could not be revalidated, or it holds none: kill it.
    Kill(String),
    /// No usable answer: ask again later.
    Unknown(String),
}

/// Interprets `leased`'s answer to `Revalidate` for a frozen VM.
pub(crate) fn frozen_verdict(answer: &Result<Response, AgentError>) -> FrozenVerdict {
    match answer {
        Ok(Response::Holder { state, .. }) if state == "thawed" => FrozenVerdict::Thaw,
        Ok(Response::Holder { state, .. }) => FrozenVerdict::Wait(state.clone()),
        Ok(Response::Error { kind, message }) => match kind.as_str() {
            "revalidation_failed" | "not_found" => {
                FrozenVerdict::Kill(format!("{kind}: {message}"))
            }
            // Not frozen in leased's view and a lockspace is sick: leased
            // is stopping it.
            "failing" => FrozenVerdict::Wait(format!("{kind}: {message}")),
            _ => FrozenVerdict::Unknown(format!("{kind}: {message}")),
        },
        Ok(other) => FrozenVerdict::Unknown(format!("leased answered {other:?}")),
        Err(e) => FrozenVerdict::Unknown(e.to_string()),
    }
}

/// Whether a VM frozen for `frozen_for` is due a direct question.
pub(crate) fn revalidate_due(frozen_for: Duration) -> bool {
    frozen_for >= REVALIDATE_AFTER
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
