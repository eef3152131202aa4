//! Resource lease (Disk Paxos) behaviour on the simulated disk.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use nosplit_lease::host::JoinMode;
use nosplit_lease::paxos::{LeaseError, LeaseMode, OpKind, OpResult};
use nosplit_lease::Liveness;
use nosplit_lease_runtime::sim::Cluster;
use nosplit_storage::sim::Faults;

const NEW: JoinMode = JoinMode::New { prior_gone: false };
const EX: OpKind = OpKind::Acquire {
    mode: LeaseMode::Exclusive,
    expect_lver: None,
    revalidate: false,
};
const SH: OpKind = OpKind::Acquire {
    mode: LeaseMode::Shared,
    expect_lver: None,
    revalidate: false,
};
const REL: OpKind = OpKind::Release {
    mode: LeaseMode::Exclusive,
};
const REL_SH: OpKind = OpKind::Release {
    mode: LeaseMode::Shared,
};
const LIMIT: Duration = Duration::from_secs(5);

fn cluster(seed: u64, hosts: u32) -> Cluster {
    let mut c = Cluster::new(seed, hosts, 1000);
    for id in 1..=hosts {
        c.join(id, NEW);
    }
    c.run_for(Duration::from_secs(3));
    for id in 1..=hosts {
        assert!(c.node(id).joined());
    }
    c
}

fn op(c: &mut Cluster, id: u32, kind: OpKind) -> Result<OpResult, LeaseError> {
    c.start_op(id, kind, 42 + u64::from(id));
    c.finish_op(id, LIMIT).expect("operation finished")
}

#[test]
fn acquire_release_reacquire_bumps_the_version() {
    let mut c = cluster(1, 2);
    assert!(matches!(
        op(&mut c, 1, EX),
        Ok(OpResult::Acquired {
            lver: 1,
            already: false,
            ..
        })
    ));
    let l = c.leader().unwrap();
    assert_eq!(l.owner, c.node(1).owner());
    // Acquiring again is idempotent.
    assert!(matches!(
        op(&mut c, 1, EX),
        Ok(OpResult::Acquired {
            lver: 1,
            already: true,
            ..
        })
    ));
    assert!(matches!(op(&mut c, 1, REL), Ok(OpResult::Released)));
    assert_eq!(c.leader().unwrap().owner, None);
    assert!(matches!(
        op(&mut c, 2, EX),
        Ok(OpResult::Acquired { lver: 2, .. })
    ));
}

#[test]
fn a_live_owner_keeps_its_lease() {
    let mut c = cluster(2, 2);
    op(&mut c, 1, EX).unwrap();
    match op(&mut c, 2, EX) {
        Err(LeaseError::Busy {
            owner,
            state: Liveness::Live,
            dead_in,
        }) => {
            assert_eq!(Some(owner), c.node(1).owner());
            assert!(dead_in.is_some());
        }
        other => panic!("{other:?}"),
    }
    // Release by a non-owner changes nothing.
    assert!(matches!(
        op(&mut c, 2, REL),
        Err(LeaseError::NotOwner(Some(_)))
    ));
    assert_eq!(c.leader().unwrap().owner, c.node(1).owner());
}

#[test]
fn expected_version_is_enforced() {
    let mut c = cluster(3, 1);
    let k = |v| OpKind::Acquire {
        mode: LeaseMode::Exclusive,
        expect_lver: Some(v),
        revalidate: false,
    };
    assert_eq!(
        op(&mut c, 1, k(5)),
        Err(LeaseError::VersionMismatch {
            expected: 5,
            found: 0
        })
    );
    assert!(matches!(
        op(&mut c, 1, k(0)),
        Ok(OpResult::Acquired { lver: 1, .. })
    ));
}

#[test]
fn revalidation_runs_a_fresh_ballot_at_the_same_owner() {
    let mut c = cluster(4, 1);
    op(&mut c, 1, EX).unwrap();
    let k = OpKind::Acquire {
        mode: LeaseMode::Exclusive,
        expect_lver: None,
        revalidate: true,
    };
    assert!(matches!(
        op(&mut c, 1, k),
        Ok(OpResult::Acquired {
            lver: 2,
            already: false,
            ..
        })
    ));
    assert_eq!(c.leader().unwrap().owner, c.node(1).owner());
}

#[test]
fn takeover_waits_for_host_dead_after_the_last_renewal() {
    let mut c = cluster(5, 2);
    op(&mut c, 1, EX).unwrap();
    let last = c.node(1).lease.as_ref().unwrap().last_renewal().unwrap();
    c.power_off(1);
    let start = c.now();
    let mut got = None;
    while c.now() < start + Duration::from_secs(20) {
        match op(&mut c, 2, EX) {
            Ok(OpResult::Acquired { lver, .. }) => {
                got = Some((c.now(), lver));
                break;
            }
            Err(LeaseError::Busy { .. }) => c.run_for(Duration::from_millis(200)),
            other => panic!("{other:?}"),
        }
    }
    let (t, lver) = got.expect("taken over");
    assert_eq!(lver, 2);
    // Never before the owner could have stopped its holders (and been
    // reset by the watchdog): host_dead after its last renewal write.
    assert!(
        t - last >= c.timing.host_dead,
        "taken {:?} after the last renewal",
        t - last
    );
    assert!(
        t - last <= c.timing.host_dead + Duration::from_secs(2),
        "slow takeover: {:?}",
        t - last
    );
}

#[test]
fn concurrent_acquires_have_one_winner() {
    let mut rounds_won = 0;
    for seed in 0..60 {
        let mut c = cluster(100 + seed, 3);
        for id in 1..=3 {
            c.node(id).handle.set_faults(Faults {
                min_latency: Duration::from_micros(10),
                max_latency: Duration::from_millis(3),
                reorder: true,
                ..Faults::default()
            });
        }
        for id in 1..=3 {
            c.start_op(id, EX, seed * 7 + u64::from(id));
        }
        let until = c.now() + LIMIT;
        c.run_until(until, |c| c.nodes.iter().all(|n| !n.results.is_empty()));
        let winners: Vec<u32> = c
            .nodes
            .iter()
            .filter(|n| matches!(n.results.last(), Some((_, Ok(OpResult::Acquired { .. })))))
            .map(|n| n.id)
            .collect();
        assert!(winners.len() <= 1, "seed {seed}: winners {winners:?}");
        for n in &c.nodes {
            if let Some((_, Err(e))) = n.results.last() {
                assert!(
                    matches!(e, LeaseError::Busy { .. } | LeaseError::Contended(_)),
                    "seed {seed}: {e:?}"
                );
            }
        }
        if let Some(&w) = winners.first() {
            rounds_won += 1;
            assert_eq!(c.leader().unwrap().owner.map(|o| o.host_id), Some(w));
        }
    }
    assert!(
        rounds_won >= 50,
        "only {rounds_won} of 60 contended rounds had a winner"
    );
}

#[test]
fn shared_holders_coexist_and_exclude_exclusive() {
    let mut c = cluster(6, 3);
    assert!(matches!(
        op(&mut c, 1, SH),
        Ok(OpResult::Acquired {
            mode: LeaseMode::Shared,
            ..
        })
    ));
    assert!(matches!(
        op(&mut c, 2, SH),
        Ok(OpResult::Acquired {
            mode: LeaseMode::Shared,
            ..
        })
    ));
    assert_eq!(c.leader().unwrap().owner, None);
    match op(&mut c, 3, EX) {
        Err(LeaseError::BusyShared(h)) => assert_eq!(h.len(), 2),
        other => panic!("{other:?}"),
    }
    // A shared holder cannot also take it exclusively.
    assert_eq!(
        op(&mut c, 1, EX),
        Err(LeaseError::OtherMode(LeaseMode::Shared))
    );
    op(&mut c, 1, REL_SH).unwrap();
    op(&mut c, 2, REL_SH).unwrap();
    assert!(matches!(op(&mut c, 3, EX), Ok(OpResult::Acquired { .. })));
    assert!(matches!(op(&mut c, 1, SH), Err(LeaseError::Busy { .. })));
}

#[test]
fn a_dead_shared_holder_does_not_block_forever() {
    let mut c = cluster(7, 2);
    op(&mut c, 1, SH).unwrap();
    c.power_off(1);
    let start = c.now();
    let mut ok = false;
    while c.now() < start + Duration::from_secs(20) {
        match op(&mut c, 2, EX) {
            Ok(_) => {
                ok = true;
                break;
            }
            Err(LeaseError::BusyShared(_)) => c.run_for(Duration::from_millis(200)),
            other => panic!("{other:?}"),
        }
    }
    assert!(ok);
    assert!(c.now() - start >= c.timing.host_dead - c.timing.renew_interval * 2);
}

#[test]
fn corrupted_sectors_are_reported_and_nothing_is_written() {
    let mut c = cluster(8, 2);
    let g = c.spec.geometry;
    let off = c.res_base + g.ballot_offset(2);
    let mut raw = vec![0u8; 512];
    nosplit_lease::format::Ballot {
        host_id: 2,
        lver: 1,
        mbal: 10,
        bal: 0,
        inp: None,
        shared: None,
    }
    .encode(&mut raw);
    raw[20] ^= 1;
    c.disk.write_raw(off, &raw);
    let before = c.disk.read_raw(c.res_base, g.resource_used_len());
    assert!(matches!(op(&mut c, 1, EX), Err(LeaseError::Corrupt(_))));
    assert_eq!(c.disk.read_raw(c.res_base, g.resource_used_len()), before);
    // A leader of another resource.
    let mut l = c.leader().unwrap();
    l.resource = "other".parse().unwrap();
    let mut sec = vec![0u8; 512];
    l.encode(&mut sec);
    c.disk.write_raw(c.res_base, &sec);
    assert!(matches!(op(&mut c, 1, EX), Err(LeaseError::Mismatch(_))));
}

#[test]
fn hung_storage_fails_the_operation_at_its_deadline() {
    let mut c = cluster(9, 1);
    c.node(1).handle.set_faults(Faults::hung());
    let t0 = c.now();
    c.start_op(1, EX, 1);
    let r = c.finish_op(1, LIMIT).expect("finished despite the hang");
    assert!(matches!(r, Err(LeaseError::Io(_))), "{r:?}");
    assert!(c.now() - t0 <= c.timing.io_timeout + Duration::from_millis(1));
}
