//! The oracle's runtime: reads the ring of every watched disk file on the
//! host's monotonic clock (`CLOCK_BOOTTIME`) and feeds [`OracleCore`];
//! optionally from a background thread ([`OracleHandle`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nosplit_clock::{Clock, RealClock};

use super::core::OracleCore;
use super::report::OracleReport;
use crate::disk::read_ring;

#[derive(Debug)]
struct Watched {
    path: PathBuf,
    file: Option<File>,
}

/// Polls a set of VM disks (vm id -> disk file) and keeps the verdict.
#[derive(Debug)]
pub struct Oracle {
    core: OracleCore,
    disks: BTreeMap<String, Watched>,
    clock: RealClock,
}

impl Oracle {
    /// An oracle with no disks, reporting silences longer than `gap_threshold`.
    pub fn new(gap_threshold: Duration) -> Self {
        Oracle {
            core: OracleCore::new(gap_threshold),
            disks: BTreeMap::new(),
            clock: RealClock,
        }
    }

    /// Watches `path` as `vm`'s disk (replacing an earlier path for `vm`).
    /// The file need not exist yet: until it does, polls count as errors.
    pub fn add_disk(&mut self, vm: impl Into<String>, path: impl Into<PathBuf>) {
        let vm = vm.into();
        self.core.add_vm(&vm);
        self.disks.insert(
            vm,
            Watched {
                path: path.into(),
                file: None,
            },
        );
    }

    /// Reads every watched disk once, one after the other. A disk that
    /// cannot be opened or read is an error for that VM; polling goes on.
    pub fn poll_once(&mut self) {
        for (vm, w) in &mut self.disks {
            let start = self.clock.now().as_nanos();
            let slots = match w.file.take() {
                Some(f) => Ok(f),
                None => File::open(&w.path).map_err(|e| format!("open {}: {e}", w.path.display())),
            }
            .and_then(|mut f| {
                let slots = read_ring(&mut f, &w.path).map_err(|e| e.to_string())?;
                w.file = Some(f);
                Ok(slots)
            });
            let end = self.clock.now().as_nanos();
            match slots {
                Ok(slots) => self.core.observe(vm, start, end, &slots),
                Err(msg) => self.core.note_error(vm, msg),
            }
        }
    }

    /// The verdict so far.
    pub fn report(&self) -> OracleReport {
        self.core.report()
    }

    /// Polls every `interval` (start to start) on a background thread.
    pub fn spawn(self, interval: Duration) -> OracleHandle {
        let shared = Arc::new(Mutex::new(self));
        let (tx, rx) = mpsc::channel::<()>();
        let worker = Arc::clone(&shared);
        let thread = std::thread::spawn(move || loop {
            let started = Instant::now();
            lock(&worker).poll_once();
            match rx.recv_timeout(interval.saturating_sub(started.elapsed())) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        });
        OracleHandle {
            shared,
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

fn lock(m: &Mutex<Oracle>) -> MutexGuard<'_, Oracle> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running background oracle. Dropping it stops the thread.
#[derive(Debug)]
pub struct OracleHandle {
    shared: Arc<Mutex<Oracle>>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl OracleHandle {
    /// Starts watching another disk.
    pub fn add_disk(&self, vm: impl Into<String>, path: impl Into<PathBuf>) {
        lock(&self.shared).add_disk(vm, path);
    }

    /// The verdict so far (the thread keeps polling).
    pub fn snapshot(&self) -> OracleReport {
        lock(&self.shared).report()
    }

    /// Stops the thread, polls once more, and returns the final verdict.
    pub fn stop(mut self) -> OracleReport {
        self.halt();
        let mut oracle = lock(&self.shared);
        oracle.poll_once();
        oracle.report()
    }

    fn halt(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for OracleHandle {
    fn drop(&mut self) {
        self.halt();
    }
}
