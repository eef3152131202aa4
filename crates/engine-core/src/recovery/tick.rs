//! One scheduling round: promote VMs whose backoff ended, then start the
//! ready ones in priority order while the token bucket, the per-host
//! limit and the free capacity allow.

use std::collections::BTreeSet;

use nosplit_clock::MonoTime;

use super::{Scheduler, VmPhase};
use crate::command::{event, kind, Command, INFO, WARNING};
use crate::model::Task;
use crate::placement::{self, Loads, Target};

/// What a scheduling round may use.
#[derive(Debug, Clone, Copy)]
pub struct TickCtx<'a> {
    /// Now.
    pub now: MonoTime,
    /// Now, ms since the epoch (for records).
    pub at_ms: u64,
    /// Automatic recovery allowed (no self-defense, no cluster maintenance).
    pub allowed: bool,
    /// Hosts a VM may be started on.
    pub targets: &'a [Target],
    /// Hosts in HA maintenance: VMs lost on them are not started.
    pub held: &'a BTreeSet<String>,
    /// Starts in flight per target (0 = no limit).
    pub per_host_limit: u32,
}

impl Scheduler {
    /// Runs one round.
    pub fn tick(&mut self, ctx: &TickCtx<'_>) -> Vec<Command> {
        let now = ctx.now;
        while let Some((at, id)) = self.waiting.first().cloned() {
            if at > now {
                break;
            }
            self.waiting.remove(&(at, id.clone()));
            if let Some(t) = self.vms.get(&id) {
                self.ready.insert((std::cmp::Reverse(t.vm.priority), id));
            }
        }
        let mut out = Vec::new();
        if !ctx.allowed
            || self.ready.is_empty()
            || ctx.targets.is_empty()
            || !self.bucket.available(now)
        {
            return out;
        }
        let mut loads = self.loads();
        let mut started = Vec::new();
        for (prio, id) in &self.ready {
            if !placement::any_room(ctx.targets, &loads, ctx.per_host_limit)
                || !self.bucket.available(now)
            {
                break;
            }
            let Some(t) = self.vms.get_mut(id) else {
                continue;
            };
            if t.lost_on.as_ref().is_some_and(|h| ctx.held.contains(h)) {
                continue;
            }
            let avoid = t.avoid.as_deref();
            let Some(target) =
                placement::pick(ctx.targets, &loads, &t.vm, ctx.per_host_limit, avoid)
            else {
                if !t.no_room_reported {
                    t.no_room_reported = true;
                    let d = format!(
                        "no eligible host has {} MiB and {} vCPUs free (or room under the per-host limit)",
                        t.vm.memory_mib, t.vm.vcpus
                    );
                    out.push(event(
                        ctx.at_ms,
                        WARNING,
                        kind::VM_NO_CAPACITY,
                        None,
                        Some(id),
                        d,
                    ));
                }
                continue;
            };
            if !self.bucket.try_take(now) {
                break;
            }
            let task_id = self.next_task;
            self.next_task += 1;
            placement::add(&mut loads, &target.name, &t.vm, true);
            t.phase = VmPhase::Starting {
                host: target.name.clone(),
                task: task_id,
            };
            t.no_room_reported = false;
            let lost_on = t.lost_on.clone().unwrap_or_default();
            let task = Task {
                id: task_id,
                vm: id.clone(),
                host: target.name.clone(),
                attempt: t.failures + 1,
                state: "running".into(),
                detail: format!(
                    "restart after host {lost_on} was lost (priority {})",
                    prio.0
                ),
                created_ms: ctx.at_ms,
                finished_ms: None,
            };
            let d = format!(
                "starting on {} (attempt {}, task {task_id}, priority {})",
                target.name,
                t.failures + 1,
                prio.0
            );
            out.push(event(
                ctx.at_ms,
                INFO,
                kind::VM_RESTARTING,
                Some(&target.name),
                Some(id),
                d,
            ));
            out.push(Command::StartVm {
                vm: id.clone(),
                host: target.name.clone(),
                task: task_id,
            });
            out.push(Command::TaskUpdate(task.clone()));
            self.tasks.insert(task_id, task);
            started.push((*prio, id.clone()));
        }
        for key in started {
            self.ready.remove(&key);
        }
        self.prune_tasks();
        out
    }

    fn loads(&self) -> Loads {
        let mut loads = Loads::new();
        for t in self.vms.values() {
            match &t.phase {
                VmPhase::Running { host } => placement::add(&mut loads, host, &t.vm, false),
                VmPhase::Starting { host, .. } => placement::add(&mut loads, host, &t.vm, true),
                _ => {}
            }
        }
        loads
    }
}
