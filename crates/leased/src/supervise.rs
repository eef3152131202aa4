//! Holder escalation: what to do to the processes holding leases when a
//! lockspace's renewal fails, and when it works again.
//!
//! Pure policy, like the lease machines: `(state, input, now) -> actions`.
//! [`Supervisor::step`] never reads a clock, never sends a signal, never
//! runs a hook or a ballot; it returns [`Action`]s for the daemon to carry
//! out, and [`Supervisor::next_wakeup`] says when it wants the next
//! [`Input::Tick`]. The state machine itself is in `policy` (a private
//! submodule); this file holds the vocabulary.
//!
//! ## The schedule (see `docs/timing.md`, "Freeze, then revalidate")
//!
//! The daemon turns each lockspace's [`HostEvent`]s into inputs
//! ([`Input::from_host_event`]):
//!
//! | event | here |
//! |---|---|
//! | `RenewalWarning` (2T) | every holder of the lockspace with a freeze hook: run the hook |
//! | `RenewalFailed` (3T) | every holder not frozen: SIGTERM once its hook failed or timed out (no hook: at once); a hook still running is waited for |
//! | `KillHolders` (3.25T) | SIGKILL every holder of the lockspace still present and not frozen |
//! | `KillDeadline` (3.5T) | SIGKILL anything left; if any holder that is not frozen is still present, fire the watchdog |
//! | `RenewalRecovered` | stop escalating; frozen holders are revalidated |
//! | `Lost(reason)` | SIGKILL the holders that are not frozen; fire the watchdog if any of those is still present `grace` later |
//! | `Joined` | a new incarnation: the lockspace starts afresh; frozen holders are revalidated |
//!
//! A holder in several lockspaces is escalated as far as the *worst* of
//! them asks. Signals only ever get stronger for a holder (none, SIGTERM,
//! SIGKILL) and each is sent at most once; a holder reported gone
//! ([`Input::HolderGone`]) is forgotten and never signalled. The watchdog
//! is fired at most once per supervisor (the host resets anyway).
//!
//! ## Freezing
//!
//! A freeze hook exits 0 only once its holder is paused *and has no I/O in
//! flight* (QMP `stop` drains block I/O before it returns; a SIGSTOPped
//! process whose threads are all in state `T` has no synchronous write in
//! progress). [`Input::HookDone`] with `ok` for a holder that has not been
//! signalled makes it **frozen** ([`Action::Frozen`]). A frozen holder:
//!
//! - is never sent SIGTERM or SIGKILL by the escalation, and its hook is
//!   not run again while it stays frozen;
//! - counts as stopped at the kill deadline and after a loss (the watchdog
//!   is not fired for it): it issues no I/O and has none in flight, so when
//!   another host takes its leases after `host_dead` nothing of it can land
//!   later, which is the guarantee a kill gives;
//! - has its leases *suspended*: it may run again only after every one of
//!   them has been re-acquired by a fresh Disk Paxos ballot at the version
//!   it held ([`Action::Revalidate`]).
//!
//! A hook that exits non-zero, times out, or cannot start leaves the holder
//! *not frozen*: it is escalated as if it had no hook (SIGTERM at 3T,
//! SIGKILL at 3.25T, watchdog at the kill deadline). A hook that confirms
//! after the holder was signalled changes nothing (a signal cannot be taken
//! back).
//!
//! ## Revalidation
//!
//! When every lockspace of a frozen holder is healthy again (`Recovered`
//! before the kill deadline: same incarnation; or `Joined`: a new
//! generation), the policy asks for a revalidation with a fresh ticket and
//! remembers each lockspace's *epoch* (a counter bumped by every escalation
//! input and every `Joined`). The daemon runs the ballots and reports
//! [`Input::RevalidationDone`]:
//!
//! - [`Revalidation::Ok`]: if no epoch moved and every lockspace is still
//!   healthy, the holder is **thawed** ([`Action::Thaw`]): it is an ordinary
//!   running holder again (the daemon tells the agent, which resumes it;
//!   `leased` never resumes anything itself). If an epoch moved (the
//!   lockspace failed, or was rejoined, while the ballots ran) the holder
//!   stays frozen and is revalidated again once healthy; the daemon has
//!   recorded the versions it won, so the next round expects those.
//! - [`Revalidation::Retry`]: stays frozen; tried again `retry` later.
//! - [`Revalidation::Failed`]: a lease moved on (another host took it, its
//!   version changed) or storage keeps failing: SIGKILL and
//!   [`Action::RevalidationFailed`]. The daemon releases what the holder
//!   still holds when it is gone, as for any holder.
//!
//! A holder that was signalled is never frozen and never revalidated: a
//! killed holder stays dead. Stale reports (an old ticket) are ignored.
//!
//! ## Presence
//!
//! A holder is *present in a lockspace* from [`Input::HolderAdded`] until
//! [`Input::HolderRemoved`] (it released its last lease there) or
//! [`Input::HolderGone`] (the process exited). The kill-deadline check uses
//! exactly that. The check after a `Lost` is stricter: it covers every
//! holder present (and not frozen) at the loss, until it is reported
//! *gone* (a release request after the loss does not excuse it; it was
//! sent SIGKILL). So the daemon must report `HolderGone` for every holder
//! it added, and must look at its holders (`/proc`) right before it feeds a
//! `KillDeadline`, so that a holder which died at SIGKILL is not mistaken
//! for a stuck one.
//!
//! ## What `Recovered` does to holders that are not frozen
//!
//! A renewal that succeeds before the kill deadline keeps the incarnation
//! and its leases valid (`docs/timing.md`, "Recovery after a storage
//! outage"): letting holders run on is safe. So `Recovered` only stops the
//! escalation: no further signal is sent because of that lockspace, and a
//! holder already sent SIGTERM or SIGKILL is not "resumed". If the same
//! lockspace fails again later, its holders are escalated again from where
//! they are: a thawed one has its hook run again, one already sent SIGTERM
//! waits for `KillHolders`. A hook still running from the previous failure
//! is not started twice. `Recovered` after the kill deadline or a loss is
//! ignored: that incarnation is void, only `Joined` clears it.

#[cfg(test)]
mod freeze_tests;
mod policy;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

use nosplit_clock::MonoTime;
use nosplit_lease::host::{HostEvent, LostReason};
use nosplit_lease::Name;

pub use policy::Supervisor;

/// A holder process: pid plus its start time (field 22 of
/// `/proc/PID/stat`), so a reused pid is never mistaken for the holder.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct HolderId {
    /// Process id.
    pub pid: u32,
    /// Start time in clock ticks since boot.
    pub start_time: u64,
}

impl fmt::Display for HolderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {}", self.pid)
    }
}

/// A command that freezes a holder (pauses a VM, say) and exits 0 only
/// once it is frozen with no I/O in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreezeHook {
    /// The command and its arguments.
    pub argv: Vec<String>,
    /// How long it may run; after that the holder counts as not frozen.
    pub timeout: Duration,
}

/// What a lockspace's host lease reports, as far as holders are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EscalationKind {
    /// Renewal is late (`RenewalWarning`): run freeze hooks.
    Warning,
    /// Renewal failed (`RenewalFailed`): SIGTERM holders not frozen.
    Failed,
    /// `KillHolders`: SIGKILL now.
    KillNow,
    /// `KillDeadline`: every holder must be gone or frozen now.
    Deadline,
    /// A renewal succeeded again before the kill deadline.
    Recovered,
    /// The lease was lost for another reason than expiry (the text says
    /// why): SIGKILL now, watchdog if not gone `grace` later.
    Lost(String),
}

/// How a revalidation the daemon ran for a frozen holder ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revalidation {
    /// Every lease was re-acquired at the version the holder had (plus one).
    Ok,
    /// Not now (a lockspace is not healthy, or similar); try again later.
    Retry(String),
    /// A lease cannot be revalidated: the holder must die.
    Failed(String),
}

/// An input to [`Supervisor::step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// `holder` holds (or is acquiring) a lease in `lockspace`. Repeating it
    /// is harmless; the hook given replaces the holder's previous one.
    HolderAdded {
        /// The holder.
        holder: HolderId,
        /// The lockspace.
        lockspace: Name,
        /// Its freeze hook, if it has one.
        freeze_hook: Option<FreezeHook>,
    },
    /// `holder` released its last lease in `lockspace` (and keeps running).
    HolderRemoved {
        /// The holder.
        holder: HolderId,
        /// The lockspace.
        lockspace: Name,
    },
    /// A new incarnation of `lockspace` joined: its escalation starts afresh.
    Joined {
        /// The lockspace.
        lockspace: Name,
    },
    /// A lockspace's renewal trouble.
    Escalation {
        /// The lockspace.
        lockspace: Name,
        /// What happened.
        kind: EscalationKind,
    },
    /// The holder's process exited (or its pid now names another process).
    HolderGone(HolderId),
    /// A hook started by [`Action::RunHook`] finished (`ok`: exit status 0,
    /// i.e. the holder is frozen with no I/O in flight).
    HookDone {
        /// The holder the hook was for.
        holder: HolderId,
        /// Whether it confirmed the freeze.
        ok: bool,
    },
    /// A revalidation asked for by [`Action::Revalidate`] ended.
    RevalidationDone {
        /// The holder.
        holder: HolderId,
        /// The ticket of the request.
        ticket: u64,
        /// How it went.
        outcome: Revalidation,
    },
    /// A holder re-adopted after a daemon restart was frozen when the
    /// previous daemon stopped: it is frozen again (after its
    /// `HolderAdded`), without running its hook.
    AdoptFrozen(HolderId),
    /// Time passed (see [`Supervisor::next_wakeup`]).
    Tick,
}

impl Input {
    /// The input for a host lease event of `lockspace`, if it matters to
    /// holders.
    ///
    /// `Lost(Expired)` maps to a second `Deadline`, which is idempotent
    /// (`KillDeadline` always precedes it); other losses map to `Lost`.
    pub fn from_host_event(lockspace: &Name, event: &HostEvent) -> Option<Input> {
        let kind = match event {
            HostEvent::Joined { .. } => {
                return Some(Input::Joined {
                    lockspace: lockspace.clone(),
                })
            }
            HostEvent::RenewalWarning => EscalationKind::Warning,
            HostEvent::RenewalFailed => EscalationKind::Failed,
            HostEvent::KillHolders => EscalationKind::KillNow,
            HostEvent::KillDeadline | HostEvent::Lost(LostReason::Expired) => {
                EscalationKind::Deadline
            }
            HostEvent::RenewalRecovered => EscalationKind::Recovered,
            HostEvent::Lost(reason) => EscalationKind::Lost(reason.to_string()),
            HostEvent::JoinFailed(_)
            | HostEvent::RenewalOk { .. }
            | HostEvent::RenewalError(_)
            | HostEvent::HostChanged { .. }
            | HostEvent::Left => return None,
        };
        Some(Input::Escalation {
            lockspace: lockspace.clone(),
            kind,
        })
    }
}

/// A signal to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Sig {
    /// SIGTERM.
    Term,
    /// SIGKILL.
    Kill,
}

/// What the daemon must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run `argv` for `holder`; report [`Input::HookDone`] when it ends. The
    /// daemon kills the hook if it still runs at `deadline` and reports it
    /// as failed.
    RunHook {
        /// The holder to freeze.
        holder: HolderId,
        /// The hook command.
        argv: Vec<String>,
        /// When the supervisor stops waiting for it.
        deadline: MonoTime,
    },
    /// Send `signal` to `holder` (if it is still that process).
    Signal {
        /// The holder.
        holder: HolderId,
        /// The signal.
        signal: Sig,
    },
    /// The holder's hook confirmed: it is frozen, its leases suspended.
    Frozen {
        /// The holder.
        holder: HolderId,
    },
    /// Re-acquire every lease of the frozen `holder` by a fresh ballot at
    /// the version it holds; report [`Input::RevalidationDone`] with
    /// `ticket`.
    Revalidate {
        /// The holder.
        holder: HolderId,
        /// Echo this in the report.
        ticket: u64,
    },
    /// Every lease of `holder` was revalidated: it may run again (tell the
    /// agent; it resumes the holder).
    Thaw {
        /// The holder.
        holder: HolderId,
    },
    /// Revalidation of `holder` failed; it was sent SIGKILL (the `Signal`
    /// action comes first).
    RevalidationFailed {
        /// The holder.
        holder: HolderId,
        /// Why.
        reason: String,
    },
    /// Reset the host now: a holder could not be stopped in time.
    FireWatchdog {
        /// Why, for the log.
        reason: String,
    },
}

/// How far a lockspace's renewal trouble has gone, in escalation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Phase {
    /// Renewing (or not heard of yet).
    #[default]
    Ok,
    /// Renewal warning: freeze hooks run.
    Warning,
    /// Renewal failed: holders not frozen are sent SIGTERM.
    Failed,
    /// Holders not frozen are sent SIGKILL.
    Killing,
    /// The kill deadline passed: the incarnation is void.
    Expired,
    /// The lease was lost (for any other reason): the incarnation is void.
    Lost,
}

/// Where a frozen holder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezeState {
    /// Frozen; its leases are suspended until its lockspaces are healthy.
    Frozen,
    /// Frozen; its leases are being revalidated.
    Revalidating,
}

fn list(ids: &[HolderId]) -> String {
    let v: Vec<String> = ids.iter().map(HolderId::to_string).collect();
    v.join(", ")
}
