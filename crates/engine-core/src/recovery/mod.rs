//! The restart scheduler: which lost VMs to start, where and when, and what
//! every attempt did.
//!
//! - A VM is queued only when its host is lost with its lease seen Dead on
//!   storage (the lease guarantees it was stopped there), and only when it
//!   is HA and wanted Running. Non-HA VMs are reported lost; VMs stopped on
//!   purpose are never restarted, even when already queued.
//! - Queue order: priority (higher first), then id. Placement: see
//!   [`crate::placement`].
//! - Flow control: a global token bucket ([`crate::bucket`]) and a per-host
//!   limit of starts in flight, both from `HaSettings`, changeable at run
//!   time.
//! - Results: `Ok` runs it; `Busy` (its lease is held elsewhere) retries after
//!   `busy_retry` without counting an attempt; `Failed` retries with doubling
//!   backoff and gives up (alarm) after `max_attempts` failures.
//! - Each attempt is a [`Task`] with its outcome.

mod lost;
mod results;
pub use results::StartOutcome;
mod tick;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use nosplit_clock::MonoTime;

pub use tick::TickCtx;

use crate::bucket::TokenBucket;
use crate::command::{event, kind, Command, INFO};
use crate::model::{Desired, Task, Vm};

/// Errors of the scheduler's inputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryError {
    /// The VM is not in the inventory.
    #[error("unknown VM {0:?}")]
    UnknownVm(String),
    /// No such task.
    #[error("unknown task {0}")]
    UnknownTask(u64),
}

/// Knobs that are not in `HaSettings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryConfig {
    /// Wait before trying again after a busy lease.
    pub busy_retry: Duration,
    /// Backoff after the first failure; doubles per failure.
    pub backoff: Duration,
    /// Longest backoff.
    pub backoff_max: Duration,
    /// Finished tasks kept (oldest dropped first).
    pub task_history: usize,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            busy_retry: Duration::from_millis(250),
            backoff: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            task_history: 10_000,
        }
    }
}

/// Where a VM is, as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmPhase {
    /// Running (or believed running) on `host`.
    Running {
        /// Host.
        host: String,
    },
    /// Not running and not to be restarted (not HA, never started...).
    Down {
        /// Why.
        reason: String,
    },
    /// Waiting for a restart, not before `ready_at`.
    Queued {
        /// Earliest start.
        ready_at: MonoTime,
    },
    /// A start is in flight.
    Starting {
        /// Target.
        host: String,
        /// Task.
        task: u64,
    },
    /// Too many failures.
    GaveUp {
        /// Last failure.
        reason: String,
    },
    /// Stopped on purpose: never restarted.
    Stopped,
}

/// One VM as the scheduler tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmTrack {
    /// The inventory record (`host` as first given; see `phase`).
    pub vm: Vm,
    /// Phase.
    pub phase: VmPhase,
    /// Failed attempts (not busy) since it was lost.
    pub failures: u32,
    /// The host it was lost on.
    pub lost_on: Option<String>,
    /// When it was lost.
    pub lost_at: Option<MonoTime>,
    /// Its host's lease was seen Dead since it was last started there.
    pub lease_lost: bool,
    /// The host its last attempt failed on.
    pub avoid: Option<String>,
    busy_streak: u32,
    no_room_reported: bool,
}

/// The scheduler.
#[derive(Debug, Clone)]
pub struct Scheduler {
    cfg: RecoveryConfig,
    vms: BTreeMap<String, VmTrack>,
    ready: BTreeSet<(Reverse<u8>, String)>,
    waiting: BTreeSet<(MonoTime, String)>,
    tasks: BTreeMap<u64, Task>,
    next_task: u64,
    bucket: TokenBucket,
}

impl Scheduler {
    /// An empty scheduler with the given global rate (0 = none).
    pub fn new(cfg: RecoveryConfig, global_rate: u32, now: MonoTime) -> Scheduler {
        Scheduler {
            cfg,
            vms: BTreeMap::new(),
            ready: BTreeSet::new(),
            waiting: BTreeSet::new(),
            tasks: BTreeMap::new(),
            next_task: 1,
            bucket: TokenBucket::new(global_rate, now),
        }
    }

    /// Changes the global rate at run time.
    pub fn set_rate(&mut self, rate: u32, now: MonoTime) {
        self.bucket.set_rate(rate, now);
    }

    /// One VM.
    pub fn vm(&self, id: &str) -> Option<&VmTrack> {
        self.vms.get(id)
    }

    /// All VMs by id.
    pub fn vms(&self) -> &BTreeMap<String, VmTrack> {
        &self.vms
    }

    /// Tasks by id (running ones and the latest finished ones).
    pub fn tasks(&self) -> &BTreeMap<u64, Task> {
        &self.tasks
    }

    /// VMs waiting for a restart (ready or backing off).
    pub fn queue_len(&self) -> usize {
        self.ready.len() + self.waiting.len()
    }

    /// Starts in flight.
    pub fn in_flight(&self) -> usize {
        self.vms
            .values()
            .filter(|t| matches!(t.phase, VmPhase::Starting { .. }))
            .count()
    }

    /// Adds a VM (Running on `vm.host` when wanted Running and placed) or
    /// updates its record, keeping its phase. Wanting it Stopped stops any
    /// pending restart.
    pub fn upsert_vm(&mut self, vm: Vm, at_ms: u64) -> Vec<Command> {
        let id = vm.id.clone();
        let desired = vm.desired;
        match self.vms.get_mut(&id) {
            Some(t) => {
                let requeue = matches!(t.phase, VmPhase::Queued { .. })
                    && self.ready.remove(&(Reverse(t.vm.priority), id.clone()));
                let host = t.vm.host.take();
                t.vm = Vm { host, ..vm };
                if requeue {
                    self.ready.insert((Reverse(t.vm.priority), id.clone()));
                }
            }
            None => {
                let phase = match (&vm.host, vm.desired) {
                    (Some(h), Desired::Running) => VmPhase::Running { host: h.clone() },
                    (_, Desired::Stopped) => VmPhase::Stopped,
                    (None, Desired::Running) => VmPhase::Down {
                        reason: "not placed yet".into(),
                    },
                };
                let t = VmTrack {
                    vm,
                    phase,
                    failures: 0,
                    lost_on: None,
                    lost_at: None,
                    lease_lost: false,
                    avoid: None,
                    busy_streak: 0,
                    no_room_reported: false,
                };
                self.vms.insert(id.clone(), t);
            }
        }
        self.set_desired(&id, desired, at_ms).unwrap_or_default()
    }

    /// Forgets a VM (a start in flight is left to finish; its result is ignored).
    pub fn remove_vm(&mut self, id: &str) -> Result<VmTrack, RecoveryError> {
        self.unqueue(id);
        self.vms
            .remove(id)
            .ok_or_else(|| RecoveryError::UnknownVm(id.to_string()))
    }

    /// The user wants the VM running or stopped. Stopped: a queued restart
    /// is dropped now, a start in flight is not retried.
    pub fn set_desired(
        &mut self,
        id: &str,
        d: Desired,
        at_ms: u64,
    ) -> Result<Vec<Command>, RecoveryError> {
        let t = self
            .vms
            .get_mut(id)
            .ok_or_else(|| RecoveryError::UnknownVm(id.to_string()))?;
        t.vm.desired = d;
        if d == Desired::Running {
            return Ok(Vec::new());
        }
        let out = match t.phase {
            VmPhase::Queued { .. } => {
                t.phase = VmPhase::Stopped;
                self.unqueue(id);
                let d = "stopped on purpose: its pending restart is dropped".to_string();
                vec![event(
                    at_ms,
                    INFO,
                    kind::VM_NOT_RESTARTED,
                    None,
                    Some(id),
                    d,
                )]
            }
            VmPhase::Down { .. } | VmPhase::GaveUp { .. } => {
                t.phase = VmPhase::Stopped;
                Vec::new()
            }
            _ => Vec::new(),
        };
        Ok(out)
    }

    /// A reachable host reports the VM running there.
    pub fn vm_running(
        &mut self,
        id: &str,
        host: &str,
        lease_dead: bool,
    ) -> Result<(), RecoveryError> {
        let t = self
            .vms
            .get_mut(id)
            .ok_or_else(|| RecoveryError::UnknownVm(id.to_string()))?;
        t.phase = VmPhase::Running {
            host: host.to_string(),
        };
        t.failures = 0;
        t.lease_lost = lease_dead;
        t.avoid = None;
        self.unqueue(id);
        Ok(())
    }

    fn unqueue(&mut self, id: &str) {
        self.ready.retain(|(_, v)| v != id);
        self.waiting.retain(|(_, v)| v != id);
    }

    pub(crate) fn enqueue(&mut self, id: &str, ready_at: MonoTime, now: MonoTime) {
        let Some(t) = self.vms.get_mut(id) else {
            return;
        };
        t.phase = VmPhase::Queued { ready_at };
        if ready_at <= now {
            self.ready.insert((Reverse(t.vm.priority), id.to_string()));
        } else {
            self.waiting.insert((ready_at, id.to_string()));
        }
    }

    /// The next time a backoff ends or a token comes, when that matters
    /// (a token that is already there but could not be used is not).
    pub fn next_wakeup(&self, allowed: bool, now: MonoTime) -> Option<MonoTime> {
        let backoff = self.waiting.first().map(|(t, _)| (*t).max(now));
        let token = if allowed && !self.ready.is_empty() {
            self.bucket.next_token_at().filter(|t| *t > now)
        } else {
            None
        };
        match (backoff, token) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn backoff(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(20);
        self.cfg
            .backoff
            .saturating_mul(1u32 << shift)
            .min(self.cfg.backoff_max)
    }

    fn prune_tasks(&mut self) {
        let excess = self.tasks.len().saturating_sub(self.cfg.task_history);
        if excess == 0 {
            return;
        }
        let old: Vec<u64> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.finished_ms.is_some())
            .map(|(id, _)| *id)
            .take(excess)
            .collect();
        for id in old {
            self.tasks.remove(&id);
        }
    }
}
