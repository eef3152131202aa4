//! The daemon: lockspace membership, holders, the client socket, the
//! supervisor loop, and restart re-adoption.
//!
//! Threads: one renewal thread per lockspace ([`HostRunner`]); one thread
//! per client connection ([`conn`]); one supervisor thread ([`supervisor`])
//! that turns renewal trouble into holder escalation, watches holders exit,
//! and arms the watchdog; one short-lived thread per revalidation of a
//! frozen holder's leases ([`freeze`]). Shared state sits behind one mutex
//! that is never held across storage I/O.

mod conn;
mod freeze;
mod ops;
mod startup;
mod supervisor;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crossbeam_channel::Sender;
use nosplit_clock::{Clock, MonoTime, RealClock};
use nosplit_lease::format::{LockspaceHeader, Name};
use nosplit_lease::host::{HostEvent, HostLease, HostLeaseConfig, JoinMode};
use nosplit_lease_runtime::host_runner::HostRunner;
use nosplit_storage::file::{FileStorage, OpenOpts};
use nosplit_storage::SectorSize;

use crate::api::{Event, HeldLease, HolderStatus, HostState, LockspaceStatus, Status};
use crate::config::Config;
use crate::state::{SavedHolder, SavedLockspace, SavedState};
use crate::supervise::HolderId;

pub use startup::{run, DaemonError};

/// How a lockspace is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LsState {
    Joining,
    Joined,
    /// Renewal is late or failing: no new acquires.
    Failing,
    /// The incarnation is void; rejoin once its holders are gone.
    Lost,
}

impl LsState {
    fn as_str(self) -> &'static str {
        match self {
            LsState::Joining => "joining",
            LsState::Joined => "joined",
            LsState::Failing => "failing",
            LsState::Lost => "lost",
        }
    }
}

/// One lockspace this host is in.
#[derive(Debug)]
pub(crate) struct Ls {
    pub(crate) saved: SavedLockspace,
    pub(crate) header: LockspaceHeader,
    pub(crate) runner: HostRunner,
    pub(crate) state: LsState,
}

/// Whether a holder may run, as far as its leases go (mirrors the
/// supervisor's policy, for the other threads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Freeze {
    /// Not frozen.
    Running,
    /// Frozen by its hook; leases suspended.
    Frozen,
    /// Frozen; its leases are being revalidated.
    Revalidating,
}

impl Freeze {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Freeze::Running => "running",
            Freeze::Frozen => "frozen",
            Freeze::Revalidating => "revalidating",
        }
    }
}

/// A registered holder.
#[derive(Debug, Clone)]
pub(crate) struct Holder {
    pub(crate) id: HolderId,
    pub(crate) freeze_hook: Option<Vec<String>>,
    pub(crate) leases: Vec<HeldLease>,
    /// The process exited; its leases are being released (maybe slowly,
    /// on hung storage). It no longer counts as running anywhere.
    pub(crate) gone: bool,
    /// Frozen holders issue no I/O: they do not count as running (no
    /// watchdog cover needed, no obstacle to a rejoin).
    pub(crate) freeze: Freeze,
}

impl Holder {
    /// Running (not frozen) and holding a lease in `lockspace`.
    pub(crate) fn uses(&self, lockspace: &str) -> bool {
        !self.gone
            && self.freeze == Freeze::Running
            && self.leases.iter().any(|l| l.lease.lockspace == lockspace)
    }
}

/// How many revalidation failures are remembered for `Revalidate`.
const FAILED_KEPT: usize = 64;

/// State shared by every thread.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) cfg: Config,
    pub(crate) lockspaces: BTreeMap<String, Ls>,
    pub(crate) holders: BTreeMap<u32, Holder>,
    pub(crate) subscribers: Vec<Sender<Event>>,
    /// The watchdog, shared by the supervisor and the acquire path. Lock
    /// order: the watchdog before this state (see `supervisor::arm`).
    pub(crate) watchdog: Arc<Mutex<Box<dyn crate::watchdog::Watchdog>>>,
    /// What the watchdog is (for status, without taking its lock).
    pub(crate) watchdog_desc: String,
    /// Acquires in progress per lockspace: the watchdog covers them too.
    pub(crate) acquiring: BTreeMap<String, usize>,
    /// Lockspace events for the supervisor, tagged with the lockspace name.
    pub(crate) events: Sender<(String, MonoTime, HostEvent)>,
    /// Holders killed because revalidation failed, and why (newest last).
    pub(crate) revalidation_failed: Vec<(HolderId, String)>,
}

/// Locks the watchdog (a panic elsewhere must not stop arming).
pub(crate) fn lock_wd(
    w: &Mutex<Box<dyn crate::watchdog::Watchdog>>,
) -> MutexGuard<'_, Box<dyn crate::watchdog::Watchdog>> {
    w.lock().unwrap_or_else(|p| p.into_inner())
}

/// The shared state handle.
pub(crate) type Shared = Arc<Mutex<Inner>>;

pub(crate) fn lock(s: &Shared) -> MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    /// Remembers that `id` was killed because revalidation failed.
    pub(crate) fn note_failed(&mut self, id: HolderId, reason: String) {
        self.revalidation_failed.push((id, reason));
        let n = self.revalidation_failed.len();
        if n > FAILED_KEPT {
            self.revalidation_failed.drain(..n - FAILED_KEPT);
        }
    }

    /// Sends an event to every subscriber, dropping those that went away.
    pub(crate) fn broadcast(&mut self, e: Event) {
        self.subscribers.retain(|s| s.send(e.clone()).is_ok());
    }

    /// Saves the state file; a failure is logged (the daemon keeps going:
    /// the watchdog, not the file, protects holders).
    pub(crate) fn save(&self) {
        let s = SavedState {
            boot_id: crate::proc::boot_id(),
            lockspaces: self.lockspaces.values().map(|l| l.saved.clone()).collect(),
            holders: self
                .holders
                .values()
                .map(|h| SavedHolder {
                    pid: h.id.pid,
                    start_time: h.id.start_time,
                    freeze_hook: h.freeze_hook.clone(),
                    leases: h.leases.clone(),
                    frozen: h.freeze != Freeze::Running,
                })
                .collect(),
        };
        if let Err(e) = s.save(&self.cfg.state_path()) {
            eprintln!("leased: cannot save state: {e}");
        }
    }

    /// The status report.
    pub(crate) fn status(&self) -> Status {
        let now = RealClock.now();
        let lockspaces = self
            .lockspaces
            .iter()
            .map(|(name, l)| {
                let st = l.runner.state();
                let hosts = st
                    .view
                    .iter()
                    .filter_map(|(h, o)| {
                        let slot = o.slot.as_ref()?;
                        let state = st.timing.and_then(|t| st.view.liveness(h, &t))?;
                        Some(HostState {
                            host_id: h,
                            name: slot.host_name.to_string(),
                            generation: slot.generation,
                            state: state.to_string(),
                        })
                    })
                    .collect();
                LockspaceStatus {
                    name: name.clone(),
                    path: l.saved.path.clone(),
                    offset: l.saved.offset,
                    host_id: l.saved.host_id,
                    generation: st.owner.map(|o| o.generation).unwrap_or(0),
                    state: l.state.as_str().to_string(),
                    io_timeout_ms: u64::from(l.header.io_timeout_ms),
                    since_renewal_ms: st
                        .last_renewal
                        .map(|t| u64::try_from((now - t).as_millis()).unwrap_or(u64::MAX)),
                    renewal_latency_ms: st
                        .renewal_latency
                        .iter()
                        .map(|(_, d)| d.as_secs_f64() * 1e3)
                        .collect(),
                    hosts,
                }
            })
            .collect();
        let holders = self
            .holders
            .values()
            .map(|h| HolderStatus {
                pid: h.id.pid,
                start_time: h.id.start_time,
                leases: h.leases.clone(),
                state: h.freeze.as_str().to_string(),
            })
            .collect();
        Status {
            host_name: self.cfg.host_name.to_string(),
            watchdog: self.watchdog_desc.clone(),
            lockspaces,
            holders,
        }
    }
}

/// Why a lockspace could not be started.
#[derive(Debug, thiserror::Error)]
pub enum JoinStartError {
    /// The storage could not be opened or read.
    #[error("{0}")]
    Storage(String),
}

/// Reads the header and starts a renewal thread joining `saved`.
pub(crate) fn start_lockspace(
    cfg: &Config,
    saved: &SavedLockspace,
    mode: JoinMode,
    events: Sender<(String, MonoTime, HostEvent)>,
) -> Result<(LockspaceHeader, HostRunner), JoinStartError> {
    let sector = SectorSize::from_bytes(u64::from(saved.sector_size))
        .ok_or_else(|| JoinStartError::Storage(format!("sector size {}", saved.sector_size)))?;
    let err = |e: String| JoinStartError::Storage(format!("{}: {e}", saved.path));
    let open = || {
        FileStorage::open(
            Path::new(&saved.path),
            OpenOpts {
                sector_size: Some(sector),
                create_len: None,
            },
        )
    };
    let mut st = open().map_err(|e| err(e.to_string()))?;
    let header = nosplit_lease_runtime::direct::read_header(&mut st, saved.offset)
        .map_err(|e| err(e.to_string()))?;
    let name = Name::new(&saved.name).map_err(|e| err(e.to_string()))?;
    if header.name != name {
        return Err(err(format!(
            "holds lockspace {}, not {}",
            header.name, saved.name
        )));
    }
    let host = HostLease::new(HostLeaseConfig {
        lockspace: name,
        host_id: saved.host_id,
        host_name: cfg.host_name.clone(),
        sector_size: header.geometry.sector_size(),
        mode,
        bootstrap_timeout: Duration::from_millis(u64::from(header.io_timeout_ms)),
    });
    // Events are tagged with the lockspace name by a small forwarder.
    let (tx, rx) = crossbeam_channel::unbounded::<(MonoTime, HostEvent)>();
    let tag = saved.name.clone();
    std::thread::Builder::new()
        .name(format!("events-{tag}"))
        .spawn(move || {
            for (t, e) in rx {
                if events.send((tag.clone(), t, e)).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| err(e.to_string()))?;
    let runner = HostRunner::start_with_events(host, Box::new(st), saved.offset, Some(tx));
    Ok((header, runner))
}
