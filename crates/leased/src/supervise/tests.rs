use super::*;

pub(super) fn ls(s: &str) -> Name {
    Name::new(s).expect("valid name")
}
pub(super) fn h(pid: u32) -> HolderId {
    HolderId {
        pid,
        start_time: 1000 + u64::from(pid),
    }
}
pub(super) fn at(ms: u64) -> MonoTime {
    MonoTime::from_millis(ms)
}
pub(super) fn hook(ms: u64) -> Option<FreezeHook> {
    Some(FreezeHook {
        argv: vec!["freeze".into(), "vm".into()],
        timeout: Duration::from_millis(ms),
    })
}
pub(super) fn add(s: &mut Supervisor, holder: HolderId, l: &str, freeze_hook: Option<FreezeHook>) {
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
pub(super) fn esc(s: &mut Supervisor, l: &str, kind: EscalationKind, ms: u64) -> Vec<Action> {
    s.step(
        Input::Escalation {
            lockspace: ls(l),
            kind,
        },
        at(ms),
    )
}
pub(super) fn term(holder: HolderId) -> Action {
    Action::Signal {
        holder,
        signal: Sig::Term,
    }
}
pub(super) fn kill(holder: HolderId) -> Action {
    Action::Signal {
        holder,
        signal: Sig::Kill,
    }
}
pub(super) fn fires(out: &[Action]) -> usize {
    out.iter()
        .filter(|a| matches!(a, Action::FireWatchdog { .. }))
        .count()
}
pub(super) fn sup() -> Supervisor {
    Supervisor::new(Duration::from_millis(500))
}

#[test]
fn warning_runs_hooks_and_sends_nothing() {
    let mut s = sup();
    add(&mut s, h(1), "a", hook(100));
    add(&mut s, h(2), "a", None);
    assert_eq!(
        esc(&mut s, "a", EscalationKind::Warning, 2000),
        vec![Action::RunHook {
            holder: h(1),
            argv: vec!["freeze".into(), "vm".into()],
            deadline: at(2100),
        }]
    );
    assert_eq!(s.phase(&ls("a")), Phase::Warning);
    assert!(!s.escalated(&h(1)));
    // At the warning a hook's timeout triggers nothing by itself.
    assert_eq!(s.next_wakeup(), MonoTime::NEVER);
    assert!(s.step(Input::Tick, at(2200)).is_empty());
    // A repeated warning does not start the hook again.
    assert!(esc(&mut s, "a", EscalationKind::Warning, 2300).is_empty());
    // The hook never reported and its deadline passed: SIGTERM at the failure.
    assert_eq!(
        esc(&mut s, "a", EscalationKind::Failed, 3000),
        vec![term(h(1)), term(h(2))]
    );
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
fn hook_at_failure_without_warning_then_frozen_when_it_confirms() {
    // A stalled daemon may see Failed without Warning: the hook runs then.
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
    let done = Input::HookDone {
        holder: h(1),
        ok: true,
    };
    assert_eq!(
        s.step(done, at(3100)),
        vec![Action::Frozen { holder: h(1) }]
    );
    assert_eq!(s.freeze_state(&h(1)), Some(FreezeState::Frozen));
    assert_eq!(s.next_wakeup(), MonoTime::NEVER);
    assert!(s.step(Input::Tick, at(3400)).is_empty());
    // A late duplicate report changes nothing.
    let again = Input::HookDone {
        holder: h(1),
        ok: false,
    };
    assert!(s.step(again, at(3401)).is_empty());
    assert_eq!(s.freeze_state(&h(1)), Some(FreezeState::Frozen));
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
    add(&mut s, h(3), "a", hook(400)); // hook fails: SIGTERM
    let out = esc(&mut s, "a", EscalationKind::Failed, 3000);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0], term(h(1)));
    let failed = Input::HookDone {
        holder: h(3),
        ok: false,
    };
    assert_eq!(s.step(failed, at(3100)), vec![term(h(3))]);
    // h(4), in "b", will still be in its hook when "b" recovers.
    add(&mut s, h(4), "b", hook(400));
    let out = esc(&mut s, "b", EscalationKind::Failed, 3150);
    assert!(matches!(&out[..], [Action::RunHook { deadline, .. }] if *deadline == at(3550)));

    assert!(esc(&mut s, "a", EscalationKind::Recovered, 3200).is_empty());
    assert_eq!(s.phase(&ls("a")), Phase::Ok);
    assert!(!s.escalated(&h(2)));
    assert_eq!(s.next_wakeup(), at(3550)); // h(4) in "b"
                                           // h(2)'s hook confirms after the recovery: it did pause the holder, so
                                           // the holder is frozen and, the lockspace being healthy, revalidated.
    let done = Input::HookDone {
        holder: h(2),
        ok: true,
    };
    assert_eq!(
        s.step(done, at(3300)),
        vec![
            Action::Frozen { holder: h(2) },
            Action::Revalidate {
                holder: h(2),
                ticket: 1
            }
        ]
    );
    // Already signalled holders are left alone (not resumed, not re-signalled).
    assert_eq!(s.signal_sent(&h(1)), Some(Sig::Term));
    // "b" recovers while h(4)'s hook still runs: the timeout passes quietly.
    assert!(esc(&mut s, "b", EscalationKind::Recovered, 3350).is_empty());
    assert_eq!(s.next_wakeup(), MonoTime::NEVER);
    assert!(s.step(Input::Tick, at(3550)).is_empty());

    // A later failure of "a": h(1) and h(3), already SIGTERMed, wait for
    // KillNow; h(2), frozen (revalidating), is neither hooked nor signalled.
    assert!(esc(&mut s, "a", EscalationKind::Warning, 8000).is_empty());
    assert!(esc(&mut s, "a", EscalationKind::Failed, 9000).is_empty());
    assert_eq!(
        esc(&mut s, "a", EscalationKind::KillNow, 9250),
        vec![kill(h(1)), kill(h(3))]
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
