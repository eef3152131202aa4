//! Broken variants and too-tight timing: the checker must find counterexamples.

use std::collections::BTreeSet;

use nosplit_lease_model::{Bounds, LeaseModel, Mode, State, Variant};
use stateright::{Checker, HasDiscoveries, Model};

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Checks until every property in `expected` has a counterexample; returns the last states of
/// the counterexamples after printing them.
fn assert_caught(variant: Variant, bounds: Bounds, expected: &[&'static str]) -> Vec<State> {
    let model = LeaseModel::new(variant, bounds);
    let checker = model
        .clone()
        .checker()
        .threads(threads())
        .finish_when(HasDiscoveries::AllOf(
            expected.iter().copied().collect::<BTreeSet<_>>(),
        ))
        .spawn_bfs()
        .join();
    let mut last = Vec::new();
    for name in expected {
        let path = checker
            .discovery(name)
            .unwrap_or_else(|| panic!("{variant} within {bounds:?}: no counterexample to {name}"));
        eprintln!("{variant}: counterexample to \"{name}\":");
        for line in model.explain(&path.clone().into_actions()) {
            eprintln!("  {line}");
        }
        last.push(*path.last_state());
    }
    last
}

fn exclusive_holders(s: &State) -> usize {
    s.hosts
        .iter()
        .filter(|h| h.holder == Some(Mode::Exclusive))
        .count()
}

#[test]
fn no_phase2_read_breaks_exclusive() {
    let last = assert_caught(
        Variant::NoPhase2Read,
        Bounds::crash_restart(),
        &["exclusive"],
    );
    // Both hosts committed themselves for the same lease version.
    assert_eq!(exclusive_holders(&last[0]), 2);
}

#[test]
fn no_phase2_read_keeps_takeover_timing() {
    // The mutant breaks mutual exclusion, not the liveness wait.
    let checker = LeaseModel::new(Variant::NoPhase2Read, Bounds::storage_failure())
        .checker()
        .threads(threads())
        .spawn_bfs()
        .join();
    assert!(checker.discovery("exclusive").is_some());
    checker.assert_no_discovery("no early takeover");
}

#[test]
fn no_liveness_wait_breaks_exclusive_and_takeover_timing() {
    let last = assert_caught(
        Variant::NoLivenessWait,
        Bounds::storage_failure(),
        &["exclusive", "no early takeover"],
    );
    assert!(last[0].hosts.iter().filter(|h| h.holder.is_some()).count() >= 2);
    assert!(last[1].early_takeover);
}

#[test]
fn dead_before_kill_deadline_is_caught() {
    // host_dead one tick short of renew_fail + kill_grace: a holder may still run when the
    // observer declares its host DEAD.
    let bounds = Bounds {
        host_dead: 2,
        ..Bounds::storage_failure()
    };
    assert_eq!(bounds.dead_margin(), -1);
    assert_caught(
        Variant::Correct,
        bounds,
        &["exclusive", "no early takeover"],
    );
}

#[test]
#[ignore = "three hosts; run with --release -- --ignored"]
fn broken_variants_caught_with_three_hosts() {
    assert_caught(
        Variant::NoPhase2Read,
        Bounds::three_hosts_crash(),
        &["exclusive"],
    );
    assert_caught(
        Variant::NoLivenessWait,
        Bounds::three_hosts_storage_failure(),
        &["exclusive", "no early takeover"],
    );
}
