//! Watching a live VM (the monitor thread, every 200 ms): its end (a guest
//! that powered itself off stopped, anything else crashed), I/O-error
//! pauses, and QMP failures while the process lives, which keep the VM,
//! report it `unknown` and try again every [`RETRY`], instead of taking it
//! for dead.

use std::time::{Duration, Instant};

use nosplit_vmrt::driver::VmState;

use super::policy::{self, Observation};
use super::{adopt, Agent, VmEntry};
use crate::model::VmStatus;

/// How often an unreachable VM is tried again.
pub(super) const RETRY: Duration = Duration::from_secs(2);

/// Looks at one VM; returns whether something changed that must be saved.
pub(super) fn observe(agent: &Agent, e: &mut VmEntry) -> bool {
    if !e.alive() {
        return false;
    }
    if e.unreachable.is_some() && Instant::now() < e.retry_at {
        // Between attempts only the process is watched.
        return if e.process_alive() {
            false
        } else {
            ended(agent, e, &VmState::Gone)
        };
    }
    if e.vm.is_none() {
        return adopt::reach(agent, e);
    }
    look(agent, e)
}

/// Queries the VM through its handle.
pub(super) fn look(agent: &Agent, e: &mut VmEntry) -> bool {
    let Some(v) = e.vm.as_mut() else { return false };
    // Events first: a SHUTDOWN read before the socket closes is kept.
    if v.try_events().iter().any(policy::is_guest_shutdown) {
        e.guest_shutdown = true;
    }
    let st = v.state();
    match policy::observation(st, e.process_alive()) {
        Observation::Dead(s) => ended(agent, e, &s),
        Observation::Lost(why) => {
            lost(agent, e, why);
            false
        }
        Observation::Seen(s) => match e.unreachable.take() {
            Some(was) => {
                if !was.is_empty() {
                    agent.events.push(
                        "vm-reachable",
                        Some(&e.rec.id),
                        format!("pid {}: {s:?}", e.pid),
                    );
                }
                adopt::settle(agent, e, &s)
            }
            None => {
                match (s, e.status()) {
                    (VmState::IoErrorPaused, VmStatus::Running) => {
                        e.set_status(VmStatus::IoError);
                        agent.events.push(
                            "vm-io-error",
                            Some(&e.rec.id),
                            "QEMU paused after a disk I/O error",
                        );
                    }
                    (VmState::Running, VmStatus::IoError) => e.set_status(VmStatus::Running),
                    _ => {}
                }
                false
            }
        },
    }
}

/// The process lives but its state cannot be read: kept, tried again.
pub(super) fn lost(agent: &Agent, e: &mut VmEntry, why: String) {
    if e.unreachable.as_deref().is_none_or(str::is_empty) {
        agent.events.push(
            "vm-unreachable",
            Some(&e.rec.id),
            format!(
                "pid {} lives, state unknown: {why}; kept, trying again",
                e.pid
            ),
        );
    }
    e.unreachable = Some(why);
    e.retry_at = Instant::now() + RETRY;
}

/// The process is gone.
pub(super) fn ended(agent: &Agent, e: &mut VmEntry, how: &VmState) -> bool {
    if let Some(v) = e.vm.as_mut() {
        // Reaps our own child.
        let _ = v.wait_exit(Duration::from_millis(100));
    }
    let (status, kind) = policy::exit_status(e.guest_shutdown, how);
    let detail = if e.guest_shutdown {
        format!("{}: the guest shut down", e.rec.inst)
    } else {
        format!("{} {}", e.rec.inst, policy::describe_exit(how))
    };
    e.unreachable = None;
    e.set_status(status);
    agent.events.push(kind, Some(&e.rec.id), detail);
    true
}
