use super::*;
use nosplit_lease::paxos::LeaseMode;
use nosplit_leased::api::{HeldLease, LeaseRef};
use nosplit_vmrt::qmp::{QmpError, QmpEvent};
use std::os::unix::process::ExitStatusExt;

fn ident(pid: u32, start_time: u64) -> ProcIdentity {
    ProcIdentity { pid, start_time }
}

fn holder(pid: u32, start_time: u64, state: &str, leases: &[(&str, &str, u64)]) -> HolderStatus {
    HolderStatus {
        pid,
        start_time,
        state: state.into(),
        leases: leases
            .iter()
            .map(|(ls, res, lver)| HeldLease {
                lease: LeaseRef {
                    lockspace: (*ls).into(),
                    resource: (*res).into(),
                    path: "/x".into(),
                    offset: 0,
                },
                mode: LeaseMode::Exclusive,
                lver: *lver,
            })
            .collect(),
    }
}

#[test]
fn a_failed_query_of_a_live_process_is_not_a_crash() {
    let qmp = || Err(DriverError::Qmp(QmpError::Closed));
    assert!(matches!(observation(qmp(), true), Observation::Lost(_)));
    assert_eq!(observation(qmp(), false), Observation::Dead(VmState::Gone));
    let exited = VmState::Exited(std::process::ExitStatus::from_raw(9));
    assert_eq!(
        observation(Ok(exited.clone()), true),
        Observation::Dead(exited)
    );
    assert_eq!(
        observation(Ok(VmState::Running), true),
        Observation::Seen(VmState::Running)
    );
    // The process went between the query and the liveness check.
    assert_eq!(
        observation(Ok(VmState::Running), false),
        Observation::Dead(VmState::Gone)
    );
}

#[test]
fn only_a_guest_shutdown_is_a_clean_stop() {
    let ev = |reason: &str| {
        VmEvent::Qmp(QmpEvent {
            name: "SHUTDOWN".into(),
            data: serde_json::json!({"guest": true, "reason": reason}),
            timestamp_us: None,
        })
    };
    assert!(is_guest_shutdown(&ev("guest-shutdown")));
    assert!(!is_guest_shutdown(&ev("guest-panic")));
    assert!(!is_guest_shutdown(&ev("host-signal")));
    assert!(!is_guest_shutdown(&VmEvent::Gone));
    let exited = |raw| VmState::Exited(std::process::ExitStatus::from_raw(raw));
    let (code0, code1, sigkill) = (exited(0), exited(1 << 8), exited(9));
    assert_eq!(
        exit_status(true, &sigkill),
        (VmStatus::Stopped, "vm-stopped")
    );
    assert_eq!(
        exit_status(false, &code0),
        (VmStatus::Stopped, "vm-stopped")
    );
    assert_eq!(
        exit_status(false, &code1),
        (VmStatus::Crashed, "vm-crashed")
    );
    assert_eq!(
        exit_status(false, &sigkill),
        (VmStatus::Crashed, "vm-crashed")
    );
    assert_eq!(
        exit_status(false, &VmState::Gone),
        (VmStatus::Crashed, "vm-crashed")
    );
    assert_eq!(describe_exit(&code1), "exited with status 1");
    assert_eq!(describe_exit(&sigkill), "killed by signal 9");
}

#[test]
fn an_operator_pause_survives_being_seen_again_and_a_freeze_stays_a_freeze() {
    use VmStatus::*;
    let paused = VmState::Paused;
    // Adoption starts from Running.
    assert_eq!(seen_status(Running, &paused, true), Paused);
    assert_eq!(seen_status(Running, &paused, false), Frozen);
    assert_eq!(seen_status(Running, &VmState::Running, true), Running);
    assert_eq!(
        seen_status(Running, &VmState::IoErrorPaused, false),
        IoError
    );
    // Frozen ends only by leased's word.
    assert_eq!(seen_status(Frozen, &VmState::Running, false), Frozen);
    assert_eq!(seen_status(Frozen, &paused, true), Frozen);
    // A state that says nothing keeps what was known.
    assert_eq!(
        seen_status(Paused, &VmState::Other("x".into()), true),
        Paused
    );
}

#[test]
fn only_leaseds_holder_list_decides_and_start_times_must_match() {
    let hs = vec![
        holder(10, 100, "running", &[("ls1", "a", 3)]),
        holder(11, 200, "frozen", &[("ls1", "b", 5)]),
    ];
    assert_eq!(
        lease_verdict(ident(10, 100), "ls1", "a", &hs),
        LeaseVerdict::Held {
            frozen: false,
            lver: 3
        }
    );
    assert_eq!(
        lease_verdict(ident(11, 200), "ls1", "b", &hs),
        LeaseVerdict::Held {
            frozen: true,
            lver: 5
        }
    );
    for (i, ls, res) in [
        (ident(12, 100), "ls1", "a"), // no such holder
        (ident(10, 101), "ls1", "a"), // pid reused
        (ident(10, 100), "ls2", "a"), // other lockspace
        (ident(10, 100), "ls1", "b"), // other resource
    ] {
        assert!(
            matches!(lease_verdict(i, ls, res, &hs), LeaseVerdict::NotHeld(_)),
            "{i:?} {ls} {res}"
        );
    }
}

#[test]
fn holders_of_unknown_processes_are_orphans() {
    let hs = vec![
        holder(10, 100, "running", &[("ls1", "a", 3)]),
        holder(11, 200, "running", &[("ls1", "b", 5)]),
        holder(12, 300, "running", &[("ls1", "c", 1)]),
        holder(13, 400, "running", &[]), // registered, nothing held yet
        holder(14, 500, "running", &[("ls1", "d", 1)]),
    ];
    let known = BTreeSet::from([(10, 100), (11, 999)]);
    let starting = BTreeSet::from([14]);
    let o: Vec<u32> = orphans(&hs, &known, &starting)
        .iter()
        .map(|h| h.pid)
        .collect();
    assert_eq!(o, vec![11, 12], "11: same pid, another process");
}

#[test]
fn a_frozen_vm_is_thawed_only_on_leaseds_thawed_and_killed_only_on_a_definite_no() {
    let holder = |state: &str| {
        Ok(Response::Holder {
            pid: 1,
            state: state.into(),
            leases: Vec::new(),
        })
    };
    let err = |kind: &str| Ok(Response::error(kind, "m"));
    assert_eq!(frozen_verdict(&holder("thawed")), FrozenVerdict::Thaw);
    assert!(matches!(
        frozen_verdict(&holder("frozen")),
        FrozenVerdict::Wait(_)
    ));
    assert!(matches!(
        frozen_verdict(&holder("revalidating")),
        FrozenVerdict::Wait(_)
    ));
    assert!(matches!(
        frozen_verdict(&err("revalidation_failed")),
        FrozenVerdict::Kill(_)
    ));
    assert!(matches!(
        frozen_verdict(&err("not_found")),
        FrozenVerdict::Kill(_)
    ));
    assert!(matches!(
        frozen_verdict(&err("failing")),
        FrozenVerdict::Wait(_)
    ));
    assert!(matches!(
        frozen_verdict(&err("internal")),
        FrozenVerdict::Unknown(_)
    ));
    assert!(matches!(
        frozen_verdict(&Err(AgentError::Unavailable("leased: down".into()))),
        FrozenVerdict::Unknown(_)
    ));
    assert!(matches!(
        frozen_verdict(&Ok(Response::Ok)),
        FrozenVerdict::Unknown(_)
    ));
    assert!(!revalidate_due(REVALIDATE_AFTER - Duration::from_millis(1)));
    assert!(revalidate_due(REVALIDATE_AFTER));
}
