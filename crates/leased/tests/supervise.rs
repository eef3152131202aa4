//! The escalation policy driven the way the daemon drives it: host lease
//! events at the times of the timing table, ticks at `next_wakeup`, and
//! (in the last test) real processes receiving the signals.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nosplit_clock::MonoTime;
use nosplit_lease::host::{HostEvent, LostReason};
use nosplit_lease::{Name, Timing};
use nosplit_leased::supervise::{Action, FreezeHook, HolderId, Input, Phase, Sig, Supervisor};

fn name(s: &str) -> Name {
    Name::new(s).expect("name")
}

fn id(pid: u32) -> HolderId {
    HolderId { pid, start_time: 7 }
}

/// Feeds `inputs` (time-ordered) to `s`, ticking at every wakeup in
/// between and up to `until`; returns every action with its time.
fn drive(
    s: &mut Supervisor,
    mut inputs: Vec<(MonoTime, Input)>,
    until: MonoTime,
) -> Vec<(MonoTime, Action)> {
    inputs.sort_by_key(|(t, _)| *t);
    let mut inputs = inputs.into_iter().peekable();
    let mut out = Vec::new();
    loop {
        let wake = s.next_wakeup();
        let next_input = inputs.peek().map(|(t, _)| *t).unwrap_or(MonoTime::NEVER);
        let (t, input) = if next_input <= wake {
            match inputs.next() {
                Some(x) => x,
                None => break,
            }
        } else if wake <= until {
            (wake, Input::Tick)
        } else {
            break;
        };
        if t > until {
            break;
        }
        out.extend(s.step(input, t).into_iter().map(|a| (t, a)));
    }
    out
}

fn ev(lockspace: &Name, e: HostEvent) -> Input {
    Input::from_host_event(lockspace, &e).expect("relevant event")
}

#[test]
fn schedule_follows_the_timing_table() {
    for t_ms in [1000u32, 10_000] {
        let tm = Timing::from_io_timeout_ms(t_ms);
        let hook_timeout = Duration::from_millis(500);
        let (a, b) = (name("a"), name("b"));
        let mut s = Supervisor::new(tm.io_timeout / 2);
        let w = MonoTime::from_millis(100_000); // last successful renewal
        let hooked = id(1); // hook never reports: SIGTERM at its deadline
        let plain = id(2); // no hook; exits after SIGKILL
        let other = id(3); // only in lockspace b, which is fine
        let add = |holder, lockspace: &Name, hook: bool| Input::HolderAdded {
            holder,
            lockspace: lockspace.clone(),
            freeze_hook: hook.then(|| FreezeHook {
                argv: vec!["virsh".into(), "suspend".into(), "vm1".into()],
                timeout: hook_timeout,
            }),
        };
        let inputs = vec![
            (MonoTime::ZERO, add(hooked, &a, true)),
            (MonoTime::ZERO, add(plain, &a, false)),
            (MonoTime::ZERO, add(other, &b, true)),
            (w + tm.renew_warn, ev(&a, HostEvent::RenewalWarning)),
            (w + tm.renew_fail, ev(&a, HostEvent::RenewalFailed)),
            (w + tm.sigkill_after, ev(&a, HostEvent::KillHolders)),
            (
                w + tm.sigkill_after + Duration::from_millis(10),
                Input::HolderGone(plain),
            ),
            (w + tm.kill_deadline, ev(&a, HostEvent::KillDeadline)),
            (
                w + tm.kill_deadline,
                ev(&a, HostEvent::Lost(LostReason::Expired)),
            ),
        ];
        let got = drive(&mut s, inputs, w + tm.host_dead);

        // The hook starts at the warning; it never reports, and its
        // deadline (2T + 0.5 s) passes before the failure (3T): SIGTERM at
        // the failure, SIGKILL at SIGKILL time.
        let hook_deadline = w + tm.renew_warn + hook_timeout;
        assert!(hook_deadline < w + tm.renew_fail);
        let mut want = vec![(
            w + tm.renew_warn,
            Action::RunHook {
                holder: hooked,
                argv: vec!["virsh".into(), "suspend".into(), "vm1".into()],
                deadline: hook_deadline,
            },
        )];
        for (holder, signal, at) in [
            (hooked, Sig::Term, tm.renew_fail),
            (plain, Sig::Term, tm.renew_fail),
            (hooked, Sig::Kill, tm.sigkill_after),
            (plain, Sig::Kill, tm.sigkill_after),
        ] {
            want.push((w + at, Action::Signal { holder, signal }));
        }
        assert_eq!(got.len(), want.len() + 1, "T = {t_ms} ms: {got:#?}");
        assert_eq!(got[..want.len()], want[..], "T = {t_ms} ms");
        let (t, last) = &got[want.len()];
        assert_eq!(*t, w + tm.kill_deadline);
        match last {
            Action::FireWatchdog { reason } => {
                assert!(reason.contains("lockspace a"), "{reason}");
                assert!(reason.contains("pid 1"), "{reason}");
                assert!(!reason.contains("pid 2"), "{reason}");
            }
            other => panic!("expected FireWatchdog, got {other:?}"),
        }
        assert_eq!(s.phase(&a), Phase::Expired);
        assert_eq!(s.phase(&b), Phase::Ok);
        assert_eq!(s.signal_sent(&other), None);
        assert_eq!(s.next_wakeup(), MonoTime::NEVER);
    }
}

#[test]
fn recovery_before_sigkill_time_revalidates_the_frozen_holder() {
    let tm = Timing::from_io_timeout_ms(1000);
    let a = name("a");
    let mut s = Supervisor::new(tm.io_timeout / 2);
    let w = MonoTime::from_millis(50_000);
    let frozen = id(1);
    let inputs = vec![
        (
            MonoTime::ZERO,
            Input::HolderAdded {
                holder: frozen,
                lockspace: a.clone(),
                freeze_hook: Some(FreezeHook {
                    argv: vec!["pause".into()],
                    timeout: Duration::from_millis(200),
                }),
            },
        ),
        (w + tm.renew_warn, ev(&a, HostEvent::RenewalWarning)),
        (
            w + tm.renew_warn + Duration::from_millis(150),
            Input::HookDone {
                holder: frozen,
                ok: true,
            },
        ),
        (w + tm.renew_fail, ev(&a, HostEvent::RenewalFailed)),
        (
            w + tm.renew_fail + Duration::from_millis(100),
            ev(&a, HostEvent::RenewalRecovered),
        ),
    ];
    let got = drive(&mut s, inputs, w + tm.host_dead);
    let acts: Vec<&Action> = got.iter().map(|(_, a)| a).collect();
    assert!(
        matches!(
            &acts[..],
            [
                Action::RunHook { .. },
                Action::Frozen { .. },
                Action::Revalidate { ticket: 1, .. }
            ]
        ),
        "{got:#?}"
    );
    assert_eq!(got[2].0, w + tm.renew_fail + Duration::from_millis(100));
    assert_eq!(s.signal_sent(&frozen), None);
    assert!(!s.escalated(&frozen));
    assert_eq!(s.fired(), None);
}

#[test]
fn a_frozen_holder_outlives_the_whole_table_and_is_revalidated_after_rejoin() {
    for t_ms in [1000u32, 10_000] {
        let tm = Timing::from_io_timeout_ms(t_ms);
        let a = name("a");
        let mut s = Supervisor::new(tm.io_timeout / 2);
        let w = MonoTime::from_millis(100_000);
        let vm = id(1);
        let inputs = vec![
            (
                MonoTime::ZERO,
                Input::HolderAdded {
                    holder: vm,
                    lockspace: a.clone(),
                    freeze_hook: Some(FreezeHook {
                        argv: vec!["pause".into()],
                        timeout: tm.sigkill_after - tm.renew_warn,
                    }),
                },
            ),
            (w + tm.renew_warn, ev(&a, HostEvent::RenewalWarning)),
            (
                // Confirms just before SIGKILL time.
                w + tm.sigkill_after - Duration::from_millis(1),
                Input::HookDone {
                    holder: vm,
                    ok: true,
                },
            ),
            (w + tm.renew_fail, ev(&a, HostEvent::RenewalFailed)),
            (w + tm.sigkill_after, ev(&a, HostEvent::KillHolders)),
            (w + tm.kill_deadline, ev(&a, HostEvent::KillDeadline)),
            (
                w + tm.kill_deadline,
                ev(&a, HostEvent::Lost(LostReason::Expired)),
            ),
            (
                w + tm.host_dead * 3,
                ev(&a, HostEvent::Joined { generation: 2 }),
            ),
        ];
        let got = drive(&mut s, inputs, w + tm.host_dead * 4);
        let acts: Vec<&Action> = got.iter().map(|(_, a)| a).collect();
        assert!(
            matches!(
                &acts[..],
                [
                    Action::RunHook { .. },
                    Action::Frozen { .. },
                    Action::Revalidate { ticket: 1, .. }
                ]
            ),
            "T = {t_ms} ms: {got:#?}"
        );
        assert_eq!(got[2].0, w + tm.host_dead * 3);
        assert_eq!(s.fired(), None);
        assert_eq!(s.signal_sent(&vm), None);
    }
}

#[test]
fn lost_lease_kills_at_once_and_fires_after_grace() {
    let a = name("a");
    let grace = Duration::from_millis(500);
    let mut s = Supervisor::new(grace);
    let t0 = MonoTime::from_millis(10_000);
    let inputs = vec![
        (
            MonoTime::ZERO,
            Input::HolderAdded {
                holder: id(1),
                lockspace: a.clone(),
                freeze_hook: None,
            },
        ),
        (
            t0,
            ev(
                &a,
                HostEvent::Lost(LostReason::Overwritten("hostB gen 4".into())),
            ),
        ),
    ];
    let got = drive(&mut s, inputs, t0 + Duration::from_secs(5));
    assert_eq!(
        got[0],
        (
            t0,
            Action::Signal {
                holder: id(1),
                signal: Sig::Kill
            }
        )
    );
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!(got[1].0, t0 + grace);
    assert!(
        matches!(&got[1].1, Action::FireWatchdog { reason } if reason.contains("hostB gen 4")),
        "{got:?}"
    );
}

/// Runs the actions against real processes (the daemon's job, reduced).
fn execute(actions: &[Action], children: &BTreeMap<u32, Child>) {
    for a in actions {
        if let Action::Signal { holder, signal } = a {
            assert!(children.contains_key(&holder.pid));
            let sig = match signal {
                Sig::Term => rustix::process::Signal::TERM,
                Sig::Kill => rustix::process::Signal::KILL,
            };
            let pid = i32::try_from(holder.pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
                .expect("pid");
            rustix::process::kill_process(pid, sig).expect("kill");
        }
    }
}

/// Polls the children; reports those that exited as gone.
fn reap(
    s: &mut Supervisor,
    children: &mut BTreeMap<u32, Child>,
    now: MonoTime,
    limit: Duration,
    expect: usize,
) -> Vec<(u32, i32)> {
    let end = Instant::now() + limit;
    let mut gone = Vec::new();
    while gone.len() < expect && Instant::now() < end {
        for (pid, c) in children.iter_mut() {
            if let Some(status) = c.try_wait().expect("try_wait") {
                gone.push((*pid, status.signal().unwrap_or(0)));
            }
        }
        for (pid, _) in &gone {
            if children.remove(pid).is_some() {
                assert!(s.step(Input::HolderGone(id(*pid)), now).is_empty());
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    gone
}

#[test]
fn real_processes_sigterm_then_sigkill_then_no_fire() {
    let a = name("a");
    let mut s = Supervisor::new(Duration::from_millis(100));
    let mut children = BTreeMap::new();
    // One that dies at SIGTERM, one that ignores it (SIG_IGN survives exec).
    let polite = Command::new("sleep").arg("30").spawn().expect("spawn");
    let stubborn = Command::new("sh")
        .args(["-c", "trap '' TERM; exec sleep 30"])
        .spawn()
        .expect("spawn");
    let (p, q) = (polite.id(), stubborn.id());
    children.insert(p, polite);
    children.insert(q, stubborn);
    // Let sh install its trap before the SIGTERM.
    std::thread::sleep(Duration::from_millis(100));
    for pid in [p, q] {
        let add = Input::HolderAdded {
            holder: id(pid),
            lockspace: a.clone(),
            freeze_hook: None,
        };
        assert!(s.step(add, MonoTime::ZERO).is_empty());
    }
    let t = |ms| MonoTime::from_millis(ms);

    let acts = s.step(ev(&a, HostEvent::RenewalFailed), t(3000));
    assert_eq!(acts.len(), 2);
    execute(&acts, &children);
    let gone = reap(&mut s, &mut children, t(3100), Duration::from_secs(1), 1);
    assert_eq!(gone, vec![(p, libc::SIGTERM)]);
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        children.contains_key(&q),
        "the stubborn one ignores SIGTERM"
    );

    let acts = s.step(ev(&a, HostEvent::KillHolders), t(3250));
    assert_eq!(
        acts,
        vec![Action::Signal {
            holder: id(q),
            signal: Sig::Kill
        }]
    );
    execute(&acts, &children);
    let gone = reap(&mut s, &mut children, t(3300), Duration::from_secs(1), 1);
    assert_eq!(gone, vec![(q, libc::SIGKILL)]);

    assert!(s.step(ev(&a, HostEvent::KillDeadline), t(3500)).is_empty());
    assert_eq!(s.fired(), None);
    assert!(s.holders_in(&a).is_empty());
}
