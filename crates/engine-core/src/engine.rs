//! [`Core`]: the detector and the scheduler behind one
//! `(state, input, now) -> commands` interface.
//!
//! The runtime calls [`Core::on_event`] for each input (it returns the
//! commands that input causes at once: task updates, events) and
//! [`Core::tick`] after each batch of inputs and at
//! [`Core::next_wakeup`] (state transitions, recovery decisions, starts).
//! Nothing here reads a clock or does I/O.

use std::collections::BTreeSet;
use std::time::Duration;

use nosplit_clock::MonoTime;

use crate::command::{event, kind, Command, INFO};
use crate::detect::{Decision, DetectError, Detector, HostTrack, LeaseState};
use crate::model::{Desired, HaSettings, Host, HostState, Plane, Strategy, Task, Vm};
use crate::placement::Target;
use crate::recovery::{RecoveryConfig, RecoveryError, Scheduler, StartOutcome, TickCtx, VmTrack};

/// Errors of the core's inputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// A host input named an unknown host.
    #[error(transparent)]
    Detect(#[from] DetectError),
    /// A VM or task input named an unknown VM or task.
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
    /// The strategy table is invalid.
    #[error("invalid HA strategy: {0}")]
    BadStrategy(String),
    /// The settings are invalid.
    #[error("invalid HA settings: {0}")]
    BadSettings(String),
}

/// Knobs of the core that are not run-time settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreConfig {
    /// A plane is down after this long without a heartbeat.
    pub plane_timeout: Duration,
    /// Scheduler knobs.
    pub recovery: RecoveryConfig,
    /// `at_ms` of events and tasks counts from here.
    pub epoch: MonoTime,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            plane_timeout: Duration::from_millis(1500),
            recovery: RecoveryConfig::default(),
            epoch: MonoTime::ZERO,
        }
    }
}

/// What the runtime tells the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Add a host or update its record (state kept).
    UpsertHost(Host),
    /// Forget a host.
    RemoveHost(String),
    /// Add a VM or update its record (phase kept; `host` only used when new).
    UpsertVm(Vm),
    /// Forget a VM.
    RemoveVm(String),
    /// A heartbeat from `host` on `plane`.
    Heartbeat {
        /// Host.
        host: String,
        /// Plane.
        plane: Plane,
    },
    /// The engine read `host`'s lease in the lockspace.
    Lease {
        /// Host.
        host: String,
        /// State.
        state: LeaseState,
    },
    /// HA maintenance for one host.
    HostMaintenance {
        /// Host.
        host: String,
        /// On.
        on: bool,
    },
    /// New settings (rate limits, thresholds, cluster maintenance...).
    Settings(HaSettings),
    /// A new strategy table.
    Strategy(Strategy),
    /// The user wants the VM running or stopped.
    SetDesired {
        /// VM.
        vm: String,
        /// What.
        desired: Desired,
    },
    /// A reachable host reports the VM running there.
    VmRunning {
        /// VM.
        vm: String,
        /// Host.
        host: String,
    },
    /// A reachable host's agent reports the VM exited there.
    VmExited {
        /// VM.
        vm: String,
        /// Host.
        host: String,
    },
    /// The result of a start task.
    StartResult {
        /// Task id from [`Command::StartVm`].
        task: u64,
        /// Outcome.
        outcome: StartOutcome,
    },
}

/// Checks settings: percentages within 0..=100, at least one attempt, and
/// thresholds that cannot both hold at once (`recover_pct > 100 - defense_pct`).
pub fn validate_settings(s: &HaSettings) -> Result<(), String> {
    let mut errs = Vec::new();
    if s.defense_pct > 100 {
        errs.push(format!("defense_pct {} is above 100", s.defense_pct));
    }
    if s.recover_pct > 100 {
        errs.push(format!("recover_pct {} is above 100", s.recover_pct));
    }
    if s.max_attempts == 0 {
        errs.push("max_attempts must be at least 1".to_string());
    }
    if s.defense_pct > 0
        && s.defense_pct <= 100
        && u32::from(s.recover_pct) + u32::from(s.defense_pct) <= 100
    {
        errs.push(format!(
            "recover_pct {} must be above 100 - defense_pct ({}), or self-defense would end as it starts",
            s.recover_pct,
            100 - s.defense_pct
        ));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("; "))
    }
}

/// The engine's decision core.
#[derive(Debug, Clone)]
pub struct Core {
    cfg: CoreConfig,
    settings: HaSettings,
    strategy: Strategy,
    det: Detector,
    sched: Scheduler,
}

impl Core {
    /// A core with no hosts and no VMs.
    pub fn new(
        cfg: CoreConfig,
        settings: HaSettings,
        strategy: Strategy,
        now: MonoTime,
    ) -> Result<Core, CoreError> {
        validate_settings(&settings).map_err(CoreError::BadSettings)?;
        strategy.validate().map_err(CoreError::BadStrategy)?;
        Ok(Core {
            det: Detector::new(cfg.plane_timeout),
            sched: Scheduler::new(cfg.recovery, settings.global_rate, now),
            cfg,
            settings,
            strategy,
        })
    }

    fn ms(&self, now: MonoTime) -> u64 {
        now.saturating_since(self.cfg.epoch)
            .as_millis()
            .try_into()
            .unwrap_or(u64::MAX)
    }

    /// Takes one input in; returns what it causes at once.
    pub fn on_event(&mut self, input: Input, now: MonoTime) -> Result<Vec<Command>, CoreError> {
        let at = self.ms(now);
        let out = match input {
            Input::UpsertHost(h) => {
                self.det.upsert_host(h, now);
                Vec::new()
            }
            Input::RemoveHost(h) => {
                self.det.remove_host(&h)?;
                Vec::new()
            }
            Input::UpsertVm(vm) => self.sched.upsert_vm(vm, at),
            Input::RemoveVm(vm) => {
                self.sched.remove_vm(&vm)?;
                Vec::new()
            }
            Input::Heartbeat { host, plane } => {
                self.det.heartbeat(&host, plane, now)?;
                Vec::new()
            }
            Input::Lease { host, state } => {
                let before = self.det.set_lease(&host, state)?;
                if state == LeaseState::Dead && before != LeaseState::Dead {
                    self.sched.lease_dead(&host, now, at)
                } else {
                    Vec::new()
                }
            }
            Input::HostMaintenance { host, on } => {
                self.det.set_maintenance(&host, on)?;
                let d = format!(
                    "host HA maintenance {}",
                    if on {
                        "on: its VMs are not recovered"
                    } else {
                        "off"
                    }
                );
                vec![event(at, INFO, kind::CONFIG_CHANGED, Some(&host), None, d)]
            }
            Input::Settings(s) => {
                validate_settings(&s).map_err(CoreError::BadSettings)?;
                self.sched.set_rate(s.global_rate, now);
                let d = format!("settings: {:?} -> {s:?}", self.settings);
                self.settings = s;
                vec![event(at, INFO, kind::CONFIG_CHANGED, None, None, d)]
            }
            Input::Strategy(s) => {
                s.validate().map_err(CoreError::BadStrategy)?;
                self.strategy = s;
                vec![event(
                    at,
                    INFO,
                    kind::CONFIG_CHANGED,
                    None,
                    None,
                    "strategy table replaced".into(),
                )]
            }
            Input::SetDesired { vm, desired } => self.sched.set_desired(&vm, desired, at)?,
            Input::VmRunning { vm, host } => {
                let dead = self.lease_of(&host) == Some(LeaseState::Dead);
                self.sched.vm_running(&vm, &host, dead)?;
                Vec::new()
            }
            Input::VmExited { vm, host } => self.sched.vm_exited(&vm, &host, now, at),
            Input::StartResult { task, outcome } => {
                let host = self.sched.tasks().get(&task).map(|t| t.host.clone());
                let dead = host.is_some_and(|h| self.lease_of(&h) == Some(LeaseState::Dead));
                let max = self.settings.max_attempts;
                self.sched.on_result(task, outcome, now, at, dead, max)?
            }
        };
        Ok(out)
    }

    fn lease_of(&self, host: &str) -> Option<LeaseState> {
        self.det.host(host).map(|t| t.lease)
    }

    /// Moves the state machines to `now` and starts what may start.
    pub fn tick(&mut self, now: MonoTime) -> Vec<Command> {
        let at = self.ms(now);
        let (mut out, decisions) = self.det.evaluate(now, &self.settings, &self.strategy, at);
        for d in decisions {
            match d {
                Decision::Recover(h) | Decision::Returned(h) => {
                    out.extend(self.sched.host_lost(&h, now, at))
                }
            }
        }
        let mut targets = Vec::new();
        let mut held = BTreeSet::new();
        for (name, t) in self.det.hosts() {
            if t.host.maintenance {
                held.insert(name.clone());
            } else if t.state == HostState::Up && t.lease == LeaseState::Live {
                targets.push(Target {
                    name: name.clone(),
                    cpus: t.host.cpus,
                    memory_mib: t.host.memory_mib,
                });
            }
        }
        let ctx = TickCtx {
            now,
            at_ms: at,
            allowed: self.recovery_allowed(),
            targets: &targets,
            held: &held,
            per_host_limit: self.settings.per_host_limit,
        };
        out.extend(self.sched.tick(&ctx));
        let any_recovering = self
            .det
            .hosts()
            .values()
            .any(|t| t.state == HostState::Recovering);
        if !any_recovering {
            return out;
        }
        let pending = self.sched.pending_by_lost_host();
        let recovering: Vec<String> = self
            .det
            .hosts()
            .iter()
            .filter(|(n, t)| t.state == HostState::Recovering && !pending.contains_key(*n))
            .map(|(n, _)| n.clone())
            .collect();
        for h in recovering {
            out.extend(self.det.mark_down(&h, now, at));
        }
        out
    }

    fn recovery_allowed(&self) -> bool {
        !self.settings.maintenance && !self.det.self_defense()
    }

    /// The next time `tick` has something to do without a new input.
    pub fn next_wakeup(&self, now: MonoTime) -> Option<MonoTime> {
        let a = self.det.next_wakeup(&self.settings, now);
        let b = self.sched.next_wakeup(self.recovery_allowed(), now);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A host's state.
    pub fn host_state(&self, name: &str) -> Option<HostState> {
        self.det.host(name).map(|t| t.state)
    }

    /// Every host's state, by name.
    pub fn host_states(&self) -> Vec<(String, HostState)> {
        self.det
            .hosts()
            .iter()
            .map(|(n, t)| (n.clone(), t.state))
            .collect()
    }

    /// A host as the detector tracks it.
    pub fn host(&self, name: &str) -> Option<&HostTrack> {
        self.det.host(name)
    }

    /// A VM as the scheduler tracks it.
    pub fn vm(&self, id: &str) -> Option<&VmTrack> {
        self.sched.vm(id)
    }

    /// Whether the VM is meant to run and, in this core's view, runs on
    /// `host`: a stop reported from there is then the running instance's
    /// (a report from an older instance elsewhere is not).
    pub fn runs_on(&self, vm: &str, host: &str) -> bool {
        self.sched.vm(vm).is_some_and(|t| {
            t.vm.desired == crate::model::Desired::Running
                && matches!(&t.phase, crate::recovery::VmPhase::Running { host: h } if h == host)
        })
    }

    /// Tasks by id (running and the latest finished).
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.sched.tasks().values()
    }

    /// One task.
    pub fn task(&self, id: u64) -> Option<&Task> {
        self.sched.tasks().get(&id)
    }

    /// VMs waiting for a restart.
    pub fn queue_len(&self) -> usize {
        self.sched.queue_len()
    }

    /// Starts in flight.
    pub fn in_flight(&self) -> usize {
        self.sched.in_flight()
    }

    /// Whether self-defense holds automatic recovery.
    pub fn self_defense(&self) -> bool {
        self.det.self_defense()
    }

    /// Current settings.
    pub fn settings(&self) -> &HaSettings {
        &self.settings
    }

    /// Current strategy.
    pub fn strategy(&self) -> &Strategy {
        &self.strategy
    }
}
