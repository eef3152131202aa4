//! Starting processes "on" a lab host: in its network namespace and cgroup,
//! in a new session, but in the caller's mount namespace (so the lab's FUSE
//! mounts stay visible; unlike `ip netns exec`, no mount namespace is made).
//!
//! Files are opened before the fork; the child only calls `write`, `setns`
//! and `setsid`, which are async-signal-safe.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};

use crate::cgroup::cgroup_path;
use crate::naming::{netns_path, LabName};
use crate::NetError;

fn open_netns(lab: &LabName, host: u32) -> Result<File, NetError> {
    let path = netns_path(lab, host)?;
    File::open(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => NetError::NoNamespace(path.display().to_string()),
        _ => NetError::io("open", &path, e),
    })
}

/// Makes the child of `cmd` join the network namespace in `ns` before exec.
fn add_setns(cmd: &mut Command, ns: File) {
    // SAFETY: the closure runs in the forked child before exec; it only calls
    // setns(2) on an fd opened before the fork (owned by the closure) and reads
    // errno: async-signal-safe, no allocation, no locks.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Configures `cmd` so its child runs on host `host` of `lab`: before exec it
/// moves itself into the host's cgroup (so [`crate::power_off`] kills it and
/// all its descendants), joins the host's network namespace and calls
/// `setsid` (new session and process group; do not also use
/// `CommandExt::process_group`, which makes `setsid` fail with EPERM).
///
/// The namespace and cgroup must exist (after [`crate::up`]).
pub fn enter_host(cmd: &mut Command, lab: &LabName, host: u32) -> Result<(), NetError> {
    let ns = open_netns(lab, host)?;
    let dir = cgroup_path(lab, host)?;
    let procs = dir.join("cgroup.procs");
    let cg = OpenOptions::new()
        .write(true)
        .open(&procs)
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => NetError::NoCgroup(dir.clone()),
            _ => NetError::io("open", &procs, e),
        })?;
    // SAFETY: runs in the forked child before exec. It uses only fds opened
    // before the fork and owned by the closure, and calls write(2), setns(2)
    // and setsid(2), all async-signal-safe; building an io::Error from an
    // errno value does not allocate.
    unsafe {
        cmd.pre_exec(move || {
            let zero = b"0";
            let n = libc::write(cg.as_raw_fd(), zero.as_ptr().cast(), zero.len());
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if n != 1 {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

/// Runs `argv` on host `host` (see [`enter_host`]) and waits for it; stdin is
/// null, stdout and stderr are captured. A non-zero exit is not an error.
pub fn run_in_host(lab: &LabName, host: u32, argv: &[&str]) -> Result<Output, NetError> {
    let (program, args) = argv.split_first().ok_or_else(|| NetError::Spawn {
        cmd: "run_in_host".into(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "empty argv"),
    })?;
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    enter_host(&mut cmd, lab, host)?;
    cmd.output().map_err(|source| NetError::Spawn {
        cmd: argv.join(" "),
        source,
    })
}

/// A command for plumbing work inside the host's network namespace only
/// (no cgroup, no new session), e.g. `nft`.
pub(crate) fn netns_command(lab: &LabName, host: u32, program: &str) -> Result<Command, NetError> {
    let ns = open_netns(lab, host)?;
    let mut cmd = Command::new(program);
    add_setns(&mut cmd, ns);
    Ok(cmd)
}
