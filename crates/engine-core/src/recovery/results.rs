//! Start results: running, busy (retry soon, not counted), failed (backoff,
//! give up after `max_attempts`), and late results of abandoned tasks.

use nosplit_clock::MonoTime;
use serde::{Deserialize, Serialize};

use super::{RecoveryError, Scheduler, VmPhase};
use crate::command::{event, kind, Command, ALARM, INFO, WARNING};
use crate::model::Desired;

/// How a start ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartOutcome {
    /// The VM runs on the target.
    Ok,
    /// Its lease is still held elsewhere.
    Busy,
    /// Any other failure.
    Failed(String),
}

impl Scheduler {
    /// The result of `task`. `target_lease_dead`: the engine sees the
    /// target's lease Dead now (a VM cannot be running there).
    pub fn on_result(
        &mut self,
        task: u64,
        outcome: StartOutcome,
        now: MonoTime,
        at_ms: u64,
        target_lease_dead: bool,
        max_attempts: u32,
    ) -> Result<Vec<Command>, RecoveryError> {
        let rec = self
            .tasks
            .get_mut(&task)
            .ok_or(RecoveryError::UnknownTask(task))?;
        let (vm, host) = (rec.vm.clone(), rec.host.clone());
        let mut out = Vec::new();
        let current = self
            .vms
            .get(&vm)
            .is_some_and(|t| matches!(&t.phase, VmPhase::Starting { task: k, .. } if *k == task));
        let outcome = match outcome {
            StartOutcome::Ok if target_lease_dead => StartOutcome::Failed(format!(
                "target host {host}'s lease is dead: it cannot run there"
            )),
            o => o,
        };
        let (state, detail) = match &outcome {
            StartOutcome::Ok => ("succeeded", "running".to_string()),
            StartOutcome::Busy => ("busy", "its lease is held elsewhere".to_string()),
            StartOutcome::Failed(r) => ("failed", r.clone()),
        };
        if rec.finished_ms.is_none() || current {
            rec.state = state.into();
            rec.detail = detail.clone();
            rec.finished_ms = Some(at_ms);
            out.push(Command::TaskUpdate(rec.clone()));
        }
        let attempt = rec.attempt;
        if !current {
            // Abandoned (target lease died) or the VM was removed. Only a
            // success matters: the VM runs there after all.
            if outcome == StartOutcome::Ok && self.vms.contains_key(&vm) {
                self.vm_running(&vm, &host, false)?;
                let d = format!("task {task}: late success, the VM runs on {host}");
                out.push(event(
                    at_ms,
                    WARNING,
                    kind::LATE_RESULT,
                    Some(&host),
                    Some(&vm),
                    d,
                ));
            }
            return Ok(out);
        }
        let Some(t) = self.vms.get_mut(&vm) else {
            return Ok(out);
        };
        let (h, v) = (Some(host.as_str()), Some(vm.as_str()));
        let stopped = t.vm.desired == Desired::Stopped;
        match outcome {
            StartOutcome::Ok => {
                t.phase = VmPhase::Running { host: host.clone() };
                t.failures = 0;
                t.lease_lost = false;
                t.avoid = None;
                t.busy_streak = 0;
                let since = t
                    .lost_at
                    .map(|l| now.saturating_since(l).as_millis())
                    .unwrap_or(0);
                let lost_on = t.lost_on.take().unwrap_or_default();
                let d = format!("restarted on {host} (attempt {attempt}, task {task}), {since} ms after {lost_on} was lost");
                out.push(event(at_ms, INFO, kind::VM_RESTARTED, h, v, d));
                if stopped {
                    let d =
                        "started while a stop was requested: the runtime must stop it".to_string();
                    out.push(event(at_ms, WARNING, kind::VM_NOT_RESTARTED, h, v, d));
                }
            }
            _ if stopped => {
                t.phase = VmPhase::Stopped;
                let d = format!("{detail}; stopped on purpose: not retried");
                out.push(event(at_ms, INFO, kind::VM_NOT_RESTARTED, h, v, d));
            }
            StartOutcome::Busy => {
                t.busy_streak += 1;
                if t.busy_streak == 1 {
                    let d = format!(
                        "task {task}: lease held elsewhere; retrying every {} ms (not counted)",
                        self.cfg.busy_retry.as_millis()
                    );
                    out.push(event(at_ms, WARNING, kind::VM_START_BUSY, h, v, d));
                }
                let at = now + self.cfg.busy_retry;
                self.enqueue(&vm, at, now);
            }
            StartOutcome::Failed(reason) => {
                t.failures += 1;
                t.busy_streak = 0;
                t.avoid = Some(host.clone());
                let failures = t.failures;
                if failures >= max_attempts {
                    let d = format!("gave up after {failures} failed attempts; last: {reason}");
                    t.phase = VmPhase::GaveUp { reason };
                    t.lost_on = None;
                    out.push(event(at_ms, ALARM, kind::VM_GAVE_UP, h, v, d));
                } else {
                    let wait = self.backoff(failures);
                    let d = format!(
                        "task {task}: {reason}; attempt {failures} of {max_attempts} failed, retry in {} ms",
                        wait.as_millis()
                    );
                    out.push(event(at_ms, WARNING, kind::VM_START_FAILED, h, v, d));
                    self.enqueue(&vm, now + wait, now);
                }
            }
        }
        Ok(out)
    }
}
