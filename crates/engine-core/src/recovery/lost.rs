//! Hosts lost: a start in flight to a host whose lease died is abandoned
//! and queued again; the VMs of a host lost with its lease dead (or back
//! after its lease died) are queued (HA, wanted Running) or reported.

use std::collections::BTreeMap;

use nosplit_clock::MonoTime;

use super::{Scheduler, VmPhase};
use crate::command::{event, kind, Command, INFO, WARNING};
use crate::model::Desired;

impl Scheduler {
    /// `host`'s lease was seen Dead: what ran there is stopped; a start in
    /// flight to it is abandoned (its VM queued again, no attempt counted).
    pub fn lease_dead(&mut self, host: &str, now: MonoTime, at_ms: u64) -> Vec<Command> {
        let mut out = Vec::new();
        let mut requeue = Vec::new();
        for (id, t) in self.vms.iter_mut() {
            match &t.phase {
                VmPhase::Running { host: h } if h == host => t.lease_lost = true,
                VmPhase::Starting { host: h, task } if h == host => {
                    t.lease_lost = true;
                    let d = format!("target host {host}'s lease died");
                    if let Some(task) = self.tasks.get_mut(task) {
                        task.state = "failed".into();
                        task.detail = d.clone();
                        task.finished_ms = Some(at_ms);
                        out.push(Command::TaskUpdate(task.clone()));
                    }
                    out.push(event(
                        at_ms,
                        WARNING,
                        kind::VM_START_FAILED,
                        Some(host),
                        Some(id),
                        d,
                    ));
                    requeue.push(id.clone());
                }
                _ => {}
            }
        }
        for id in requeue {
            self.enqueue(&id, now, now);
        }
        out
    }

    /// `host` is lost (lease Dead) or came back after its lease died: its
    /// VMs whose lease was lost are queued (HA, wanted Running) or reported.
    pub fn host_lost(&mut self, host: &str, now: MonoTime, at_ms: u64) -> Vec<Command> {
        let mut out = Vec::new();
        let mut queue = Vec::new();
        for (id, t) in self.vms.iter_mut() {
            if !matches!(&t.phase, VmPhase::Running { host: h } if h == host) {
                continue;
            }
            if !t.lease_lost {
                continue;
            }
            let (sev, why) = if t.vm.desired == Desired::Stopped {
                t.phase = VmPhase::Stopped;
                (
                    INFO,
                    "lost with its host; stopped on purpose: not restarted",
                )
            } else if !t.vm.ha {
                t.phase = VmPhase::Down {
                    reason: format!("lost with host {host} (not HA)"),
                };
                (WARNING, "lost with its host; not HA: not restarted")
            } else {
                t.failures = 0;
                t.avoid = None;
                t.lost_on = Some(host.to_string());
                t.lost_at = Some(now);
                t.no_room_reported = false;
                queue.push(id.clone());
                (
                    WARNING,
                    "lost with its host (lease dead): queued for restart",
                )
            };
            out.push(event(
                at_ms,
                sev,
                kind::VM_LOST,
                Some(host),
                Some(id),
                why.to_string(),
            ));
        }
        for id in queue {
            self.enqueue(&id, now, now);
        }
        out
    }

    /// A reachable host's agent reports `id` exited there (a guest crash,
    /// a kill): an HA VM that should run is queued for restart (its lease
    /// was released with its process; if it was not, the start is refused
    /// as busy until it is); otherwise it is reported. A report about a
    /// host the VM no longer runs on is ignored.
    pub fn vm_exited(&mut self, id: &str, host: &str, now: MonoTime, at_ms: u64) -> Vec<Command> {
        let Some(t) = self.vms.get_mut(id) else {
            return Vec::new();
        };
        if !matches!(&t.phase, VmPhase::Running { host: h } if h == host) {
            return Vec::new();
        }
        let (sev, why, queue) = if t.vm.desired == Desired::Stopped {
            t.phase = VmPhase::Stopped;
            (INFO, "exited; stopped on purpose: not restarted", false)
        } else if !t.vm.ha {
            t.phase = VmPhase::Down {
                reason: format!("exited on host {host} (not HA)"),
            };
            (WARNING, "exited; not HA: not restarted", false)
        } else {
            t.failures = 0;
            t.avoid = None;
            t.lost_on = Some(host.to_string());
            t.lost_at = Some(now);
            t.no_room_reported = false;
            (WARNING, "exited on a live host: queued for restart", true)
        };
        let out = vec![event(
            at_ms,
            sev,
            kind::VM_LOST,
            Some(host),
            Some(id),
            why.to_string(),
        )];
        if queue {
            self.enqueue(id, now, now);
        }
        out
    }

    /// VMs still to restart (queued or starting) per host they were lost on.
    pub fn pending_by_lost_host(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for t in self.vms.values() {
            if matches!(t.phase, VmPhase::Queued { .. } | VmPhase::Starting { .. }) {
                if let Some(h) = &t.lost_on {
                    *m.entry(h.clone()).or_default() += 1;
                }
            }
        }
        m
    }
}
