//! The freeze hook `leased` runs when a VM's lease renewal is failing
//! (`nosplit vm-freeze ... --pid PID`). It must pause the VM and succeed
//! only once the VM is frozen with no I/O in flight, because `leased`
//! then counts it as stopped (see docs/timing.md):
//!
//! - QEMU: `stop` over the VM's second QMP socket (the agent holds the
//!   first). QEMU's `stop` drains in-flight block requests before it
//!   answers; when the storage hangs, it never answers, and the hook fails
//!   at its timeout (then `leased` kills the VM, or the watchdog resets the
//!   host). The status must then read `paused` (or `io-error`, where QEMU
//!   stopped itself after a failed request: nothing in flight either).
//! - Process VMs: SIGSTOP, then every thread must be in state `T`. A thread
//!   in the middle of a write is not (it stops only when the call returns),
//!   so a confirmed stop has no write in flight.
//!
//! The hook does not depend on the agent running: a wedged or dead agent
//! must not turn a freeze into a kill.

use std::path::Path;
use std::time::{Duration, Instant};

use nosplit_vmrt::qmp::QmpClient;

/// Why a freeze was not confirmed.
#[derive(Debug, thiserror::Error)]
pub enum FreezeError {
    /// QMP failed or timed out (e.g. the drain hangs on dead storage).
    #[error("QEMU at {sock}: {what}")]
    Qemu {
        /// The QMP socket.
        sock: String,
        /// What happened.
        what: String,
    },
    /// The process did not stop in time (a thread stuck in I/O).
    #[error("process {pid}: {what}")]
    Process {
        /// The pid.
        pid: u32,
        /// What happened.
        what: String,
    },
}

/// Pauses a QEMU guest through `sock` and confirms it is paused.
pub fn freeze_qemu(sock: &Path, timeout: Duration) -> Result<String, FreezeError> {
    let err = |what: String| FreezeError::Qemu {
        sock: sock.display().to_string(),
        what,
    };
    let mut c = QmpClient::connect(sock, timeout).map_err(|e| err(format!("connect: {e}")))?;
    c.execute_timeout("stop", None, timeout)
        .map_err(|e| err(format!("stop: {e}")))?;
    let st = c
        .query_status()
        .map_err(|e| err(format!("query-status: {e}")))?;
    match st.status.as_str() {
        "paused" | "io-error" => Ok(st.status),
        other => Err(err(format!("status {other:?} after stop"))),
    }
}

/// Resumes a QEMU guest through `sock`.
pub fn thaw_qemu(sock: &Path, timeout: Duration) -> Result<(), FreezeError> {
    let err = |what: String| FreezeError::Qemu {
        sock: sock.display().to_string(),
        what,
    };
    let mut c = QmpClient::connect(sock, timeout).map_err(|e| err(format!("connect: {e}")))?;
    c.execute_timeout("cont", None, timeout)
        .map_err(|e| err(format!("cont: {e}")))?;
    Ok(())
}

/// The scheduler states of every thread of `pid` (`None`: gone).
fn thread_states(pid: u32) -> Option<Vec<char>> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut out = Vec::new();
    for t in dir.flatten() {
        let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
        // The state follows the last ')' (the command may contain one).
        let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
        out.push(state);
    }
    Some(out)
}

/// SIGSTOPs `pid` and waits until every thread is stopped.
pub fn freeze_process(pid: u32, timeout: Duration) -> Result<(), FreezeError> {
    let err = |what: String| FreezeError::Process { pid, what };
    let p = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| err("not a valid pid".into()))?;
    rustix::process::kill_process(p, rustix::process::Signal::STOP)
        .map_err(|e| err(format!("SIGSTOP: {e}")))?;
    let start = Instant::now();
    loop {
        match thread_states(pid) {
            None => return Err(err("gone".into())),
            Some(s) if s.iter().all(|c| *c == 'T' || *c == 't') => return Ok(()),
            Some(s) if start.elapsed() > timeout => {
                return Err(err(format!("threads not stopped after {timeout:?}: {s:?}")))
            }
            Some(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// SIGCONTs `pid`.
pub fn thaw_process(pid: u32) -> Result<(), FreezeError> {
    let err = |what: String| FreezeError::Process { pid, what };
    let p = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| err("not a valid pid".into()))?;
    rustix::process::kill_process(p, rustix::process::Signal::CONT)
        .map_err(|e| err(format!("SIGCONT: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sleeping_process_freezes_and_thaws() {
        let mut c = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        freeze_process(c.id(), Duration::from_secs(2)).unwrap();
        assert!(thread_states(c.id()).unwrap().iter().all(|s| *s == 'T'));
        thaw_process(c.id()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(thread_states(c.id()).unwrap().iter().all(|s| *s != 'T'));
        c.kill().unwrap();
        c.wait().unwrap();
        assert!(freeze_process(c.id(), Duration::from_millis(100)).is_err());
    }

    #[test]
    fn a_missing_qmp_socket_is_not_a_freeze() {
        let e = freeze_qemu(
            Path::new("/nonexistent/freeze.sock"),
            Duration::from_millis(100),
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/freeze.sock"), "{e}");
    }
}
