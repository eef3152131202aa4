#![allow(clippy::unwrap_used)]
//! Scheduler rules: rate limit, per-host limit, priorities, placement,
//! retries with backoff and giving up, busy retries, VMs stopped on
//! purpose, non-HA VMs, a target dying under a start.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{events, host, ms, starts, vm, Cluster};
use nosplit_engine_core::command::kind;
use nosplit_engine_core::model::{Desired, HaSettings};
use nosplit_engine_core::recovery::VmPhase;
use nosplit_engine_core::{Command, Input, LeaseState, StartOutcome};

/// Kills h0 (no heartbeats, lease Dead) and runs until its recovery is
/// decided; returns the starts of that tick.
fn lose_h0(c: &mut Cluster) -> Vec<(String, String, u64)> {
    c.set_planes("h0", &[]);
    c.lease("h0", LeaseState::Dead);
    for _ in 0..100 {
        let out = c.run_for(Duration::from_millis(100));
        if !events(&out, kind::HOST_RECOVERING).is_empty() {
            return starts(&out);
        }
    }
    panic!("h0 never recovered");
}

fn settings(rate: u32, per_host: u32) -> HaSettings {
    HaSettings {
        global_rate: rate,
        per_host_limit: per_host,
        ..HaSettings::default()
    }
}

fn at(c: &mut Cluster, t: u64) -> Vec<(String, String, u64)> {
    c.now = ms(t);
    c.beat();
    starts(&c.tick())
}

#[test]
fn the_global_rate_limit_is_a_token_bucket_changeable_at_run_time() {
    let mut c = Cluster::new(5, settings(5, 0));
    for i in 0..30 {
        c.add_vm(vm(&format!("v{i:02}"), "h0", true, 0));
    }
    let first = lose_h0(&mut c);
    assert_eq!(first.len(), 5, "a full bucket: one second's worth");
    let out = c.run_for(Duration::from_secs(1));
    assert_eq!(starts(&out).len(), 5, "then 5 per second");
    assert_eq!(c.core.queue_len(), 20);
    c.input(Input::Settings(settings(0, 0)));
    assert_eq!(starts(&c.tick()).len(), 20, "no limit: the rest at once");
    assert_eq!(c.core.queue_len(), 0);
    assert_eq!(c.core.in_flight(), 30);
}

#[test]
fn the_per_host_limit_caps_starts_in_flight_per_target() {
    let mut c = Cluster::new(3, settings(0, 2));
    for i in 0..10 {
        c.add_vm(vm(&format!("v{i}"), "h0", true, 0));
    }
    let first = lose_h0(&mut c);
    let mut per: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (_, h, t) in &first {
        per.entry(h.clone()).or_default().push(*t);
    }
    assert_eq!(per.len(), 2);
    assert!(per.values().all(|v| v.len() == 2), "{per:?}");
    assert!(starts(&c.run_for(Duration::from_secs(2))).is_empty());
    // One finishes on h1: one more goes there.
    let t = per["h1"][0];
    c.result(t, StartOutcome::Ok);
    let s = starts(&c.tick());
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].1, "h1");
    // Raised at run time.
    c.input(Input::Settings(settings(0, 3)));
    assert_eq!(starts(&c.tick()).len(), 2);
}

#[test]
fn higher_priority_first_then_id() {
    let mut c = Cluster::new(3, settings(1, 0));
    for (id, p) in [("a", 10), ("b", 90), ("c2", 50), ("c1", 50)] {
        c.add_vm(vm(id, "h0", true, p));
    }
    let mut order: Vec<String> = lose_h0(&mut c).into_iter().map(|s| s.0).collect();
    order.extend(
        starts(&c.run_for(Duration::from_secs(4)))
            .into_iter()
            .map(|s| s.0),
    );
    assert_eq!(order, vec!["b", "c1", "c2", "a"]);
    // Task records carry the attempt and are readable.
    assert_eq!(c.core.tasks().count(), 4);
    assert!(c
        .core
        .tasks()
        .all(|t| t.attempt == 1 && t.state == "running"));
}

#[test]
fn placement_takes_most_free_memory_then_cpus_then_name() {
    let mut c = Cluster::new(5, settings(0, 0));
    c.input(Input::UpsertHost(host("h1", 64, 128)));
    c.input(Input::UpsertHost(host("h2", 64, 256)));
    c.input(Input::UpsertHost(host("h3", 32, 256)));
    c.input(Input::UpsertHost(host("h4", 64, 256)));
    c.input(Input::UpsertHost(host("h0", 64, 1024)));
    for (id, p) in [("v1", 90), ("v2", 80), ("v3", 70), ("v4", 60), ("huge", 50)] {
        let mut v = vm(id, "h0", true, p);
        v.memory_mib = if id == "huge" { 300 * 1024 } else { 100 * 1024 };
        c.add_vm(v);
    }
    let s = lose_h0(&mut c);
    let placed: Vec<(&str, &str)> = s.iter().map(|(v, h, _)| (v.as_str(), h.as_str())).collect();
    // v1: h2 and h4 tie on memory and cpus, h3 has fewer cpus -> h2 (name).
    // v2: h4 (256 free). v3: h3 (256 free). v4: h2/h3/h4 have 156 GiB, h2 and h4 more cpus -> h2.
    assert_eq!(
        placed,
        vec![("v1", "h2"), ("v2", "h4"), ("v3", "h3"), ("v4", "h2")]
    );
    let no_room = events(&c.log, kind::VM_NO_CAPACITY);
    assert_eq!(no_room.len(), 1);
    assert_eq!(no_room[0].1.as_deref(), Some("huge"));
    assert!(matches!(
        c.core.vm("huge").unwrap().phase,
        VmPhase::Queued { .. }
    ));
}

#[test]
fn failures_back_off_exponentially_then_give_up_with_an_alarm() {
    let mut c = Cluster::new(3, settings(0, 0));
    c.add_vm(vm("v", "h0", true, 0));
    let mut s = lose_h0(&mut c);
    let mut hosts = Vec::new();
    let mut gaps = Vec::new();
    for attempt in 1..=5u32 {
        assert_eq!(s.len(), 1, "attempt {attempt}");
        let (_, h, task) = s[0].clone();
        hosts.push(h);
        assert_eq!(c.core.task(task).unwrap().attempt, attempt);
        let failed_at = c.now.as_millis();
        c.result(task, StartOutcome::Failed("boom".into()));
        assert_eq!(c.core.task(task).unwrap().state, "failed");
        if attempt == 5 {
            break;
        }
        let mut t = failed_at;
        s = Vec::new();
        while s.is_empty() {
            t += 50;
            s = at(&mut c, t);
            assert!(t < failed_at + 10_000);
        }
        gaps.push(t - failed_at);
    }
    assert_eq!(gaps, vec![500, 1000, 2000, 4000]);
    // Each retry avoids the host the last attempt failed on.
    assert!(hosts.windows(2).all(|w| w[0] != w[1]), "{hosts:?}");
    let gave_up = events(&c.log, kind::VM_GAVE_UP);
    assert_eq!(gave_up.len(), 1);
    assert!(gave_up[0].2.contains("5 failed attempts; last: boom"));
    assert!(c.log.iter().any(
        |c| matches!(c, Command::Event(e) if e.kind == kind::VM_GAVE_UP && e.severity == "alarm")
    ));
    assert!(starts(&c.run_for(Duration::from_secs(60))).is_empty());
    assert!(matches!(
        c.core.vm("v").unwrap().phase,
        VmPhase::GaveUp { .. }
    ));
}

#[test]
fn busy_retries_are_spaced_and_not_counted() {
    let mut c = Cluster::new(
        2,
        HaSettings {
            defense_pct: 60,
            ..settings(0, 0)
        },
    );
    c.add_vm(vm("v", "h0", true, 0));
    let mut s = lose_h0(&mut c);
    let mut t = c.now.as_millis();
    for _ in 0..10 {
        c.result(s[0].2, StartOutcome::Busy);
        assert!(at(&mut c, t + 249).is_empty());
        s = at(&mut c, t + 250);
        assert_eq!(s.len(), 1, "busy retry after 250 ms");
        t += 250;
    }
    assert_eq!(
        events(&c.log, kind::VM_START_BUSY).len(),
        1,
        "reported once per streak"
    );
    // Four real failures after ten busy answers: still not given up.
    for i in 0..4 {
        c.result(s[0].2, StartOutcome::Failed("x".into()));
        s = starts(&c.run_for(Duration::from_secs(10)));
        assert_eq!(s.len(), 1, "failure {i}");
    }
    assert_eq!(c.core.task(s[0].2).unwrap().attempt, 5);
    c.result(s[0].2, StartOutcome::Ok);
    assert!(matches!(
        &c.core.vm("v").unwrap().phase,
        VmPhase::Running { .. }
    ));
    assert!(events(&c.log, kind::VM_GAVE_UP).is_empty());
}

#[test]
fn a_vm_stopped_on_purpose_is_never_restarted() {
    let mut c = Cluster::new(3, settings(1, 0));
    c.add_vm(vm("a", "h0", true, 90));
    c.add_vm(vm("b", "h0", true, 50));
    let mut stopped = vm("c", "h0", true, 10);
    stopped.desired = Desired::Stopped;
    c.add_vm(stopped);
    let s = lose_h0(&mut c);
    assert_eq!(s[0].0, "a");
    // b is queued: stopping it drops the restart.
    let out = c.input(Input::SetDesired {
        vm: "b".into(),
        desired: Desired::Stopped,
    });
    assert_eq!(events(&out, kind::VM_NOT_RESTARTED).len(), 1);
    // a is starting: stopping it means a failure is not retried.
    c.input(Input::SetDesired {
        vm: "a".into(),
        desired: Desired::Stopped,
    });
    c.result(s[0].2, StartOutcome::Failed("x".into()));
    let out = c.run_for(Duration::from_secs(30));
    assert!(starts(&out).is_empty(), "{:?}", starts(&out));
    for id in ["a", "b", "c"] {
        assert_eq!(c.core.vm(id).unwrap().phase, VmPhase::Stopped, "{id}");
    }
    assert_eq!(c.core.queue_len(), 0);
}

#[test]
fn non_ha_vms_are_reported_lost_not_restarted() {
    let mut c = Cluster::new(3, settings(0, 0));
    c.add_vm(vm("plain", "h0", false, 0));
    c.add_vm(vm("ha", "h0", true, 0));
    let s = lose_h0(&mut c);
    assert_eq!(
        s.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        vec!["ha"]
    );
    let lost = events(&c.log, kind::VM_LOST);
    assert!(lost
        .iter()
        .any(|e| e.1.as_deref() == Some("plain") && e.2.contains("not HA")));
}

#[test]
fn a_start_whose_target_dies_is_moved_without_counting_an_attempt() {
    let mut c = Cluster::new(4, settings(0, 0));
    c.add_vm(vm("v", "h0", true, 0));
    let s = lose_h0(&mut c);
    let (_, target, task) = s[0].clone();
    c.set_planes(&target, &[]);
    let out = c.lease(&target, LeaseState::Dead);
    assert!(matches!(&out[..], [Command::TaskUpdate(t), ..] if t.state == "failed"));
    let s2 = starts(&c.tick());
    assert_eq!(s2.len(), 1);
    assert_ne!(s2[0].1, target);
    assert_eq!(c.core.task(s2[0].2).unwrap().attempt, 1);
    // A late success from the dead target cannot be true: ignored.
    c.result(task, StartOutcome::Ok);
    assert!(
        matches!(&c.core.vm("v").unwrap().phase, VmPhase::Starting { task: t, .. } if *t == s2[0].2)
    );
    c.result(s2[0].2, StartOutcome::Ok);
    assert!(
        matches!(&c.core.vm("v").unwrap().phase, VmPhase::Running { host } if *host == s2[0].1)
    );
    assert!(c
        .core
        .on_event(
            Input::StartResult {
                task: 999,
                outcome: StartOutcome::Ok
            },
            c.now
        )
        .is_err());
}

#[test]
fn a_vm_that_exits_on_a_live_host_is_restarted_if_ha_and_wanted() {
    let mut c = Cluster::new(3, HaSettings::default());
    for (id, ha) in [("a", true), ("b", false), ("c", true)] {
        let mut v = vm(id, "h0", ha, 10);
        v.desired = Desired::Running;
        c.add_vm(v);
        c.input(Input::VmRunning {
            vm: id.into(),
            host: "h0".into(),
        });
    }
    c.input(Input::SetDesired {
        vm: "c".into(),
        desired: Desired::Stopped,
    });
    c.run_for(Duration::from_secs(1));
    // A stale report from another host changes nothing.
    c.input(Input::VmExited {
        vm: "a".into(),
        host: "h2".into(),
    });
    assert!(starts(&c.run_for(Duration::from_secs(1))).is_empty());
    for id in ["a", "b", "c"] {
        c.input(Input::VmExited {
            vm: id.into(),
            host: "h0".into(),
        });
    }
    let s = starts(&c.run_for(Duration::from_secs(1)));
    let ids: Vec<&str> = s.iter().map(|(v, _, _)| v.as_str()).collect();
    assert_eq!(ids, ["a"], "only the HA VM that should run: {s:?}");
    assert!(matches!(
        c.core.vm("b").unwrap().phase,
        VmPhase::Down { .. }
    ));
    assert_eq!(c.core.vm("c").unwrap().phase, VmPhase::Stopped);
}
