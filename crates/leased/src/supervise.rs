//! Holder escalation: what to do to the processes holding leases when a
//! lockspace's renewal fails.
//!
//! Pure policy, like the lease machines: `(state, input, now) -> actions`.
//! [`Supervisor::step`] never reads a clock, never sends a signal and never
//! runs a hook; it returns [`Action`]s for the daemon to carry out, and
//! [`Supervisor::next_wakeup`] says when it wants the next [`Input::Tick`].
//!
//! ## The schedule (see `docs/timing.md`)
//!
//! The daemon turns each lockspace's [`HostEvent`]s into inputs
//! ([`Input::from_host_event`]):
//!
//! | event | here |
//! |---|---|
//! | `RenewalWarning` (2T) | recorded; no action |
//! | `RenewalFailed` (3T) | every holder of the lockspace: run its freeze hook (if any), then SIGTERM when the hook reports done or its deadline passes; no hook: SIGTERM at once |
//! | `KillHolders` (3.25T) | SIGKILL every holder of the lockspace still present |
//! | `KillDeadline` (3.5T) | SIGKILL anything left; if any holder of the lockspace is still present, fire the watchdog |
//! | `RenewalRecovered` | stop escalating for this lockspace (see below) |
//! | `Lost(reason)` | SIGKILL at once; fire the watchdog if any of those holders is still present `grace` later |
//! | `Joined` | a new incarnation: the lockspace starts afresh |
//!
//! A holder in several lockspaces is escalated as far as the *worst* of
//! them asks. Signals only ever get stronger for a holder (none, SIGTERM,
//! SIGKILL) and each is sent at most once; a holder reported gone
//! ([`Input::HolderGone`]) is forgotten and never signalled. The watchdog
//! is fired at most once per supervisor (the host resets anyway).
//!
//! ## Presence
//!
//! A holder is *present in a lockspace* from [`Input::HolderAdded`] until
//! [`Input::HolderRemoved`] (it released its last lease there) or
//! [`Input::HolderGone`] (the process exited). The kill-deadline check uses
//! exactly that. The check after a `Lost` is stricter: it covers every
//! holder present at the loss, until it is reported *gone* (a release
//! request after the loss does not excuse it; it was sent SIGKILL). So the
//! daemon must report `HolderGone` for every holder it added, and must
//! look at its holders (`/proc`) right before it feeds a `KillDeadline`, so
//! that a holder which died at SIGKILL is not mistaken for a stuck one.
//!
//! ## What `Recovered` does, and why
//!
//! A renewal that succeeds before the kill deadline keeps the incarnation
//! and its leases valid (`docs/timing.md`, "Recovery after a storage
//! outage"): letting holders run on is safe. So `Recovered` only stops the
//! escalation: no further signal is sent because of that lockspace.
//! Nothing is undone either:
//!
//! - a holder already sent SIGTERM or SIGKILL is not "resumed" (a signal
//!   cannot be taken back; the process is shutting down or dead);
//! - a holder whose freeze hook ran (or is still running) stays frozen: no
//!   SIGTERM follows the hook any more, and there is no thaw hook. Resuming
//!   a paused VM is left to whoever manages it (the daemon reports the
//!   recovery to its subscribers); resuming automatically would make a
//!   flapping storage path flap the VMs too.
//!
//! If the same lockspace fails again later, its holders are escalated again
//! from where they are: a frozen one has its hook run again (freeze hooks
//! must be idempotent), one already sent SIGTERM waits for `KillHolders`.
//! A hook still running from the previous failure is not started twice; its
//! original deadline stands. `Recovered` after the kill deadline or a loss
//! is ignored: that incarnation is void, only `Joined` clears it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use nosplit_clock::MonoTime;
use nosplit_lease::host::{HostEvent, LostReason};
use nosplit_lease::Name;

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

/// A command that freezes a holder (pauses a VM, say) before it is sent
/// SIGTERM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreezeHook {
    /// The command and its arguments.
    pub argv: Vec<String>,
    /// How long it may run; SIGTERM follows at the latest this long after
    /// it was started.
    pub timeout: Duration,
}

/// What a lockspace's host lease reports, as far as holders are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EscalationKind {
    /// Renewal is late (`RenewalWarning`). Recorded only.
    Warning,
    /// Renewal failed (`RenewalFailed`): freeze, then SIGTERM.
    Failed,
    /// `KillHolders`: SIGKILL now.
    KillNow,
    /// `KillDeadline`: every holder must be gone now.
    Deadline,
    /// A renewal succeeded again before the kill deadline.
    Recovered,
    /// The lease was lost for another reason than expiry (the text says
    /// why): SIGKILL now, watchdog if not gone `grace` later.
    Lost(String),
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
    /// A hook started by [`Action::RunHook`] finished (`ok`: exit status 0).
    HookDone {
        /// The holder the hook was for.
        holder: HolderId,
        /// Whether it succeeded. SIGTERM follows either way.
        ok: bool,
    },
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
    /// daemon should kill the hook if it still runs at `deadline` (SIGTERM
    /// to the holder follows then anyway).
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
    /// Renewal warning: nothing done to holders yet.
    Warning,
    /// Renewal failed: holders are frozen and sent SIGTERM.
    Failed,
    /// Holders are sent SIGKILL.
    Killing,
    /// The kill deadline passed: the incarnation is void.
    Expired,
    /// The lease was lost (for any other reason): the incarnation is void.
    Lost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HookRun {
    /// Not started in this escalation.
    Idle,
    /// Started; SIGTERM at the latest at `deadline`.
    Running { deadline: MonoTime },
    /// Finished (in this escalation).
    Done,
}

#[derive(Debug, Clone)]
struct HolderState {
    lockspaces: BTreeSet<Name>,
    hook: Option<FreezeHook>,
    hook_run: HookRun,
    sent: Option<Sig>,
}

/// A pending "is anything still there?" check after a loss.
#[derive(Debug, Clone)]
struct Check {
    at: MonoTime,
    since: MonoTime,
    why: String,
    holders: BTreeSet<HolderId>,
}

/// The escalation state of every holder and lockspace of this host.
#[derive(Debug, Clone)]
pub struct Supervisor {
    grace: Duration,
    grace_for: BTreeMap<Name, Duration>,
    phases: BTreeMap<Name, Phase>,
    holders: BTreeMap<HolderId, HolderState>,
    checks: Vec<Check>,
    fired: Option<String>,
}

impl Supervisor {
    /// A supervisor with no holders. `grace` is how long holders SIGKILLed
    /// because a lease was lost may take to disappear before the watchdog
    /// fires (`io_timeout / 2` is a good value).
    pub fn new(grace: Duration) -> Supervisor {
        Supervisor {
            grace,
            grace_for: BTreeMap::new(),
            phases: BTreeMap::new(),
            holders: BTreeMap::new(),
            checks: Vec::new(),
            fired: None,
        }
    }

    /// Uses `grace` instead of the default for losses of `lockspace` (to
    /// scale it with that lockspace's `io_timeout`).
    pub fn set_grace(&mut self, lockspace: &Name, grace: Duration) {
        self.grace_for.insert(lockspace.clone(), grace);
    }

    /// The holders present in `lockspace`, in id order.
    pub fn holders_in(&self, lockspace: &Name) -> Vec<HolderId> {
        self.holders
            .iter()
            .filter(|(_, h)| h.lockspaces.contains(lockspace))
            .map(|(id, _)| *id)
            .collect()
    }

    /// How far `lockspace`'s trouble has gone.
    pub fn phase(&self, lockspace: &Name) -> Phase {
        self.phases.get(lockspace).copied().unwrap_or_default()
    }

    /// Whether `holder` is being stopped (one of its lockspaces failed).
    pub fn escalated(&self, holder: &HolderId) -> bool {
        self.holders
            .get(holder)
            .is_some_and(|h| self.level(h) >= Phase::Failed)
    }

    /// The strongest signal sent to `holder` so far.
    pub fn signal_sent(&self, holder: &HolderId) -> Option<Sig> {
        self.holders.get(holder).and_then(|h| h.sent)
    }

    /// The reason the watchdog was fired, if it was.
    pub fn fired(&self) -> Option<&str> {
        self.fired.as_deref()
    }

    /// When the supervisor next needs a [`Input::Tick`]
    /// ([`MonoTime::NEVER`]: not before the next other input).
    pub fn next_wakeup(&self) -> MonoTime {
        let mut t = MonoTime::NEVER;
        for h in self.holders.values() {
            let level = self.level(h);
            if level >= Phase::Failed && level < Phase::Killing && h.sent.is_none() {
                if let HookRun::Running { deadline } = h.hook_run {
                    t = t.min(deadline);
                }
            }
        }
        if self.fired.is_none() {
            for c in &self.checks {
                t = t.min(c.at);
            }
        }
        t
    }

    /// Advances the policy.
    pub fn step(&mut self, input: Input, now: MonoTime) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::HolderAdded {
                holder,
                lockspace,
                freeze_hook,
            } => {
                let h = self.holders.entry(holder).or_insert_with(|| HolderState {
                    lockspaces: BTreeSet::new(),
                    hook: None,
                    hook_run: HookRun::Idle,
                    sent: None,
                });
                h.hook = freeze_hook;
                h.lockspaces.insert(lockspace.clone());
                // Added to a void incarnation (a daemon bug): it is killed
                // below; make sure it is also gone in time.
                if self.phase(&lockspace) >= Phase::Expired {
                    let why = format!("{holder} was added to void lockspace {lockspace}");
                    self.add_check(&lockspace, why, [holder].into(), now);
                }
            }
            Input::HolderRemoved { holder, lockspace } => {
                if let Some(h) = self.holders.get_mut(&holder) {
                    h.lockspaces.remove(&lockspace);
                    if h.lockspaces.is_empty() {
                        self.holders.remove(&holder);
                    }
                }
            }
            Input::Joined { lockspace } => {
                self.phases.remove(&lockspace);
            }
            Input::Escalation { lockspace, kind } => {
                self.escalate(lockspace, kind, now, &mut out);
            }
            Input::HolderGone(holder) => {
                self.holders.remove(&holder);
                for c in &mut self.checks {
                    c.holders.remove(&holder);
                }
            }
            Input::HookDone { holder, .. } => {
                if let Some(h) = self.holders.get_mut(&holder) {
                    if let HookRun::Running { .. } = h.hook_run {
                        h.hook_run = HookRun::Done;
                    }
                }
            }
            Input::Tick => {}
        }
        self.reconcile(now, &mut out);
        self.run_checks(now, &mut out);
        out
    }

    fn escalate(
        &mut self,
        lockspace: Name,
        kind: EscalationKind,
        now: MonoTime,
        out: &mut Vec<Action>,
    ) {
        let phase = self.phases.entry(lockspace.clone()).or_default();
        let to = match &kind {
            EscalationKind::Warning => Phase::Warning,
            EscalationKind::Failed => Phase::Failed,
            EscalationKind::KillNow => Phase::Killing,
            EscalationKind::Deadline => Phase::Expired,
            EscalationKind::Lost(_) => Phase::Lost,
            EscalationKind::Recovered => {
                // A void incarnation never recovers; only Joined clears it.
                if *phase < Phase::Expired {
                    *phase = Phase::Ok;
                }
                return;
            }
        };
        *phase = (*phase).max(to);
        match kind {
            EscalationKind::Deadline => {
                // Signals first (a SIGKILL may still help if the watchdog
                // cannot reset), then the verdict.
                self.reconcile(now, out);
                let left = self.holders_in(&lockspace);
                if !left.is_empty() {
                    let reason = format!(
                        "lockspace {lockspace}: kill deadline passed with {} still running",
                        list(&left)
                    );
                    self.fire(reason, out);
                }
            }
            EscalationKind::Lost(why) => {
                let present: BTreeSet<HolderId> = self.holders_in(&lockspace).into_iter().collect();
                if !present.is_empty() {
                    let why = format!("lockspace {lockspace} lost ({why})");
                    self.add_check(&lockspace, why, present, now);
                }
            }
            _ => {}
        }
    }

    fn add_check(
        &mut self,
        lockspace: &Name,
        why: String,
        holders: BTreeSet<HolderId>,
        now: MonoTime,
    ) {
        let grace = self.grace_for.get(lockspace).copied().unwrap_or(self.grace);
        self.checks.push(Check {
            at: now + grace,
            since: now,
            why,
            holders,
        });
    }

    /// The worst phase among the holder's lockspaces.
    fn level(&self, h: &HolderState) -> Phase {
        h.lockspaces
            .iter()
            .map(|l| self.phase(l))
            .max()
            .unwrap_or_default()
    }

    /// Brings every holder up to the escalation its lockspaces ask for.
    fn reconcile(&mut self, now: MonoTime, out: &mut Vec<Action>) {
        let levels: Vec<(HolderId, Phase)> = self
            .holders
            .iter()
            .map(|(id, h)| (*id, self.level(h)))
            .collect();
        for (id, level) in levels {
            let Some(h) = self.holders.get_mut(&id) else {
                continue;
            };
            if level >= Phase::Killing {
                if h.sent != Some(Sig::Kill) {
                    h.sent = Some(Sig::Kill);
                    out.push(Action::Signal {
                        holder: id,
                        signal: Sig::Kill,
                    });
                }
            } else if level >= Phase::Failed {
                if h.sent.is_some() {
                    continue;
                }
                if let (HookRun::Idle, Some(hook)) = (h.hook_run, &h.hook) {
                    let deadline = now + hook.timeout;
                    out.push(Action::RunHook {
                        holder: id,
                        argv: hook.argv.clone(),
                        deadline,
                    });
                    h.hook_run = HookRun::Running { deadline };
                }
                if let HookRun::Running { deadline } = h.hook_run {
                    if now < deadline {
                        continue;
                    }
                }
                h.sent = Some(Sig::Term);
                out.push(Action::Signal {
                    holder: id,
                    signal: Sig::Term,
                });
            } else if h.hook_run == HookRun::Done {
                // Not escalated (any more): the next failure runs the hook
                // again. A hook still running keeps its state, so it is
                // never started twice at once.
                h.hook_run = HookRun::Idle;
            }
        }
    }

    fn run_checks(&mut self, now: MonoTime, out: &mut Vec<Action>) {
        self.checks.retain(|c| !c.holders.is_empty());
        let (due, later): (Vec<Check>, Vec<Check>) =
            self.checks.drain(..).partition(|c| c.at <= now);
        self.checks = later;
        for c in due {
            let left: Vec<HolderId> = c.holders.into_iter().collect();
            let reason = format!(
                "{}: {} still running {} ms after SIGKILL",
                c.why,
                list(&left),
                now.saturating_since(c.since).as_millis()
            );
            self.fire(reason, out);
        }
    }

    fn fire(&mut self, reason: String, out: &mut Vec<Action>) {
        if self.fired.is_none() {
            self.fired = Some(reason.clone());
            self.checks.clear();
            out.push(Action::FireWatchdog { reason });
        }
    }
}

fn list(ids: &[HolderId]) -> String {
    let v: Vec<String> = ids.iter().map(HolderId::to_string).collect();
    v.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(s: &str) -> Name {
        Name::new(s).expect("valid name")
    }
    fn h(pid: u32) -> HolderId {
        HolderId {
            pid,
            start_time: 1000 + u64::from(pid),
        }
    }
    fn at(ms: u64) -> MonoTime {
        MonoTime::from_millis(ms)
    }
    fn hook(ms: u64) -> Option<FreezeHook> {
        Some(FreezeHook {
            argv: vec!["freeze".into(), "vm".into()],
            timeout: Duration::from_millis(ms),
        })
    }
    fn add(s: &mut Supervisor, holder: HolderId, l: &str, freeze_hook: Option<FreezeHook>) {
        let out = s.step(
            Input::HolderAdded {
                holder,
                lockspace: ls(l),
                freeze_hook,
            },
            at(0),
        );
        assert!(out.is_empty(), "{out:?}");
    }
    fn esc(s: &mut Supervisor, l: &str, kind: EscalationKind, ms: u64) -> Vec<Action> {
        s.step(
            Input::Escalation {
                lockspace: ls(l),
                kind,
            },
            at(ms),
        )
    }
    fn term(holder: HolderId) -> Action {
        Action::Signal {
            holder,
            signal: Sig::Term,
        }
    }
    fn kill(holder: HolderId) -> Action {
        Action::Signal {
            holder,
            signal: Sig::Kill,
        }
    }
    fn fires(out: &[Action]) -> usize {
        out.iter()
            .filter(|a| matches!(a, Action::FireWatchdog { .. }))
            .count()
    }
    fn sup() -> Supervisor {
        Supervisor::new(Duration::from_millis(500))
    }

    #[test]
    fn warning_does_nothing() {
        let mut s = sup();
        add(&mut s, h(1), "a", hook(100));
        assert!(esc(&mut s, "a", EscalationKind::Warning, 2000).is_empty());
        assert_eq!(s.phase(&ls("a")), Phase::Warning);
        assert!(!s.escalated(&h(1)));
        assert_eq!(s.next_wakeup(), MonoTime::NEVER);
    }

    #[test]
    fn failed_without_hook_terms_at_once_then_kill_then_deadline_ok() {
        let mut s = sup();
        add(&mut s, h(1), "a", None);
        add(&mut s, h(2), "a", None);
        add(&mut s, h(3), "b", None);
        assert_eq!(
            esc(&mut s, "a", EscalationKind::Failed, 3000),
            vec![term(h(1)), term(h(2))]
        );
        assert_eq!(s.next_wakeup(), MonoTime::NEVER);
        // A repeated Failed sends nothing new.
        assert!(esc(&mut s, "a", EscalationKind::Failed, 3100).is_empty());
        // h(2) exits after SIGTERM: it is not SIGKILLed.
        assert!(s.step(Input::HolderGone(h(2)), at(3200)).is_empty());
        assert_eq!(
            esc(&mut s, "a", EscalationKind::KillNow, 3250),
            vec![kill(h(1))]
        );
        assert!(s.step(Input::HolderGone(h(1)), at(3300)).is_empty());
        assert!(esc(&mut s, "a", EscalationKind::Deadline, 3500).is_empty());
        assert_eq!(s.fired(), None);
        assert!(s.holders_in(&ls("a")).is_empty());
        assert_eq!(s.holders_in(&ls("b")), vec![h(3)]);
        assert_eq!(s.signal_sent(&h(3)), None);
    }

    #[test]
    fn hook_then_term_when_done() {
        let mut s = sup();
        add(&mut s, h(1), "a", hook(400));
        assert_eq!(
            esc(&mut s, "a", EscalationKind::Failed, 3000),
            vec![Action::RunHook {
                holder: h(1),
                argv: vec!["freeze".into(), "vm".into()],
                deadline: at(3400),
            }]
        );
        assert_eq!(s.next_wakeup(), at(3400));
        assert!(s.step(Input::Tick, at(3050)).is_empty());
        assert_eq!(
            s.step(
                Input::HookDone {
                    holder: h(1),
                    ok: true
                },
                at(3100)
            ),
            vec![term(h(1))]
        );
        assert_eq!(s.next_wakeup(), MonoTime::NEVER);
        assert!(s.step(Input::Tick, at(3400)).is_empty());
        // A late duplicate report changes nothing.
        assert!(s
            .step(
                Input::HookDone {
                    holder: h(1),
                    ok: false
                },
                at(3401)
            )
            .is_empty());
    }

    #[test]
    fn failed_hook_still_terms() {
        let mut s = sup();
        add(&mut s, h(1), "a", hook(400));
        assert_eq!(esc(&mut s, "a", EscalationKind::Failed, 3000).len(), 1);
        let done = Input::HookDone {
            holder: h(1),
            ok: false,
        };
        assert_eq!(s.step(done, at(3010)), vec![term(h(1))]);
    }

    #[test]
    fn hook_timeout_then_term_exactly_at_deadline() {
        let mut s = sup();
        add(&mut s, h(1), "a", hook(400));
        add(&mut s, h(2), "a", None);
        let out = esc(&mut s, "a", EscalationKind::Failed, 3000);
        assert_eq!(out.len(), 2);
        assert!(
            matches!(&out[0], Action::RunHook { holder, deadline, .. } if *holder == h(1) && *deadline == at(3400))
        );
        assert_eq!(out[1], term(h(2)));
        assert_eq!(s.next_wakeup(), at(3400));
        assert!(s.step(Input::Tick, at(3399)).is_empty());
        assert_eq!(s.step(Input::Tick, at(3400)), vec![term(h(1))]);
        assert_eq!(s.next_wakeup(), MonoTime::NEVER);
        // The hook finishing late changes nothing.
        let done = Input::HookDone {
            holder: h(1),
            ok: true,
        };
        assert!(s.step(done, at(3450)).is_empty());
    }

    #[test]
    fn kill_now_while_hook_runs_kills_directly() {
        let mut s = sup();
        add(&mut s, h(1), "a", hook(1000));
        assert_eq!(esc(&mut s, "a", EscalationKind::Failed, 3000).len(), 1);
        assert_eq!(
            esc(&mut s, "a", EscalationKind::KillNow, 3250),
            vec![kill(h(1))]
        );
        // No SIGTERM after the SIGKILL, and no more wakeups for the hook.
        assert_eq!(s.next_wakeup(), MonoTime::NEVER);
        assert!(s.step(Input::Tick, at(4000)).is_empty());
        assert_eq!(s.signal_sent(&h(1)), Some(Sig::Kill));
    }

    #[test]
    fn all_events_at_once_after_a_stall() {
        // A daemon that was stopped for a while gets Failed, KillNow and
        // Deadline in one go: the holder is still there, so the watchdog fires.
        let mut s = sup();
        add(&mut s, h(1), "a", hook(100));
        let mut out = esc(&mut s, "a", EscalationKind::Failed, 9000);
        out.extend(esc(&mut s, "a", EscalationKind::KillNow, 9000));
        out.extend(esc(&mut s, "a", EscalationKind::Deadline, 9000));
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(matches!(out[0], Action::RunHook { .. }));
        assert_eq!(out[1], kill(h(1)));
        assert!(
            matches!(&out[2], Action::FireWatchdog { reason } if reason.contains("kill deadline") && reason.contains("pid 1"))
        );
    }

    #[test]
    fn deadline_with_holder_left_fires_exactly_once() {
        let mut s = sup();
        add(&mut s, h(1), "a", None);
        add(&mut s, h(2), "b", None);
        assert_eq!(esc(&mut s, "a", EscalationKind::Failed, 3000).len(), 1);
        assert_eq!(esc(&mut s, "b", EscalationKind::Failed, 3000).len(), 1);
        esc(&mut s, "a", EscalationKind::KillNow, 3250);
        esc(&mut s, "b", EscalationKind::KillNow, 3250);
        let out = esc(&mut s, "a", EscalationKind::Deadline, 3500);
        assert_eq!(fires(&out), 1);
        assert_eq!(out.len(), 1, "no SIGKILL again: {out:?}");
        assert!(s.fired().is_some_and(|r| r.contains("lockspace a")));
        // Neither the other lockspace nor Lost(Expired) fire a second time.
        assert_eq!(fires(&esc(&mut s, "b", EscalationKind::Deadline, 3500)), 0);
        let again = Input::from_host_event(&ls("a"), &HostEvent::Lost(LostReason::Expired));
        assert_eq!(fires(&s.step(again.expect("mapped"), at(3500))), 0);
        assert!(esc(&mut s, "a", EscalationKind::Lost("x".into()), 3600).is_empty());
        assert!(s.step(Input::Tick, at(10_000)).is_empty());
        assert_eq!(s.next_wakeup(), MonoTime::NEVER);
    }

    #[test]
    fn deadline_with_no_holders_is_quiet() {
        let mut s = sup();
        assert!(esc(&mut s, "a", EscalationKind::Deadline, 3500).is_empty());
        add(&mut s, h(1), "b", None);
        assert!(esc(&mut s, "a", EscalationKind::Deadline, 3500).is_empty());
        assert_eq!(s.fired(), None);
    }

    #[test]
    fn lost_kills_at_once_and_fires_after_grace_if_still_there() {
        let mut s = sup();
        add(&mut s, h(1), "a", hook(100));
        add(&mut s, h(2), "a", None);
        assert_eq!(
            esc(
                &mut s,
                "a",
                EscalationKind::Lost("overwritten".into()),
                1000
            ),
            vec![kill(h(1)), kill(h(2))]
        );
        assert_eq!(s.next_wakeup(), at(1500));
        assert!(s.step(Input::HolderGone(h(2)), at(1200)).is_empty());
        assert!(s.step(Input::Tick, at(1499)).is_empty());
        let out = s.step(Input::Tick, at(1500));
        assert_eq!(out.len(), 1);
        assert!(matches!(&out[0], Action::FireWatchdog { reason }
            if reason.contains("lost (overwritten)") && reason.contains("pid 1") && !reason.contains("pid 2") && reason.contains("500 ms")));
        assert_eq!(s.next_wakeup(), MonoTime::NEVER);
        assert!(s.step(Input::Tick, at(3000)).is_empty());
    }

    #[test]
    fn lost_with_holders_gone_in_time_does_not_fire() {
        let mut s = sup();
        add(&mut s, h(1), "a", None);
        assert_eq!(
            esc(
                &mut s,
                "a",
                EscalationKind::Lost("overwritten".into()),
                1000
            ),
            vec![kill(h(1))]
        );
        assert!(s.step(Input::HolderGone(h(1)), at(1100)).is_empty());
        assert_eq!(s.next_wakeup(), MonoTime::NEVER);
        assert!(s.step(Input::Tick, at(1500)).is_empty());
        assert_eq!(s.fired(), None);
    }

    #[test]
    fn lost_check_ignores_release_after_loss_but_not_exit() {
        // A holder that "releases" after it was SIGKILLed is still watched
        // until it is reported gone.
        let mut s = sup();
        s.set_grace(&ls("a"), Duration::from_millis(50));
        add(&mut s, h(1), "a", None);
        esc(&mut s, "a", EscalationKind::Lost("corrupted".into()), 1000);
        let rm = Input::HolderRemoved {
            holder: h(1),
            lockspace: ls("a"),
        };
        assert!(s.step(rm, at(1010)).is_empty());
        assert_eq!(s.next_wakeup(), at(1050));
        assert_eq!(fires(&s.step(Input::Tick, at(1050))), 1);
    }

    #[test]
    fn lost_without_holders_is_quiet() {
        let mut s = sup();
        add(&mut s, h(1), "b", None);
        assert!(esc(&mut s, "a", EscalationKind::Lost("x".into()), 1000).is_empty());
        assert_eq!(s.next_wakeup(), MonoTime::NEVER);
    }

    #[test]
    fn gone_holders_are_never_signalled() {
        let mut s = sup();
        add(&mut s, h(1), "a", hook(100));
        add(&mut s, h(2), "a", None);
        assert!(s.step(Input::HolderGone(h(1)), at(10)).is_empty());
        assert!(s.step(Input::HolderGone(h(2)), at(10)).is_empty());
        assert!(esc(&mut s, "a", EscalationKind::Failed, 3000).is_empty());
        assert!(esc(&mut s, "a", EscalationKind::KillNow, 3250).is_empty());
        assert!(esc(&mut s, "a", EscalationKind::Deadline, 3500).is_empty());
        assert_eq!(s.fired(), None);
        // Gone while its hook runs: no SIGTERM when the hook times out.
        add(&mut s, h(3), "b", hook(100));
        assert_eq!(esc(&mut s, "b", EscalationKind::Failed, 5000).len(), 1);
        assert!(s.step(Input::HolderGone(h(3)), at(5050)).is_empty());
        assert_eq!(s.next_wakeup(), MonoTime::NEVER);
        assert!(s.step(Input::Tick, at(5100)).is_empty());
    }

    #[test]
    fn holder_in_two_lockspaces_escalates_if_either_fails() {
        let mut s = sup();
        add(&mut s, h(1), "a", None);
        add(&mut s, h(1), "b", None);
        add(&mut s, h(2), "a", None);
        assert_eq!(s.holders_in(&ls("a")), vec![h(1), h(2)]);
        assert_eq!(s.holders_in(&ls("b")), vec![h(1)]);
        assert_eq!(
            esc(&mut s, "b", EscalationKind::Failed, 3000),
            vec![term(h(1))]
        );
        assert!(s.escalated(&h(1)));
        assert!(!s.escalated(&h(2)));
        // "a" failing later adds only h(2): h(1) is not sent SIGTERM twice.
        assert_eq!(
            esc(&mut s, "a", EscalationKind::Failed, 3100),
            vec![term(h(2))]
        );
        // "a" recovers; "b" still escalates h(1).
        assert!(esc(&mut s, "a", EscalationKind::Recovered, 3200).is_empty());
        assert!(s.escalated(&h(1)));
        assert!(!s.escalated(&h(2)));
        assert_eq!(
            esc(&mut s, "b", EscalationKind::KillNow, 3250),
            vec![kill(h(1))]
        );
        // The deadline of "b" finds h(1), which is also in healthy "a".
        let out = esc(&mut s, "b", EscalationKind::Deadline, 3500);
        assert_eq!(fires(&out), 1);
        assert!(s.holders_in(&ls("a")).contains(&h(1)));
    }

    #[test]
    fn removed_from_one_lockspace_only_that_one_counts() {
        let mut s = sup();
        add(&mut s, h(1), "a", None);
        add(&mut s, h(1), "b", None);
        let rm = Input::HolderRemoved {
            holder: h(1),
            lockspace: ls("b"),
        };
        assert!(s.step(rm, at(100)).is_empty());
        assert!(esc(&mut s, "b", EscalationKind::Failed, 3000).is_empty());
        assert!(esc(&mut s, "b", EscalationKind::Deadline, 3500).is_empty());
        assert_eq!(
            esc(&mut s, "a", EscalationKind::Failed, 3000),
            vec![term(h(1))]
        );
    }

    #[test]
    fn recovered_stops_escalation_without_undoing() {
        let mut s = sup();
        add(&mut s, h(1), "a", None); // gets SIGTERM
        add(&mut s, h(2), "a", hook(400)); // hook running at recovery
        add(&mut s, h(3), "a", hook(400)); // hook done at recovery
        let out = esc(&mut s, "a", EscalationKind::Failed, 3000);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], term(h(1)));
        let done = Input::HookDone {
            holder: h(3),
            ok: true,
        };
        assert_eq!(s.step(done, at(3100)), vec![term(h(3))]);
        // h(4), in "b", will still be in its hook when "b" recovers.
        add(&mut s, h(4), "b", hook(400));
        let out = esc(&mut s, "b", EscalationKind::Failed, 3150);
        assert!(matches!(&out[..], [Action::RunHook { deadline, .. }] if *deadline == at(3550)));

        assert!(esc(&mut s, "a", EscalationKind::Recovered, 3200).is_empty());
        assert_eq!(s.phase(&ls("a")), Phase::Ok);
        assert!(!s.escalated(&h(2)));
        // h(2)'s hook ends after recovery: no SIGTERM, and no wakeup for it.
        assert_eq!(s.next_wakeup(), at(3550)); // h(4) in "b"
        let done = Input::HookDone {
            holder: h(2),
            ok: true,
        };
        assert!(s.step(done, at(3300)).is_empty());
        // Already signalled holders are left alone (not resumed, not re-signalled).
        assert_eq!(s.signal_sent(&h(1)), Some(Sig::Term));
        // "b" recovers while h(4)'s hook still runs: the timeout passes quietly.
        assert!(esc(&mut s, "b", EscalationKind::Recovered, 3350).is_empty());
        assert_eq!(s.next_wakeup(), MonoTime::NEVER);
        assert!(s.step(Input::Tick, at(3550)).is_empty());

        // A later failure of "a": frozen h(2) has its hook run again; h(1)
        // and h(3), already SIGTERMed, wait for KillNow.
        let out = esc(&mut s, "a", EscalationKind::Failed, 9000);
        assert_eq!(
            out,
            vec![Action::RunHook {
                holder: h(2),
                argv: vec!["freeze".into(), "vm".into()],
                deadline: at(9400),
            }]
        );
        assert_eq!(
            esc(&mut s, "a", EscalationKind::KillNow, 9250),
            vec![kill(h(1)), kill(h(2)), kill(h(3))]
        );
        // A later failure of "b" while h(4)'s old hook never reported: the
        // hook is not started twice, its old deadline has passed, so SIGTERM.
        assert_eq!(
            esc(&mut s, "b", EscalationKind::Failed, 9300),
            vec![term(h(4))]
        );
    }

    #[test]
    fn recovered_between_kill_and_deadline_then_no_fire() {
        let mut s = sup();
        add(&mut s, h(1), "a", None);
        esc(&mut s, "a", EscalationKind::Failed, 3000);
        assert_eq!(
            esc(&mut s, "a", EscalationKind::KillNow, 3250),
            vec![kill(h(1))]
        );
        assert!(esc(&mut s, "a", EscalationKind::Recovered, 3300).is_empty());
        assert_eq!(s.phase(&ls("a")), Phase::Ok);
        assert_eq!(s.fired(), None);
    }

    #[test]
    fn recovered_after_deadline_or_loss_is_ignored_until_joined() {
        let mut s = sup();
        assert!(esc(&mut s, "a", EscalationKind::Deadline, 3500).is_empty());
        assert!(esc(&mut s, "a", EscalationKind::Recovered, 3600).is_empty());
        assert_eq!(s.phase(&ls("a")), Phase::Expired);
        // A holder added to the void incarnation is killed and watched.
        let add_late = Input::HolderAdded {
            holder: h(1),
            lockspace: ls("a"),
            freeze_hook: None,
        };
        assert_eq!(s.step(add_late, at(3700)), vec![kill(h(1))]);
        assert_eq!(s.next_wakeup(), at(4200));
        assert!(s.step(Input::HolderGone(h(1)), at(3800)).is_empty());
        assert!(s.step(Input::Tick, at(4200)).is_empty());
        // A new incarnation starts afresh.
        let joined = Input::from_host_event(&ls("a"), &HostEvent::Joined { generation: 2 });
        assert!(s.step(joined.expect("mapped"), at(9000)).is_empty());
        assert_eq!(s.phase(&ls("a")), Phase::Ok);
        add(&mut s, h(2), "a", None);
        assert_eq!(s.signal_sent(&h(2)), None);

        let mut s = sup();
        esc(&mut s, "a", EscalationKind::Lost("x".into()), 1000);
        esc(&mut s, "a", EscalationKind::Recovered, 1100);
        assert_eq!(s.phase(&ls("a")), Phase::Lost);
    }

    #[test]
    fn added_to_failing_lockspace_is_escalated_at_once() {
        let mut s = sup();
        add(&mut s, h(1), "a", None);
        esc(&mut s, "a", EscalationKind::Failed, 3000);
        let late = Input::HolderAdded {
            holder: h(2),
            lockspace: ls("a"),
            freeze_hook: hook(100),
        };
        let out = s.step(late, at(3100));
        assert!(
            matches!(&out[..], [Action::RunHook { holder, deadline, .. }] if *holder == h(2) && *deadline == at(3200))
        );
    }

    #[test]
    fn zero_hook_timeout_terms_in_the_same_step() {
        let mut s = sup();
        add(&mut s, h(1), "a", hook(0));
        let out = esc(&mut s, "a", EscalationKind::Failed, 3000);
        assert_eq!(out.len(), 2);
        assert!(matches!(out[0], Action::RunHook { .. }));
        assert_eq!(out[1], term(h(1)));
    }

    #[test]
    fn host_events_map_to_inputs() {
        let a = ls("a");
        let kind = |e: HostEvent| match Input::from_host_event(&a, &e) {
            Some(Input::Escalation { kind, .. }) => Some(kind),
            _ => None,
        };
        assert_eq!(
            kind(HostEvent::RenewalWarning),
            Some(EscalationKind::Warning)
        );
        assert_eq!(kind(HostEvent::RenewalFailed), Some(EscalationKind::Failed));
        assert_eq!(kind(HostEvent::KillHolders), Some(EscalationKind::KillNow));
        assert_eq!(
            kind(HostEvent::KillDeadline),
            Some(EscalationKind::Deadline)
        );
        assert_eq!(
            kind(HostEvent::RenewalRecovered),
            Some(EscalationKind::Recovered)
        );
        assert_eq!(
            kind(HostEvent::Lost(LostReason::Expired)),
            Some(EscalationKind::Deadline)
        );
        assert!(matches!(
            kind(HostEvent::Lost(LostReason::Overwritten("hostB".into()))),
            Some(EscalationKind::Lost(r)) if r.contains("hostB")
        ));
        assert_eq!(Input::from_host_event(&a, &HostEvent::Left), None);
        assert_eq!(
            Input::from_host_event(&a, &HostEvent::RenewalError("x".into())),
            None
        );
    }
}
