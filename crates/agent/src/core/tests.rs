//! The core's rules against a scripted `leased` (a socket answering as the
//! test says) and real processes as VMs: adoption with `leased` away,
//! reconciliation both ways, frozen VMs after missed events, the
//! operator's pause across a restart, QMP trouble of a live VM, and lease
//! events naming their VMs.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nosplit_lease::paxos::LeaseMode;
use nosplit_leased::api::{HeldLease, HolderStatus, LeaseRef, Request, Response, Status};
use nosplit_vmrt::driver::{
    DriverError, ProcIdentity, ProcessDriver, RunningVm, StopReport, VmDriver, VmEvent,
    VmKind as DriverKind, VmSpec, VmState,
};
use nosplit_vmrt::qmp::QmpEvent;

use super::persist::{self, VmRecord};
use super::{lock, reconcile, Agent, CoreConfig, VmEntry};
use crate::model::{AgentError, AgentOps, LeaseSpec, VmKind, VmStatus};

type Answer = Box<dyn Fn(&Request) -> Response + Send>;

/// A `leased` socket answering each request with `answer`'s reply.
fn fake_leased(path: &Path) -> Arc<Mutex<Answer>> {
    let l = UnixListener::bind(path).unwrap();
    let unset: Answer = Box::new(|_| Response::error("internal", "no answer set"));
    let answer = Arc::new(Mutex::new(unset));
    let a = answer.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut w) = s else { return };
            let mut r = BufReader::new(w.try_clone().unwrap());
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                let req: Request = serde_json::from_str(&line).unwrap();
                let resp = (*lock(&a))(&req);
                let mut out = serde_json::to_vec(&resp).unwrap();
                out.push(b'\n');
                if w.write_all(&out).is_err() {
                    break;
                }
                line.clear();
            }
        }
    });
    answer
}

fn set(answer: &Arc<Mutex<Answer>>, f: impl Fn(&Request) -> Response + Send + 'static) {
    *lock(answer) = Box::new(f);
}

fn status(holders: Vec<HolderStatus>) -> Response {
    Response::Status(Box::new(Status {
        host_name: "h1".into(),
        watchdog: "none".into(),
        lockspaces: Vec::new(),
        holders,
    }))
}

fn holder(i: ProcIdentity, state: &str, resources: &[&str]) -> HolderStatus {
    HolderStatus {
        pid: i.pid,
        start_time: i.start_time,
        state: state.into(),
        leases: resources
            .iter()
            .map(|r| HeldLease {
                lease: LeaseRef {
                    lockspace: "ls1".into(),
                    resource: (*r).into(),
                    path: "/l".into(),
                    offset: 0,
                },
                mode: LeaseMode::Exclusive,
                lver: 7,
            })
            .collect(),
    }
}

struct Env {
    dir: tempfile::TempDir,
    agent: Agent,
    pids: Vec<u32>,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let agent = Agent::new(CoreConfig {
            host_name: "h1".into(),
            host_id: 1,
            leased_socket: dir.path().join("leased.sock"),
            run_dir: dir.path().join("run"),
            bin: PathBuf::from("/bin/false"),
            guest_cache: dir.path().join("cache"),
            allow_unleased: false,
            planes: Vec::new(),
        })
        .unwrap();
        Env {
            dir,
            agent,
            pids: Vec::new(),
        }
    }

    fn leased(&self) -> Arc<Mutex<Answer>> {
        fake_leased(&self.agent.cfg.leased_socket)
    }

    /// A process VM left running by a previous agent, and its record.
    fn vm(&mut self, id: &str, paused: bool) -> (VmRecord, ProcIdentity) {
        let inst = format!("{id}.1");
        let run_dir = self.agent.cfg.run_dir.join("vms").join(id).join(&inst);
        let disk = self.dir.path().join(format!("{id}.img"));
        std::fs::write(&disk, [0u8; 512]).unwrap();
        let spec = VmSpec {
            id: id.into(),
            inst: inst.clone(),
            disk: disk.clone(),
            extra_disks: vec![],
            memory_mib: 0,
            vcpus: 0,
            run_dir: run_dir.clone(),
            kind: DriverKind::Process {
                program: "/bin/sh".into(),
                args: vec!["-c".into(), "sleep 300 & sleep 300; wait".into()],
                env: Vec::new(),
            },
            spawn_hook: None,
        };
        let vm = ProcessDriver::new()
            .prepare(&spec)
            .unwrap()
            .start()
            .unwrap();
        let ident = vm.identity();
        self.pids.push(ident.pid);
        settled(ident.pid);
        if paused {
            vm_pause(ident.pid);
        }
        let rec = VmRecord {
            id: id.into(),
            inst,
            kind: VmKind::Process,
            disk: disk.display().to_string(),
            extra_disks: vec![],
            memory_mib: 128,
            vcpus: 1,
            run_dir,
            lease: Some(LeaseSpec {
                lockspace: "ls1".into(),
                path: "/l".into(),
                offset: 0,
            }),
            lver: Some(7),
            paused: false,
        };
        (rec, ident)
    }

    /// What `agent.json` holds.
    fn recorded(&self) -> Vec<VmRecord> {
        persist::load(&self.agent.cfg.run_dir.join("agent.json")).unwrap()
    }

    /// Restarts into `recs` (the previous agent's `agent.json`).
    fn adopt(&self, recs: &[VmRecord]) {
        persist::save(&self.agent.cfg.run_dir.join("agent.json"), recs).unwrap();
        self.agent.adopt_all().unwrap();
    }

    fn kinds(&self, vm: &str) -> Vec<String> {
        self.agent
            .events_since(0, Duration::ZERO)
            .into_iter()
            .filter(|e| e.vm.as_deref() == Some(vm))
            .map(|e| e.kind)
            .collect()
    }

    fn entry(&self, id: &str) -> Arc<Mutex<VmEntry>> {
        self.agent.entry(id).unwrap()
    }

    /// Pretends the VM has been frozen long enough to be asked about.
    fn frozen_long_ago(&self, id: &str) {
        let e = self.entry(id);
        let mut e = lock(&e);
        assert_eq!(e.status(), VmStatus::Frozen);
        e.frozen_since = Instant::now().checked_sub(Duration::from_secs(3));
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for p in &self.pids {
            let _ = crate::freeze::signal_vm(*p, rustix::process::Signal::KILL);
        }
    }
}

fn vm_pause(pid: u32) {
    crate::freeze::freeze_process(pid, Duration::from_secs(5)).unwrap();
}

/// Waits until the VM's shell has started both children and waits for
/// them (a stop during the shell's vfork would leave it in state D, not
/// T, until continued: see `freeze::quiet`).
fn settled(pid: u32) {
    let pgrp = i32::try_from(pid).unwrap();
    eventually("the VM's shell waits for its two children", || {
        let members = nosplit_vmrt::driver::group_members(pgrp);
        let comm = |m: u32| std::fs::read_to_string(format!("/proc/{m}/comm")).unwrap_or_default();
        members.len() == 3
            && members
                .iter()
                .all(|m| nosplit_vmrt::driver::read_stat(*m).is_some_and(|s| s.state == 'S'))
            && members
                .iter()
                .filter(|m| comm(**m).trim() == "sleep")
                .count()
                == 2
    });
}

fn stopped(pid: u32) -> bool {
    nosplit_vmrt::driver::read_stat(pid).is_some_and(|s| s.state == 'T')
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(20), "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn leased_away_at_adoption_keeps_the_vm_until_it_answers_not_held() {
    let mut env = Env::new();
    let (rec, ident) = env.vm("a", false);
    // No leased at all: nothing answers.
    env.adopt(std::slice::from_ref(&rec));
    let vm = env.agent.get_vm("a").unwrap();
    assert_eq!(vm.status, VmStatus::Running, "{vm:?}");
    assert_eq!(vm.pid, ident.pid);
    assert!(ident.is_alive(), "not killed");
    assert_eq!(env.recorded(), vec![rec.clone()], "still recorded");
    assert!(env.kinds("a").contains(&"vm-lease-unconfirmed".to_string()));
    // Not resumable, not started twice, while unconfirmed.
    let e = env.agent.resume_vm("a").unwrap_err();
    assert!(matches!(e, AgentError::Unavailable(_)), "{e}");

    // leased answers: it holds the lease.
    let leased = env.leased();
    set(&leased, move |r| match r {
        Request::Status => status(vec![holder(ident, "running", &["a"])]),
        _ => Response::error("internal", "unexpected"),
    });
    reconcile::once(&env.agent);
    assert!(env.kinds("a").contains(&"vm-lease-confirmed".to_string()));
    assert_eq!(env.agent.get_vm("a").unwrap().status, VmStatus::Running);
    assert!(ident.is_alive());

    // A definite "not held": killed, and no longer recorded.
    set(&leased, |r| match r {
        Request::Status => status(Vec::new()),
        _ => Response::error("internal", "unexpected"),
    });
    reconcile::once(&env.agent);
    assert_eq!(env.agent.get_vm("a").unwrap().status, VmStatus::Crashed);
    assert!(env.kinds("a").contains(&"vm-killed".to_string()));
    eventually("killed", || !ident.is_alive());
    assert!(env.recorded().is_empty());
}

#[test]
fn a_holder_of_another_process_with_the_same_pid_is_not_the_vms() {
    let mut env = Env::new();
    let (rec, ident) = env.vm("a", false);
    let leased = env.leased();
    let other = ProcIdentity {
        start_time: ident.start_time + 1,
        ..ident
    };
    set(&leased, move |_| {
        status(vec![holder(other, "running", &["a"])])
    });
    env.adopt(&[rec]);
    assert_eq!(env.agent.get_vm("a").unwrap().status, VmStatus::Crashed);
    eventually("killed", || !ident.is_alive());
}

#[test]
fn leases_of_unknown_processes_are_reported_once_and_starting_vms_are_not_orphans() {
    let mut env = Env::new();
    let (rec, ident) = env.vm("a", false);
    let stranger = ProcIdentity {
        pid: 999_999,
        start_time: 1,
    };
    let starting = ProcIdentity {
        pid: 999_998,
        start_time: 1,
    };
    lock(&env.agent.starting).insert(starting.pid);
    let leased = env.leased();
    set(&leased, move |_| {
        status(vec![
            holder(ident, "running", &["a"]),
            holder(stranger, "running", &["x"]),
            holder(starting, "running", &["s"]),
        ])
    });
    env.adopt(&[rec]);
    reconcile::once(&env.agent);
    assert_eq!(env.kinds("x"), vec!["lease-orphan".to_string()], "once");
    assert!(env.kinds("s").is_empty());
    assert!(!env.kinds("a").contains(&"lease-orphan".to_string()));
    assert_eq!(env.agent.get_vm("a").unwrap().status, VmStatus::Running);
}

#[test]
fn a_vm_frozen_when_the_agent_restarted_is_thawed_by_asking_leased() {
    let mut env = Env::new();
    let (rec, ident) = env.vm("a", true);
    let leased = env.leased();
    // leased revalidated it while no agent listened.
    set(&leased, move |r| match r {
        Request::Status => status(vec![holder(ident, "running", &["a"])]),
        Request::Revalidate { .. } => Response::Holder {
            pid: ident.pid,
            state: "thawed".into(),
            leases: Vec::new(),
        },
        _ => Response::error("internal", "unexpected"),
    });
    env.adopt(&[rec]);
    let vm = env.agent.get_vm("a").unwrap();
    assert_eq!(vm.status, VmStatus::Frozen, "paused, not by the operator");
    // Not asked before it has been frozen a while (a hook may still run).
    reconcile::once(&env.agent);
    assert!(stopped(ident.pid));
    env.frozen_long_ago("a");
    reconcile::once(&env.agent);
    assert_eq!(env.agent.get_vm("a").unwrap().status, VmStatus::Running);
    assert!(env.kinds("a").contains(&"vm-thawed".to_string()));
    eventually("runs again", || !stopped(ident.pid));
}

#[test]
fn a_frozen_vm_stays_frozen_while_leased_revalidates_and_dies_when_it_fails() {
    let mut env = Env::new();
    let (rec, ident) = env.vm("a", true);
    let leased = env.leased();
    set(&leased, move |r| match r {
        Request::Status => status(vec![holder(ident, "frozen", &["a"])]),
        _ => Response::Holder {
            pid: ident.pid,
            state: "revalidating".into(),
            leases: Vec::new(),
        },
    });
    env.adopt(&[rec]);
    env.frozen_long_ago("a");
    reconcile::once(&env.agent);
    assert_eq!(env.agent.get_vm("a").unwrap().status, VmStatus::Frozen);
    assert!(stopped(ident.pid));
    // No answer: still frozen, still there.
    set(&leased, move |r| match r {
        Request::Status => status(vec![holder(ident, "frozen", &["a"])]),
        _ => Response::error("io", "busy disk"),
    });
    reconcile::once(&env.agent);
    assert_eq!(env.agent.get_vm("a").unwrap().status, VmStatus::Frozen);
    set(&leased, move |r| match r {
        Request::Status => status(vec![holder(ident, "frozen", &["a"])]),
        _ => Response::error("revalidation_failed", "lver moved on"),
    });
    reconcile::once(&env.agent);
    assert_eq!(env.agent.get_vm("a").unwrap().status, VmStatus::Crashed);
    eventually("killed", || !ident.is_alive());
}

#[test]
fn a_missed_freeze_is_learnt_from_leaseds_status() {
    let mut env = Env::new();
    let (rec, ident) = env.vm("a", false);
    let leased = env.leased();
    set(&leased, move |_| {
        status(vec![holder(ident, "frozen", &["a"])])
    });
    env.adopt(&[rec]);
    assert_eq!(env.agent.get_vm("a").unwrap().status, VmStatus::Frozen);
    // And then resume is refused.
    assert!(env.agent.resume_vm("a").is_err());
}

#[test]
fn an_operator_pause_survives_a_restart_and_stays_resumable() {
    let mut env = Env::new();
    let (mut rec, ident) = env.vm("a", true);
    rec.paused = true;
    let leased = env.leased();
    set(&leased, move |r| match r {
        Request::Status => status(vec![holder(ident, "running", &["a"])]),
        Request::Revalidate { .. } => Response::Holder {
            pid: ident.pid,
            state: "thawed".into(),
            leases: Vec::new(),
        },
        _ => Response::error("internal", "unexpected"),
    });
    env.adopt(&[rec]);
    assert_eq!(env.agent.get_vm("a").unwrap().status, VmStatus::Paused);
    assert!(env.recorded()[0].paused);
    let vm = env.agent.resume_vm("a").unwrap();
    assert_eq!(vm.status, VmStatus::Running);
    eventually("runs", || !stopped(ident.pid));
    assert!(!env.recorded()[0].paused, "the pause is over");
    env.agent.pause_vm("a").unwrap();
    assert!(env.recorded()[0].paused, "saved at once");
    eventually("paused", || stopped(ident.pid));
}

#[test]
fn an_operator_paused_vm_frozen_by_its_lease_is_not_resumed_by_the_thaw() {
    let mut env = Env::new();
    let (mut rec, ident) = env.vm("a", true);
    rec.paused = true;
    let leased = env.leased();
    set(&leased, move |r| match r {
        Request::Status => status(vec![holder(ident, "running", &["a"])]),
        _ => Response::Holder {
            pid: ident.pid,
            state: "frozen".into(),
            leases: Vec::new(),
        },
    });
    env.adopt(&[rec]);
    // leased froze it meanwhile: resume is refused, it is frozen now.
    assert!(matches!(
        env.agent.resume_vm("a").unwrap_err(),
        AgentError::Conflict(_)
    ));
    assert_eq!(env.agent.get_vm("a").unwrap().status, VmStatus::Frozen);
    env.agent.thaw_pid(ident.pid);
    assert_eq!(env.agent.get_vm("a").unwrap().status, VmStatus::Paused);
    assert!(stopped(ident.pid), "still paused: the operator paused it");
}

/// A VM handle whose state answers are scripted.
#[derive(Debug)]
struct FakeVm {
    ident: ProcIdentity,
    states: Arc<Mutex<VecDeque<Result<VmState, String>>>>,
    events: Arc<Mutex<Vec<VmEvent>>>,
}

impl RunningVm for FakeVm {
    fn pid(&self) -> u32 {
        self.ident.pid
    }
    fn identity(&self) -> ProcIdentity {
        self.ident
    }
    fn pause(&mut self) -> Result<(), DriverError> {
        Ok(())
    }
    fn resume(&mut self) -> Result<(), DriverError> {
        Ok(())
    }
    fn stop(&mut self, _: Duration) -> Result<StopReport, DriverError> {
        Ok(StopReport {
            forced: false,
            status: None,
        })
    }
    fn kill(&mut self) -> Result<(), DriverError> {
        Ok(())
    }
    fn state(&mut self) -> Result<VmState, DriverError> {
        lock(&self.states)
            .pop_front()
            .unwrap_or(Ok(VmState::Running))
            .map_err(DriverError::Timeout)
    }
    fn try_events(&mut self) -> Vec<VmEvent> {
        std::mem::take(&mut *lock(&self.events))
    }
    fn wait_exit(&mut self, _: Duration) -> Result<VmState, DriverError> {
        Ok(VmState::Gone)
    }
}

type Script = Arc<Mutex<VecDeque<Result<VmState, String>>>>;
type Events = Arc<Mutex<Vec<VmEvent>>>;

/// A QEMU-kind entry over a real process (so liveness is real).
fn fake_entry(env: &mut Env, id: &str, lockspace: &str) -> (ProcIdentity, Script, Events) {
    let (mut rec, ident) = env.vm(id, false);
    rec.kind = VmKind::Qemu;
    if let Some(l) = rec.lease.as_mut() {
        l.lockspace = lockspace.into();
    }
    let states = Script::default();
    let events = Events::default();
    let vm = FakeVm {
        ident,
        states: states.clone(),
        events: events.clone(),
    };
    let e = VmEntry::new(rec, Some(Box::new(vm)), ident);
    lock(&env.agent.vms).insert(id.into(), Arc::new(Mutex::new(e)));
    (ident, states, events)
}

fn observe(env: &Env, id: &str) {
    let e = env.entry(id);
    let mut e = lock(&e);
    e.retry_at = Instant::now();
    if super::observe::observe(&env.agent, &mut e) {
        drop(e);
        env.agent.persist();
    }
}

#[test]
fn a_qmp_failure_of_a_live_vm_keeps_it_and_it_is_reached_again() {
    let mut env = Env::new();
    let (ident, states, _) = fake_entry(&mut env, "q", "ls1");
    env.agent.persist();
    lock(&states).push_back(Err("QMP timed out".into()));
    observe(&env, "q");
    let vm = env.agent.get_vm("q").unwrap();
    assert_eq!(vm.status, VmStatus::Unknown);
    assert_eq!(vm.pid, ident.pid, "pid kept");
    assert_eq!(env.recorded().len(), 1, "still recorded");
    assert_eq!(env.kinds("q"), vec!["vm-unreachable".to_string()]);
    // QMP answers again.
    observe(&env, "q");
    assert_eq!(env.agent.get_vm("q").unwrap().status, VmStatus::Running);
    assert!(env.kinds("q").contains(&"vm-reachable".to_string()));
    // QMP fails and the process is gone: crashed.
    lock(&states).push_back(Err("QMP closed".into()));
    crate::freeze::signal_vm(ident.pid, rustix::process::Signal::KILL).unwrap();
    eventually("gone", || !ident.is_alive());
    observe(&env, "q");
    let vm = env.agent.get_vm("q").unwrap();
    assert_eq!(vm.status, VmStatus::Crashed);
    assert_eq!(vm.pid, 0);
    assert!(env.recorded().is_empty());
}

#[test]
fn a_guest_that_shut_down_stopped_and_did_not_crash() {
    let mut env = Env::new();
    let (ident, states, events) = fake_entry(&mut env, "q", "ls1");
    lock(&events).push(VmEvent::Qmp(QmpEvent {
        name: "SHUTDOWN".into(),
        data: serde_json::json!({"guest": true, "reason": "guest-shutdown"}),
        timestamp_us: None,
    }));
    crate::freeze::signal_vm(ident.pid, rustix::process::Signal::KILL).unwrap();
    eventually("gone", || !ident.is_alive());
    lock(&states).push_back(Ok(VmState::Gone));
    observe(&env, "q");
    assert_eq!(env.agent.get_vm("q").unwrap().status, VmStatus::Stopped);
    assert!(env.kinds("q").contains(&"vm-stopped".to_string()));
    assert!(!env.kinds("q").contains(&"vm-crashed".to_string()));
}

#[test]
fn lease_events_name_the_vms_of_their_lockspace() {
    let mut env = Env::new();
    fake_entry(&mut env, "a", "ls1");
    fake_entry(&mut env, "b", "ls1");
    let (c, _, _) = fake_entry(&mut env, "c", "ls2");
    let handle = |v: serde_json::Value| super::leasewatch::handle(&env.agent, &v);
    handle(serde_json::json!({"event": "renewal_warning", "lockspace": "ls1"}));
    handle(serde_json::json!({"event": "lease_lost", "lockspace": "ls1", "reason": "r"}));
    handle(serde_json::json!({"event": "lease_lost", "lockspace": "ls9", "reason": "r"}));
    handle(serde_json::json!({"event": "revalidation_failed", "pid": c.pid, "reason": "r"}));
    for vm in ["a", "b"] {
        assert_eq!(env.kinds(vm), vec!["lease-trouble", "lease-lost"], "{vm}");
    }
    assert_eq!(env.kinds("c"), vec!["lease-revalidation-failed"]);
    let unnamed: Vec<String> = env
        .agent
        .events_since(0, Duration::ZERO)
        .into_iter()
        .filter(|e| e.vm.is_none())
        .map(|e| e.detail)
        .collect();
    assert_eq!(unnamed, vec!["lockspace ls9: r".to_string()]);
}
