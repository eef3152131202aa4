//! VM runtimes behind one trait, [`VmDriver`], with two backends: [`QemuDriver`] (a real
//! TCG guest driven over QMP) and [`ProcessDriver`] (any program, used for scale).
//!
//! Life cycle, built so the caller can bind the VM to its lease before any guest code
//! runs:
//! 1. [`VmDriver::prepare`] creates the process but runs no guest instruction (QEMU is
//!    started with `-S`; a process VM is forked and blocked before `exec`). The pid is
//!    known ([`PreparedVm::pid`]). Dropping or aborting a prepared VM kills and reaps it.
//! 2. [`PreparedVm::start`] lets it run and returns a [`RunningVm`].
//! 3. Dropping a [`RunningVm`] leaves the VM running (like an agent restart);
//!    [`VmDriver::adopt`] re-attaches from the files in `run_dir`, checking the process
//!    start time so a reused pid is never adopted.
//!
//! Files in `run_dir`: `vm.ident` (pid and start time), `console.log`, and for QEMU
//! `qmp.sock`, `qemu.pid` and `qemu.log` (QEMU's own stderr).

mod gate;
mod process;
mod procs;
mod qemu;

pub use process::ProcessDriver;
pub use procs::{group_members, read_stat, ProcIdentity, ProcStat, IDENT_FILE};
pub use qemu::{map_status, qemu_args, QemuConfig, QemuDriver};

use crate::qmp::{QmpError, QmpEvent};
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::time::Duration;

/// Caller hook run on the `Command` before spawning (e.g. to add a `pre_exec` that joins
/// a network namespace or cgroup). The driver's own `pre_exec` runs after the hook's.
pub type SpawnHook = Arc<dyn Fn(&mut Command) + Send + Sync>;

/// What to run.
#[derive(Clone)]
pub struct VmSpec {
    /// VM id, `[A-Za-z0-9._-]{1,48}`.
    pub id: String,
    /// Instance id (unique per start), same alphabet.
    pub inst: String,
    /// The VM's first disk (raw file); heartbeats go to its first 32 KiB.
    pub disk: PathBuf,
    /// Its further disks (raw files), attached in order after `disk` (QEMU); a process
    /// VM is not given them, but they must exist too.
    pub extra_disks: Vec<PathBuf>,
    /// Guest memory (QEMU only).
    pub memory_mib: u32,
    /// Guest CPUs (QEMU only).
    pub vcpus: u32,
    /// Directory for sockets, pid files and the console log (created if missing).
    pub run_dir: PathBuf,
    /// Backend-specific part.
    pub kind: VmKind,
    /// Optional caller hook, see [`SpawnHook`].
    pub spawn_hook: Option<SpawnHook>,
}

impl std::fmt::Debug for VmSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmSpec")
            .field("id", &self.id)
            .field("inst", &self.inst)
            .field("disk", &self.disk)
            .field("extra_disks", &self.extra_disks)
            .field("memory_mib", &self.memory_mib)
            .field("vcpus", &self.vcpus)
            .field("run_dir", &self.run_dir)
            .field("kind", &self.kind)
            .field("spawn_hook", &self.spawn_hook.is_some())
            .finish()
    }
}

/// Backend-specific bits of a [`VmSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmKind {
    /// A QEMU guest booted from the driver's [`crate::image::GuestImage`].
    Qemu {
        /// Heartbeat interval passed as `nosplit.interval_ms`.
        interval_ms: u32,
        /// Extra QEMU arguments (e.g. `-netdev ...`), appended last.
        extra_args: Vec<String>,
    },
    /// A plain program (e.g. `nosplit vm-proc --disk ... --vm ... --inst ...`).
    Process {
        /// Program path.
        program: PathBuf,
        /// Its arguments.
        args: Vec<String>,
        /// Extra environment variables.
        env: Vec<(String, String)>,
    },
}

/// Observable state of a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmState {
    /// Prepared, no guest code has run.
    Prelaunch,
    /// Guest runs.
    Running,
    /// Paused by us (QEMU `stop`, SIGSTOP).
    Paused,
    /// QEMU paused itself after a disk I/O error (`werror=stop`); `resume` retries.
    IoErrorPaused,
    /// Another QEMU run state (e.g. `internal-error`, `guest-panicked`, `shutdown`).
    Other(String),
    /// Our child exited with this status.
    Exited(ExitStatus),
    /// The process is gone and its exit status is unknown (adopted VM, or pid reused).
    Gone,
}

impl VmState {
    /// True for [`VmState::Exited`] and [`VmState::Gone`].
    pub fn is_dead(&self) -> bool {
        matches!(self, VmState::Exited(_) | VmState::Gone)
    }
}

/// Something that happened to a running VM.
#[derive(Debug, Clone, PartialEq)]
pub enum VmEvent {
    /// A QMP event (SHUTDOWN, STOP, RESUME, BLOCK_IO_ERROR, ...).
    Qmp(QmpEvent),
    /// The process exited (reported once).
    Exited(ExitStatus),
    /// The process vanished, status unknown (reported once).
    Gone,
    /// The QMP connection broke while the process still existed.
    MonitorLost(String),
}

/// Outcome of [`RunningVm::stop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopReport {
    /// True if the graceful request timed out and SIGKILL was sent.
    pub forced: bool,
    /// Exit status when the VM was our child.
    pub status: Option<ExitStatus>,
}

/// Driver failures.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The spec is unusable.
    #[error("invalid VM spec: {0}")]
    InvalidSpec(String),
    /// `run_dir` already belongs to a live VM process.
    #[error("run dir {run_dir} belongs to live process {pid}")]
    AlreadyRunning {
        /// The run dir.
        run_dir: PathBuf,
        /// The live pid.
        pid: u32,
    },
    /// Starting the process failed.
    #[error("spawning {program}: {source}")]
    Spawn {
        /// Program.
        program: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A file or signal operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A QMP command failed.
    #[error(transparent)]
    Qmp(#[from] QmpError),
    /// QEMU did not come up (its log tail included).
    #[error("QEMU failed to start: {0}")]
    Launch(String),
    /// Waiting timed out.
    #[error("timed out: {0}")]
    Timeout(String),
    /// Nothing adoptable in the run dir.
    #[error("cannot adopt: {0}")]
    Adopt(String),
    /// The VM is not in a state that allows the operation.
    #[error("VM is {0:?}")]
    WrongState(VmState),
}

/// A VM runtime backend.
pub trait VmDriver: Send + Sync + std::fmt::Debug {
    /// Short backend name (`qemu`, `process`).
    fn kind(&self) -> &'static str;
    /// Creates the VM process without running guest code.
    fn prepare(&self, spec: &VmSpec) -> Result<Box<dyn PreparedVm>, DriverError>;
    /// Re-attaches to a VM started earlier (maybe by another process of ours).
    fn adopt(&self, spec: &VmSpec) -> Result<Box<dyn RunningVm>, DriverError>;
    /// Same as [`PreparedVm::start`].
    fn start(&self, prepared: Box<dyn PreparedVm>) -> Result<Box<dyn RunningVm>, DriverError> {
        prepared.start()
    }
}

/// A VM whose process exists but has run no guest code. Dropping it kills and reaps it.
pub trait PreparedVm: Send + std::fmt::Debug {
    /// Process id (the one to bind to a lease).
    fn pid(&self) -> u32;
    /// Pid plus start time.
    fn identity(&self) -> ProcIdentity;
    /// [`VmState::Prelaunch`] while waiting; a dead state if it died.
    fn state(&mut self) -> Result<VmState, DriverError>;
    /// Lets the guest run. On error the process is killed and reaped.
    fn start(self: Box<Self>) -> Result<Box<dyn RunningVm>, DriverError>;
    /// Kills and reaps the process (same as dropping).
    fn abort(self: Box<Self>);
}

/// A started VM. Dropping the handle leaves the VM running.
pub trait RunningVm: Send + std::fmt::Debug {
    /// Process id.
    fn pid(&self) -> u32;
    /// Pid plus start time.
    fn identity(&self) -> ProcIdentity;
    /// Freezes the guest (QEMU `stop`, process SIGSTOP).
    fn pause(&mut self) -> Result<(), DriverError>;
    /// Unfreezes it (QEMU `cont`, also after an I/O error; process SIGCONT).
    fn resume(&mut self) -> Result<(), DriverError>;
    /// Graceful stop (QEMU `quit`, process SIGTERM), SIGKILL when `timeout` passes.
    fn stop(&mut self, timeout: Duration) -> Result<StopReport, DriverError>;
    /// Sends SIGKILL (does not wait; see [`RunningVm::wait_exit`]).
    fn kill(&mut self) -> Result<(), DriverError>;
    /// Current state.
    fn state(&mut self) -> Result<VmState, DriverError>;
    /// Events since the last call (non-blocking).
    fn try_events(&mut self) -> Vec<VmEvent>;
    /// Waits until the process is dead; returns [`VmState::Exited`] or [`VmState::Gone`].
    fn wait_exit(&mut self, timeout: Duration) -> Result<VmState, DriverError>;
}

/// Checks an id against `[A-Za-z0-9._-]{1,48}`.
pub fn validate_name(what: &str, s: &str) -> Result<(), DriverError> {
    let ok = !s.is_empty()
        && s.len() <= 48
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(DriverError::InvalidSpec(format!(
            "{what} {s:?} must match [A-Za-z0-9._-]{{1,48}}"
        )))
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DriverError {
    let what = what.into();
    move |source| DriverError::Io { what, source }
}

/// Common checks + run dir setup for `prepare`: validates ids and refuses a run dir
/// whose `vm.ident` names a live process.
fn prepare_run_dir(spec: &VmSpec) -> Result<(), DriverError> {
    validate_name("vm id", &spec.id)?;
    validate_name("instance id", &spec.inst)?;
    if !spec.disk.is_file() {
        return Err(DriverError::InvalidSpec(format!(
            "disk {} is not a file",
            spec.disk.display()
        )));
    }
    for (i, d) in spec.extra_disks.iter().enumerate() {
        if !d.is_file() {
            return Err(DriverError::InvalidSpec(format!(
                "extra disk {} ({}) is not a file",
                i + 1,
                d.display()
            )));
        }
    }
    std::fs::create_dir_all(&spec.run_dir).map_err(io_err(format!(
        "creating run dir {}",
        spec.run_dir.display()
    )))?;
    if let Ok(id) = ProcIdentity::read_file(&spec.run_dir.join(procs::IDENT_FILE)) {
        if id.is_alive() {
            return Err(DriverError::AlreadyRunning {
                run_dir: spec.run_dir.clone(),
                pid: id.pid,
            });
        }
    }
    Ok(())
}

/// Reads `vm.ident` from the run dir and checks the process is still that one.
fn adoptable_identity(spec: &VmSpec) -> Result<ProcIdentity, DriverError> {
    let path = spec.run_dir.join(procs::IDENT_FILE);
    let id = ProcIdentity::read_file(&path)
        .map_err(|e| DriverError::Adopt(format!("{}: {e}", path.display())))?;
    if !id.is_alive() {
        return Err(DriverError::Adopt(format!(
            "process {} (start time {}) is gone or the pid was reused",
            id.pid, id.start_time
        )));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(validate_name("vm", "vm-1.a_b").is_ok());
        assert!(validate_name("vm", "").is_err());
        assert!(validate_name("vm", "a b").is_err());
        assert!(validate_name("vm", &"x".repeat(49)).is_err());
        let e = validate_name("vm id", "x'y").unwrap_err().to_string();
        assert!(e.contains("vm id"), "{e}");
    }
}
