use super::*;

fn t(ms: u64) -> MonoTime {
    MonoTime::from_nanos(ms * 1_000_000)
}

fn live(f: &mut Failover, hosts: &[u32], now: MonoTime) {
    for &h in hosts {
        f.on_event(
            Event::Host {
                host: h,
                liveness: Liveness::Live,
            },
            now,
        );
    }
}

fn add(f: &mut Failover, vm: &str, host: Option<u32>) {
    f.on_event(
        Event::Add {
            vm: vm.into(),
            ha: true,
            host,
        },
        t(0),
    );
}

fn start(vm: &str, host: u32) -> Command {
    Command::Start {
        vm: vm.into(),
        host,
    }
}

#[test]
fn first_placement_honours_the_wanted_host_then_balances() {
    let mut f = Failover::new(Policy::default());
    live(&mut f, &[1, 2, 3], t(0));
    add(&mut f, "a", Some(1));
    add(&mut f, "b", None);
    add(&mut f, "c", None);
    let cmds = f.tick(t(0));
    assert_eq!(cmds, vec![start("a", 1), start("b", 2), start("c", 3)]);
}

#[test]
fn nothing_is_placed_before_any_host_is_live() {
    let mut f = Failover::new(Policy::default());
    add(&mut f, "a", None);
    assert!(f.tick(t(0)).is_empty());
    live(&mut f, &[2], t(10));
    assert_eq!(f.tick(t(10)), vec![start("a", 2)]);
}

#[test]
fn a_dead_hosts_vms_move_and_busy_retries_until_the_lease_frees() {
    let p = Policy::default();
    let mut f = Failover::new(p);
    live(&mut f, &[1, 2], t(0));
    add(&mut f, "a", Some(1));
    assert_eq!(f.tick(t(0)), vec![start("a", 1)]);
    f.on_event(
        Event::Started {
            vm: "a".into(),
            host: 1,
        },
        t(1),
    );
    assert!(f.tick(t(2)).is_empty(), "running: nothing to do");
    f.on_event(
        Event::Host {
            host: 1,
            liveness: Liveness::Dead,
        },
        t(100),
    );
    assert_eq!(f.tick(t(100)), vec![start("a", 2)]);
    // Busy: retried after busy_retry, forever (no give-up).
    let mut now = t(100);
    for _ in 0..20 {
        f.on_event(
            Event::StartFailed {
                vm: "a".into(),
                host: 2,
                busy: true,
            },
            now,
        );
        assert!(f.tick(now).is_empty(), "not before busy_retry");
        now = now + p.busy_retry;
        assert_eq!(f.tick(now), vec![start("a", 2)]);
    }
    f.on_event(
        Event::Started {
            vm: "a".into(),
            host: 2,
        },
        now,
    );
    assert_eq!(f.vms()["a"].phase, Phase::Running { host: 2 });
}

#[test]
fn other_failures_back_off_and_give_up() {
    let p = Policy {
        busy_retry: Duration::from_millis(100),
        backoff: Duration::from_millis(100),
        max_attempts: 3,
    };
    let mut f = Failover::new(p);
    live(&mut f, &[1], t(0));
    add(&mut f, "a", None);
    let mut now = t(0);
    let mut waits = Vec::new();
    loop {
        let cmds = f.tick(now);
        if let Some(Command::GiveUp { vm, reason }) = cmds.first() {
            assert_eq!(vm, "a");
            assert!(reason.contains('3'), "{reason}");
            break;
        }
        assert_eq!(cmds, vec![start("a", 1)]);
        f.on_event(
            Event::StartFailed {
                vm: "a".into(),
                host: 1,
                busy: false,
            },
            now,
        );
        let Phase::Waiting { at, .. } = f.vms()["a"].phase else {
            panic!("waiting")
        };
        waits.push(at.saturating_since(now).as_millis());
        now = at;
    }
    assert_eq!(waits, vec![100, 200, 400]);
    assert_eq!(f.vms()["a"].phase, Phase::GaveUp);
    assert!(f.tick(now + Duration::from_secs(60)).is_empty());
}

#[test]
fn an_exited_ha_vm_restarts_elsewhere_and_a_stopped_one_never() {
    let mut f = Failover::new(Policy::default());
    live(&mut f, &[1, 2], t(0));
    add(&mut f, "a", Some(1));
    add(&mut f, "b", Some(1));
    f.tick(t(0));
    f.on_event(
        Event::Started {
            vm: "a".into(),
            host: 1,
        },
        t(1),
    );
    f.on_event(
        Event::Started {
            vm: "b".into(),
            host: 1,
        },
        t(1),
    );
    f.on_event(Event::StoppedOnPurpose { vm: "b".into() }, t(2));
    f.on_event(
        Event::Exited {
            vm: "a".into(),
            host: 1,
        },
        t(3),
    );
    f.on_event(
        Event::Exited {
            vm: "b".into(),
            host: 1,
        },
        t(3),
    );
    assert_eq!(f.tick(t(3)), vec![start("a", 2)]);
    assert_eq!(f.vms()["b"].phase, Phase::Stopped);
}

#[test]
fn a_stale_exit_from_an_old_host_does_not_disturb_the_new_instance() {
    let mut f = Failover::new(Policy::default());
    live(&mut f, &[1, 2], t(0));
    add(&mut f, "a", Some(1));
    f.tick(t(0));
    f.on_event(
        Event::Started {
            vm: "a".into(),
            host: 1,
        },
        t(1),
    );
    f.on_event(
        Event::Host {
            host: 1,
            liveness: Liveness::Dead,
        },
        t(2),
    );
    assert_eq!(f.tick(t(2)), vec![start("a", 2)]);
    f.on_event(
        Event::Started {
            vm: "a".into(),
            host: 2,
        },
        t(3),
    );
    f.on_event(
        Event::Exited {
            vm: "a".into(),
            host: 1,
        },
        t(4),
    );
    assert_eq!(f.vms()["a"].phase, Phase::Running { host: 2 });
    assert!(f.tick(t(5)).is_empty());
}

#[test]
fn failing_and_dead_hosts_get_no_new_vms() {
    let mut f = Failover::new(Policy::default());
    live(&mut f, &[1, 2, 3], t(0));
    for (h, l) in [(1, Liveness::Fail), (2, Liveness::Dead)] {
        f.on_event(
            Event::Host {
                host: h,
                liveness: l,
            },
            t(1),
        );
    }
    for v in ["a", "b", "c"] {
        add(&mut f, v, Some(1));
    }
    let cmds = f.tick(t(1));
    assert_eq!(cmds, vec![start("a", 3), start("b", 3), start("c", 3)]);
}

#[test]
fn a_vm_presumed_lost_is_found_running_when_its_host_reports_again() {
    let mut f = Failover::new(Policy::default());
    live(&mut f, &[1, 2], t(0));
    add(&mut f, "a", Some(1));
    f.tick(t(0));
    f.on_event(
        Event::Started {
            vm: "a".into(),
            host: 1,
        },
        t(1),
    );
    // Cut off: presumed lost, restart refused (busy) while it still runs.
    f.on_event(
        Event::Host {
            host: 1,
            liveness: Liveness::Dead,
        },
        t(2),
    );
    assert_eq!(f.tick(t(2)), vec![start("a", 2)]);
    f.on_event(
        Event::StartFailed {
            vm: "a".into(),
            host: 2,
            busy: true,
        },
        t(3),
    );
    f.on_event(
        Event::Host {
            host: 1,
            liveness: Liveness::Live,
        },
        t(4),
    );
    f.on_event(
        Event::Reported {
            vm: "a".into(),
            host: 1,
        },
        t(4),
    );
    assert_eq!(f.vms()["a"].phase, Phase::Running { host: 1 });
    assert!(f.tick(t(10_000)).is_empty());
}
