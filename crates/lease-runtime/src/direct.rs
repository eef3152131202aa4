//! Direct lease operations on storage, with no daemon (like `sanlock
//! direct`): initialise, read, join, acquire, release, inquire.
//!
//! Each function checks what it is given before writing anything: the
//! area must fit the storage and be sector aligned, the records it reads
//! must decode, and an initialisation writes the whole area in one I/O.

use std::path::Path;
use std::time::Duration;

use nosplit_lease::format::{
    is_blank, Ballot, Geometry, HostSlot, Leader, LockspaceHeader, Name, OwnerId, Request,
};
use nosplit_lease::host::{HostEvent, HostLease, HostLeaseConfig, JoinMode};
use nosplit_lease::paxos::{
    LeaseError, LeaseInfo, LeaseMode, OpKind, OpResult, ResourceOp, ResourceSpec,
};
use nosplit_lease::timing::Timing;
use nosplit_lease::view::{HostView, Liveness};
use nosplit_storage::file::{FileStorage, OpenOpts};
use nosplit_storage::{AlignedBuf, SectorSize, Storage};

use crate::exec::{pump_host, run_op, AreaRef};
use crate::RuntimeError;

/// Timeout for direct reads and writes made outside a machine.
pub const DIRECT_IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a target's file. `create_len`: create or extend a regular file so
/// that it holds at least that many bytes from offset 0.
pub fn open(
    path: &Path,
    sector: Option<SectorSize>,
    create_len: Option<u64>,
) -> Result<FileStorage, RuntimeError> {
    Ok(FileStorage::open(
        path,
        OpenOpts {
            sector_size: sector,
            create_len,
        },
    )?)
}

pub(crate) fn check_area(s: &dyn Storage, base: u64, len: u64) -> Result<(), RuntimeError> {
    let sector = s.sector_size().bytes();
    if !base.is_multiple_of(sector as u64) {
        return Err(RuntimeError::Misaligned {
            path: s.describe(),
            offset: base,
            sector,
        });
    }
    let end = base.saturating_add(len);
    if end > s.size() {
        return Err(RuntimeError::TooSmall {
            path: s.describe(),
            offset: base,
            end,
            size: s.size(),
        });
    }
    Ok(())
}

pub(crate) fn read(
    s: &mut dyn Storage,
    off: u64,
    len: usize,
    what: &str,
) -> Result<Vec<u8>, RuntimeError> {
    s.read_sync(off, len, DIRECT_IO_TIMEOUT)
        .map(|b| b.to_vec())
        .map_err(|source| RuntimeError::Io {
            path: s.describe(),
            what: what.into(),
            source,
        })
}

pub(crate) fn write(
    s: &mut dyn Storage,
    off: u64,
    data: &[u8],
    what: &str,
) -> Result<(), RuntimeError> {
    s.write_sync(off, AlignedBuf::from_slice(data), DIRECT_IO_TIMEOUT)
        .map_err(|source| RuntimeError::Io {
            path: s.describe(),
            what: what.into(),
            source,
        })
}

pub(crate) fn sector_of(g: &Geometry, s: &dyn Storage) -> Result<(), RuntimeError> {
    let device = s.sector_size().bytes();
    if g.sector() != device {
        return Err(RuntimeError::SectorMismatch {
            path: s.describe(),
            area: g.sector(),
            device,
        });
    }
    Ok(())
}

/// Writes a new lockspace at `base`: the header and blank host slots.
pub fn init_lockspace(
    s: &mut dyn Storage,
    base: u64,
    name: Name,
    geometry: Geometry,
    io_timeout_ms: u32,
    uuid: [u8; 16],
) -> Result<LockspaceHeader, RuntimeError> {
    nosplit_lease::format::check_io_timeout(io_timeout_ms).map_err(RuntimeError::IoTimeout)?;
    sector_of(&geometry, s)?;
    check_area(s, base, geometry.lockspace_len())?;
    let header = LockspaceHeader {
        name,
        geometry,
        io_timeout_ms,
        uuid,
    };
    let mut area = vec![0u8; (1 + geometry.max_hosts() as usize) * geometry.sector()];
    header.encode(&mut area[..geometry.sector()]);
    write(s, base, &area, "writing the lockspace")?;
    Ok(header)
}

/// Writes a new, free resource lease at `base`.
pub fn init_resource(
    s: &mut dyn Storage,
    base: u64,
    lockspace: Name,
    resource: Name,
    geometry: Geometry,
) -> Result<Leader, RuntimeError> {
    sector_of(&geometry, s)?;
    check_area(s, base, geometry.resource_len())?;
    let leader = Leader {
        lockspace,
        resource,
        geometry,
        lver: 0,
        owner: None,
        writer: None,
        write_time_ms: 0,
    };
    let mut area = vec![0u8; geometry.resource_used_len()];
    leader.encode(&mut area[..geometry.sector()]);
    write(s, base, &area, "writing the resource lease")?;
    Ok(leader)
}

/// One host slot as read.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SlotDump {
    /// Host id.
    pub host_id: u32,
    /// The slot, if it decodes and is not blank.
    pub slot: Option<HostSlot>,
    /// The decode error, if any.
    pub error: Option<String>,
}

/// A whole lockspace as read.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LockspaceDump {
    /// The header.
    pub header: LockspaceHeader,
    /// The timing derived from it.
    pub timing: Timing,
    /// Every non-blank slot.
    pub slots: Vec<SlotDump>,
}

/// Reads and decodes the lockspace header at `base`.
pub fn read_header(s: &mut dyn Storage, base: u64) -> Result<LockspaceHeader, RuntimeError> {
    let sector = s.sector_size().bytes();
    check_area(s, base, sector as u64)?;
    let raw = read(s, base, sector, "reading the lockspace header")?;
    let h = LockspaceHeader::decode(&raw).map_err(|source| RuntimeError::Format {
        path: s.describe(),
        offset: base,
        source,
    })?;
    sector_of(&h.geometry, s)?;
    check_area(s, base, h.geometry.lockspace_len())?;
    Ok(h)
}

/// Reads a whole lockspace.
pub fn read_lockspace(s: &mut dyn Storage, base: u64) -> Result<LockspaceDump, RuntimeError> {
    let header = read_header(s, base)?;
    let g = header.geometry;
    let raw = read(
        s,
        base + g.sector() as u64,
        g.max_hosts() as usize * g.sector(),
        "reading host slots",
    )?;
    let mut slots = Vec::new();
    for (i, sec) in raw.chunks_exact(g.sector()).enumerate() {
        let host_id = u32::try_from(i + 1).unwrap_or(u32::MAX);
        if is_blank(sec) {
            continue;
        }
        match HostSlot::decode(sec, host_id) {
            Ok(slot) => slots.push(SlotDump {
                host_id,
                slot: Some(slot),
                error: None,
            }),
            Err(e) => slots.push(SlotDump {
                host_id,
                slot: None,
                error: Some(e.to_string()),
            }),
        }
    }
    Ok(LockspaceDump {
        timing: Timing::from_io_timeout_ms(header.io_timeout_ms),
        header,
        slots,
    })
}

/// Reads a whole resource lease (no lockspace needed).
pub fn read_resource(s: &mut dyn Storage, base: u64) -> Result<LeaseInfo, RuntimeError> {
    let sector = s.sector_size().bytes();
    check_area(s, base, sector as u64)?;
    let path = s.describe();
    let fmt = |source, off| RuntimeError::Format {
        path: path.clone(),
        offset: off,
        source,
    };
    let raw = read(s, base, sector, "reading the leader record")?;
    let leader = Leader::decode(&raw).map_err(|e| fmt(e, base))?;
    let g = leader.geometry;
    sector_of(&g, s)?;
    check_area(s, base, g.resource_len())?;
    let raw = read(s, base, g.resource_used_len(), "reading the resource lease")?;
    let request =
        Request::decode(&raw[sector..2 * sector]).map_err(|e| fmt(e, base + sector as u64))?;
    let mut ballots = Vec::new();
    for (i, sec) in raw[2 * sector..].chunks_exact(sector).enumerate() {
        let host = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let b = Ballot::decode(sec, host, &g).map_err(|e| fmt(e, base + g.ballot_offset(host)))?;
        if b != Ballot::blank(host) {
            ballots.push(b);
        }
    }
    let shared = ballots
        .iter()
        .filter_map(|b| {
            b.shared.map(|generation| OwnerId {
                host_id: b.host_id,
                generation,
            })
        })
        .collect();
    Ok(LeaseInfo {
        leader,
        request,
        ballots,
        shared,
    })
}

/// Joins the lockspace at `ls` as `host_id`; returns the running machine
/// (still owning the slot: keep renewing it with [`pump_host`] or a
/// [`crate::host_runner::HostRunner`], or leave) and the events seen.
pub fn join(
    ls: &mut AreaRef<'_>,
    lockspace: Name,
    host_id: u32,
    host_name: Name,
    mode: JoinMode,
) -> Result<(HostLease, Vec<HostEvent>), RuntimeError> {
    let header = read_header(ls.storage, ls.base)?;
    let timing = Timing::from_io_timeout_ms(header.io_timeout_ms);
    let cfg = HostLeaseConfig {
        lockspace,
        host_id,
        host_name,
        sector_size: header.geometry.sector_size(),
        mode,
        bootstrap_timeout: timing.io_timeout,
    };
    let mut host = HostLease::new(cfg);
    // Worst case: watch a stale slot for host_dead, then the join wait.
    let limit = timing.host_dead * 2 + timing.join_wait + timing.io_timeout * 4;
    let until = ls.storage.now() + limit;
    let events = pump_host(&mut host, ls, until, |e| {
        matches!(
            e,
            HostEvent::Joined { .. } | HostEvent::JoinFailed(_) | HostEvent::Lost(_)
        )
    });
    let path = ls.storage.describe();
    match events.last() {
        Some(HostEvent::Joined { .. }) => Ok((host, events)),
        Some(HostEvent::JoinFailed(e)) => Err(RuntimeError::Join {
            path,
            source: e.clone(),
        }),
        Some(HostEvent::Lost(r)) => Err(RuntimeError::HostLost {
            path,
            reason: r.to_string(),
        }),
        _ => Err(RuntimeError::Timeout {
            path,
            what: "join".into(),
            secs: limit.as_secs(),
        }),
    }
}

/// Leaves: marks the slot released. Every lease must be released first.
pub fn leave(host: &mut HostLease, ls: &mut AreaRef<'_>) -> Result<(), RuntimeError> {
    host.request_leave();
    let limit = host
        .timing()
        .map(|t| t.io_timeout * 4)
        .unwrap_or(DIRECT_IO_TIMEOUT);
    let until = ls.storage.now() + limit;
    let events = pump_host(host, ls, until, |e| matches!(e, HostEvent::Left));
    if events.iter().any(|e| matches!(e, HostEvent::Left)) {
        Ok(())
    } else {
        Err(RuntimeError::Timeout {
            path: ls.storage.describe(),
            what: "leave".into(),
            secs: limit.as_secs(),
        })
    }
}

/// What a direct resource operation needs to know.
#[derive(Debug, Clone)]
pub struct Direct {
    /// The lockspace header.
    pub header: LockspaceHeader,
    /// The resource.
    pub resource: Name,
    /// Acting as this incarnation.
    pub me: OwnerId,
}

impl Direct {
    /// Reads the lockspace header and checks that `me` is the incarnation
    /// its host slot shows (direct operations do not renew the host lease;
    /// the slot must belong to a joined host).
    pub fn prepare(
        ls: &mut AreaRef<'_>,
        resource: Name,
        me: OwnerId,
    ) -> Result<Direct, RuntimeError> {
        let header = read_header(ls.storage, ls.base)?;
        let g = header.geometry;
        if !g.valid_host(me.host_id) {
            let source = nosplit_lease::host::JoinError::HostId {
                host_id: me.host_id,
                max_hosts: g.max_hosts(),
            };
            return Err(RuntimeError::Join {
                path: ls.storage.describe(),
                source,
            });
        }
        let off = ls.base + g.host_slot_offset(me.host_id);
        let raw = read(ls.storage, off, g.sector(), "reading our host slot")?;
        let slot = if is_blank(&raw) {
            None
        } else {
            Some(
                HostSlot::decode(&raw, me.host_id).map_err(|source| RuntimeError::Format {
                    path: ls.storage.describe(),
                    offset: off,
                    source,
                })?,
            )
        };
        match slot {
            Some(s) if s.generation == me.generation && !s.released => Ok(Direct {
                header,
                resource,
                me,
            }),
            other => Err(RuntimeError::HostLost {
                path: ls.storage.describe(),
                reason: format!(
                    "host {} generation {} has not joined (slot shows {})",
                    me.host_id,
                    me.generation,
                    other
                        .map(|s| format!(
                            "gen {}{}",
                            s.generation,
                            if s.released { ", released" } else { "" }
                        ))
                        .unwrap_or_else(|| "nothing".into())
                ),
            }),
        }
    }

    fn spec(&self) -> ResourceSpec {
        ResourceSpec {
            lockspace: self.header.name.clone(),
            resource: self.resource.clone(),
            geometry: self.header.geometry,
        }
    }

    fn timing(&self) -> Timing {
        Timing::from_io_timeout_ms(self.header.io_timeout_ms)
    }

    /// Runs one operation.
    pub fn run(
        &self,
        kind: OpKind,
        ls: &mut AreaRef<'_>,
        res: &mut AreaRef<'_>,
        view: &mut HostView,
    ) -> Result<OpResult, RuntimeError> {
        check_area(res.storage, res.base, self.header.geometry.resource_len())?;
        let mut op = ResourceOp::new(self.spec(), self.me, kind, self.timing(), rand::random());
        run_op(&mut op, ls, res, view).map_err(|source| RuntimeError::Lease {
            path: res.storage.describe(),
            source,
        })
    }

    /// Acquires; with `wait`, retries a busy lease until its owner is dead
    /// or `wait` has passed.
    pub fn acquire(
        &self,
        mode: LeaseMode,
        expect_lver: Option<u64>,
        wait: Option<Duration>,
        ls: &mut AreaRef<'_>,
        res: &mut AreaRef<'_>,
        view: &mut HostView,
    ) -> Result<OpResult, RuntimeError> {
        let kind = OpKind::Acquire {
            mode,
            expect_lver,
            revalidate: false,
        };
        let give_up = wait.map(|w| res.storage.now() + w);
        loop {
            match self.run(kind, ls, res, view) {
                Err(RuntimeError::Lease {
                    source: LeaseError::Busy { .. } | LeaseError::BusyShared(_),
                    ..
                }) if give_up.is_some_and(|g| res.storage.now() < g) => {
                    // Poll at the renewal interval: each retry re-reads the
                    // owner's slot, which is what makes it DEAD eventually.
                    let until = res.storage.now() + self.timing().renew_interval;
                    while res.storage.wait(until).is_some() {}
                }
                r => return r,
            }
        }
    }
}

/// Watches a lockspace's host slots for `watch`, reading them every renewal
/// interval, and returns each non-blank host's liveness as judged from this
/// host's clock (only changes seen count: a host needs to be watched for the
/// host-dead time before it can be called DEAD).
pub fn observe_lockspace(
    s: &mut dyn Storage,
    base: u64,
    watch: Duration,
) -> Result<(LockspaceDump, Vec<(u32, Liveness)>), RuntimeError> {
    let header = read_header(s, base)?;
    let g = header.geometry;
    let timing = Timing::from_io_timeout_ms(header.io_timeout_ms);
    let mut view = HostView::default();
    let end = s.now() + watch;
    loop {
        let issued = s.now();
        let raw = read(
            s,
            base + g.sector() as u64,
            g.max_hosts() as usize * g.sector(),
            "reading host slots",
        )?;
        let done = s.now();
        for (i, sec) in raw.chunks_exact(g.sector()).enumerate() {
            let host = u32::try_from(i + 1).unwrap_or(u32::MAX);
            if is_blank(sec) {
                continue;
            }
            if let Ok(slot) = HostSlot::decode(sec, host) {
                view.observe(host, Some(slot), issued, done);
            }
        }
        if done >= end {
            break;
        }
        let until = (done + timing.renew_interval).min(end);
        while s.wait(until).is_some() {}
    }
    let dump = read_lockspace(s, base)?;
    let states = view
        .iter()
        .filter_map(|(h, _)| view.liveness(h, &timing).map(|l| (h, l)))
        .collect();
    Ok((dump, states))
}
