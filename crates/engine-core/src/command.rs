//! What the core asks the runtime to do: start a VM, publish an event,
//! record a task. Also the event vocabulary (severities and kinds), so
//! every decision the core takes is published with its cause.
//!
//! Events are [`EngineEvent`]s with `seq = 0`: the runtime numbers them
//! when it stores them. `at_ms` is milliseconds since the core's epoch
//! ([`crate::engine::CoreConfig::epoch`]).

use crate::model::{EngineEvent, Task};

/// Severity: informational.
pub const INFO: &str = "info";
/// Severity: something is wrong, the core is handling it.
pub const WARNING: &str = "warning";
/// Severity: an operator should look (self-defense, a VM given up).
pub const ALARM: &str = "alarm";

/// Event kinds the core emits.
pub mod kind {
    /// A plane stopped heartbeating or the lease is failing; the grace runs.
    pub const HOST_SUSPECT: &str = "host-suspect";
    /// Every plane heartbeats and the lease is renewed.
    pub const HOST_UP: &str = "host-up";
    /// Past the grace, recovery is not started (the detail says why).
    pub const RECOVERY_HELD: &str = "recovery-held";
    /// Past the grace, HA maintenance: not recovered.
    pub const RECOVERY_SKIPPED: &str = "recovery-skipped";
    /// The host's HA VMs are being restarted elsewhere.
    pub const HOST_RECOVERING: &str = "host-recovering";
    /// Recovery of the host is finished.
    pub const HOST_DOWN: &str = "host-down";
    /// Too many hosts lost at once: automatic recovery stopped.
    pub const SELF_DEFENSE: &str = "self-defense";
    /// Enough hosts up again: automatic recovery resumed.
    pub const SELF_RECOVERY: &str = "self-recovery";
    /// A VM is no longer running (its host was lost).
    pub const VM_LOST: &str = "vm-lost";
    /// A restart attempt was ordered.
    pub const VM_RESTARTING: &str = "vm-restarting";
    /// A restart succeeded.
    pub const VM_RESTARTED: &str = "vm-restarted";
    /// A start was refused: the VM's lease is still held elsewhere.
    pub const VM_START_BUSY: &str = "vm-start-busy";
    /// A start failed; it will be retried.
    pub const VM_START_FAILED: &str = "vm-start-failed";
    /// Too many failed attempts: the VM is not restarted any more.
    pub const VM_GAVE_UP: &str = "vm-gave-up";
    /// No host has room for the VM right now.
    pub const VM_NO_CAPACITY: &str = "vm-no-capacity";
    /// The VM was stopped on purpose: it is not restarted.
    pub const VM_NOT_RESTARTED: &str = "vm-not-restarted";
    /// A start result came for a task that is no longer current.
    pub const LATE_RESULT: &str = "late-result";
    /// Settings, strategy or maintenance changed.
    pub const CONFIG_CHANGED: &str = "config-changed";
}

/// A command for the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Start `vm` on `host`; answer with [`crate::engine::Input::StartResult`] for `task`.
    StartVm {
        /// VM id.
        vm: String,
        /// Target host name.
        host: String,
        /// Task id of this attempt.
        task: u64,
    },
    /// Publish (store, stream) this event; `seq` is 0, the runtime numbers it.
    Event(EngineEvent),
    /// A task was created or changed: store this version.
    TaskUpdate(Task),
}

/// Builds an event.
pub(crate) fn event(
    at_ms: u64,
    severity: &str,
    kind: &str,
    host: Option<&str>,
    vm: Option<&str>,
    detail: String,
) -> Command {
    Command::Event(EngineEvent {
        seq: 0,
        at_ms,
        severity: severity.to_string(),
        kind: kind.to_string(),
        host: host.map(str::to_string),
        vm: vm.map(str::to_string),
        detail,
    })
}
