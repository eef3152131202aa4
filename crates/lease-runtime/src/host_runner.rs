//! Keeps one host lease renewing on its own thread.
//!
//! The thread owns the machine and its storage handle; others see a
//! snapshot ([`RunnerState`]). Waits are bounded by the machine's next
//! wakeup, so a hung request delays nothing: the machine turns it into a
//! failure at its deadline and moves on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use nosplit_clock::MonoTime;
use nosplit_lease::host::{HostEvent, HostLease, Output};
use nosplit_lease::io::{Input, IoKind};
use nosplit_lease::view::HostView;
use nosplit_lease::OwnerId;
use nosplit_storage::Storage;

use crate::exec::{to_done, to_request};

/// What the renewal thread publishes.
#[derive(Debug, Clone, Default)]
pub struct RunnerState {
    /// Our incarnation, once written.
    pub owner: Option<OwnerId>,
    /// Joined and confirmed.
    pub joined: bool,
    /// Finished: left, failed or lost.
    pub done: bool,
    /// The last terminal problem, if any.
    pub failure: Option<String>,
    /// The liveness view.
    pub view: HostView,
    /// Successful renewals.
    pub renewals: u64,
    /// Bytes requested by reads and writes so far.
    pub read_bytes: u64,
    /// Bytes written so far.
    pub write_bytes: u64,
    /// Issue time of the last successful renewal.
    pub last_renewal: Option<MonoTime>,
    /// Holders may run until then (last renewal + kill deadline).
    pub expiry: Option<MonoTime>,
    /// The lockspace timing, once the header was read.
    pub timing: Option<nosplit_lease::Timing>,
    /// Write latencies of the last renewals (oldest first, bounded).
    pub renewal_latency: std::collections::VecDeque<(MonoTime, Duration)>,
}

const MAX_LATENCIES: usize = 32;
/// Longest sleep between checks of the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// A host lease renewing on a thread.
#[derive(Debug)]
pub struct HostRunner {
    state: Arc<Mutex<RunnerState>>,
    stop: Arc<AtomicBool>,
    leave: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn lock(m: &Mutex<RunnerState>) -> MutexGuard<'_, RunnerState> {
    // A panic elsewhere must not stop renewals from being observed.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl HostRunner {
    /// Starts driving `host` (fresh, or already joined) on `storage` at `base`.
    pub fn start(host: HostLease, storage: Box<dyn Storage>, base: u64) -> HostRunner {
        Self::start_with_events(host, storage, base, None)
    }

    /// Like [`HostRunner::start`], and also sends every event, as it
    /// happens, to `events` (the daemon's supervisor reacts to them).
    pub fn start_with_events(
        mut host: HostLease,
        mut storage: Box<dyn Storage>,
        base: u64,
        events: Option<crossbeam_channel::Sender<(MonoTime, HostEvent)>>,
    ) -> HostRunner {
        let state = Arc::new(Mutex::new(RunnerState {
            owner: host.owner_id(),
            joined: host.is_joined(),
            ..RunnerState::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let leave = Arc::new(AtomicBool::new(false));
        let (st, sp, lv) = (state.clone(), stop.clone(), leave.clone());
        let thread = std::thread::Builder::new()
            .name(format!("renew-{}", host.config().host_id))
            .spawn(move || {
                run(
                    &mut host,
                    &mut *storage,
                    base,
                    &st,
                    &sp,
                    &lv,
                    events.as_ref(),
                )
            })
            .ok();
        if thread.is_none() {
            lock(&state).failure = Some("cannot spawn the renewal thread".into());
            lock(&state).done = true;
        }
        HostRunner {
            state,
            stop,
            leave,
            thread,
        }
    }

    /// A snapshot of the published state.
    pub fn state(&self) -> RunnerState {
        lock(&self.state).clone()
    }

    /// A handle that reads the published state without owning the runner.
    pub fn watch(&self) -> RunnerWatch {
        RunnerWatch {
            state: self.state.clone(),
        }
    }

    /// Waits until joined (or failed), polling every 10 ms, at most `timeout`.
    pub fn wait_joined(&self, timeout: Duration) -> Result<OwnerId, String> {
        self.watch().wait_joined(timeout)
    }
}

/// Reads a runner's published state from anywhere.
#[derive(Debug, Clone)]
pub struct RunnerWatch {
    state: Arc<Mutex<RunnerState>>,
}

impl RunnerWatch {
    /// A snapshot of the published state.
    pub fn state(&self) -> RunnerState {
        lock(&self.state).clone()
    }

    /// Waits until joined (or failed), polling every 10 ms, at most `timeout`.
    pub fn wait_joined(&self, timeout: Duration) -> Result<OwnerId, String> {
        let end = std::time::Instant::now() + timeout;
        loop {
            {
                let s = lock(&self.state);
                if s.joined {
                    if let Some(o) = s.owner {
                        return Ok(o);
                    }
                }
                if s.done {
                    return Err(s.failure.clone().unwrap_or_else(|| "stopped".into()));
                }
            }
            if std::time::Instant::now() >= end {
                return Err(format!("not joined within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl HostRunner {
    /// Stops renewing. With `leave`, writes a clean release first (every
    /// lease must be released already); without, the slot is left as a
    /// crash would leave it.
    pub fn stop(mut self, leave: bool) -> RunnerState {
        if leave {
            self.leave.store(true, Ordering::SeqCst);
            let end = std::time::Instant::now() + Duration::from_secs(30);
            while !lock(&self.state).done && std::time::Instant::now() < end {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.state()
    }
}

impl Drop for HostRunner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn run(
    host: &mut HostLease,
    storage: &mut dyn Storage,
    base: u64,
    state: &Mutex<RunnerState>,
    stop: &AtomicBool,
    leave: &AtomicBool,
    events: Option<&crossbeam_channel::Sender<(MonoTime, HostEvent)>>,
) {
    let mut input = Input::Tick;
    let mut leaving = false;
    while !stop.load(Ordering::SeqCst) {
        if leave.load(Ordering::SeqCst) && !leaving {
            leaving = true;
            host.request_leave();
        }
        let now = storage.now();
        let outs = host.step(std::mem::replace(&mut input, Input::Tick), now);
        {
            let mut s = lock(state);
            for out in outs {
                match out {
                    Output::Io(cmd) => {
                        match &cmd.kind {
                            IoKind::Read(n) => s.read_bytes += *n as u64,
                            IoKind::Write(d) => s.write_bytes += d.len() as u64,
                        }
                        storage.submit(to_request(&cmd, base));
                    }
                    Output::Event(e) => {
                        match &e {
                            HostEvent::RenewalOk { latency } => {
                                s.renewals += 1;
                                if s.renewal_latency.len() >= MAX_LATENCIES {
                                    s.renewal_latency.pop_front();
                                }
                                s.renewal_latency.push_back((now, *latency));
                            }
                            HostEvent::JoinFailed(err) => s.failure = Some(err.to_string()),
                            HostEvent::Lost(r) => s.failure = Some(format!("lease lost: {r}")),
                            _ => {}
                        }
                        if let Some(tx) = events {
                            let _ = tx.send((now, e));
                        }
                    }
                }
            }
            s.owner = host.owner_id().or(s.owner);
            s.joined = host.is_joined();
            s.done = host.is_done();
            s.last_renewal = host.last_renewal();
            s.expiry = host.expiry();
            s.timing = host.timing().copied();
            s.view = host.view().clone();
        }
        if host.is_done() {
            return;
        }
        let until = host.next_wakeup().min(now + POLL);
        if let Some(c) = storage.wait(until) {
            input = Input::Done(to_done(c));
        }
    }
}
