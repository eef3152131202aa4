//! Seeded cluster simulations: the S1 oracle stays silent with protection
//! and fires in the control run without it.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use nosplit_lease_runtime::sim::chaos::{run, SimConfig};

fn cfg(seed: u64, protection: bool) -> SimConfig {
    SimConfig {
        seed,
        hosts: 3,
        io_timeout_ms: 1000,
        duration: Duration::from_secs(240),
        protection,
        fault_every: Some(Duration::from_secs(20)),
        shared_ratio: 0.15,
    }
}

#[test]
fn protected_cluster_never_splits_under_faults() {
    let (mut ex, mut sh, mut take, mut killed, mut overlaps) = (0, 0, 0, 0, 0);
    for seed in 0..60 {
        let r = run(&cfg(seed, true));
        assert!(
            r.violations.is_empty(),
            "seed {seed}: S1 violated: {:?}",
            r.violations
        );
        ex += r.exclusive_acquired;
        sh += r.shared_acquired;
        take += r.takeovers;
        killed += r.holders_killed;
        overlaps += r.shared_overlaps;
        assert!(
            r.faults.0 + r.faults.1 + r.faults.2 > 0,
            "seed {seed}: no faults injected"
        );
    }
    // The runs did real work: leases changed hands, shared holders
    // overlapped, and holders were stopped by renewal failure.
    assert!(ex > 40 && sh > 40, "exclusive {ex} shared {sh}");
    assert!(overlaps > 0, "shared mode never had two holders");
    assert!(killed > 5, "holders stopped by renewal failure: {killed}");
    assert!(take > 5, "takeovers of a failed host's lease: {take}");
}

#[test]
fn control_without_holder_stop_splits() {
    let fired = (0..20)
        .filter(|&seed| !run(&cfg(seed, false)).violations.is_empty())
        .count();
    assert!(
        fired >= 5,
        "the oracle fired in only {fired} of 20 control runs"
    );
}

#[test]
fn same_seed_same_run() {
    let a = run(&cfg(7, true));
    let b = run(&cfg(7, true));
    assert_eq!(
        (
            a.exclusive_acquired,
            a.shared_acquired,
            a.holders_killed,
            a.faults,
            a.joins
        ),
        (
            b.exclusive_acquired,
            b.shared_acquired,
            b.holders_killed,
            b.faults,
            b.joins
        )
    );
}

#[test]
fn healthy_cluster_shares_the_lease() {
    let r = run(&SimConfig {
        fault_every: None,
        ..cfg(1, true)
    });
    assert!(r.violations.is_empty());
    assert_eq!(r.joins, 3, "each host joins once when nothing fails");
    assert!(r.exclusive_acquired > 5, "{r:?}");
}
