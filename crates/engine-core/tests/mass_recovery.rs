#![allow(clippy::unwrap_used)]
//! Seed 002's mass recovery test, simulated: 38 hosts, 20 fail at once,
//! 1741 VMs of which 1000 HA (all on the failing hosts), io_timeout 1 s.

use std::time::Duration;

use nosplit_engine_core::model::HaSettings;
use nosplit_engine_core::sim::{simulate_mass_recovery, SimParams, SimReport};

fn check_clean(r: &SimReport) {
    assert_eq!(r.to_restart, 1000);
    assert_eq!(
        r.restarted, r.to_restart,
        "every HA VM of a failed host runs again: {r:?}"
    );
    assert_eq!(r.double_starts, 0, "no VM started twice: {r:?}");
    assert_eq!(r.unexpected_starts, 0, "nothing else started: {r:?}");
    assert_eq!(
        r.starts_on_dead_hosts, 0,
        "no start on a failed host: {r:?}"
    );
    assert_eq!(r.gave_up, 0);
    // Every failed first start was retried: orders = VMs + failures.
    assert_eq!(r.start_commands, r.to_restart + r.failed_starts);
    assert!(r.failed_starts > 0, "the 2% first-start failures happened");
}

fn run(rate: u32) -> SimReport {
    // Self-defense at 60%: 20 of 38 lost (52.6%) must not stop the recovery.
    let p = SimParams {
        settings: HaSettings {
            global_rate: rate,
            defense_pct: 60,
            ..HaSettings::default()
        },
        ..SimParams::default()
    };
    let r = simulate_mass_recovery(&p).unwrap();
    let t = r.recovery_time.unwrap();
    println!(
        "mass recovery, global rate {}: all 1000 HA VMs running {:.1} s after the failure (first start at {:.1} s, mean per VM {:.1} s, {} starts, {} failed, max {} in flight per host, {} events)",
        if rate == 0 { "none".to_string() } else { format!("{rate}/s") },
        t.as_secs_f64(),
        r.first_start.unwrap().as_secs_f64(),
        r.mean_vm_recovery.as_secs_f64(),
        r.start_commands,
        r.failed_starts,
        r.max_in_flight_per_host,
        r.events
    );
    check_clean(&r);
    assert!(!r.self_defense_raised);
    // Nothing can start before the leases are dead (5.5 s).
    assert!(r.first_start.unwrap() >= Duration::from_millis(5500));
    r
}

#[test]
fn mass_recovery_at_20_per_second() {
    let r = run(20);
    // 1000 starts at 20/s after a burst of 20 take at least 49 s.
    assert!(r.recovery_time.unwrap() >= Duration::from_secs(5 + 49));
}

#[test]
fn mass_recovery_at_100_per_second() {
    let r = run(100);
    assert!(r.recovery_time.unwrap() >= Duration::from_secs(5 + 9));
}

#[test]
fn mass_recovery_without_a_limit() {
    let r = run(0);
    assert!(r.recovery_time.unwrap() < Duration::from_secs(20));
}

#[test]
fn with_the_default_50_percent_self_defense_holds_until_hosts_come_back() {
    // Same failure with the default thresholds (defense 50%, resume 70%):
    // 20 of 38 lost raises the alarm and nothing starts. At 30 s, 9 failed
    // hosts come back: 27 of 38 up = 71% >= 70%, recovery resumes. The 9
    // returning hosts' VMs were stopped when their leases died, so they
    // are restarted too.
    let p = SimParams {
        settings: HaSettings {
            global_rate: 100,
            ..HaSettings::default()
        },
        returning_hosts: 9,
        return_at: Duration::from_secs(30),
        ..SimParams::default()
    };
    let r = simulate_mass_recovery(&p).unwrap();
    println!(
        "self-defense at 50%: recovery finished {:?} after the failure, first start at {:?}",
        r.recovery_time, r.first_start
    );
    assert!(r.self_defense_raised);
    assert_eq!(
        r.starts_before_return, 0,
        "nothing restarted while self-defense holds"
    );
    assert!(r.first_start.unwrap() >= Duration::from_secs(30));
    check_clean(&r);

    // 8 hosts back is 26 of 38 = 68% < 70%: recovery stays stopped.
    let p = SimParams {
        returning_hosts: 8,
        limit: Duration::from_secs(120),
        ..p
    };
    let r = simulate_mass_recovery(&p).unwrap();
    assert!(r.self_defense_raised);
    assert_eq!(r.start_commands, 0);
    assert_eq!(r.recovery_time, None);
}
