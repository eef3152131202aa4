//! The watchdog that backs holder supervision: if `leased` cannot stop a
//! holder in time (it is stuck in the kernel, or `leased` itself hangs or
//! dies), the host is reset before any other host may take its leases over
//! (`docs/timing.md`, S3 and assumption A4).
//!
//! One trait, [`Watchdog`], three backends:
//!
//! - [`DeviceWatchdog`]: a kernel watchdog device (`/dev/watchdog`);
//! - [`LabWatchdog`]: the client of a lab supervisor process
//!   ([`run_lab_supervisor`]) that kills the emulated host's whole process
//!   group, for test clusters without a watchdog device;
//! - [`NoWatchdog`]: nothing at all, an explicit and loudly logged opt-in.
//!
//! The contract: after `arm(expiry)`, unless a later `arm` comes, the host
//! is reset no later than `expiry + margin()`. The daemon passes
//! `expiry = last renewal + kill_deadline` (the earliest over lockspaces
//! with holders), so the reset happens by the `watchdog_fire` time as long
//! as `margin() <= watchdog_fire - kill_deadline = max(T/2, 1 s)`.
//! [`DEFAULT_MARGIN`] (1 s) satisfies that for every `io_timeout`.

mod device;
mod lab;

use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

use nosplit_clock::MonoTime;

use crate::config::WatchdogConfig;

pub use device::DeviceWatchdog;
pub use lab::{run_lab_supervisor, FireReport, KillTarget, LabMessage, LabWatchdog};

/// A margin that is safe for every `io_timeout`: `watchdog_fire -
/// kill_deadline` is `max(T/2, 1 s)`, never less than 1 s.
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(1);

/// Something that resets the host when `leased` stops vouching for it.
///
/// `arm` must be called more often than `margin()` while holders run (the
/// device backend resets `margin()` after the last keepalive).
pub trait Watchdog: Send + std::fmt::Debug {
    /// The host may run until `expiry` (a `CLOCK_BOOTTIME` [`MonoTime`]);
    /// if no later `arm()` arrives, it must be reset no later than
    /// `expiry + margin()`.
    fn arm(&mut self, expiry: MonoTime) -> Result<(), WatchdogError>;
    /// Reset the host now (something could not be stopped in time).
    fn fire(&mut self, reason: &str) -> Result<(), WatchdogError>;
    /// Clean shutdown: nothing to protect any more (no holders); stop
    /// without resetting. A fired watchdog is not stopped.
    fn disarm(&mut self) -> Result<(), WatchdogError>;
    /// How long after an expiry the reset may come.
    fn margin(&self) -> Duration;
    /// One line for logs and status.
    fn describe(&self) -> String;
}

/// Why a watchdog operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WatchdogError {
    /// An operation on a file or socket failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done ("opening", "sending to", ...).
        op: &'static str,
        /// The device or socket.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The lab supervisor could not kill its target.
    #[error("killing {target}: {source}")]
    Kill {
        /// What it tried to kill.
        target: KillTarget,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A parameter or state that cannot work.
    #[error("{0}")]
    Invalid(String),
}

impl WatchdogError {
    fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> WatchdogError {
        WatchdogError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Opens the configured backend with [`DEFAULT_MARGIN`]. A lab supervisor
/// must already be listening.
pub fn open(cfg: &WatchdogConfig) -> Result<Box<dyn Watchdog>, WatchdogError> {
    Ok(match cfg {
        WatchdogConfig::Device { path } => Box::new(DeviceWatchdog::open(path, DEFAULT_MARGIN)?),
        WatchdogConfig::Lab { socket } => Box::new(LabWatchdog::connect(socket, DEFAULT_MARGIN)?),
        WatchdogConfig::None => Box::new(NoWatchdog::new()),
    })
}

/// No watchdog. Every method succeeds and protects nothing: if `leased`
/// dies or hangs while holders run, they keep running after other hosts
/// take their leases over.
#[derive(Debug)]
pub struct NoWatchdog {
    _private: (),
}

static NO_WATCHDOG_WARNING: Once = Once::new();

impl NoWatchdog {
    /// Logs (once per process) a loud warning to stderr.
    pub fn new() -> NoWatchdog {
        NO_WATCHDOG_WARNING.call_once(|| {
            eprintln!(
                "leased: WARNING: running WITHOUT A WATCHDOG. Lease holders are NOT protected: \
                 if this daemon dies or hangs, they keep running after other hosts may take \
                 their leases over (split brain). Use this for development only."
            );
        });
        NoWatchdog { _private: () }
    }
}

impl Default for NoWatchdog {
    fn default() -> Self {
        NoWatchdog::new()
    }
}

impl Watchdog for NoWatchdog {
    fn arm(&mut self, _expiry: MonoTime) -> Result<(), WatchdogError> {
        Ok(())
    }
    fn fire(&mut self, reason: &str) -> Result<(), WatchdogError> {
        eprintln!(
            "leased: WATCHDOG FIRE REQUESTED ({reason}) BUT THERE IS NO WATCHDOG: \
             this host is NOT reset and a holder that could not be stopped may run on \
             while other hosts take its leases over"
        );
        Ok(())
    }
    fn disarm(&mut self) -> Result<(), WatchdogError> {
        Ok(())
    }
    fn margin(&self) -> Duration {
        Duration::ZERO
    }
    fn describe(&self) -> String {
        "none (lease holders are NOT protected if leased dies or hangs)".to_string()
    }
}
