#![allow(clippy::unwrap_used)]
//! Detection rules: strategy rows, the lease gate, the grace, maintenance,
//! self-defense thresholds and hysteresis, hosts coming back.

mod common;

use std::time::Duration;

use common::{events, ms, starts, vm, Cluster};
use nosplit_engine_core::command::kind;
use nosplit_engine_core::detect::PLANES;
use nosplit_engine_core::engine::validate_settings;
use nosplit_engine_core::model::{HaSettings, HostState, Plane};
use nosplit_engine_core::{Input, LeaseState, StartOutcome};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn every_strategy_row_decides_whether_to_recover() {
    for bits in 0..8u8 {
        let up = [bits & 4 != 0, bits & 2 != 0, bits & 1 != 0];
        let planes: Vec<Plane> = PLANES
            .iter()
            .zip(up)
            .filter(|(_, u)| *u)
            .map(|(p, _)| *p)
            .collect();
        let mut c = Cluster::new(4, HaSettings::default());
        c.add_vm(vm("v", "h0", true, 0));
        c.set_planes("h0", &planes);
        c.lease("h0", LeaseState::Dead);
        let out = c.run_for(secs(6));
        let recover = c.core.strategy().recover(up[0], up[1], up[2]);
        assert_eq!(recover, !up[2] || (!up[0] && !up[1]), "seed 002 row {bits}");
        let row = format!("strategy row {bits} ");
        if recover {
            assert_eq!(
                c.core.host_state("h0"),
                Some(HostState::Recovering),
                "row {bits}"
            );
            assert_eq!(starts(&out).len(), 1, "row {bits}");
            let ev = events(&out, kind::HOST_RECOVERING);
            assert!(
                ev[0].2.contains(&row) && ev[0].2.contains("lease Dead"),
                "{ev:?}"
            );
        } else {
            assert_eq!(
                c.core.host_state("h0"),
                Some(HostState::NonResponsive),
                "row {bits}"
            );
            assert!(starts(&out).is_empty(), "row {bits}");
            let ev = events(&out, kind::RECOVERY_HELD);
            assert!(
                ev[0].2.contains(&row) && ev[0].2.contains("not recovered"),
                "{ev:?}"
            );
        }
    }
}

#[test]
fn a_host_whose_lease_is_renewed_is_never_recovered() {
    let mut c = Cluster::new(4, HaSettings::default());
    c.add_vm(vm("v", "h0", true, 0));
    c.set_planes("h0", &[]);
    let out = c.run_for(secs(60));
    // Heartbeats alone never make it Recovering or Down.
    assert_eq!(c.core.host_state("h0"), Some(HostState::NonResponsive));
    assert!(starts(&out).is_empty());
    let held = events(&out, kind::RECOVERY_HELD);
    assert_eq!(held.len(), 1, "reported once: {held:?}");
    assert!(
        held[0].2.contains("recovery held: lease still renewed"),
        "{held:?}"
    );
    assert!(held[0].2.contains("planes down: mgmt,svc,stor"), "{held:?}");

    c.lease("h0", LeaseState::Fail);
    let out = c.run_for(secs(1));
    assert!(starts(&out).is_empty());
    assert!(events(&out, kind::RECOVERY_HELD)[0]
        .2
        .contains("failing, not dead yet"));

    c.lease("h0", LeaseState::Dead);
    let out = c.tick();
    assert_eq!(c.core.host_state("h0"), Some(HostState::Recovering));
    let s = starts(&out);
    assert_eq!(s.len(), 1);
    c.result(s[0].2, StartOutcome::Ok);
    c.tick();
    assert_eq!(c.core.host_state("h0"), Some(HostState::Down));
}

#[test]
fn the_grace_runs_before_any_decision_and_a_quick_return_is_forgiven() {
    let mut c = Cluster::new(
        4,
        HaSettings {
            grace_ms: 2000,
            ..HaSettings::default()
        },
    );
    c.add_vm(vm("v", "h0", true, 0));
    c.run_for(ms(1000) - ms(0));
    c.set_planes("h0", &[]);
    c.lease("h0", LeaseState::Dead);
    // Lease Dead makes it Suspect at once; the grace is 2 s from then.
    let out = c.run_for(Duration::from_millis(100));
    assert_eq!(c.core.host_state("h0"), Some(HostState::Suspect));
    assert_eq!(events(&out, kind::HOST_SUSPECT).len(), 1);
    c.run_for(Duration::from_millis(1800));
    assert_eq!(c.core.host_state("h0"), Some(HostState::Suspect));
    let out = c.run_for(Duration::from_millis(200));
    assert_eq!(c.core.host_state("h0"), Some(HostState::Recovering));
    assert_eq!(starts(&out).len(), 1);

    // A host that comes back within the grace is Up again, nothing done.
    let mut c = Cluster::new(4, HaSettings::default());
    c.add_vm(vm("v", "h1", true, 0));
    c.set_planes("h1", &[Plane::Mgmt]);
    c.run_for(secs(2));
    assert_eq!(c.core.host_state("h1"), Some(HostState::Suspect));
    c.set_planes("h1", &PLANES);
    let out = c.run_for(secs(10));
    assert_eq!(c.core.host_state("h1"), Some(HostState::Up));
    assert_eq!(events(&out, kind::HOST_UP).len(), 1);
    assert!(starts(&c.log).is_empty());
}

#[test]
fn maintenance_skips_recovery_with_an_event() {
    // Host maintenance.
    let mut c = Cluster::new(4, HaSettings::default());
    c.add_vm(vm("v", "h0", true, 0));
    c.input(Input::HostMaintenance {
        host: "h0".into(),
        on: true,
    });
    c.set_planes("h0", &[]);
    c.lease("h0", LeaseState::Dead);
    let out = c.run_for(secs(10));
    assert!(starts(&out).is_empty());
    assert!(events(&out, kind::RECOVERY_SKIPPED)[0]
        .2
        .contains("host in HA maintenance"));
    c.input(Input::HostMaintenance {
        host: "h0".into(),
        on: false,
    });
    let out = c.run_for(secs(1));
    assert_eq!(starts(&out).len(), 1, "recovered once maintenance is off");

    // Cluster maintenance.
    let mut c = Cluster::new(
        4,
        HaSettings {
            maintenance: true,
            ..HaSettings::default()
        },
    );
    c.add_vm(vm("v", "h0", true, 0));
    c.set_planes("h0", &[]);
    c.lease("h0", LeaseState::Dead);
    let out = c.run_for(secs(10));
    assert!(starts(&out).is_empty());
    assert!(events(&out, kind::RECOVERY_SKIPPED)[0]
        .2
        .contains("cluster in HA maintenance"));
    c.input(Input::Settings(HaSettings::default()));
    assert_eq!(starts(&c.run_for(secs(1))).len(), 1);
}

#[test]
fn self_defense_stops_recovery_and_resumes_with_hysteresis() {
    // 10 hosts, each with one HA VM. Defense at 50% lost, resume at 70% up.
    let mut c = Cluster::new(10, HaSettings::default());
    for i in 0..10 {
        c.add_vm(vm(&format!("v{i}"), &format!("h{i}"), true, 0));
    }
    // 4 lost (40%): no alarm, they are recovered.
    for i in 0..4 {
        c.set_planes(&format!("h{i}"), &[]);
        c.lease(&format!("h{i}"), LeaseState::Dead);
    }
    let out = c.run_for(secs(5));
    assert!(events(&out, kind::SELF_DEFENSE).is_empty());
    for (_, _, t) in starts(&out) {
        c.result(t, StartOutcome::Ok);
    }
    // One more (5 of 10 = 50%): alarm, nothing started.
    c.set_planes("h4", &[]);
    c.lease("h4", LeaseState::Dead);
    let out = c.run_for(secs(5));
    let alarm = events(&out, kind::SELF_DEFENSE);
    assert_eq!(alarm.len(), 1);
    assert!(alarm[0].2.contains("5 of 10 hosts lost"), "{alarm:?}");
    assert!(c.core.self_defense());
    assert!(starts(&out).is_empty());
    assert!(events(&out, kind::RECOVERY_HELD)[0]
        .2
        .contains("self-defense"));
    // Two hosts back: 7 of 10 up = 70% -> resume, h4 is recovered.
    for h in ["h0", "h1"] {
        c.set_planes(h, &PLANES);
        c.lease(h, LeaseState::Live);
    }
    c.set_planes("h1", &[]);
    let out = c.run_for(secs(1));
    assert!(c.core.self_defense(), "6 of 10 up (60%) is not enough");
    assert!(events(&out, kind::SELF_RECOVERY).is_empty());
    c.set_planes("h1", &PLANES);
    let out = c.run_for(secs(1));
    assert_eq!(events(&out, kind::SELF_RECOVERY).len(), 1);
    assert!(!c.core.self_defense());
    let s = starts(&out);
    // v0 had been restarted on h4 (equal free capacity: smallest name).
    assert_eq!(
        s.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        vec!["v0", "v4"]
    );
}

#[test]
fn a_host_comes_back_up_only_with_every_plane_and_a_live_lease() {
    let mut c = Cluster::new(4, HaSettings::default());
    c.set_planes("h0", &[]);
    c.lease("h0", LeaseState::Dead);
    c.run_for(secs(5));
    assert_eq!(
        c.core.host_state("h0"),
        Some(HostState::Down),
        "nothing to recover"
    );
    c.set_planes("h0", &PLANES);
    c.run_for(secs(2));
    assert_eq!(
        c.core.host_state("h0"),
        Some(HostState::Down),
        "lease still dead"
    );
    c.lease("h0", LeaseState::Live);
    c.run_for(secs(1));
    assert_eq!(c.core.host_state("h0"), Some(HostState::Up));
}

#[test]
fn vms_of_a_host_that_returns_after_its_lease_died_are_restarted() {
    // Self-defense holds the recovery; the host returns; its VMs were
    // stopped by their lease, so they are restarted.
    let mut c = Cluster::new(2, HaSettings::default());
    c.add_vm(vm("v", "h0", true, 0));
    c.set_planes("h0", &[]);
    c.lease("h0", LeaseState::Dead);
    let out = c.run_for(secs(5));
    assert!(c.core.self_defense() && starts(&out).is_empty());
    c.set_planes("h0", &PLANES);
    c.lease("h0", LeaseState::Live);
    let out = c.run_for(secs(1));
    assert_eq!(starts(&out).len(), 1);
    assert!(events(&out, kind::VM_LOST)[0].0.as_deref() == Some("h0"));
}

#[test]
fn settings_are_validated() {
    assert!(validate_settings(&HaSettings::default()).is_ok());
    let bad = HaSettings {
        defense_pct: 30,
        recover_pct: 60,
        max_attempts: 0,
        ..HaSettings::default()
    };
    let e = validate_settings(&bad).unwrap_err();
    assert!(
        e.contains("max_attempts") && e.contains("recover_pct 60"),
        "{e}"
    );
    let mut c = Cluster::new(1, HaSettings::default());
    assert!(c.core.on_event(Input::Settings(bad), c.now).is_err());
    let mut s = c.core.strategy().clone();
    s.rows.pop();
    assert!(c.core.on_event(Input::Strategy(s), c.now).is_err());
    assert!(c
        .core
        .on_event(
            Input::Heartbeat {
                host: "nope".into(),
                plane: Plane::Mgmt
            },
            c.now
        )
        .is_err());
}
