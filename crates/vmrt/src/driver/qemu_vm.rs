//! The QEMU VM handle shared by the prepared and running phases: QMP commands with
//! reconnection, state mapping and event collection.

use super::super::procs::{Liveness, Tracked};
use super::super::{io_err, DriverError, RunningVm, StopReport, VmEvent, VmState};
use super::map_status;
use crate::driver::ProcIdentity;
use crate::qmp::{QmpClient, QmpError};
use rustix::process::Signal;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug)]
pub(super) struct QemuVm {
    pub(super) proc: Tracked,
    qmp: Option<QmpClient>,
    sock: PathBuf,
    qmp_timeout: Duration,
    reported: bool,
    lost: Option<String>,
}

impl QemuVm {
    pub(super) fn new(proc: Tracked, qmp: Option<QmpClient>, sock: PathBuf, t: Duration) -> Self {
        Self {
            proc,
            qmp,
            sock,
            qmp_timeout: t,
            reported: false,
            lost: None,
        }
    }

    /// The dead state if the process is gone (after a short grace, since QEMU closes its
    /// socket just before it exits).
    fn dead_after_grace(&mut self) -> Option<VmState> {
        self.proc.wait_dead(Duration::from_millis(500)).dead_state()
    }

    fn client(&mut self) -> Result<&mut QmpClient, DriverError> {
        if let Some(dead) = self.proc.poll().dead_state() {
            return Err(DriverError::WrongState(dead));
        }
        if self.qmp.is_none() {
            self.qmp = Some(QmpClient::connect(&self.sock, self.qmp_timeout)?);
        }
        self.qmp
            .as_mut()
            .ok_or(DriverError::WrongState(VmState::Gone))
    }

    fn call(&mut self, cmd: &str) -> Result<serde_json::Value, DriverError> {
        let r = self.client()?.execute(cmd, None);
        match r {
            Ok(v) => Ok(v),
            Err(e @ (QmpError::Closed | QmpError::Io(_))) => {
                self.qmp = None;
                match self.dead_after_grace() {
                    Some(dead) => Err(DriverError::WrongState(dead)),
                    None => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn exec(&mut self, cmd: &str) -> Result<(), DriverError> {
        self.call(cmd).map(|_| ())
    }

    pub(super) fn state(&mut self) -> Result<VmState, DriverError> {
        match self.call("query-status") {
            Ok(v) => match v.get("status").and_then(|s| s.as_str()) {
                Some(s) => Ok(map_status(s)),
                None => Err(QmpError::Protocol(format!("bad query-status reply {v}")).into()),
            },
            Err(DriverError::WrongState(dead)) => Ok(dead),
            Err(e) => Err(e),
        }
    }
}

impl RunningVm for QemuVm {
    fn pid(&self) -> u32 {
        self.proc.ident.pid
    }

    fn identity(&self) -> ProcIdentity {
        self.proc.ident
    }

    fn pause(&mut self) -> Result<(), DriverError> {
        self.exec("stop")
    }

    fn resume(&mut self) -> Result<(), DriverError> {
        self.exec("cont")
    }

    fn stop(&mut self, timeout: Duration) -> Result<StopReport, DriverError> {
        let quit_timeout = timeout.min(self.qmp_timeout);
        if let Ok(c) = self.client() {
            // the reply may never come (QEMU exits, or its I/O hangs): ignore errors
            let _ = c.execute_timeout("quit", None, quit_timeout);
        }
        self.qmp = None;
        let who = format!("QEMU {}", self.pid());
        self.proc.finish_stop(timeout, &who)
    }

    fn kill(&mut self) -> Result<(), DriverError> {
        self.proc
            .signal(Signal::KILL)
            .map_err(io_err("sending SIGKILL"))
    }

    fn state(&mut self) -> Result<VmState, DriverError> {
        QemuVm::state(self)
    }

    fn try_events(&mut self) -> Vec<VmEvent> {
        let mut out = Vec::new();
        if let Some(c) = &mut self.qmp {
            let polled = c.poll_events();
            out.extend(c.take_events().into_iter().map(VmEvent::Qmp));
            if let Err(e) = polled {
                self.qmp = None;
                self.lost = Some(e.to_string());
            }
        }
        let l = self.proc.poll();
        match l {
            Liveness::Alive { .. } => {
                if let Some(why) = self.lost.take() {
                    out.push(VmEvent::MonitorLost(why));
                }
            }
            _ if self.reported => {}
            Liveness::Exited(st) => {
                self.reported = true;
                out.push(VmEvent::Exited(st));
            }
            Liveness::Gone => {
                self.reported = true;
                out.push(VmEvent::Gone);
            }
        }
        out
    }

    fn wait_exit(&mut self, timeout: Duration) -> Result<VmState, DriverError> {
        self.proc
            .wait_dead(timeout)
            .dead_state()
            .ok_or_else(|| DriverError::Timeout(format!("QEMU {} still alive", self.pid())))
    }
}
