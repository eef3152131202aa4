//! One VM's life: start bound to its lease, stop, kill, pause, resume,
//! freeze/thaw, watching, and adoption after an agent restart.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nosplit_lease::paxos::LeaseMode;
use nosplit_leased::api::{LeaseRef, Request, Response};
use nosplit_vmrt::driver::{validate_name, VmKind as DriverKind, VmSpec, VmState};

use super::persist::VmRecord;
use super::{lock, Agent, VmEntry};
use crate::model::{AgentError, StartVm, VmInfo, VmKind, VmStatus};

/// Heartbeat interval of the VMs the agent starts.
const INTERVAL_MS: u32 = 200;
/// How long a freeze or thaw over QMP may take.
const QMP_TIMEOUT: Duration = Duration::from_secs(2);

fn freeze_sock(rec: &VmRecord) -> PathBuf {
    rec.run_dir.join("freeze.sock")
}

fn spec(agent: &Agent, rec: &VmRecord) -> VmSpec {
    let kind = match rec.kind {
        VmKind::Qemu => DriverKind::Qemu {
            interval_ms: INTERVAL_MS,
            extra_args: vec![
                "-qmp".into(),
                format!("unix:{},server=on,wait=off", freeze_sock(rec).display()),
            ],
        },
        VmKind::Process => DriverKind::Process {
            program: agent.cfg.bin.clone(),
            args: vec![
                "vm-proc".into(),
                "--disk".into(),
                rec.disk.clone(),
                "--vm".into(),
                rec.id.clone(),
                "--inst".into(),
                rec.inst.clone(),
                "--interval-ms".into(),
                INTERVAL_MS.to_string(),
            ],
            env: Vec::new(),
        },
    };
    VmSpec {
        id: rec.id.clone(),
        inst: rec.inst.clone(),
        disk: PathBuf::from(&rec.disk),
        memory_mib: rec.memory_mib,
        vcpus: rec.vcpus,
        run_dir: rec.run_dir.clone(),
        kind,
        spawn_hook: None,
    }
}

/// The freeze hook `leased` runs (it appends the pid).
fn freeze_hook(agent: &Agent, rec: &VmRecord) -> Vec<String> {
    let bin = agent.cfg.bin.display().to_string();
    match rec.kind {
        VmKind::Qemu => vec![
            bin,
            "vm-freeze".into(),
            "--qmp".into(),
            freeze_sock(rec).display().to_string(),
            "--pid".into(),
        ],
        VmKind::Process => vec![bin, "vm-freeze".into(), "--pid".into()],
    }
}

/// Starts a VM: process created with no guest code run, registered with
/// `leased` and given its lease, then started.
pub(super) fn start(agent: &Agent, req: StartVm) -> Result<VmInfo, AgentError> {
    validate_name("VM id", &req.id).map_err(|e| AgentError::Invalid(e.to_string()))?;
    if req.lease.is_none() && !agent.cfg.allow_unleased {
        return Err(AgentError::Invalid(format!(
            "VM {}: a lease is required (this agent does not allow unleased VMs)",
            req.id
        )));
    }
    if let Some(e) = lock(&agent.vms).get(&req.id) {
        let e = lock(e);
        if e.alive() {
            return Err(AgentError::Conflict(format!(
                "VM {} already runs here as {} ({:?})",
                req.id, e.rec.inst, e.status
            )));
        }
    }
    let inst = match req.inst {
        Some(i) => {
            validate_name("instance id", &i).map_err(|e| AgentError::Invalid(e.to_string()))?;
            i
        }
        None => agent.next_inst(&req.id),
    };
    let rec = VmRecord {
        run_dir: agent.cfg.run_dir.join("vms").join(&req.id).join(&inst),
        id: req.id.clone(),
        inst,
        kind: req.kind,
        disk: req.disk,
        memory_mib: req.memory_mib,
        vcpus: req.vcpus,
        lease: req.lease,
        lver: None,
    };
    let driver = agent.driver(rec.kind)?;
    let prepared = driver
        .prepare(&spec(agent, &rec))
        .map_err(|e| AgentError::Unavailable(format!("VM {}: {e}", rec.id)))?;
    let pid = prepared.pid();
    let mut rec = rec;
    if let Some(l) = rec.lease.clone() {
        let refused = |prepared: Box<dyn nosplit_vmrt::driver::PreparedVm>, e: AgentError| {
            prepared.abort();
            Err(e)
        };
        match agent.leased(&Request::Register {
            pid: Some(pid),
            freeze_hook: Some(freeze_hook(agent, &rec)),
        }) {
            Ok(Response::Registered { .. }) => {}
            Ok(other) => {
                return refused(
                    prepared,
                    AgentError::Unavailable(format!("leased register: {other:?}")),
                )
            }
            Err(e) => return refused(prepared, e),
        }
        let lease = LeaseRef {
            lockspace: l.lockspace,
            resource: rec.id.clone(),
            path: l.path,
            offset: l.offset,
        };
        match agent.leased(&Request::Acquire {
            pid: Some(pid),
            lease,
            mode: LeaseMode::Exclusive,
            lver: None,
        }) {
            Ok(Response::Acquired { lver }) => rec.lver = Some(lver),
            Ok(Response::Error { kind, message }) if kind == "busy" || kind == "conflict" => {
                agent
                    .events
                    .push("vm-start-refused", Some(&rec.id), message.clone());
                return refused(
                    prepared,
                    AgentError::Conflict(format!("lease of {}: {message}", rec.id)),
                );
            }
            Ok(Response::Error { kind, message }) => {
                return refused(
                    prepared,
                    AgentError::Unavailable(format!("lease of {} ({kind}): {message}", rec.id)),
                )
            }
            Ok(other) => {
                return refused(
                    prepared,
                    AgentError::Unavailable(format!("leased acquire: {other:?}")),
                )
            }
            Err(e) => return refused(prepared, e),
        }
    }
    let running = prepared
        .start()
        .map_err(|e| AgentError::Unavailable(format!("VM {}: start: {e}", rec.id)))?;
    let entry = VmEntry {
        pid: running.pid(),
        vm: Some(running),
        status: VmStatus::Running,
        since: Instant::now(),
        rec,
    };
    let info = entry.info();
    agent.events.push(
        "vm-started",
        Some(&info.id),
        format!("{} pid {} lver {:?}", info.inst, info.pid, info.lver),
    );
    lock(&agent.vms).insert(
        info.id.clone(),
        std::sync::Arc::new(std::sync::Mutex::new(entry)),
    );
    agent.persist();
    Ok(info)
}

fn live_vm(e: &mut VmEntry) -> Result<&mut Box<dyn nosplit_vmrt::driver::RunningVm>, AgentError> {
    let id = e.rec.id.clone();
    let status = e.status;
    match e.vm.as_mut() {
        Some(v) if !matches!(status, VmStatus::Stopped | VmStatus::Crashed) => Ok(v),
        _ => Err(AgentError::Conflict(format!(
            "VM {id} is not running ({status:?})"
        ))),
    }
}

pub(super) fn stop(
    agent: &Agent,
    e: &mut VmEntry,
    timeout: Duration,
) -> Result<VmInfo, AgentError> {
    let r = live_vm(e)?
        .stop(timeout)
        .map_err(|x| AgentError::Unavailable(format!("stop: {x}")))?;
    e.status = VmStatus::Stopped;
    e.pid = 0;
    agent.events.push(
        "vm-stopped",
        Some(&e.rec.id),
        format!(
            "{}{}",
            e.rec.inst,
            if r.forced {
                " (SIGKILL after the timeout)"
            } else {
                ""
            }
        ),
    );
    Ok(e.info())
}

pub(super) fn kill(agent: &Agent, e: &mut VmEntry) -> Result<VmInfo, AgentError> {
    let v = live_vm(e)?;
    v.kill()
        .map_err(|x| AgentError::Unavailable(format!("kill: {x}")))?;
    let _ = v.wait_exit(Duration::from_secs(10));
    e.status = VmStatus::Stopped;
    e.pid = 0;
    agent.events.push(
        "vm-stopped",
        Some(&e.rec.id),
        format!("{} killed", e.rec.inst),
    );
    Ok(e.info())
}

pub(super) fn pause(agent: &Agent, e: &mut VmEntry) -> Result<VmInfo, AgentError> {
    if e.status == VmStatus::Frozen {
        return Err(AgentError::Conflict(format!(
            "VM {} is frozen (lease renewal failing)",
            e.rec.id
        )));
    }
    live_vm(e)?
        .pause()
        .map_err(|x| AgentError::Unavailable(format!("pause: {x}")))?;
    e.status = VmStatus::Paused;
    agent
        .events
        .push("vm-paused", Some(&e.rec.id), "on request");
    Ok(e.info())
}

pub(super) fn resume(agent: &Agent, e: &mut VmEntry) -> Result<VmInfo, AgentError> {
    if e.status == VmStatus::Frozen {
        return Err(AgentError::Conflict(format!(
            "VM {} is frozen until leased revalidates its lease",
            e.rec.id
        )));
    }
    live_vm(e)?
        .resume()
        .map_err(|x| AgentError::Unavailable(format!("resume: {x}")))?;
    e.status = VmStatus::Running;
    agent
        .events
        .push("vm-resumed", Some(&e.rec.id), "on request");
    Ok(e.info())
}

/// Resumes a frozen VM after `leased` revalidated its lease.
pub(super) fn thaw(agent: &Agent, e: &mut VmEntry) {
    let r = match e.rec.kind {
        VmKind::Qemu => crate::freeze::thaw_qemu(&freeze_sock(&e.rec), QMP_TIMEOUT),
        VmKind::Process => crate::freeze::thaw_process(e.pid),
    };
    match r {
        Ok(()) => {
            e.status = VmStatus::Running;
            agent
                .events
                .push("vm-thawed", Some(&e.rec.id), "lease revalidated");
        }
        Err(x) => agent
            .events
            .push("vm-thaw-failed", Some(&e.rec.id), x.to_string()),
    }
}

/// Looks at one VM; returns whether something changed that must be saved.
pub(super) fn observe(agent: &Agent, e: &mut VmEntry) -> bool {
    if !e.alive() {
        return false;
    }
    let Some(v) = e.vm.as_mut() else { return false };
    let st = v.state();
    let id = e.rec.id.clone();
    match st {
        Ok(VmState::Exited(_) | VmState::Gone) | Err(_) => {
            e.status = VmStatus::Crashed;
            e.pid = 0;
            agent.events.push(
                "vm-crashed",
                Some(&id),
                format!("{} exited: {st:?}", e.rec.inst),
            );
            true
        }
        Ok(VmState::IoErrorPaused) if e.status == VmStatus::Running => {
            e.status = VmStatus::IoError;
            agent.events.push(
                "vm-io-error",
                Some(&id),
                "QEMU paused after a disk I/O error",
            );
            false
        }
        Ok(VmState::Running) if e.status == VmStatus::IoError => {
            e.status = VmStatus::Running;
            false
        }
        _ => false,
    }
}

/// Re-attaches to a recorded VM after an agent restart.
pub(super) fn adopt(agent: &Agent, rec: VmRecord) {
    let id = rec.id.clone();
    let driver = match agent.driver(rec.kind) {
        Ok(d) => d,
        Err(e) => {
            agent
                .events
                .push("vm-adopt-failed", Some(&id), e.to_string());
            return;
        }
    };
    let vm = match driver.adopt(&spec(agent, &rec)) {
        Ok(v) => v,
        Err(e) => {
            agent.events.push(
                "vm-gone",
                Some(&id),
                format!("{} not adopted: {e}", rec.inst),
            );
            return;
        }
    };
    let pid = vm.pid();
    let mut entry = VmEntry {
        rec,
        vm: Some(vm),
        status: VmStatus::Running,
        pid,
        since: Instant::now(),
    };
    if let Some(l) = entry.rec.lease.clone() {
        let held = match agent.leased(&Request::Inquire { pid: Some(pid) }) {
            Ok(Response::Leases { leases }) => leases
                .iter()
                .any(|h| h.lease.resource == id && h.lease.lockspace == l.lockspace),
            _ => false,
        };
        if !held {
            // Running without its lease must not go on.
            if let Some(v) = entry.vm.as_mut() {
                let _ = v.kill();
            }
            entry.status = VmStatus::Crashed;
            entry.pid = 0;
            agent.events.push(
                "vm-killed",
                Some(&id),
                format!("adopted pid {pid} holds no lease in leased: killed"),
            );
        }
    }
    if entry.status == VmStatus::Running {
        if let Some(Ok(VmState::Paused)) = entry.vm.as_mut().map(|v| v.state()) {
            entry.status = VmStatus::Frozen;
        }
        agent.events.push(
            "vm-adopted",
            Some(&id),
            format!("{} pid {pid}", entry.rec.inst),
        );
    }
    lock(&agent.vms).insert(id, std::sync::Arc::new(std::sync::Mutex::new(entry)));
}
