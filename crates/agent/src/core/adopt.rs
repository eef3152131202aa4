//! Adoption after an agent restart, and reaching a VM that could not be
//! reached then. A recorded VM whose process (pid and start time, from
//! `vm.ident`) is gone is reported `vm-gone` and forgotten. A live one is
//! kept whatever else fails: if its driver cannot attach (QMP), it is
//! reported `unknown` and tried again. Seen paused, it is `paused` if the
//! operator paused it (`agent.json` says so), else `frozen` (its lease
//! froze it, until `leased` says otherwise). Its lease is checked with
//! `leased` right after (see `reconcile`).

use nosplit_vmrt::driver::{ProcIdentity, VmState, IDENT_FILE};

use super::persist::VmRecord;
use super::{lock, observe, policy, vms, Agent, VmEntry};
use crate::model::{AgentError, VmStatus};

/// Re-attaches to a recorded VM.
pub(super) fn adopt(agent: &Agent, rec: VmRecord) {
    let id = rec.id.clone();
    let path = rec.run_dir.join(IDENT_FILE);
    let ident = match ProcIdentity::read_file(&path) {
        Ok(i) if i.is_alive() => i,
        Ok(i) => {
            agent.events.push(
                "vm-gone",
                Some(&id),
                format!(
                    "{} not adopted: process {} (start time {}) is gone",
                    rec.inst, i.pid, i.start_time
                ),
            );
            return;
        }
        Err(e) => {
            agent.events.push(
                "vm-gone",
                Some(&id),
                format!("{} not adopted: {}: {e}", rec.inst, path.display()),
            );
            return;
        }
    };
    let mut e = VmEntry::new(rec, None, ident);
    // Not confirmed until leased answers; "" marks a VM not seen yet.
    e.lease_confirmed = e.rec.lease.is_none();
    e.unreachable = Some(String::new());
    reach(agent, &mut e);
    if !e.alive() {
        return;
    }
    agent.events.push(
        "vm-adopted",
        Some(&id),
        format!(
            "{} pid {} {:?}{}",
            e.rec.inst,
            e.pid,
            e.reported(),
            if e.rec.paused {
                " (paused by the operator)"
            } else {
                ""
            }
        ),
    );
    lock(&agent.vms).insert(id, std::sync::Arc::new(std::sync::Mutex::new(e)));
}

/// Tries to attach the driver to a live VM without a handle.
pub(super) fn reach(agent: &Agent, e: &mut VmEntry) -> bool {
    let attempt = agent.driver(e.rec.kind).and_then(|d| {
        d.adopt(&vms::spec(agent, &e.rec))
            .map_err(|x| AgentError::Unavailable(x.to_string()))
    });
    match attempt {
        Ok(vm) if Some(vm.identity()) == e.ident => {
            e.vm = Some(vm);
            observe::look(agent, e)
        }
        Ok(vm) => {
            let other = vm.identity();
            observe::lost(
                agent,
                e,
                format!("its run dir names another process {other:?}"),
            );
            false
        }
        Err(x) if e.process_alive() => {
            observe::lost(agent, e, x.to_string());
            false
        }
        Err(_) => observe::ended(agent, e, &VmState::Gone),
    }
}

/// Sets the status of a VM seen after a time unseen. Returns whether its
/// record changed.
pub(super) fn settle(agent: &Agent, e: &mut VmEntry, observed: &VmState) -> bool {
    let before = e.status();
    // Without a lease nothing but the operator pauses a VM.
    let operator = e.rec.paused || e.rec.lease.is_none();
    let st = policy::seen_status(before, observed, operator);
    e.set_status(st);
    if st == VmStatus::Frozen && before != VmStatus::Frozen {
        agent.events.push(
            "vm-frozen",
            Some(&e.rec.id),
            format!(
                "pid {}: paused, and not by the operator: frozen by its lease until leased says otherwise",
                e.pid
            ),
        );
    }
    if st == VmStatus::Running && e.rec.paused {
        e.rec.paused = false;
        return true;
    }
    false
}
