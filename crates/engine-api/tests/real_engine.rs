#![allow(clippy::unwrap_used)]
//! The real engine's operations through its API (`nosplit_engine::Engine`
//! over TCP, a stand-in agent): a VM creation whose store write fails
//! leaves no lease and no disk behind; a VM's disks are made, kept and
//! answered; a stop the agent does not confirm is reported (502 and an
//! event) while the VM stays stopped on purpose; the agents' events are
//! copied into the engine's, and a VM its host reports stopped by itself
//! is recorded stopped on purpose and never restarted.

mod real;

use std::path::Path;

use nosplit_agent::model::{AgentError, AgentEvent, VmStatus};
use nosplit_engine::domainops;
use nosplit_engine_store::faulty::Write;

const VM: &str =
    r#"{"id":"v1","kind":"process","vcpus":1,"memory_mib":64,"domain":"d1","ha":true}"#;

const TWO_DISKS: &str = r#"{"id":"v2","kind":"qemu","vcpus":1,"memory_mib":64,"domain":"d1",
    "disks":[{"name":"boot","size_mib":3},{"name":"data","size_mib":2}]}"#;

#[test]
fn a_vm_whose_record_cannot_be_written_leaves_no_lease_and_no_disk() {
    let r = real::Real::start();
    r.domain_and_host();
    let dir = Path::new(&r.shared);
    r.faults.fail(Write::CreateVm, true);
    r.admin("POST", "/v1/vms", TWO_DISKS, 500);
    for d in [
        domainops::disk(dir, "v2"),
        domainops::vm_disk(dir, "v2", 1, "data"),
    ] {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    let e = r.admin("POST", "/v1/vms", VM, 500);
    assert_eq!(e["error"], "internal");
    assert!(
        e["message"].as_str().unwrap().contains("injected failure"),
        "{e}"
    );
    assert!(!domainops::disk(dir, "v1").exists(), "no orphan disk");
    r.admin("GET", "/v1/vms/v1", "", 404);
    // No orphan lease: adding it now adds it (then it is taken back).
    let (_, added) = domainops::add_lease(dir, "v1").unwrap();
    assert!(added, "the lease of the failed creation was removed");
    domainops::remove_lease(dir, "v1").unwrap();

    r.faults.fail(Write::CreateVm, false);
    let v = r.admin("POST", "/v1/vms", VM, 201);
    assert!(v["lease_offset"].as_u64().unwrap() > 0);
    assert!(domainops::disk(dir, "v1").exists());
    // A second creation of the same id fails and takes nothing away.
    r.admin("POST", "/v1/vms", VM, 409);
    assert!(domainops::disk(dir, "v1").exists());
    assert!(!domainops::add_lease(dir, "v1").unwrap().1, "lease kept");
}

#[test]
fn a_vms_disks_are_made_in_its_domain_kept_and_answered() {
    let r = real::Real::start();
    r.domain_and_host();
    let dir = Path::new(&r.shared);
    let v = r.admin("POST", "/v1/vms", TWO_DISKS, 201);
    let want =
        serde_json::json!([{"name": "boot", "size_mib": 3}, {"name": "data", "size_mib": 2}]);
    assert_eq!(v["disks"], want);
    let size = |p: std::path::PathBuf| std::fs::metadata(p).unwrap().len();
    assert_eq!(
        size(domainops::disk(dir, "v2")),
        3 << 20,
        "the first is the agent's"
    );
    assert_eq!(size(domainops::vm_disk(dir, "v2", 1, "data")), 2 << 20);
    r.admin("PATCH", "/v1/vms/v2", r#"{"priority":9}"#, 200);
    assert_eq!(r.admin("GET", "/v1/vms/v2", "", 200)["disks"], want);
    let one = r.admin("POST", "/v1/vms", VM, 201);
    assert_eq!(
        one["disks"],
        serde_json::json!([{"name": "root", "size_mib": 1}])
    );
    assert_eq!(size(domainops::disk(dir, "v1")), 1 << 20);
    // Started, the agent is given both, the first as `disk`, in the
    // domain as the host sees it; a one-disk VM gets no further ones.
    for vm in ["v2", "v1"] {
        r.admin(
            "POST",
            &format!("/v1/vms/{vm}/start"),
            r#"{"host":"h1"}"#,
            200,
        );
    }
    let t = std::time::Instant::now();
    while r.fake.starts.lock().unwrap().len() < 2 {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(30),
            "no starts"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let starts = r.fake.starts.lock().unwrap().clone();
    let of = |vm: &str| starts.iter().find(|s| s.id == vm).unwrap().clone();
    let path = |p: std::path::PathBuf| p.display().to_string();
    let v2 = of("v2");
    assert_eq!(v2.disk, path(domainops::disk(dir, "v2")));
    assert_eq!(
        v2.extra_disks,
        [path(domainops::vm_disk(dir, "v2", 1, "data"))]
    );
    assert!(of("v1").extra_disks.is_empty());
    let e = r.admin(
        "POST",
        "/v1/vms",
        r#"{"id":"v3","kind":"qemu","vcpus":1,"memory_mib":64,"domain":"d1","disks":[]}"#,
        400,
    );
    assert!(e["message"].as_str().unwrap().starts_with("disks:"), "{e}");
}

#[test]
fn a_stop_the_agent_does_not_confirm_is_reported_and_the_vm_stays_stopped() {
    let r = real::Real::start();
    r.domain_and_host();
    r.admin("POST", "/v1/vms", VM, 201);
    r.admin("POST", "/v1/vms/v1/start", r#"{"host":"h1"}"#, 200);
    *r.fake.fail_stop.lock().unwrap() = Some(AgentError::Internal("qemu hung".into()));

    let e = r.admin("POST", "/v1/vms/v1/stop", "", 502);
    assert_eq!(e["error"], "bad-gateway");
    let m = e["message"].as_str().unwrap();
    assert!(
        m.contains("did not confirm") && m.contains("qemu hung"),
        "{m}"
    );
    assert!(r.agent_calls().iter().any(|c| c == "stop v1"));
    let v = r.admin("GET", "/v1/vms/v1", "", 200);
    assert_eq!(v["desired"], "stopped", "stopped on purpose all the same");
    let evs = r.admin(
        "GET",
        "/v1/events?vm=v1&kind=vm-stop-unconfirmed&wait_ms=5000",
        "",
        200,
    );
    let evs = evs.as_array().unwrap();
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0]["severity"], "warning");
    assert_eq!(evs[0]["host"], "h1");

    // Confirmed (and a VM the agent does not know counts as stopped).
    *r.fake.fail_stop.lock().unwrap() = None;
    r.admin("POST", "/v1/vms/v1/stop", "", 200);
    *r.fake.fail_stop.lock().unwrap() = Some(AgentError::NotFound("v1".into()));
    r.admin("POST", "/v1/vms/v1/stop", "", 200);
}

/// Waits until the engine has asked the stand-in agent for its VMs `n`
/// more times (it polls every 2 s).
fn polls(r: &real::Real, n: u32) {
    let start = *r.fake.polls.lock().unwrap();
    let t = std::time::Instant::now();
    while *r.fake.polls.lock().unwrap() < start + n {
        assert!(t.elapsed() < std::time::Duration::from_secs(30), "no polls");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn agent_events_are_copied_and_a_vm_stopped_on_its_host_is_never_restarted() {
    let r = real::Real::start();
    r.domain_and_host();
    r.admin("POST", "/v1/vms", VM, 201);
    r.admin("POST", "/v1/vms/v1/start", r#"{"host":"h1"}"#, 200);
    // Its heartbeats carry the agent's boot id, the events' cursor.
    let _beats = r.beat();
    r.fake
        .listed
        .lock()
        .unwrap()
        .push(("v1".into(), VmStatus::Running));
    // The first poll sets the agent's event cursor; what comes later is copied.
    polls(&r, 2);
    r.fake.events.lock().unwrap().push(AgentEvent {
        seq: 1,
        at_ms: 10,
        kind: "vm-paused".into(),
        vm: Some("v1".into()),
        detail: "by the operator".into(),
    });
    let evs = r.admin(
        "GET",
        "/v1/events?kind=agent-vm-paused&wait_ms=10000",
        "",
        200,
    );
    let evs = evs.as_array().unwrap();
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(
        (
            evs[0]["host"].as_str(),
            evs[0]["vm"].as_str(),
            evs[0]["detail"].as_str()
        ),
        (Some("h1"), Some("v1"), Some("by the operator"))
    );
    polls(&r, 2);
    let again = r.admin("GET", "/v1/events?kind=agent-vm-paused", "", 200);
    assert_eq!(again.as_array().unwrap().len(), 1, "copied once");

    // The guest shuts itself down: stopped on purpose, in the store too.
    r.fake.listed.lock().unwrap()[0].1 = VmStatus::Stopped;
    polls(&r, 2);
    let v = r.admin("GET", "/v1/vms/v1", "", 200);
    assert_eq!(v["desired"], "stopped", "{v}");
    polls(&r, 2);
    let starts = r.agent_calls().iter().filter(|c| *c == "start v1").count();
    assert_eq!(starts, 1, "never restarted: {:?}", r.agent_calls());
}
