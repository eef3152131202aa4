//! The escalation state machine: [`Supervisor`] (see the parent module for
//! the schedule and the freeze/revalidate rules).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use nosplit_clock::MonoTime;
use nosplit_lease::Name;

use super::{
    list, Action, EscalationKind, FreezeHook, FreezeState, HolderId, Input, Phase, Revalidation,
    Sig,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HookRun {
    /// Not started in this escalation.
    Idle,
    /// Started; waited for until `deadline`.
    Running { deadline: MonoTime },
    /// Finished (in this escalation) without making the holder frozen.
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Frozen {
    /// Waiting for healthy lockspaces, and not before `not_before`.
    Waiting { not_before: MonoTime },
    /// Ballots asked for with `ticket`, when the lockspaces had `epochs`.
    Revalidating {
        ticket: u64,
        epochs: BTreeMap<Name, u64>,
    },
}

#[derive(Debug, Clone)]
struct HolderState {
    lockspaces: BTreeSet<Name>,
    hook: Option<FreezeHook>,
    hook_run: HookRun,
    sent: Option<Sig>,
    frozen: Option<Frozen>,
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
    retry: Duration,
    phases: BTreeMap<Name, Phase>,
    epochs: BTreeMap<Name, u64>,
    holders: BTreeMap<HolderId, HolderState>,
    checks: Vec<Check>,
    next_ticket: u64,
    fired: Option<String>,
}

impl Supervisor {
    /// A supervisor with no holders. `grace` is how long holders SIGKILLed
    /// because a lease was lost may take to disappear before the watchdog
    /// fires (`io_timeout / 2` is a good value); it is also the default
    /// delay before a revalidation that asked to be retried runs again.
    pub fn new(grace: Duration) -> Supervisor {
        Supervisor {
            grace,
            grace_for: BTreeMap::new(),
            retry: grace,
            phases: BTreeMap::new(),
            epochs: BTreeMap::new(),
            holders: BTreeMap::new(),
            checks: Vec::new(),
            next_ticket: 1,
            fired: None,
        }
    }

    /// Uses `grace` instead of the default for losses of `lockspace` (to
    /// scale it with that lockspace's `io_timeout`).
    pub fn set_grace(&mut self, lockspace: &Name, grace: Duration) {
        self.grace_for.insert(lockspace.clone(), grace);
    }

    /// How long after [`Revalidation::Retry`] the next attempt starts.
    pub fn set_retry(&mut self, retry: Duration) {
        self.retry = retry;
    }

    /// The holders present in `lockspace`, in id order (frozen ones too).
    pub fn holders_in(&self, lockspace: &Name) -> Vec<HolderId> {
        self.holders
            .iter()
            .filter(|(_, h)| h.lockspaces.contains(lockspace))
            .map(|(id, _)| *id)
            .collect()
    }

    /// The holders present in `lockspace` that are not frozen.
    fn running_in(&self, lockspace: &Name) -> Vec<HolderId> {
        self.holders
            .iter()
            .filter(|(_, h)| h.lockspaces.contains(lockspace) && h.frozen.is_none())
            .map(|(id, _)| *id)
            .collect()
    }

    /// How far `lockspace`'s trouble has gone.
    pub fn phase(&self, lockspace: &Name) -> Phase {
        self.phases.get(lockspace).copied().unwrap_or_default()
    }

    fn epoch(&self, lockspace: &Name) -> u64 {
        self.epochs.get(lockspace).copied().unwrap_or(0)
    }

    /// Whether `holder` is being stopped (one of its lockspaces failed and
    /// it is not frozen).
    pub fn escalated(&self, holder: &HolderId) -> bool {
        self.holders
            .get(holder)
            .is_some_and(|h| h.frozen.is_none() && self.level(h) >= Phase::Failed)
    }

    /// The strongest signal sent to `holder` so far.
    pub fn signal_sent(&self, holder: &HolderId) -> Option<Sig> {
        self.holders.get(holder).and_then(|h| h.sent)
    }

    /// Whether `holder` is frozen, and how far its revalidation is.
    pub fn freeze_state(&self, holder: &HolderId) -> Option<FreezeState> {
        match self.holders.get(holder)?.frozen {
            Some(Frozen::Waiting { .. }) => Some(FreezeState::Frozen),
            Some(Frozen::Revalidating { .. }) => Some(FreezeState::Revalidating),
            None => None,
        }
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
            match &h.frozen {
                Some(Frozen::Waiting { not_before }) if level == Phase::Ok => {
                    t = t.min(*not_before);
                }
                Some(_) => {}
                None => {
                    if level >= Phase::Failed && level < Phase::Killing && h.sent.is_none() {
                        if let HookRun::Running { deadline } = h.hook_run {
                            t = t.min(deadline);
                        }
                    }
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
                    frozen: None,
                });
                h.hook = freeze_hook;
                h.lockspaces.insert(lockspace.clone());
                let frozen = h.frozen.is_some();
                // Added to a void incarnation (a daemon bug): it is killed
                // below; make sure it is also gone in time.
                if self.phase(&lockspace) >= Phase::Expired && !frozen {
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
                *self.epochs.entry(lockspace).or_default() += 1;
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
            Input::HookDone { holder, ok } => {
                if let Some(h) = self.holders.get_mut(&holder) {
                    if let HookRun::Running { .. } = h.hook_run {
                        if ok && h.sent.is_none() && h.frozen.is_none() {
                            h.frozen = Some(Frozen::Waiting { not_before: now });
                            out.push(Action::Frozen { holder });
                        }
                        h.hook_run = HookRun::Done;
                    }
                }
            }
            Input::RevalidationDone {
                holder,
                ticket,
                outcome,
            } => self.revalidated(holder, ticket, outcome, now, &mut out),
            Input::AdoptFrozen(holder) => {
                if let Some(h) = self.holders.get_mut(&holder) {
                    if h.sent.is_none() && h.frozen.is_none() {
                        h.frozen = Some(Frozen::Waiting { not_before: now });
                    }
                }
            }
            Input::Tick => {}
        }
        self.reconcile(now, &mut out);
        self.run_checks(now, &mut out);
        out
    }

    fn revalidated(
        &mut self,
        holder: HolderId,
        ticket: u64,
        outcome: Revalidation,
        now: MonoTime,
        out: &mut Vec<Action>,
    ) {
        let Some(h) = self.holders.get(&holder) else {
            return;
        };
        let Some(Frozen::Revalidating { ticket: t, epochs }) = &h.frozen else {
            return;
        };
        if *t != ticket {
            return;
        }
        // Thaw only if nothing happened to any of its lockspaces meanwhile.
        let unchanged = self.level(h) == Phase::Ok
            && h.lockspaces
                .iter()
                .all(|l| epochs.get(l) == Some(&self.epoch(l)));
        let retry = self.retry;
        let Some(h) = self.holders.get_mut(&holder) else {
            return;
        };
        match outcome {
            Revalidation::Ok if unchanged => {
                h.frozen = None;
                h.hook_run = HookRun::Idle;
                out.push(Action::Thaw { holder });
            }
            Revalidation::Ok => h.frozen = Some(Frozen::Waiting { not_before: now }),
            Revalidation::Retry(_) => {
                h.frozen = Some(Frozen::Waiting {
                    not_before: now + retry,
                })
            }
            Revalidation::Failed(reason) => {
                h.frozen = None;
                h.sent = Some(Sig::Kill);
                out.push(Action::Signal {
                    holder,
                    signal: Sig::Kill,
                });
                out.push(Action::RevalidationFailed { holder, reason });
            }
        }
    }

    fn escalate(
        &mut self,
        lockspace: Name,
        kind: EscalationKind,
        now: MonoTime,
        out: &mut Vec<Action>,
    ) {
        *self.epochs.entry(lockspace.clone()).or_default() += 1;
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
                // cannot reset), then the verdict. Frozen holders count as
                // stopped.
                self.reconcile(now, out);
                let left = self.running_in(&lockspace);
                if !left.is_empty() {
                    let reason = format!(
                        "lockspace {lockspace}: kill deadline passed with {} still running",
                        list(&left)
                    );
                    self.fire(reason, out);
                }
            }
            EscalationKind::Lost(why) => {
                let present: BTreeSet<HolderId> = self.running_in(&lockspace).into_iter().collect();
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

    /// Brings every holder up to what its lockspaces ask for.
    fn reconcile(&mut self, now: MonoTime, out: &mut Vec<Action>) {
        let levels: Vec<(HolderId, Phase, BTreeMap<Name, u64>)> = self
            .holders
            .iter()
            .map(|(id, h)| {
                let epochs = if h.frozen.is_some() {
                    h.lockspaces
                        .iter()
                        .map(|l| (l.clone(), self.epoch(l)))
                        .collect()
                } else {
                    BTreeMap::new()
                };
                (*id, self.level(h), epochs)
            })
            .collect();
        for (id, level, epochs) in levels {
            let Some(h) = self.holders.get_mut(&id) else {
                continue;
            };
            if let Some(f) = &mut h.frozen {
                // Frozen: no signal, no hook; revalidate once healthy.
                if let Frozen::Waiting { not_before } = f {
                    if level == Phase::Ok && now >= *not_before {
                        let ticket = self.next_ticket;
                        self.next_ticket += 1;
                        *f = Frozen::Revalidating { ticket, epochs };
                        out.push(Action::Revalidate { holder: id, ticket });
                    }
                }
                continue;
            }
            if level >= Phase::Killing {
                if h.sent != Some(Sig::Kill) {
                    h.sent = Some(Sig::Kill);
                    out.push(Action::Signal {
                        holder: id,
                        signal: Sig::Kill,
                    });
                }
                continue;
            }
            if level >= Phase::Warning && h.sent.is_none() {
                if let (HookRun::Idle, Some(hook)) = (h.hook_run, &h.hook) {
                    let deadline = now + hook.timeout;
                    out.push(Action::RunHook {
                        holder: id,
                        argv: hook.argv.clone(),
                        deadline,
                    });
                    h.hook_run = HookRun::Running { deadline };
                }
            }
            if level >= Phase::Failed {
                if h.sent.is_some() {
                    continue;
                }
                if let HookRun::Running { deadline } = h.hook_run {
                    if now < deadline {
                        continue;
                    }
                }
                // No hook, or it failed or timed out: not frozen.
                h.sent = Some(Sig::Term);
                out.push(Action::Signal {
                    holder: id,
                    signal: Sig::Term,
                });
            } else if level == Phase::Ok && h.hook_run == HookRun::Done {
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
