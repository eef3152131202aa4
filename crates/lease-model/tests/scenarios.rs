//! Hand-written runs through the model, checking single steps of the protocol.

use nosplit_lease_model::{Action, Bounds, LeaseModel, Mode, Op, State, Variant};
use stateright::Model;

fn model() -> LeaseModel {
    LeaseModel::new(Variant::Correct, Bounds::crash_restart())
}

fn init(m: &LeaseModel) -> State {
    m.init_states().remove(0)
}

/// Applies `actions`, panicking if one has no effect.
fn run(m: &LeaseModel, mut s: State, actions: &[Action]) -> State {
    for &a in actions {
        s = m
            .next_state(&s, a)
            .unwrap_or_else(|| panic!("{a:?} has no effect in {s:#?}"));
    }
    s
}

/// Runs the host's acquisition until it is idle again.
fn acquire(m: &LeaseModel, mut s: State, h: u8, mode: Mode) -> State {
    s = run(m, s, &[Action::Acquire(h, mode)]);
    while s.hosts[usize::from(h)].op != Op::Idle {
        s = run(m, s, &[Action::Io(h)]);
    }
    s
}

#[test]
fn free_lease_is_acquired_and_released() {
    let m = model();
    let s = acquire(&m, init(&m), 0, Mode::Exclusive);
    assert_eq!(s.hosts[0].holder, Some(Mode::Exclusive));
    let owner = s.disk.leader.owner.expect("leader names the owner");
    assert_eq!((owner.host, owner.gen, s.disk.leader.lver), (0, 1, 1));

    // The other host is busy while the owner renews.
    let s = run(&m, s, &[Action::Tick, Action::Tick]);
    assert!(m
        .next_state(&s, Action::Acquire(1, Mode::Exclusive))
        .is_none());

    let mut s = run(&m, s, &[Action::Release(0)]);
    while s.hosts[0].op != Op::Idle {
        s = run(&m, s, &[Action::Io(0)]);
    }
    assert_eq!(s.hosts[0].holder, None);
    assert_eq!(s.disk.leader.owner, None);
    assert_eq!(s.disk.leader.lver, 1);

    let s = acquire(&m, s, 1, Mode::Exclusive);
    assert_eq!(s.hosts[1].holder, Some(Mode::Exclusive));
    assert_eq!(s.disk.leader.lver, 2);
}

#[test]
fn takeover_of_a_crashed_owner_waits_for_host_dead() {
    let m = model();
    let mut s = acquire(&m, init(&m), 0, Mode::Exclusive);
    s = run(&m, s, &[Action::Crash(0)]);
    for _ in 0..m.bounds.host_dead - 1 {
        s = run(&m, s, &[Action::Tick]);
        assert!(
            m.next_state(&s, Action::Acquire(1, Mode::Exclusive))
                .is_none(),
            "taken over before host_dead"
        );
    }
    s = run(&m, s, &[Action::Tick]);
    s = acquire(&m, s, 1, Mode::Exclusive);
    assert_eq!(s.hosts[1].holder, Some(Mode::Exclusive));
    assert!(s.took_over);
    assert!(!s.early_takeover);
}

#[test]
fn rejoined_owner_is_taken_over_without_waiting() {
    let m = model();
    let mut s = acquire(&m, init(&m), 0, Mode::Exclusive);
    s = run(&m, s, &[Action::Crash(0), Action::Restart(0)]);
    // Host 1 has not read the new generation yet: still busy.
    assert!(m
        .next_state(&s, Action::Acquire(1, Mode::Exclusive))
        .is_none());
    s = run(&m, s, &[Action::Tick]);
    s = acquire(&m, s, 1, Mode::Exclusive);
    assert_eq!(s.hosts[1].holder, Some(Mode::Exclusive));
    assert!(!s.early_takeover);
}

#[test]
fn failed_storage_keeps_the_holder_until_the_kill_deadline() {
    let m = LeaseModel::new(Variant::Correct, Bounds::storage_failure());
    let mut s = acquire(&m, init(&m), 0, Mode::Exclusive);
    s = run(&m, s, &[Action::StorageFail(0)]);
    let deadline = m.bounds.renew_fail + m.bounds.kill_grace;
    for t in 1..deadline {
        s = run(&m, s, &[Action::Tick]);
        assert_eq!(s.hosts[0].holder, Some(Mode::Exclusive), "tick {t}");
        if t >= m.bounds.renew_fail {
            // FAILED: no more lease I/O.
            let mut acts = Vec::new();
            m.actions(&s, &mut acts);
            assert!(
                !acts.iter().any(|a| matches!(
                    a,
                    Action::Acquire(0, _) | Action::Release(0) | Action::Io(0) | Action::IoLate(0)
                )),
                "{acts:?}"
            );
        }
    }
    s = run(&m, s, &[Action::Tick]);
    assert!(!s.hosts[0].up, "watchdog reset at the kill deadline");
    assert_eq!(s.hosts[0].holder, None);
}

#[test]
fn two_shared_holders_coexist_and_block_exclusive() {
    let m = model();
    let mut s = acquire(&m, init(&m), 0, Mode::Shared);
    s = acquire(&m, s, 1, Mode::Shared);
    assert_eq!(s.hosts[0].holder, Some(Mode::Shared));
    assert_eq!(s.hosts[1].holder, Some(Mode::Shared));
    assert_eq!(s.disk.leader.owner, None);

    // Host 1 releases; its exclusive attempt then wins the leader but sees host 0's mark.
    let mut s = run(&m, s, &[Action::Release(1)]);
    while s.hosts[1].op != Op::Idle {
        s = run(&m, s, &[Action::Io(1)]);
    }
    s = acquire(&m, s, 1, Mode::Exclusive);
    assert_eq!(s.hosts[1].holder, None);
    assert_eq!(
        s.disk.leader.owner, None,
        "busy exclusive attempt released the leader"
    );
}

#[test]
fn ballots_are_distinct_per_host() {
    let m = LeaseModel::new(Variant::Correct, Bounds::three_hosts_crash());
    let s = init(&m);
    for h in 0..3u8 {
        let s = run(&m, s, &[Action::Acquire(h, Mode::Exclusive)]);
        match s.hosts[usize::from(h)].op {
            Op::Phase1Write(at) => assert_eq!(at.ballot, h + 1),
            op => panic!("unexpected {op:?}"),
        }
    }
}

#[test]
fn explain_describes_each_step() {
    let m = model();
    let trace = [
        Action::Acquire(0, Mode::Exclusive),
        Action::Io(0),
        Action::Io(0),
        Action::Io(0),
        Action::Io(0),
        Action::Io(0),
        Action::Io(0),
    ];
    let lines = m.explain(&trace);
    assert_eq!(lines.len(), trace.len());
    assert!(lines[0].contains("acquire exclusive"), "{lines:?}");
    assert!(lines[6].contains("holder STARTS"), "{lines:?}");
}
