//! One VM's life on request: start bound to its lease, stop, kill, pause
//! (remembered as the operator's), resume (only with `leased`'s word that
//! the lease is not frozen), thaw after a revalidation, and the kill of a
//! VM found without its lease.

use std::path::PathBuf;
use std::time::Duration;

use nosplit_lease::paxos::LeaseMode;
use nosplit_leased::api::{LeaseRef, Request, Response};
use nosplit_vmrt::driver::{validate_name, VmKind as DriverKind, VmSpec};

use super::persist::VmRecord;
use super::{lock, Agent, VmEntry};
use crate::model::{AgentError, StartVm, VmInfo, VmKind, VmStatus};

/// Heartbeat interval of the VMs the agent starts.
const INTERVAL_MS: u32 = 200;
/// How long a freeze or thaw over QMP may take.
const QMP_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) fn freeze_sock(rec: &VmRecord) -> PathBuf {
    rec.run_dir.join("freeze.sock")
}

pub(super) fn spec(agent: &Agent, rec: &VmRecord) -> VmSpec {
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
        extra_disks: rec.extra_disks.iter().map(PathBuf::from).collect(),
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
        extra_disks: req.extra_disks,
        memory_mib: req.memory_mib,
        vcpus: req.vcpus,
        lease: req.lease,
        lver: None,
        paused: false,
    };
    let driver = agent.driver(rec.kind)?;
    let prepared = driver
        .prepare(&spec(agent, &rec))
        .map_err(|e| AgentError::Unavailable(format!("VM {}: {e}", rec.id)))?;
    let pid = prepared.pid();
    // Until it is in `vms`, leased's holder for `pid` is no orphan.
    let _starting = Starting::new(agent, pid);
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
    let ident = running.identity();
    let entry = VmEntry::new(rec, Some(running), ident);
    let info = entry.info();
    agent.events.push(
        "vm-started",
        Some(&info.id),
        match info.lver {
            Some(l) => format!("{} pid {} lease version {l}", info.inst, info.pid),
            None => format!("{} pid {} without a lease", info.inst, info.pid),
        },
    );
    lock(&agent.vms).insert(
        info.id.clone(),
        std::sync::Arc::new(std::sync::Mutex::new(entry)),
    );
    agent.persist();
    Ok(info)
}

/// Marks a pid as being started for as long as it lives.
struct Starting<'a>(&'a Agent, u32);

impl<'a> Starting<'a> {
    fn new(agent: &'a Agent, pid: u32) -> Starting<'a> {
        lock(&agent.starting).insert(pid);
        Starting(agent, pid)
    }
}

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        lock(&self.0.starting).remove(&self.1);
    }
}

fn live_vm(e: &mut VmEntry) -> Result<&mut Box<dyn nosplit_vmrt::driver::RunningVm>, AgentError> {
    let id = e.rec.id.clone();
    let status = e.status();
    let unreachable = e.unreachable.clone();
    let alive = e.alive();
    match e.vm.as_mut() {
        Some(v) if alive => Ok(v),
        None if alive => Err(AgentError::Unavailable(format!(
            "VM {id} is unreachable ({}); it can be killed",
            unreachable.unwrap_or_default()
        ))),
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
    e.set_status(VmStatus::Stopped);
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

/// SIGKILLs the VM's process (through its handle, else by its identity)
/// and waits a little for it to go.
fn kill_process(e: &mut VmEntry) -> Result<(), AgentError> {
    if let Some(v) = e.vm.as_mut() {
        v.kill()
            .map_err(|x| AgentError::Unavailable(format!("kill: {x}")))?;
        let _ = v.wait_exit(Duration::from_secs(10));
        return Ok(());
    }
    if e.process_alive() {
        crate::freeze::signal_vm(e.pid, rustix::process::Signal::KILL)
            .map_err(|x| AgentError::Unavailable(format!("kill: {x}")))?;
    }
    Ok(())
}

pub(super) fn kill(agent: &Agent, e: &mut VmEntry) -> Result<VmInfo, AgentError> {
    if !e.alive() {
        return Err(AgentError::Conflict(format!(
            "VM {} is not running ({:?})",
            e.rec.id,
            e.status()
        )));
    }
    kill_process(e)?;
    e.set_status(VmStatus::Stopped);
    agent.events.push(
        "vm-stopped",
        Some(&e.rec.id),
        format!("{} killed", e.rec.inst),
    );
    Ok(e.info())
}

/// Kills a VM that `leased` says runs without its lease.
pub(super) fn kill_unleased(agent: &Agent, e: &mut VmEntry, why: &str) {
    let pid = e.pid;
    if let Err(x) = kill_process(e) {
        agent.events.push(
            "agent-error",
            Some(&e.rec.id),
            format!("pid {pid} runs without its lease ({why}) and could not be killed: {x}"),
        );
        return;
    }
    e.set_status(VmStatus::Crashed);
    agent.events.push(
        "vm-killed",
        Some(&e.rec.id),
        format!("pid {pid}: {why}: killed"),
    );
}

pub(super) fn pause(agent: &Agent, e: &mut VmEntry) -> Result<VmInfo, AgentError> {
    if e.status() == VmStatus::Frozen {
        return Err(AgentError::Conflict(format!(
            "VM {} is frozen (lease renewal failing)",
            e.rec.id
        )));
    }
    live_vm(e)?
        .pause()
        .map_err(|x| AgentError::Unavailable(format!("pause: {x}")))?;
    e.rec.paused = true;
    e.set_status(VmStatus::Paused);
    agent
        .events
        .push("vm-paused", Some(&e.rec.id), "on request");
    Ok(e.info())
}

/// Asks `leased` whether the VM's lease lets it run now. A VM frozen by
/// its lease must not be resumed by anyone but the thaw, even if the
/// agent missed the freeze.
fn may_run(agent: &Agent, e: &mut VmEntry) -> Result<(), AgentError> {
    if e.rec.lease.is_none() {
        return Ok(());
    }
    if !e.lease_confirmed {
        return Err(AgentError::Unavailable(format!(
            "VM {}: leased has not yet confirmed its lease",
            e.rec.id
        )));
    }
    match agent.leased(&Request::Revalidate { pid: Some(e.pid) })? {
        Response::Holder { state, .. } if state == "thawed" => Ok(()),
        Response::Holder { state, .. } => {
            e.set_status(VmStatus::Frozen);
            agent.events.push(
                "vm-frozen",
                Some(&e.rec.id),
                format!("pid {}: leased reports it {state}", e.pid),
            );
            Err(AgentError::Conflict(format!(
                "VM {} is frozen by its lease ({state})",
                e.rec.id
            )))
        }
        Response::Error { kind, message } => Err(AgentError::Conflict(format!(
            "VM {}: leased: {kind}: {message}",
            e.rec.id
        ))),
        other => Err(AgentError::Unavailable(format!(
            "leased answered {other:?}"
        ))),
    }
}

pub(super) fn resume(agent: &Agent, e: &mut VmEntry) -> Result<VmInfo, AgentError> {
    if e.status() == VmStatus::Frozen {
        return Err(AgentError::Conflict(format!(
            "VM {} is frozen until leased revalidates its lease",
            e.rec.id
        )));
    }
    live_vm(e)?;
    may_run(agent, e)?;
    live_vm(e)?
        .resume()
        .map_err(|x| AgentError::Unavailable(format!("resume: {x}")))?;
    e.rec.paused = false;
    e.set_status(VmStatus::Running);
    agent
        .events
        .push("vm-resumed", Some(&e.rec.id), "on request");
    Ok(e.info())
}

/// Lets a VM run again after `leased` revalidated its lease; one the
/// operator paused stays paused.
pub(super) fn thaw(agent: &Agent, e: &mut VmEntry, why: &str) {
    if e.rec.paused {
        if e.status() == VmStatus::Frozen {
            e.set_status(VmStatus::Paused);
            agent.events.push(
                "vm-thawed",
                Some(&e.rec.id),
                format!("{why}; stays paused (the operator paused it)"),
            );
        }
        return;
    }
    let r = match e.rec.kind {
        VmKind::Qemu => crate::freeze::thaw_qemu(&freeze_sock(&e.rec), QMP_TIMEOUT),
        VmKind::Process => crate::freeze::thaw_process(e.pid),
    };
    match r {
        Ok(()) => {
            e.set_status(VmStatus::Running);
            agent.events.push("vm-thawed", Some(&e.rec.id), why);
        }
        Err(x) => agent
            .events
            .push("vm-thaw-failed", Some(&e.rec.id), x.to_string()),
    }
}
