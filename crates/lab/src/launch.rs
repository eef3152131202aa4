//! Starting one VM instance on a lab host, bound to its lease: the process
//! is created with no guest code run (QEMU `-S`, or a process held before
//! exec), registered with the host's `leased` and given the VM's lease; only
//! then does the guest start. A lease held elsewhere means the process is
//! discarded and the start reported busy. With protection off (the control
//! runs) the lease steps are skipped.
//!
//! This is the sequence the host agent will run; the lab runs it itself
//! until the agent lands.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use nosplit_leased::api::{LeaseRef, Request, Response};
use nosplit_vmrt::driver::{RunningVm, SpawnHook, VmDriver, VmKind, VmSpec};

use crate::host::HostCtx;
use crate::layout::LOCKSPACE;

/// Why a start failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    /// The lease is held by another (live) owner.
    #[error("lease busy: {0}")]
    Busy(String),
    /// The host's leased is not ready (still joining the lockspace).
    #[error("host not ready: {0}")]
    NotReady(String),
    /// Anything else.
    #[error("{0}")]
    Failed(String),
}

/// One start.
#[derive(Debug, Clone)]
pub struct LaunchReq {
    /// VM id.
    pub vm: String,
    /// Instance id (unique per start).
    pub inst: String,
    /// The host.
    pub host: HostCtx,
    /// What runs.
    pub kind: VmKind,
    /// Byte offset of the VM's lease in the lease file; `None`: no lease
    /// (protection off).
    pub lease_offset: Option<u64>,
}

/// The hook that puts a VM's process on the host (namespace and cgroup). If
/// that fails, the spawn fails (the process must never run outside its
/// host's power domain).
fn host_hook(h: &HostCtx) -> SpawnHook {
    let (lab, n) = (h.lab.clone(), h.n);
    Arc::new(move |cmd: &mut Command| {
        if nosplit_labnet::enter_host(cmd, &lab, n).is_err() {
            // SAFETY: runs in the forked child before exec and only builds
            // an io::Error from a raw errno (no allocation, no locks).
            unsafe {
                cmd.pre_exec(|| Err(io::Error::from_raw_os_error(libc::ENOENT)));
            }
        }
    })
}

/// Starts the instance; returns it running.
pub fn launch(driver: &dyn VmDriver, req: &LaunchReq) -> Result<Box<dyn RunningVm>, LaunchError> {
    let h = &req.host;
    let spec = VmSpec {
        id: req.vm.clone(),
        inst: req.inst.clone(),
        disk: h.layout.via(h.n, &h.layout.disk(&req.vm)),
        memory_mib: 128,
        vcpus: 1,
        run_dir: h.layout.vm_run(&req.vm, &req.inst),
        kind: req.kind.clone(),
        spawn_hook: Some(host_hook(h)),
    };
    let prepared = driver
        .prepare(&spec)
        .map_err(|e| LaunchError::Failed(format!("prepare on host {}: {e}", h.n)))?;
    if let Some(offset) = req.lease_offset {
        let pid = prepared.pid();
        let fail = |prepared: Box<dyn nosplit_vmrt::driver::PreparedVm>, e: LaunchError| {
            prepared.abort();
            Err(e)
        };
        match h.leased_call(&Request::Register {
            pid: Some(pid),
            freeze_hook: None,
        }) {
            Ok(Response::Registered { .. }) => {}
            other => {
                return fail(
                    prepared,
                    LaunchError::Failed(format!("register with leased on host {}: {other:?}", h.n)),
                )
            }
        }
        let lease = LeaseRef {
            lockspace: LOCKSPACE.into(),
            resource: req.vm.clone(),
            path: path_string(h.layout.via(h.n, &h.layout.xleases())),
            offset,
        };
        match h.leased_call(&Request::Acquire {
            pid: Some(pid),
            lease,
            mode: nosplit_lease::paxos::LeaseMode::Exclusive,
            lver: None,
        }) {
            Ok(Response::Acquired { .. }) => {}
            Ok(Response::Error { kind, message }) if kind == "busy" || kind == "conflict" => {
                return fail(prepared, LaunchError::Busy(message))
            }
            Ok(Response::Error { message, .. }) if message.contains("still joining") => {
                return fail(prepared, LaunchError::NotReady(message))
            }
            other => {
                return fail(
                    prepared,
                    LaunchError::Failed(format!("acquire on host {}: {other:?}", h.n)),
                )
            }
        }
    }
    prepared
        .start()
        .map_err(|e| LaunchError::Failed(format!("start on host {}: {e}", h.n)))
}

fn path_string(p: PathBuf) -> String {
    p.to_string_lossy().into_owned()
}
