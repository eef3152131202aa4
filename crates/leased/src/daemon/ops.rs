//! Resource lease operations run for holders: acquire and release through
//! the pure Disk Paxos machine, with this host's incarnation and liveness
//! view taken from the lockspace's renewal thread.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{LazyLock, Mutex};

use nosplit_lease::format::{LockspaceHeader, Name};
use nosplit_lease::paxos::{LeaseError, LeaseMode, OpKind, OpResult, ResourceOp, ResourceSpec};
use nosplit_lease::view::HostView;
use nosplit_lease::{OwnerId, Timing};
use nosplit_lease_runtime::exec::{run_op, AreaRef};
use nosplit_storage::file::{FileStorage, OpenOpts};
use nosplit_storage::{SectorSize, Storage};

use crate::api::{LeaseRef, Response};

/// What an operation needs from the lockspace.
#[derive(Debug, Clone)]
pub struct LsContext {
    /// The lockspace header (geometry, timing).
    pub header: LockspaceHeader,
    /// Lockspace storage path.
    pub path: String,
    /// Lockspace offset.
    pub offset: u64,
    /// Sector size of the storage.
    pub sector: SectorSize,
    /// Our incarnation.
    pub me: OwnerId,
    /// Our liveness view (a snapshot).
    pub view: HostView,
}

/// Idle handles by (path, sector size).
type Pool = HashMap<(String, usize), Vec<FileStorage>>;

/// Open handles, per (path, sector size), reused across operations: an
/// `O_DIRECT` open and its worker threads cost more than the lease I/O
/// itself. A handle is taken out for one operation and put back after.
static POOL: LazyLock<Mutex<Pool>> = LazyLock::new(Default::default);
/// Handles kept per file.
const POOL_MAX: usize = 4;

fn open(path: &str, sector: SectorSize) -> Result<FileStorage, Response> {
    let key = (path.to_string(), sector.bytes());
    if let Some(h) = POOL
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_mut(&key)
        .and_then(Vec::pop)
    {
        return Ok(h);
    }
    FileStorage::open(
        Path::new(path),
        OpenOpts {
            sector_size: Some(sector),
            create_len: None,
        },
    )
    .map_err(|e| Response::error("io", e.to_string()))
}

fn give_back(path: &str, h: FileStorage) {
    let key = (path.to_string(), h.sector_size().bytes());
    let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
    let v = pool.entry(key).or_default();
    if v.len() < POOL_MAX {
        v.push(h);
    }
}

/// Maps a lease error to a response.
pub fn lease_error(e: &LeaseError) -> Response {
    let kind = match e {
        LeaseError::Busy { .. } | LeaseError::BusyShared(_) | LeaseError::Contended(_) => "busy",
        LeaseError::VersionMismatch { .. } | LeaseError::OtherMode(_) | LeaseError::NotOwner(_) => {
            "conflict"
        }
        LeaseError::Corrupt(_) | LeaseError::Mismatch(_) => "corrupt",
        LeaseError::Io(_) => "io",
    };
    Response::error(kind, e.to_string())
}

/// Runs one operation on `lease`.
pub fn run(ctx: &mut LsContext, lease: &LeaseRef, kind: OpKind) -> Result<OpResult, Response> {
    let resource =
        Name::new(&lease.resource).map_err(|e| Response::error("invalid", e.to_string()))?;
    let mut ls = open(&ctx.path, ctx.sector)?;
    let mut res = open(&lease.path, ctx.sector)?;
    let g = ctx.header.geometry;
    if !lease.offset.is_multiple_of(g.sector() as u64)
        || lease.offset + g.resource_len() > nosplit_storage::Storage::size(&res)
    {
        return Err(Response::error(
            "invalid",
            format!(
                "{}:{}: no room for a lease area there",
                lease.path, lease.offset
            ),
        ));
    }
    let spec = ResourceSpec {
        lockspace: ctx.header.name.clone(),
        resource,
        geometry: g,
    };
    let timing = Timing::from_io_timeout_ms(ctx.header.io_timeout_ms);
    let mut op = ResourceOp::new(spec, ctx.me, kind, timing, rand::random());
    let mut lsa = AreaRef {
        storage: &mut ls,
        base: ctx.offset,
    };
    let mut resa = AreaRef {
        storage: &mut res,
        base: lease.offset,
    };
    let r = run_op(&mut op, &mut lsa, &mut resa, &mut ctx.view).map_err(|e| lease_error(&e));
    give_back(&ctx.path, ls);
    give_back(&lease.path, res);
    r
}

/// Acquire kind.
pub fn acquire_kind(mode: LeaseMode, lver: Option<u64>) -> OpKind {
    OpKind::Acquire {
        mode,
        expect_lver: lver,
        revalidate: false,
    }
}
