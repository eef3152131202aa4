//! Starting the daemon: one instance per run directory (flock), reload the
//! saved state, decide per lockspace whether to resume the incarnation whose
//! holders still run or to start a new one after making sure they are
//! dead, then serve the socket.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nosplit_clock::{Clock, RealClock};
use nosplit_lease::format::{is_blank, HostSlot};
use nosplit_lease::host::JoinMode;
use nosplit_lease::Timing;
use nosplit_storage::file::{FileStorage, OpenOpts};
use nosplit_storage::{SectorSize, Storage};

use super::{conn, lock, start_lockspace, supervisor, Freeze, Holder, Inner, Ls, LsState};
use crate::config::Config;
use crate::state::{SavedLockspace, SavedState, StateError};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Another leased uses this run directory.
    #[error("another leased is running with run directory {0}")]
    AlreadyRunning(String),
    /// The run directory or socket could not be set up.
    #[error("{what} {path}: {source}")]
    Setup {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The saved state is unreadable.
    #[error(transparent)]
    State(#[from] StateError),
    /// The watchdog could not be opened.
    #[error("watchdog: {0}")]
    Watchdog(String),
}

fn setup<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> DaemonError + 'a {
    move |source| DaemonError::Setup {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// Takes the run directory's lock for the life of the process.
fn take_lock(cfg: &Config) -> Result<std::fs::File, DaemonError> {
    let dir = &cfg.run_dir;
    std::fs::create_dir_all(dir).map_err(setup("creating", dir))?;
    let path = dir.join("leased.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(setup("opening", &path))?;
    match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(f),
        Err(_) => Err(DaemonError::AlreadyRunning(dir.display().to_string())),
    }
}

/// Reads our slot: Some(ms since our last renewal write was issued) if it
/// still shows `generation` under our name.
fn since_last_renewal(cfg: &Config, l: &SavedLockspace) -> Option<(Duration, Timing)> {
    let sector = SectorSize::from_bytes(u64::from(l.sector_size))?;
    let mut st = FileStorage::open(
        Path::new(&l.path),
        OpenOpts {
            sector_size: Some(sector),
            create_len: None,
        },
    )
    .ok()?;
    let header = nosplit_lease_runtime::direct::read_header(&mut st, l.offset).ok()?;
    let off = l.offset + header.geometry.host_slot_offset(l.host_id);
    let raw = st
        .read_sync(
            off,
            header.geometry.sector(),
            Duration::from_millis(u64::from(header.io_timeout_ms)),
        )
        .ok()?;
    if is_blank(&raw) {
        return None;
    }
    let slot = HostSlot::decode(&raw, l.host_id).ok()?;
    if slot.generation != l.generation || slot.host_name != cfg.host_name || slot.released {
        return None;
    }
    let now_ms = RealClock.now().as_millis();
    Some((
        Duration::from_millis(now_ms.saturating_sub(slot.owner_time_ms)),
        Timing::from_io_timeout_ms(header.io_timeout_ms),
    ))
}

/// SIGKILLs `holders` and waits for them to be gone; false if one is not.
fn kill_and_wait(holders: &[&Holder], limit: Duration) -> bool {
    for h in holders {
        crate::proc::signal(&h.id, rustix::process::Signal::KILL);
    }
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if holders.iter().all(|h| !crate::proc::alive(&h.id)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Runs the daemon until the process is killed.
pub fn run(cfg: Config) -> Result<(), DaemonError> {
    let _lock = take_lock(&cfg)?;
    let mut saved = SavedState::load(&cfg.state_path())?;
    if saved.boot_id != crate::proc::boot_id() {
        saved = SavedState::default();
    }
    let mut watchdog =
        crate::watchdog::open(&cfg.watchdog).map_err(|e| DaemonError::Watchdog(e.to_string()))?;
    let (events_tx, events_rx) = crossbeam_channel::unbounded();

    // Holders of the previous run that are still the same processes.
    let mut holders = std::collections::BTreeMap::new();
    for h in &saved.holders {
        let id = crate::supervise::HolderId {
            pid: h.pid,
            start_time: h.start_time,
        };
        if crate::proc::alive(&id) {
            holders.insert(
                h.pid,
                Holder {
                    id,
                    freeze_hook: h.freeze_hook.clone(),
                    leases: h.leases.clone(),
                    gone: false,
                    freeze: if h.frozen {
                        Freeze::Frozen
                    } else {
                        Freeze::Running
                    },
                },
            );
        }
    }

    // Lockspaces: configured ones, plus those added at run time before.
    let mut wanted: Vec<SavedLockspace> = cfg
        .lockspaces
        .iter()
        .map(|l| SavedLockspace {
            name: l.name.to_string(),
            path: l.path.display().to_string(),
            offset: l.offset,
            host_id: l.host_id,
            sector_size: u32::try_from(l.sector_size.bytes()).unwrap_or(512),
            generation: 0,
        })
        .collect();
    for s in &saved.lockspaces {
        match wanted.iter_mut().find(|w| w.name == s.name) {
            Some(w) if w.path == s.path && w.offset == s.offset && w.host_id == s.host_id => {
                w.generation = s.generation
            }
            Some(_) => {}
            None => wanted.push(s.clone()),
        }
    }

    // Frozen holders (their hook confirmed: no I/O, none in flight) need
    // neither a resumed incarnation nor a kill: they keep their leases,
    // suspended, and are revalidated once the lockspace is joined.
    let mut lockspaces = std::collections::BTreeMap::new();
    for l in &wanted {
        let in_ls: Vec<&Holder> = holders.values().filter(|h| h.uses(&l.name)).collect();
        let mode = if in_ls.is_empty() || l.generation == 0 {
            JoinMode::New { prior_gone: true }
        } else {
            match since_last_renewal(&cfg, l) {
                // Resume only with a full io_timeout of margin before the
                // kill deadline the holders were promised.
                Some((since, t)) if since + t.io_timeout < t.kill_deadline => {
                    eprintln!(
                        "leased: {}: resuming generation {} ({} holders still run)",
                        l.name,
                        l.generation,
                        in_ls.len()
                    );
                    JoinMode::Resume {
                        generation: l.generation,
                    }
                }
                _ => {
                    eprintln!(
                        "leased: {}: cannot resume generation {}: stopping its {} holders first",
                        l.name,
                        l.generation,
                        in_ls.len()
                    );
                    if !kill_and_wait(&in_ls, Duration::from_secs(5)) {
                        let _ = watchdog.fire("holders of an expired incarnation would not die");
                    }
                    JoinMode::New { prior_gone: true }
                }
            }
        };
        if let JoinMode::New { .. } = mode {
            let name = l.name.clone();
            for h in holders.values_mut().filter(|h| h.freeze == Freeze::Running) {
                h.leases.retain(|x| x.lease.lockspace != name);
            }
        }
        match start_lockspace(&cfg, l, mode, events_tx.clone()) {
            Ok((header, runner)) => {
                lockspaces.insert(
                    l.name.clone(),
                    Ls {
                        saved: l.clone(),
                        header,
                        runner,
                        state: LsState::Joining,
                    },
                );
            }
            Err(e) => eprintln!("leased: lockspace {}: {e}; not joined", l.name),
        }
    }
    holders.retain(|_, h| crate::proc::alive(&h.id));

    let socket = cfg.socket_path();
    let inner = Inner {
        cfg: cfg.clone(),
        lockspaces,
        holders,
        subscribers: Vec::new(),
        watchdog_desc: watchdog.describe(),
        watchdog: Arc::new(Mutex::new(watchdog)),
        events: events_tx,
        revalidation_failed: Vec::new(),
        acquiring: std::collections::BTreeMap::new(),
    };
    let shared = Arc::new(Mutex::new(inner));
    lock(&shared).save();

    // Socket: the flock guarantees a leftover file is stale.
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).map_err(setup("binding", &socket))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o660))
        .map_err(setup("chmod", &socket))?;
    if let Some(gid) = cfg.socket_group {
        rustix::fs::chown(&socket, None, Some(rustix::fs::Gid::from_raw(gid))).map_err(|e| {
            DaemonError::Setup {
                what: "chown",
                path: socket.display().to_string(),
                source: e.into(),
            }
        })?;
    }

    let sup = shared.clone();
    std::thread::Builder::new()
        .name("supervisor".into())
        .spawn(move || supervisor::run(sup, events_rx))
        .map_err(setup("spawning the supervisor for", &socket))?;
    eprintln!("leased: serving {}", socket.display());
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let s = shared.clone();
        let _ = std::thread::Builder::new()
            .name("client".into())
            .spawn(move || conn::serve(s, stream));
    }
    Ok(())
}
