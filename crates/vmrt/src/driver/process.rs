//! Process backend: the "VM" is any program (the lab runs `nosplit vm-proc ...`).
//! `prepare` forks it blocked before `exec` (see the gate module); `start` lets it exec.
//! Pause/resume are SIGSTOP/SIGCONT, stop is SIGTERM then SIGKILL, all sent to the
//! process group it leads. stdout and stderr go to `run_dir/console.log`.
//!
//! The program is told its disk through its own arguments: the agent gives
//! `nosplit vm-proc` the first disk ([`VmSpec::disk`]) only, so heartbeats go there;
//! [`VmSpec::extra_disks`] are not attached to anything but must still exist (`prepare`
//! refuses a missing one, as it does a missing first disk).

use super::gate::{spawn_gated, Gated};
use super::procs::{Liveness, ProcIdentity, Tracked, IDENT_FILE};
use super::{
    adoptable_identity, io_err, prepare_run_dir, DriverError, PreparedVm, RunningVm, StopReport,
    VmDriver, VmEvent, VmKind, VmSpec, VmState,
};
use rustix::process::Signal;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs plain programs as VMs.
#[derive(Debug, Clone, Default)]
pub struct ProcessDriver;

impl ProcessDriver {
    /// A new process driver.
    pub fn new() -> Self {
        Self
    }
}

impl VmDriver for ProcessDriver {
    fn kind(&self) -> &'static str {
        "process"
    }

    fn prepare(&self, spec: &VmSpec) -> Result<Box<dyn PreparedVm>, DriverError> {
        let VmKind::Process { program, args, env } = &spec.kind else {
            return Err(DriverError::InvalidSpec(
                "process driver needs VmKind::Process".into(),
            ));
        };
        prepare_run_dir(spec)?;
        let console = spec.run_dir.join("console.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&console)
            .map_err(io_err(format!("opening {}", console.display())))?;
        let err = out.try_clone().map_err(io_err("duplicating console fd"))?;
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(hook) = &spec.spawn_hook {
            hook(&mut cmd);
        }
        let gated = spawn_gated(cmd).map_err(|source| DriverError::Spawn {
            program: program.clone(),
            source,
        })?;
        let Some(ident) = ProcIdentity::of(gated.pid) else {
            return Err(DriverError::Spawn {
                program: program.clone(),
                source: std::io::Error::other("child vanished right after fork"),
            });
        };
        ident
            .write_file(&spec.run_dir.join(IDENT_FILE))
            .map_err(io_err("writing vm.ident"))?;
        Ok(Box::new(ProcessPrepared {
            gated,
            ident,
            program: program.clone(),
        }))
    }

    fn adopt(&self, spec: &VmSpec) -> Result<Box<dyn RunningVm>, DriverError> {
        let ident = adoptable_identity(spec)?;
        Ok(Box::new(ProcessVm {
            proc: Tracked::adopted(ident),
            reported: false,
        }))
    }
}

#[derive(Debug)]
struct ProcessPrepared {
    gated: Gated,
    ident: ProcIdentity,
    program: std::path::PathBuf,
}

impl PreparedVm for ProcessPrepared {
    fn pid(&self) -> u32 {
        self.ident.pid
    }

    fn identity(&self) -> ProcIdentity {
        self.ident
    }

    fn state(&mut self) -> Result<VmState, DriverError> {
        Ok(match self.ident.stat() {
            Some(s) if !matches!(s.state, 'Z' | 'X' | 'x') => VmState::Prelaunch,
            _ => VmState::Gone,
        })
    }

    fn start(self: Box<Self>) -> Result<Box<dyn RunningVm>, DriverError> {
        let ProcessPrepared {
            gated,
            ident,
            program,
        } = *self;
        let child = gated
            .open()
            .map_err(|source| DriverError::Spawn { program, source })?;
        Ok(Box::new(ProcessVm {
            proc: Tracked::own(child, ident),
            reported: false,
        }))
    }

    fn abort(mut self: Box<Self>) {
        self.gated.abort();
    }
}

#[derive(Debug)]
struct ProcessVm {
    proc: Tracked,
    reported: bool,
}

impl ProcessVm {
    fn send(&mut self, sig: Signal, what: &str) -> Result<(), DriverError> {
        if let Some(dead) = self.proc.poll().dead_state() {
            return Err(DriverError::WrongState(dead));
        }
        self.proc
            .signal(sig)
            .map_err(io_err(format!("sending {what}")))
    }
}

impl RunningVm for ProcessVm {
    fn pid(&self) -> u32 {
        self.proc.ident.pid
    }

    fn identity(&self) -> ProcIdentity {
        self.proc.ident
    }

    fn pause(&mut self) -> Result<(), DriverError> {
        self.send(Signal::STOP, "SIGSTOP")
    }

    fn resume(&mut self) -> Result<(), DriverError> {
        self.send(Signal::CONT, "SIGCONT")
    }

    fn stop(&mut self, timeout: Duration) -> Result<StopReport, DriverError> {
        self.proc
            .signal(Signal::TERM)
            .map_err(io_err("sending SIGTERM"))?;
        // a stopped process only acts on SIGTERM once continued
        self.proc
            .signal(Signal::CONT)
            .map_err(io_err("sending SIGCONT"))?;
        self.proc.finish_stop(timeout, "process")
    }

    fn kill(&mut self) -> Result<(), DriverError> {
        self.proc
            .signal(Signal::KILL)
            .map_err(io_err("sending SIGKILL"))
    }

    fn state(&mut self) -> Result<VmState, DriverError> {
        Ok(match self.proc.poll() {
            Liveness::Alive { stopped: true } => VmState::Paused,
            Liveness::Alive { stopped: false } => VmState::Running,
            Liveness::Exited(st) => VmState::Exited(st),
            Liveness::Gone => VmState::Gone,
        })
    }

    fn try_events(&mut self) -> Vec<VmEvent> {
        let ev = match self.proc.poll() {
            Liveness::Alive { .. } => return Vec::new(),
            _ if self.reported => return Vec::new(),
            Liveness::Exited(st) => VmEvent::Exited(st),
            Liveness::Gone => VmEvent::Gone,
        };
        self.reported = true;
        vec![ev]
    }

    fn wait_exit(&mut self, timeout: Duration) -> Result<VmState, DriverError> {
        self.proc
            .wait_dead(timeout)
            .dead_state()
            .ok_or_else(|| DriverError::Timeout(format!("process {} still alive", self.pid())))
    }
}
