//! The correct protocol: every `always` property holds and every `sometimes` property has an
//! example, exhaustively within the bounds.
//!
//! The two-host presets with one kind of failure run in debug builds (seconds each). The
//! larger presets are ignored by default; run them with
//! `cargo test -p nosplit-lease-model --release -- --ignored`.

use nosplit_lease_model::{Bounds, LeaseModel, Variant};
use stateright::{Checker, Model};

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn assert_correct(bounds: Bounds) -> usize {
    let checker = LeaseModel::new(Variant::Correct, bounds)
        .checker()
        .threads(threads())
        .spawn_bfs()
        .join();
    checker.assert_properties();
    assert!(checker.is_done());
    let n = checker.unique_state_count();
    eprintln!("{bounds:?}: {n} states, all properties as expected");
    n
}

#[test]
fn crash_restart_two_hosts() {
    let n = assert_correct(Bounds::crash_restart());
    assert!(n > 100_000, "suspiciously small state space: {n}");
}

#[test]
fn storage_failure_two_hosts() {
    let n = assert_correct(Bounds::storage_failure());
    assert!(n > 100_000, "suspiciously small state space: {n}");
}

/// With exact clocks the protocol needs no margin: DEAD may be declared at the very tick the
/// watchdog deadline passes.
#[test]
fn zero_dead_margin_is_still_safe() {
    let bounds = Bounds {
        host_dead: 3,
        ..Bounds::storage_failure()
    };
    assert_eq!(bounds.dead_margin(), 0);
    assert_correct(bounds);
}

/// Late writes need not land before the writer could be judged DEAD: Disk Paxos tolerates a
/// dead incarnation's late writes. (About 1.4 M states in all.)
#[test]
fn io_timeout_as_long_as_host_dead_is_safe() {
    for base in [Bounds::crash_restart(), Bounds::storage_failure()] {
        assert_correct(Bounds {
            io_timeout: base.host_dead,
            ..base
        });
    }
}

#[test]
#[ignore = "about 5.7 M states; run with --release -- --ignored"]
fn all_failures_two_hosts() {
    assert_correct(Bounds::two_hosts_all());
}

#[test]
#[ignore = "about 5.6 M states; run with --release -- --ignored"]
fn crash_three_hosts() {
    assert_correct(Bounds::three_hosts_crash());
}

#[test]
#[ignore = "about 2.9 M states; run with --release -- --ignored"]
fn storage_failure_three_hosts() {
    assert_correct(Bounds::three_hosts_storage_failure());
}
