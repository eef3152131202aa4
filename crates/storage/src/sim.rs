//! A simulated shared disk with seeded fault injection.
//!
//! This module owns [`SimDisk`], an in-memory disk on a [`SimClock`], and
//! [`SimHandle`], one simulated host's view of it (a [`Storage`]). Several
//! handles share one disk, as several hosts share one LUN. Everything is
//! deterministic for a given seed and sequence of calls: latencies, injected
//! errors and crash outcomes come from one `ChaCha8Rng`.
//!
//! # Semantics
//!
//! Each handle has its own [`Faults`], changeable at any time; they are
//! sampled when a request is submitted.
//! - A request completes at `now + uniform(min_latency, max_latency)`. A
//!   read returns the disk content *at its completion time*; a write's data
//!   lands at its completion time. With `reorder: false` a handle's requests
//!   complete in submission order; with `reorder: true` each latency is drawn
//!   independently, so requests may complete (and land) out of order.
//! - With `read_error_rate` / `write_error_rate` a request fails with
//!   [`IoError::Injected`](crate::IoError::Injected)`("read error")` / `("write error")`; a failed
//!   write does not land.
//! - A request not complete by its deadline completes with
//!   [`IoError::TimedOut`](crate::IoError::TimedOut) at the deadline; a write whose latency exceeded
//!   its deadline still lands at its completion time.
//! - With `late_write_rate` a write's caller gets `TimedOut` at the deadline
//!   but the data lands at `deadline + late_write_delay`.
//! - With `hang` requests never complete from the media: the caller gets
//!   `TimedOut` at the deadline, and a write lands (at `deadline +
//!   late_write_delay`) only if `late_write_rate` picks it.
//! - [`SimDisk::power_off`] drops everything in flight for a handle (each
//!   pending write lands or not, by the RNG) and makes its submits fail with
//!   `Injected("powered off")` until [`SimDisk::power_on`].
//! - Write ordering (the [`Storage`] contract): a write that overlaps an
//!   unfinished write *of the same handle* completes at once with
//!   [`IoError::WriteInFlight`](crate::IoError::WriteInFlight) and is not
//!   performed (it draws no randomness). A write is unfinished until it
//!   completes, lands (a timed-out slow or late write: at its landing), or
//!   is certain never to land (a failing write that timed out: at its
//!   deadline). A write parked by `hang` with no landing drawn stays
//!   unfinished while the hang lasts; lifting the hang (setting faults
//!   without `hang`) finishes it without landing. `power_off` finishes all
//!   of the handle's writes (each landed or lost then). Other handles' writes
//!   never refuse this handle's.
//!
//! # Driving time
//!
//! Single driver: [`SimHandle::wait`]`(until)` advances the shared clock to
//! the earliest of this handle's next completion and `until` (applying every
//! other event due by then, for all handles) and returns that completion.
//! With nothing pending for the handle and `until == MonoTime::NEVER` it
//! returns `None` without moving the clock.
//!
//! Several hosts stepped by one thread: loop on
//! [`SimDisk::next_event_time`] (earliest pending completion or landing over
//! all handles) and [`SimDisk::advance_to`]`(t)` (moves the clock to `t` and
//! applies everything due, queueing completions into their handles); then
//! each host calls `handle.wait(disk.clock().now())`, which returns queued
//! completions without advancing time.

use crate::{IoCompletion, IoRequest, IoStats, MonoTime, SectorSize, Storage};
use nosplit_clock::{Clock, SimClock};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

mod engine;

use engine::Inner;

/// Fault settings of one simulated host's path to the disk.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Probability that a read fails with `Injected("read error")`.
    pub read_error_rate: f64,
    /// Probability that a write fails with `Injected("write error")`.
    pub write_error_rate: f64,
    /// Shortest latency.
    pub min_latency: Duration,
    /// Longest latency.
    pub max_latency: Duration,
    /// Requests never complete from the media.
    pub hang: bool,
    /// Probability that a write times out for its caller but lands later.
    pub late_write_rate: f64,
    /// How long after the deadline a late write lands.
    pub late_write_delay: Duration,
    /// Draw latencies independently so requests may complete out of order.
    pub reorder: bool,
}

impl Default for Faults {
    /// Healthy: no errors, a fixed 100 µs latency, in order.
    fn default() -> Self {
        Faults {
            read_error_rate: 0.0,
            write_error_rate: 0.0,
            min_latency: Duration::from_micros(100),
            max_latency: Duration::from_micros(100),
            hang: false,
            late_write_rate: 0.0,
            late_write_delay: Duration::from_secs(1),
            reorder: false,
        }
    }
}

impl Faults {
    /// A healthy path with a fixed latency.
    pub fn latency(d: Duration) -> Faults {
        Faults {
            min_latency: d,
            max_latency: d,
            ..Faults::default()
        }
    }

    /// A path on which every request hangs.
    pub fn hung() -> Faults {
        Faults {
            hang: true,
            ..Faults::default()
        }
    }
}

/// An in-memory disk shared by simulated hosts; clones share the disk.
#[derive(Clone)]
pub struct SimDisk {
    inner: Arc<Mutex<Inner>>,
    clock: SimClock,
    sector: SectorSize,
    size: u64,
}

impl fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimDisk")
            .field("size", &self.size)
            .field("sector", &self.sector)
            .field("now", &self.clock.now())
            .finish()
    }
}

impl SimDisk {
    /// A zero-filled disk of `size` bytes on a fresh clock at zero.
    ///
    /// # Panics
    ///
    /// If `size` does not fit in memory's address space.
    pub fn new(seed: u64, size: u64, sector: SectorSize) -> SimDisk {
        let len = usize::try_from(size).expect("simulated disk size must fit in usize");
        SimDisk {
            inner: Arc::new(Mutex::new(Inner {
                data: vec![0; len],
                rng: ChaCha8Rng::seed_from_u64(seed),
                handles: Vec::new(),
                events: BTreeMap::new(),
                next_seq: 0,
                next_write: 0,
            })),
            clock: SimClock::new(),
            sector,
            size,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        // Catch up with a clock someone moved directly.
        g.advance_to(&self.clock, self.clock.now());
        g
    }

    /// The shared simulated clock.
    pub fn clock(&self) -> SimClock {
        self.clock.clone()
    }

    /// The current simulated time.
    pub fn now(&self) -> MonoTime {
        self.clock.now()
    }

    /// The sector size.
    pub fn sector_size(&self) -> SectorSize {
        self.sector
    }

    /// The size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// A host's handle, created healthy on first use; handles with the same
    /// name share fault settings, queue and stats.
    pub fn handle(&self, name: &str) -> SimHandle {
        let index = self.lock().handle_index(name);
        SimHandle {
            disk: self.clone(),
            index,
            name: name.to_string(),
        }
    }

    /// Sets a host's faults (creating the host if new). Lifting a hang
    /// finishes the writes it parked: they never land.
    pub fn set_faults(&self, name: &str, faults: Faults) {
        let mut g = self.lock();
        let i = g.handle_index(name);
        g.set_faults(i, faults);
    }

    /// A host's current faults.
    pub fn faults(&self, name: &str) -> Faults {
        let mut g = self.lock();
        let i = g.handle_index(name);
        g.handles[i].faults.clone()
    }

    /// Crashes a host: drops its queued completions and in-flight requests
    /// (each pending write lands or not, by the RNG); its submits fail until
    /// [`SimDisk::power_on`].
    pub fn power_off(&self, name: &str) {
        let mut g = self.lock();
        let i = g.handle_index(name);
        g.power_off(i);
    }

    /// Lets a host submit again.
    pub fn power_on(&self, name: &str) {
        let mut g = self.lock();
        let i = g.handle_index(name);
        g.handles[i].powered = true;
    }

    /// Reads the disk directly, bypassing faults and time. Bytes past the
    /// end read as zero.
    pub fn read_raw(&self, offset: u64, len: usize) -> Vec<u8> {
        self.lock().load(offset, len).to_vec()
    }

    /// Writes the disk directly, bypassing faults and time. Bytes past the
    /// end are ignored.
    pub fn write_raw(&self, offset: u64, data: &[u8]) {
        self.lock().store(offset, data);
    }

    /// A host's I/O counters (zero for an unknown host).
    pub fn stats(&self, name: &str) -> IoStats {
        let g = self.lock();
        g.handles
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.stats)
            .unwrap_or_default()
    }

    /// Requests of a host scheduled but not yet completed or landed.
    pub fn in_flight(&self, name: &str) -> usize {
        let g = self.lock();
        let Some(i) = g.handles.iter().position(|h| h.name == name) else {
            return 0;
        };
        g.events.values().filter(|e| e.handle() == i).count()
    }

    /// Writes of a host not yet finished (see
    /// [`IoError::WriteInFlight`](crate::IoError::WriteInFlight)).
    pub fn unfinished_writes(&self, name: &str) -> usize {
        let g = self.lock();
        g.handles
            .iter()
            .find(|h| h.name == name)
            .map_or(0, |h| h.unfinished.len())
    }

    /// The earliest pending completion or landing over all hosts.
    pub fn next_event_time(&self) -> Option<MonoTime> {
        self.lock().events.first_key_value().map(|(k, _)| k.0)
    }

    /// Moves the clock to `t` (never back), applying every landing and
    /// completion due by then in time order; completions queue in their
    /// handles.
    pub fn advance_to(&self, t: MonoTime) {
        self.lock().advance_to(&self.clock, t);
    }
}

/// One simulated host's [`Storage`] on a [`SimDisk`].
#[derive(Clone)]
pub struct SimHandle {
    disk: SimDisk,
    index: usize,
    name: String,
}

impl fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimHandle")
            .field("name", &self.name)
            .field("disk", &self.disk)
            .finish()
    }
}

impl SimHandle {
    /// The host's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The shared disk.
    pub fn disk(&self) -> &SimDisk {
        &self.disk
    }

    /// Sets this host's faults (see [`SimDisk::set_faults`]).
    pub fn set_faults(&self, faults: Faults) {
        self.disk.lock().set_faults(self.index, faults);
    }

    /// This host's I/O counters.
    pub fn stats(&self) -> IoStats {
        self.disk.lock().handles[self.index].stats
    }
}

impl Storage for SimHandle {
    fn describe(&self) -> String {
        format!("sim:{}", self.name)
    }

    fn sector_size(&self) -> SectorSize {
        self.disk.sector
    }

    fn size(&self) -> u64 {
        self.disk.size
    }

    fn now(&self) -> MonoTime {
        self.disk.clock.now()
    }

    fn submit(&mut self, req: IoRequest) {
        let now = self.disk.clock.now();
        self.disk
            .lock()
            .submit(self.index, now, self.disk.sector, req);
    }

    fn wait(&mut self, until: MonoTime) -> Option<IoCompletion> {
        let clock = &self.disk.clock;
        let mut g = self.disk.lock();
        if let Some(c) = g.handles[self.index].ready.pop_front() {
            return Some(c);
        }
        let mine = g
            .events
            .iter()
            .find(|(_, e)| e.handle() == self.index && e.completes())
            .map(|(k, _)| k.0);
        let target = match mine {
            Some(t) if t <= until => t,
            _ if until == MonoTime::NEVER => return None,
            _ => until,
        };
        g.advance_to(clock, target);
        g.handles[self.index].ready.pop_front()
    }

    fn stats(&self) -> Option<IoStats> {
        Some(SimHandle::stats(self))
    }
}

/// How long after its deadline a write submitted under
/// [`StallWrites`](crate::conformance::StallWrites) lands.
const STALLED_WRITE_DELAY: Duration = Duration::from_millis(300);

impl crate::conformance::StallWrites for SimHandle {
    /// On: every write is a late write (`late_write_rate` 1, landing
    /// 300 ms after its deadline); off: the host's late-write settings are
    /// restored.
    fn stall_writes(&mut self, on: bool) {
        let mut g = self.disk.lock();
        let h = &mut g.handles[self.index];
        match (on, h.unstalled) {
            (true, None) => {
                h.unstalled = Some((h.faults.late_write_rate, h.faults.late_write_delay));
                h.faults.late_write_rate = 1.0;
                h.faults.late_write_delay = STALLED_WRITE_DELAY;
            }
            (false, Some((rate, delay))) => {
                h.unstalled = None;
                h.faults.late_write_rate = rate;
                h.faults.late_write_delay = delay;
            }
            _ => {}
        }
    }
}
