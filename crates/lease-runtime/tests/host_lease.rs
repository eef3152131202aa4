//! Host lease (delta lease) behaviour on the simulated disk: join timing,
//! collisions, stale slots, resume, hung storage, scans, leave.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use nosplit_clock::MonoTime;
use nosplit_lease::host::{HostEvent, HostLease, HostLeaseConfig, JoinError, JoinMode, LostReason};
use nosplit_lease_runtime::sim::Cluster;
use nosplit_storage::sim::Faults;

const NEW: JoinMode = JoinMode::New { prior_gone: false };

/// A second host, "beta", configured (wrongly) with host id 1.
fn beta_as_id_1(c: &Cluster) -> HostLeaseConfig {
    HostLeaseConfig {
        lockspace: c.spec.lockspace.clone(),
        host_id: 1,
        host_name: "beta".parse().unwrap(),
        sector_size: 512,
        mode: NEW,
        bootstrap_timeout: c.timing.io_timeout,
    }
}

fn joined_at(c: &mut Cluster, id: u32) -> Option<MonoTime> {
    c.node(id)
        .events
        .iter()
        .find(|(_, e)| matches!(e, HostEvent::Joined { .. }))
        .map(|(t, _)| *t)
}

fn join_failure(c: &mut Cluster, id: u32) -> Option<JoinError> {
    c.node(id).events.iter().find_map(|(_, e)| match e {
        HostEvent::JoinFailed(j) => Some(j.clone()),
        _ => None,
    })
}

#[test]
fn fresh_join_takes_the_collision_wait_and_no_more() {
    let mut c = Cluster::new(1, 2, 1000);
    c.join(1, NEW);
    c.run_for(Duration::from_secs(5));
    let t = joined_at(&mut c, 1).expect("joined");
    let wait = c.timing.join_wait;
    assert!(
        t >= MonoTime::ZERO + wait,
        "joined at {t:?} before the wait {wait:?}"
    );
    assert!(
        t <= MonoTime::ZERO + wait + Duration::from_millis(10),
        "joined at {t:?}"
    );
    assert_eq!(c.node(1).owner().map(|o| o.generation), Some(1));
}

#[test]
fn simultaneous_joins_with_one_id_let_exactly_one_win() {
    for seed in 0..40 {
        let mut c = Cluster::new(seed, 2, 1000);
        c.node(2).handle.set_faults(Faults {
            min_latency: Duration::from_micros(50),
            max_latency: Duration::from_millis(400),
            reorder: true,
            ..Faults::default()
        });
        // Two hosts, both configured as id 1 (a configuration mistake).
        c.join_as(1, "alpha", NEW);
        // Host "beta" also joins as id 1, through node 2's handle.
        let cfg = beta_as_id_1(&c);
        c.node(2).lease = Some(HostLease::new(cfg));
        c.run_for(Duration::from_secs(8));
        let a = joined_at(&mut c, 1).is_some()
            && c.node(1).lease.as_ref().is_some_and(|l| !l.is_done());
        let b = joined_at(&mut c, 2).is_some()
            && c.node(2).lease.as_ref().is_some_and(|l| !l.is_done());
        assert!(!(a && b), "seed {seed}: both hosts hold host id 1");
        assert!(
            a || b || join_failure(&mut c, 1).is_some(),
            "seed {seed}: nobody decided"
        );
    }
}

#[test]
fn a_live_host_keeps_its_id() {
    let mut c = Cluster::new(2, 2, 1000);
    c.join_as(1, "alpha", NEW);
    c.run_for(Duration::from_secs(3));
    assert!(c.node(1).joined());
    // Another host tries the same id: it watches the slot, sees it change.
    let cfg = beta_as_id_1(&c);
    c.node(2).lease = Some(HostLease::new(cfg));
    c.run_for(Duration::from_secs(10));
    assert!(
        matches!(join_failure(&mut c, 2), Some(JoinError::InUse { .. })),
        "{:?}",
        c.node(2).events
    );
    assert!(c.node(1).joined(), "the live owner was disturbed");
}

#[test]
fn a_dead_hosts_id_is_taken_only_after_host_dead() {
    let mut c = Cluster::new(3, 2, 1000);
    c.join_as(1, "alpha", NEW);
    c.run_for(Duration::from_secs(3));
    c.power_off(1);
    let off = c.now();
    // Same id, different host name: must watch for host_dead.
    let cfg = beta_as_id_1(&c);
    c.node(2).lease = Some(HostLease::new(cfg));
    c.run_for(Duration::from_secs(15));
    let t = joined_at(&mut c, 2).expect("joined after the owner died");
    assert!(
        t >= off + c.timing.host_dead,
        "joined {:?} after power-off",
        t - off
    );
    assert_eq!(c.node(2).owner().map(|o| o.generation), Some(2));
}

#[test]
fn rejoin_after_own_crash_with_local_evidence_is_fast() {
    let mut c = Cluster::new(4, 1, 1000);
    c.join(1, NEW);
    c.run_for(Duration::from_secs(3));
    c.power_off(1);
    c.power_on(1);
    let t0 = c.now();
    c.node(1).events.clear();
    c.join(1, JoinMode::New { prior_gone: true });
    c.run_for(Duration::from_secs(4));
    let t = joined_at(&mut c, 1).expect("rejoined");
    // The target: at most 2 x io_timeout + 1 s, also after an unclean stop.
    assert!(
        t - t0 <= c.timing.io_timeout * 2 + Duration::from_secs(1),
        "took {:?}",
        t - t0
    );
    assert_eq!(c.node(1).owner().map(|o| o.generation), Some(2));
}

#[test]
fn resume_keeps_the_generation_and_needs_no_wait() {
    let mut c = Cluster::new(5, 1, 1000);
    c.join(1, NEW);
    c.run_for(Duration::from_secs(3));
    c.node(1).lease = None; // daemon killed; holders still run
    c.node(1).events.clear();
    let t0 = c.now();
    c.join(1, JoinMode::Resume { generation: 1 });
    c.run_for(Duration::from_millis(100));
    let t = joined_at(&mut c, 1).expect("resumed");
    assert!(t - t0 < Duration::from_millis(5));
    assert_eq!(c.node(1).owner().map(|o| o.generation), Some(1));
    // Resuming a generation that is not ours fails.
    c.node(1).lease = None;
    c.node(1).events.clear();
    c.join(1, JoinMode::Resume { generation: 7 });
    c.run_for(Duration::from_millis(100));
    assert!(matches!(
        join_failure(&mut c, 1),
        Some(JoinError::ResumeMismatch { asked: 7, .. })
    ));
}

#[test]
fn hung_storage_fails_renewal_on_time_and_voids_the_incarnation() {
    let mut c = Cluster::new(6, 1, 1000);
    c.join(1, NEW);
    c.run_for(Duration::from_secs(3));
    c.node(1).events.clear();
    c.node(1).handle.set_faults(Faults::hung());
    c.run_for(Duration::from_secs(8));
    let ev = c.node(1).events.clone();
    let at = |f: fn(&HostEvent) -> bool| {
        ev.iter()
            .find(|(_, e)| f(e))
            .map(|(t, _)| *t)
            .expect("event")
    };
    let last_ok = ev
        .iter()
        .filter(|(_, e)| matches!(e, HostEvent::RenewalOk { .. }))
        .map(|(t, _)| *t)
        .next_back();
    // The last renewal issued before the hang: within one interval of it.
    let t = c.timing;
    let warn = at(|e| matches!(e, HostEvent::RenewalWarning));
    let fail = at(|e| matches!(e, HostEvent::RenewalFailed));
    let kill = at(|e| matches!(e, HostEvent::KillHolders));
    let deadline = at(|e| matches!(e, HostEvent::KillDeadline));
    let lost = at(|e| matches!(e, HostEvent::Lost(LostReason::Expired)));
    let base = deadline - t.kill_deadline; // issue time of the last good renewal
    assert!(last_ok.is_none_or(|ok| ok >= base));
    let tol = Duration::from_millis(1);
    for (got, want) in [
        (warn, t.renew_warn),
        (fail, t.renew_fail),
        (kill, t.sigkill_after),
    ] {
        assert!(
            got - base >= want && got - base <= want + tol,
            "{:?} vs {want:?}",
            got - base
        );
    }
    assert_eq!(lost, deadline);
    assert!(c.node(1).lease.as_ref().is_some_and(|l| l.is_done()));
}

#[test]
fn scans_read_only_slots_in_use() {
    let mut c = Cluster::new(7, 2, 1000);
    c.join(1, NEW);
    c.join(2, NEW);
    c.run_for(Duration::from_secs(3));
    let s0 = c.node(1).handle.stats();
    c.run_for(Duration::from_secs(20));
    let s1 = c.node(1).handle.stats();
    let renewals = (s1.writes - s0.writes) as f64;
    let per = (s1.bytes_read - s0.bytes_read) as f64 / renewals;
    // 8 host ids, 2 in use: most scans read 2 sectors, one in 8 reads all 8.
    assert!(
        per < (2.0 * 7.0 + 8.0) / 8.0 * 512.0 + 1.0,
        "{per} bytes read per renewal"
    );
    assert_eq!(
        (s1.bytes_written - s0.bytes_written) as f64 / renewals,
        512.0
    );
}

#[test]
fn leave_frees_the_id_and_an_overwritten_slot_is_lost() {
    let mut c = Cluster::new(8, 2, 1000);
    c.join(1, NEW);
    c.run_for(Duration::from_secs(3));
    c.node(1).lease.as_mut().unwrap().request_leave();
    c.run_for(Duration::from_millis(100));
    assert!(c
        .node(1)
        .events
        .iter()
        .any(|(_, e)| matches!(e, HostEvent::Left)));
    // Rejoin as another name without waiting: the slot was released.
    c.node(1).lease = None;
    c.node(1).events.clear();
    c.join_as(1, "other", NEW);
    c.run_for(Duration::from_secs(3));
    assert!(joined_at(&mut c, 1).is_some());
    // Someone overwrites our slot: lost.
    let mut raw = c.disk.read_raw(512, 512);
    raw[24] ^= 0xff; // corrupt seq: checksum fails
    c.disk.write_raw(512, &raw);
    c.run_for(Duration::from_secs(2));
    assert!(c
        .node(1)
        .events
        .iter()
        .any(|(_, e)| matches!(e, HostEvent::Lost(LostReason::Corrupted(_)))));
}

#[test]
fn bad_lockspaces_fail_the_join_with_a_clear_error() {
    let mut c = Cluster::new(9, 1, 1000);
    c.join(1, NEW);
    c.node(1).lease = Some(HostLease::new(HostLeaseConfig {
        lockspace: "other".parse().unwrap(),
        host_id: 1,
        host_name: "h1".parse().unwrap(),
        sector_size: 512,
        mode: NEW,
        bootstrap_timeout: Duration::from_secs(1),
    }));
    c.run_for(Duration::from_millis(50));
    assert!(matches!(
        join_failure(&mut c, 1),
        Some(JoinError::WrongLockspace { .. })
    ));
    c.node(1).events.clear();
    c.node(1).lease = Some(HostLease::new(HostLeaseConfig {
        lockspace: "simls".parse().unwrap(),
        host_id: 9,
        host_name: "h1".parse().unwrap(),
        sector_size: 512,
        mode: NEW,
        bootstrap_timeout: Duration::from_secs(1),
    }));
    c.run_for(Duration::from_millis(50));
    assert!(matches!(
        join_failure(&mut c, 1),
        Some(JoinError::HostId {
            host_id: 9,
            max_hosts: 8
        })
    ));
    c.node(1).events.clear();
    c.disk.write_raw(0, &[0xAB; 512]);
    c.join(1, NEW);
    c.run_for(Duration::from_millis(50));
    assert!(matches!(
        join_failure(&mut c, 1),
        Some(JoinError::Header(_))
    ));
}
