//! Policy tests for freezing at the warning and revalidating afterwards.

use super::tests::{add, at, esc, fires, h, hook, kill, ls, sup, term};
use super::*;

fn confirm(s: &mut Supervisor, holder: HolderId, ms: u64) -> Vec<Action> {
    s.step(Input::HookDone { holder, ok: true }, at(ms))
}

fn reval(
    s: &mut Supervisor,
    holder: HolderId,
    ticket: u64,
    o: Revalidation,
    ms: u64,
) -> Vec<Action> {
    s.step(
        Input::RevalidationDone {
            holder,
            ticket,
            outcome: o,
        },
        at(ms),
    )
}

fn joined(s: &mut Supervisor, l: &str, ms: u64) -> Vec<Action> {
    s.step(Input::Joined { lockspace: ls(l) }, at(ms))
}

fn revalidate(holder: HolderId, ticket: u64) -> Action {
    Action::Revalidate { holder, ticket }
}

/// h(1) with a hook, frozen at the warning of "a".
fn frozen_one() -> Supervisor {
    let mut s = sup();
    add(&mut s, h(1), "a", hook(500));
    let out = esc(&mut s, "a", EscalationKind::Warning, 2000);
    assert!(
        matches!(&out[..], [Action::RunHook { holder, deadline, .. }]
        if *holder == h(1) && *deadline == at(2500))
    );
    assert_eq!(
        confirm(&mut s, h(1), 2100),
        vec![Action::Frozen { holder: h(1) }]
    );
    s
}

#[test]
fn confirmed_freeze_skips_signals_and_counts_as_stopped_at_the_deadline() {
    let mut s = frozen_one();
    add(&mut s, h(2), "a", None);
    assert_eq!(
        esc(&mut s, "a", EscalationKind::Failed, 3000),
        vec![term(h(2))]
    );
    assert_eq!(
        esc(&mut s, "a", EscalationKind::KillNow, 3250),
        vec![kill(h(2))]
    );
    assert!(s.step(Input::HolderGone(h(2)), at(3300)).is_empty());
    // h(1) is still present, but frozen: no SIGKILL, no watchdog.
    assert!(esc(&mut s, "a", EscalationKind::Deadline, 3500).is_empty());
    let expired = Input::from_host_event(&ls("a"), &HostEvent::Lost(LostReason::Expired));
    assert!(s.step(expired.expect("mapped"), at(3500)).is_empty());
    assert_eq!(s.fired(), None);
    assert_eq!(s.signal_sent(&h(1)), None);
    assert_eq!(s.holders_in(&ls("a")), vec![h(1)]);
    // A void incarnation is not healthy: no revalidation, even on Recovered.
    assert!(esc(&mut s, "a", EscalationKind::Recovered, 4000).is_empty());
    assert!(s.step(Input::Tick, at(5000)).is_empty());
    assert_eq!(s.freeze_state(&h(1)), Some(FreezeState::Frozen));
    // The new generation: revalidate, then thaw.
    assert_eq!(joined(&mut s, "a", 9000), vec![revalidate(h(1), 1)]);
    assert_eq!(s.freeze_state(&h(1)), Some(FreezeState::Revalidating));
    assert_eq!(
        reval(&mut s, h(1), 1, Revalidation::Ok, 9100),
        vec![Action::Thaw { holder: h(1) }]
    );
    assert_eq!(s.freeze_state(&h(1)), None);
    assert_eq!(s.signal_sent(&h(1)), None);
}

#[test]
fn the_same_holder_unfrozen_fires_the_watchdog() {
    // Control for the test above: without the confirmation, the deadline
    // with the holder present fires.
    let mut s = sup();
    add(&mut s, h(1), "a", hook(500));
    assert_eq!(esc(&mut s, "a", EscalationKind::Warning, 2000).len(), 1);
    esc(&mut s, "a", EscalationKind::Failed, 3000);
    esc(&mut s, "a", EscalationKind::KillNow, 3250);
    assert_eq!(fires(&esc(&mut s, "a", EscalationKind::Deadline, 3500)), 1);
}

#[test]
fn frozen_counts_as_stopped_after_a_loss() {
    let mut s = frozen_one();
    add(&mut s, h(2), "a", None);
    let out = esc(
        &mut s,
        "a",
        EscalationKind::Lost("overwritten".into()),
        2500,
    );
    assert_eq!(out, vec![kill(h(2))]);
    // h(2) does not die: the watchdog fires for it, naming only it.
    let out = s.step(Input::Tick, at(3000));
    assert!(matches!(&out[..], [Action::FireWatchdog { reason }]
        if reason.contains("pid 2") && !reason.contains("pid 1")));
    // Same loss with h(2) gone in time: quiet, h(1) stays frozen.
    let mut s = frozen_one();
    add(&mut s, h(2), "a", None);
    esc(
        &mut s,
        "a",
        EscalationKind::Lost("overwritten".into()),
        2500,
    );
    assert!(s.step(Input::HolderGone(h(2)), at(2600)).is_empty());
    assert!(s.step(Input::Tick, at(3000)).is_empty());
    assert_eq!(s.fired(), None);
    assert_eq!(s.signal_sent(&h(1)), None);
    assert_eq!(joined(&mut s, "a", 9000), vec![revalidate(h(1), 1)]);
}

#[test]
fn failed_or_late_hook_escalates_as_before() {
    let mut s = sup();
    add(&mut s, h(1), "a", hook(500));
    add(&mut s, h(2), "a", hook(500));
    assert_eq!(esc(&mut s, "a", EscalationKind::Warning, 2000).len(), 2);
    let failed = Input::HookDone {
        holder: h(1),
        ok: false,
    };
    assert!(s.step(failed, at(2100)).is_empty());
    assert_eq!(s.freeze_state(&h(1)), None);
    // h(1) failed: SIGTERM at the failure. h(2)'s hook still runs until 2500.
    assert_eq!(
        esc(&mut s, "a", EscalationKind::Failed, 2400),
        vec![term(h(1))]
    );
    assert_eq!(s.next_wakeup(), at(2500));
    assert_eq!(s.step(Input::Tick, at(2500)), vec![term(h(2))]);
    // h(2)'s hook confirms after its SIGTERM: too late, not frozen.
    assert!(confirm(&mut s, h(2), 2600).is_empty());
    assert_eq!(s.freeze_state(&h(2)), None);
    assert_eq!(
        esc(&mut s, "a", EscalationKind::KillNow, 3250),
        vec![kill(h(1)), kill(h(2))]
    );
    assert_eq!(fires(&esc(&mut s, "a", EscalationKind::Deadline, 3500)), 1);
    // Killed holders are never revalidated.
    assert!(joined(&mut s, "a", 9000).is_empty());
}

#[test]
fn hook_still_running_at_kill_time_is_killed() {
    let mut s = sup();
    add(&mut s, h(1), "a", hook(5000));
    assert_eq!(esc(&mut s, "a", EscalationKind::Warning, 2000).len(), 1);
    assert!(esc(&mut s, "a", EscalationKind::Failed, 3000).is_empty());
    assert_eq!(
        esc(&mut s, "a", EscalationKind::KillNow, 3250),
        vec![kill(h(1))]
    );
    assert!(confirm(&mut s, h(1), 3300).is_empty());
    assert_eq!(s.freeze_state(&h(1)), None);
}

#[test]
fn recovery_before_the_deadline_revalidates_in_the_same_incarnation() {
    let mut s = frozen_one();
    assert!(esc(&mut s, "a", EscalationKind::Failed, 3000).is_empty());
    assert_eq!(
        esc(&mut s, "a", EscalationKind::Recovered, 3100),
        vec![revalidate(h(1), 1)]
    );
    assert_eq!(
        reval(&mut s, h(1), 1, Revalidation::Ok, 3200),
        vec![Action::Thaw { holder: h(1) }]
    );
    // Thawed, it is an ordinary holder again: a stale report is ignored.
    assert!(reval(&mut s, h(1), 1, Revalidation::Failed("x".into()), 3300).is_empty());
    assert_eq!(s.signal_sent(&h(1)), None);
}

#[test]
fn revalidation_failure_kills_and_the_holder_stays_dead() {
    let mut s = frozen_one();
    esc(&mut s, "a", EscalationKind::Deadline, 3500);
    assert_eq!(joined(&mut s, "a", 9000), vec![revalidate(h(1), 1)]);
    // A report with another ticket is ignored.
    assert!(reval(&mut s, h(1), 7, Revalidation::Ok, 9050).is_empty());
    let why = "lease version is 2, expected 1".to_string();
    assert_eq!(
        reval(&mut s, h(1), 1, Revalidation::Failed(why.clone()), 9100),
        vec![
            kill(h(1)),
            Action::RevalidationFailed {
                holder: h(1),
                reason: why
            }
        ]
    );
    assert_eq!(s.freeze_state(&h(1)), None);
    assert_eq!(s.signal_sent(&h(1)), Some(Sig::Kill));
    // Nothing brings it back: no ballot on a later recovery or join.
    assert!(esc(&mut s, "a", EscalationKind::Recovered, 9200).is_empty());
    assert!(joined(&mut s, "a", 9300).is_empty());
    assert!(s.step(Input::HolderGone(h(1)), at(9400)).is_empty());
}

#[test]
fn retry_waits_then_asks_again_with_a_new_ticket() {
    let mut s = frozen_one();
    s.set_retry(Duration::from_millis(300));
    assert_eq!(
        esc(&mut s, "a", EscalationKind::Recovered, 3100),
        vec![revalidate(h(1), 1)]
    );
    assert_eq!(s.next_wakeup(), MonoTime::NEVER);
    let out = reval(&mut s, h(1), 1, Revalidation::Retry("joining".into()), 3200);
    assert!(out.is_empty());
    assert_eq!(s.freeze_state(&h(1)), Some(FreezeState::Frozen));
    assert_eq!(s.next_wakeup(), at(3500));
    assert!(s.step(Input::Tick, at(3499)).is_empty());
    assert_eq!(s.step(Input::Tick, at(3500)), vec![revalidate(h(1), 2)]);
    // The first ticket's late success does not thaw.
    assert!(reval(&mut s, h(1), 1, Revalidation::Ok, 3600).is_empty());
    assert_eq!(
        reval(&mut s, h(1), 2, Revalidation::Ok, 3700),
        vec![Action::Thaw { holder: h(1) }]
    );
}

#[test]
fn trouble_during_the_ballots_keeps_the_holder_frozen() {
    // The lockspace warns again while the ballots run: no thaw.
    let mut s = frozen_one();
    assert_eq!(
        esc(&mut s, "a", EscalationKind::Recovered, 3100),
        vec![revalidate(h(1), 1)]
    );
    assert!(esc(&mut s, "a", EscalationKind::Warning, 3200).is_empty());
    assert!(reval(&mut s, h(1), 1, Revalidation::Ok, 3300).is_empty());
    assert_eq!(s.freeze_state(&h(1)), Some(FreezeState::Frozen));
    // It still counts as stopped if this turns into an expiry.
    esc(&mut s, "a", EscalationKind::Failed, 3400);
    esc(&mut s, "a", EscalationKind::KillNow, 3500);
    assert!(esc(&mut s, "a", EscalationKind::Deadline, 3600).is_empty());
    assert_eq!(s.signal_sent(&h(1)), None);
    assert_eq!(joined(&mut s, "a", 9000), vec![revalidate(h(1), 2)]);

    // Failed and recovered while the ballots ran (healthy again, but the
    // epoch moved): asked again at once, not thawed on the old ballots.
    let mut s = frozen_one();
    esc(&mut s, "a", EscalationKind::Recovered, 3100);
    esc(&mut s, "a", EscalationKind::Warning, 3200);
    esc(&mut s, "a", EscalationKind::Recovered, 3300);
    assert_eq!(
        reval(&mut s, h(1), 1, Revalidation::Ok, 3400),
        vec![revalidate(h(1), 2)]
    );
}

#[test]
fn a_holder_frozen_twice() {
    let mut s = frozen_one();
    // A second warning while still frozen: the hook is not run again.
    assert!(esc(&mut s, "a", EscalationKind::Warning, 2400).is_empty());
    assert!(confirm(&mut s, h(1), 2450).is_empty());
    assert_eq!(
        esc(&mut s, "a", EscalationKind::Recovered, 3000),
        vec![revalidate(h(1), 1)]
    );
    assert_eq!(
        reval(&mut s, h(1), 1, Revalidation::Ok, 3100),
        vec![Action::Thaw { holder: h(1) }]
    );
    // Thawed; the next outage freezes it again through its hook.
    let out = esc(&mut s, "a", EscalationKind::Warning, 8000);
    assert!(
        matches!(&out[..], [Action::RunHook { holder, deadline, .. }]
        if *holder == h(1) && *deadline == at(8500))
    );
    assert_eq!(
        confirm(&mut s, h(1), 8100),
        vec![Action::Frozen { holder: h(1) }]
    );
    assert!(esc(&mut s, "a", EscalationKind::Failed, 9000).is_empty());
    assert!(esc(&mut s, "a", EscalationKind::KillNow, 9250).is_empty());
    assert!(esc(&mut s, "a", EscalationKind::Deadline, 9500).is_empty());
    assert_eq!(joined(&mut s, "a", 12_000), vec![revalidate(h(1), 2)]);
    assert_eq!(
        reval(&mut s, h(1), 2, Revalidation::Ok, 12_100),
        vec![Action::Thaw { holder: h(1) }]
    );
    assert_eq!(s.fired(), None);
    assert_eq!(s.signal_sent(&h(1)), None);
}

#[test]
fn revalidation_waits_for_every_lockspace_of_the_holder() {
    let mut s = frozen_one();
    add(&mut s, h(1), "b", hook(500));
    assert!(esc(&mut s, "b", EscalationKind::Warning, 2200).is_empty());
    // "a" recovers but "b" still warns: wait.
    assert!(esc(&mut s, "a", EscalationKind::Recovered, 2300).is_empty());
    assert_eq!(
        esc(&mut s, "b", EscalationKind::Recovered, 2400),
        vec![revalidate(h(1), 1)]
    );
}

#[test]
fn a_holder_never_frozen_is_never_revalidated() {
    let mut s = sup();
    add(&mut s, h(1), "a", None);
    assert!(esc(&mut s, "a", EscalationKind::Warning, 2000).is_empty());
    assert_eq!(
        esc(&mut s, "a", EscalationKind::Failed, 3000),
        vec![term(h(1))]
    );
    assert!(esc(&mut s, "a", EscalationKind::Recovered, 3100).is_empty());
    assert!(joined(&mut s, "a", 9000).is_empty());
    let stray = Input::RevalidationDone {
        holder: h(1),
        ticket: 1,
        outcome: Revalidation::Ok,
    };
    assert!(s.step(stray, at(9100)).is_empty());
}

#[test]
fn a_holder_adopted_frozen_is_revalidated_not_hooked() {
    let mut s = sup();
    add(&mut s, h(1), "a", hook(500));
    // A restarted daemon: the lockspace looks healthy to the policy, so the
    // revalidation is asked for at once (the daemon retries until joined).
    assert_eq!(
        s.step(Input::AdoptFrozen(h(1)), at(100)),
        vec![revalidate(h(1), 1)]
    );
    assert_eq!(
        reval(&mut s, h(1), 1, Revalidation::Retry("joining".into()), 200),
        vec![]
    );
    // Trouble meanwhile: no hook, no signal, counts as stopped.
    assert!(esc(&mut s, "a", EscalationKind::Warning, 2000).is_empty());
    assert!(esc(&mut s, "a", EscalationKind::Failed, 3000).is_empty());
    assert!(esc(&mut s, "a", EscalationKind::Deadline, 3500).is_empty());
    assert_eq!(s.fired(), None);
    // Unknown holders are ignored.
    assert!(s.step(Input::AdoptFrozen(h(9)), at(3600)).is_empty());
    assert_eq!(s.freeze_state(&h(9)), None);
    assert_eq!(joined(&mut s, "a", 9000), vec![revalidate(h(1), 2)]);
}
