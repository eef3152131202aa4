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
//! - Process VMs: SIGSTOP to the process group the VM leads (as the
//!   driver's pause does: a shell VM and its `dd` stop together), then every
//!   thread of every process of the group must be in state `T`. A thread in
//!   the middle of a write is not (it stops only when the call returns), so
//!   a confirmed stop has no write in flight anywhere in the VM.
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

/// The scheduler states of every thread of `pid`, by thread id (`None`:
/// gone).
fn thread_states(pid: u32) -> Option<Vec<(u32, char)>> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut out = Vec::new();
    for t in dir.flatten() {
        let Some(tid) = t.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
        // The state follows the last ')' (the command may contain one).
        let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
        out.push((tid, state));
    }
    Some(out)
}

/// Whether a thread in `state` runs no code and has no I/O in flight:
/// stopped, a zombie, or a parent waiting in `vfork` until its child execs
/// (state `D` in the kernel's clone; shells and `posix_spawn` vfork, and a
/// group stop can catch the child before its exec: the child is in the
/// group and must be stopped itself). `wchan` is read only for `D`.
fn quiet(state: char, wchan: impl FnOnce() -> String) -> bool {
    match state {
        'T' | 't' | 'Z' | 'X' | 'x' => true,
        'D' => matches!(
            wchan().trim(),
            "kernel_clone" | "wait_for_vfork_done" | "_do_fork" | "do_fork"
        ),
        _ => false,
    }
}

fn raw_pid(pid: u32) -> Option<rustix::process::Pid> {
    i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
}

/// Whether `pid` leads its own process group (a VM's process does: the
/// driver starts it in a group of its own, and signals that group).
fn leads_group(pid: u32) -> Option<bool> {
    let st = nosplit_vmrt::driver::read_stat(pid)?;
    Some(i64::from(st.pgrp) == i64::from(pid))
}

/// Sends `sig` to the group `pid` leads, or to `pid` alone if it leads none.
pub(crate) fn signal_vm(pid: u32, sig: rustix::process::Signal) -> Result<(), FreezeError> {
    let err = |what: String| FreezeError::Process { pid, what };
    let p = raw_pid(pid).ok_or_else(|| err("not a valid pid".into()))?;
    let group = leads_group(pid).ok_or_else(|| err("gone".into()))?;
    let r = if group {
        rustix::process::kill_process_group(p, sig)
    } else {
        rustix::process::kill_process(p, sig)
    };
    r.map_err(|e| err(format!("{sig:?}: {e}")))
}

/// The threads of the VM `pid` (its whole group, if it leads one) that are
/// not stopped, as `(pid, state)`; `None` if `pid` itself is gone. A member
/// that exits meanwhile, or is a zombie, runs no code and is left out.
fn not_stopped(pid: u32, group: bool) -> Option<Vec<(u32, char)>> {
    let members = if group {
        nosplit_vmrt::driver::group_members(i32::try_from(pid).ok()?)
    } else {
        vec![pid]
    };
    let mut out = Vec::new();
    let mut leader = false;
    for m in members {
        let Some(states) = thread_states(m) else {
            continue;
        };
        if m == pid {
            if states.iter().all(|(_, c)| matches!(c, 'Z' | 'X' | 'x')) {
                return None;
            }
            leader = true;
        }
        out.extend(
            states
                .into_iter()
                .filter(|(tid, c)| {
                    !quiet(*c, || {
                        std::fs::read_to_string(format!("/proc/{m}/task/{tid}/wchan"))
                            .unwrap_or_default()
                    })
                })
                .map(|(_, c)| (m, c)),
        );
    }
    leader.then_some(out)
}

/// SIGSTOPs the VM `pid` (the whole process group it leads, as the
/// driver's pause does) and waits until every thread of every process of
/// the group is stopped. The stop is sent again while waiting, so a
/// process forked just before it is stopped too.
pub fn freeze_process(pid: u32, timeout: Duration) -> Result<(), FreezeError> {
    let err = |what: String| FreezeError::Process { pid, what };
    let group = leads_group(pid).ok_or_else(|| err("gone".into()))?;
    signal_vm(pid, rustix::process::Signal::STOP)?;
    let start = Instant::now();
    loop {
        match not_stopped(pid, group) {
            None => return Err(err("gone".into())),
            Some(s) if s.is_empty() => return Ok(()),
            Some(s) if start.elapsed() > timeout => {
                return Err(err(format!(
                    "threads not stopped after {timeout:?} (pid, state): {s:?}"
                )))
            }
            Some(_) => {
                signal_vm(pid, rustix::process::Signal::STOP)?;
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

/// SIGCONTs the VM `pid` (the whole group it leads).
pub fn thaw_process(pid: u32) -> Result<(), FreezeError> {
    signal_vm(pid, rustix::process::Signal::CONT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nosplit_vmrt::driver::{ProcessDriver, RunningVm, VmDriver, VmKind, VmSpec};

    /// Polls `f` until it holds (the deadline only bounds a broken run).
    fn eventually(what: &str, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(start.elapsed() < Duration::from_secs(20), "{what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn all_stopped(pid: u32) -> bool {
        thread_states(pid)
            .unwrap()
            .iter()
            .all(|(_, s)| matches!(s, 'T' | 't'))
    }

    #[test]
    fn only_stopped_dead_or_vfork_waiting_threads_are_quiet() {
        let never = || -> String { panic!("wchan read for a state that is not D") };
        for s in ['T', 't', 'Z', 'X'] {
            assert!(quiet(s, never), "{s}");
        }
        for s in ['R', 'S'] {
            assert!(!quiet(s, never), "{s}");
        }
        // A write in flight, or in the page cache, is not quiet.
        assert!(!quiet('D', || "folio_wait_bit_common".into()));
        assert!(!quiet('D', || "0".into()));
        assert!(!quiet('D', String::new));
        assert!(quiet('D', || "kernel_clone\n".into()));
        assert!(quiet('D', || "wait_for_vfork_done".into()));
    }

    #[test]
    fn a_sleeping_process_freezes_and_thaws() {
        let mut c = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        // It shares the test's process group: only it is stopped.
        assert_eq!(leads_group(c.id()), Some(false));
        freeze_process(c.id(), Duration::from_secs(2)).unwrap();
        assert!(all_stopped(c.id()));
        assert!(!all_stopped(std::process::id()), "the test itself runs");
        thaw_process(c.id()).unwrap();
        eventually("thawed", || !all_stopped(c.id()));
        c.kill().unwrap();
        c.wait().unwrap();
        assert!(freeze_process(c.id(), Duration::from_millis(100)).is_err());
    }

    /// A process VM whose shell runs a child: the freeze must stop both
    /// (the child could be the one writing), and the thaw resume both.
    #[test]
    fn a_process_vm_with_a_child_freezes_as_a_whole() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("d.img");
        std::fs::write(&disk, [0u8; 512]).unwrap();
        let spec = VmSpec {
            id: "p".into(),
            inst: "p.1".into(),
            disk,
            extra_disks: vec![],
            memory_mib: 0,
            vcpus: 0,
            run_dir: dir.path().join("run"),
            kind: VmKind::Process {
                program: "/bin/sh".into(),
                args: vec!["-c".into(), "sleep 300 & sleep 300; wait".into()],
                env: Vec::new(),
            },
            spawn_hook: None,
        };
        let mut vm: Box<dyn RunningVm> = ProcessDriver::new()
            .prepare(&spec)
            .unwrap()
            .start()
            .unwrap();
        let pid = vm.pid();
        let pgrp = i32::try_from(pid).unwrap();
        let members = || nosplit_vmrt::driver::group_members(pgrp);
        eventually("the shell and its two children", || members().len() == 3);
        freeze_process(pid, Duration::from_secs(5)).unwrap();
        // Each member stopped (or, caught in vfork, waiting for a stopped
        // child).
        for m in members() {
            let ok = thread_states(m).unwrap().iter().all(|(t, s)| {
                quiet(*s, || {
                    std::fs::read_to_string(format!("/proc/{m}/task/{t}/wchan")).unwrap_or_default()
                })
            });
            assert!(ok, "member {m} of the VM is stopped");
        }
        assert!(members().iter().any(|m| *m != pid && all_stopped(*m)));
        thaw_process(pid).unwrap();
        eventually("every member runs again", || {
            members().iter().all(|m| !all_stopped(*m))
        });
        vm.kill().unwrap();
        vm.wait_exit(Duration::from_secs(10)).unwrap();
        // (Zombies may linger if nothing reaps orphans here.)
        eventually("the children go with the group", || {
            members().iter().all(|m| {
                nosplit_vmrt::driver::read_stat(*m).is_none_or(|s| matches!(s.state, 'Z' | 'X'))
            })
        });
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
