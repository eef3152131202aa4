//! Spawning helpers. [`spawn_gated`] forks a child that blocks in `pre_exec` until the
//! parent opens the gate, so the caller learns the pid (to bind a lease) before the
//! program runs. `std::process::Command::spawn` only returns after `exec`, so the spawn
//! runs on a helper thread and the child reports its pid through a pipe.
//!
//! Both helpers also put the child in its own process group (after the caller's hook),
//! so signals reach the whole VM (e.g. a shell and its `dd`) and a terminal's Ctrl-C to
//! the parent does not.

use rustix::pipe::{pipe_with, PipeFlags};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::thread::JoinHandle;

/// Adds our `pre_exec`: a new process group, unless the caller's hook
/// already made the child a session leader (`setsid`), which leads its own
/// group already (and may not call `setpgid`).
pub fn add_setpgid(cmd: &mut Command) {
    let hook = || {
        // SAFETY: plain syscalls on the calling process.
        let (pid, sid) = unsafe { (libc::getpid(), libc::getsid(0)) };
        if sid == pid {
            return Ok(());
        }
        // SAFETY: plain syscall on the calling process.
        if unsafe { libc::setpgid(0, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the closure only calls setpgid, which is async-signal-safe, and touches
    // no memory shared with the parent.
    unsafe { cmd.pre_exec(hook) };
}

/// A child blocked before `exec`.
#[derive(Debug)]
pub struct Gated {
    pub pid: u32,
    gate: Option<OwnedFd>,
    spawner: Option<JoinHandle<std::io::Result<Child>>>,
}

/// Forks `cmd` (hook already applied) and returns once the child is blocked at the gate.
pub fn spawn_gated(mut cmd: Command) -> std::io::Result<Gated> {
    let (gate_r, gate_w) = pipe_with(PipeFlags::CLOEXEC)?;
    let (pid_r, pid_w) = pipe_with(PipeFlags::CLOEXEC)?;
    let (gr, gw, pw) = (gate_r.as_raw_fd(), gate_w.as_raw_fd(), pid_w.as_raw_fd());
    let gate_wait = move || {
        // SAFETY: the child's copy of the gate's write end; closing it lets a parent
        // crash show up as EOF below.
        unsafe { libc::close(gw) };
        // A session leader (the caller's hook called setsid) already leads
        // its own group and may not call setpgid.
        // SAFETY: plain syscalls on the calling process.
        let leader = unsafe { libc::getsid(0) == libc::getpid() };
        // SAFETY: plain syscall on the calling process.
        if !leader && unsafe { libc::setpgid(0, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: getpid cannot fail.
        let me = unsafe { libc::getpid() }.to_ne_bytes();
        // SAFETY: writes 4 bytes from a live stack array to our pipe.
        if unsafe { libc::write(pw, me.as_ptr().cast(), me.len()) } != 4 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: closes our copy of the pid pipe's write end.
        unsafe { libc::close(pw) };
        let mut b = [0u8; 1];
        loop {
            // SAFETY: reads at most 1 byte into a live stack array.
            let n = unsafe { libc::read(gr, b.as_mut_ptr().cast(), 1) };
            if n == 1 {
                return Ok(());
            }
            let err = std::io::Error::last_os_error();
            if n < 0 && err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            // EOF: the parent closed the gate without opening it.
            return Err(std::io::Error::from_raw_os_error(libc::ECANCELED));
        }
    };
    // SAFETY: the closure runs in the forked child and only makes async-signal-safe
    // syscalls (close, setpgid, getpid, write, read) on plain integers and a stack buffer.
    unsafe { cmd.pre_exec(gate_wait) };
    let spawner = std::thread::Builder::new()
        .name("vm-spawn".into())
        .spawn(move || {
            let r = cmd.spawn();
            drop((gate_r, pid_w)); // keep both ends alive in the parent until the fork is done
            r
        })?;
    let mut buf = [0u8; 4];
    let mut pid_r = std::fs::File::from(pid_r);
    match pid_r.read_exact(&mut buf) {
        Ok(()) => {
            let pid = u32::try_from(i32::from_ne_bytes(buf)).unwrap_or(0);
            Ok(Gated {
                pid,
                gate: Some(gate_w),
                spawner: Some(spawner),
            })
        }
        Err(_) => {
            drop(gate_w);
            // the child failed before reporting (e.g. the hook's pre_exec failed)
            match spawner.join() {
                Ok(Ok(mut child)) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    Err(std::io::Error::other("child died before reaching the gate"))
                }
                Ok(Err(e)) => Err(e),
                Err(_) => Err(std::io::Error::other("spawn thread panicked")),
            }
        }
    }
}

impl Gated {
    /// Opens the gate: the child `exec`s. Returns the child once `exec` succeeded.
    pub fn open(mut self) -> std::io::Result<Child> {
        if let Some(gate) = self.gate.take() {
            rustix::io::write(&gate, &[1])?;
        }
        match self.spawner.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            _ => Err(std::io::Error::other("spawn thread lost")),
        }
    }

    /// Kills the blocked child and reaps it.
    pub fn abort(&mut self) {
        // While the spawn thread runs, the child is blocked at the gate and unreaped, so
        // its pid cannot have been reused.
        let blocked = self.spawner.as_ref().is_some_and(|h| !h.is_finished());
        if let (true, Ok(pid)) = (blocked, i32::try_from(self.pid)) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        self.gate = None;
        if let Some(Ok(Ok(mut child))) = self.spawner.take().map(JoinHandle::join) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Gated {
    fn drop(&mut self) {
        if self.spawner.is_some() {
            self.abort();
        }
    }
}
