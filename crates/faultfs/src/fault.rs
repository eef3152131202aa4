//! The fault gate every FUSE request passes through: answer now, fail with
//! EIO, answer later (delay) or park (hang).
//!
//! Nothing here blocks the FUSE session thread: delayed requests go to a
//! timer thread, hung requests are kept as reply objects in a list.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fuser::Errno;

use crate::mode::{Mode, OpClass};

/// What a deferred request is told to do when it is finally answered.
pub(crate) enum Verdict {
    /// Perform the operation and answer with its result.
    Run,
    /// Answer with this error without touching the backing store.
    Fail(Errno),
}

/// A request that has not been answered yet: owns its reply object.
pub(crate) type Job = Box<dyn FnOnce(Verdict) + Send + 'static>;

/// Lock a mutex, carrying on past poisoning (a panicked job must not wedge
/// the filesystem: the protected data stays consistent at every unlock).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct State {
    mode: Mode,
    parked: Vec<Job>,
    /// Set by shutdown: everything that would wait fails with EIO instead.
    closed: bool,
}

struct Delayed {
    due: Instant,
    seq: u64,
    class: OpClass,
    job: Job,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        self.due == other.due && self.seq == other.seq
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delayed {
    /// Reversed, so the `BinaryHeap` (a max-heap) pops the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

#[derive(Default)]
struct Timer {
    queue: BinaryHeap<Delayed>,
    seq: u64,
    stop: bool,
}

/// Shared fault state of one mount.
pub(crate) struct Faults {
    state: Mutex<State>,
    timer: Mutex<Timer>,
    timer_cv: Condvar,
    timer_thread: Mutex<Option<JoinHandle<()>>>,
    injected: AtomicU64,
}

impl Faults {
    /// New fault state in mode `Ok`, with its timer thread running.
    pub(crate) fn start() -> std::io::Result<Arc<Faults>> {
        let faults = Arc::new(Faults {
            state: Mutex::new(State {
                mode: Mode::Ok,
                parked: Vec::new(),
                closed: false,
            }),
            timer: Mutex::new(Timer::default()),
            timer_cv: Condvar::new(),
            timer_thread: Mutex::new(None),
            injected: AtomicU64::new(0),
        });
        let f = Arc::clone(&faults);
        let t = std::thread::Builder::new()
            .name("faultfs-delay".into())
            .spawn(move || f.timer_loop())?;
        *lock(&faults.timer_thread) = Some(t);
        Ok(faults)
    }

    fn fail(&self, job: Job) {
        self.injected.fetch_add(1, AtomicOrdering::Relaxed);
        job(Verdict::Fail(Errno::EIO));
    }

    /// Pass one request through the gate. `f` is called exactly once, on
    /// this thread unless the request is delayed or parked.
    pub(crate) fn submit<F>(&self, class: OpClass, f: F)
    where
        F: FnOnce(Verdict) + Send + 'static,
    {
        let mut st = lock(&self.state);
        if st.closed {
            drop(st);
            return self.fail(Box::new(f));
        }
        match st.mode {
            Mode::Hang => st.parked.push(Box::new(f)),
            Mode::Delay(d) => {
                drop(st);
                self.delay(d, class, Box::new(f));
            }
            m => {
                drop(st);
                if m.fails(class) {
                    self.fail(Box::new(f));
                } else {
                    f(Verdict::Run);
                }
            }
        }
    }

    /// A delayed request came due: apply the mode as it is now, except that
    /// it is not delayed a second time.
    fn due(&self, class: OpClass, job: Job) {
        let mut st = lock(&self.state);
        if st.closed {
            drop(st);
            return self.fail(job);
        }
        match st.mode {
            Mode::Hang => st.parked.push(job),
            m => {
                drop(st);
                if m.fails(class) {
                    self.fail(job);
                } else {
                    job(Verdict::Run);
                }
            }
        }
    }

    fn delay(&self, d: Duration, class: OpClass, job: Job) {
        let mut t = lock(&self.timer);
        if t.stop {
            drop(t);
            return self.fail(job);
        }
        t.seq += 1;
        let seq = t.seq;
        t.queue.push(Delayed {
            due: Instant::now() + d,
            seq,
            class,
            job,
        });
        drop(t);
        self.timer_cv.notify_one();
    }

    fn timer_loop(&self) {
        loop {
            let mut t = lock(&self.timer);
            let next = loop {
                if t.stop {
                    let rest: Vec<Delayed> = std::mem::take(&mut t.queue).into_vec();
                    drop(t);
                    for d in rest {
                        self.fail(d.job);
                    }
                    return;
                }
                let now = Instant::now();
                match t.queue.peek().map(|d| d.due) {
                    None => {
                        t = self
                            .timer_cv
                            .wait(t)
                            .unwrap_or_else(PoisonError::into_inner);
                    }
                    Some(due) if due <= now => {
                        if let Some(d) = t.queue.pop() {
                            break d;
                        }
                    }
                    Some(due) => {
                        t = self
                            .timer_cv
                            .wait_timeout(t, due - now)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                }
            };
            drop(t);
            self.due(next.class, next.job);
        }
    }

    /// Set the mode. Leaving `Hang` fails every parked request with EIO;
    /// returns how many.
    pub(crate) fn set(&self, mode: Mode) -> usize {
        let released = {
            let mut st = lock(&self.state);
            st.mode = mode;
            if mode == Mode::Hang {
                Vec::new()
            } else {
                std::mem::take(&mut st.parked)
            }
        };
        let n = released.len();
        for job in released {
            self.fail(job);
        }
        n
    }

    /// Back to `Ok`, performing the parked requests (late answers, late
    /// writes) in arrival order. Returns how many.
    pub(crate) fn resume(&self) -> usize {
        let parked = {
            let mut st = lock(&self.state);
            st.mode = Mode::Ok;
            std::mem::take(&mut st.parked)
        };
        let n = parked.len();
        for job in parked {
            job(Verdict::Run);
        }
        n
    }

    /// Fail the parked requests with EIO without changing the mode (after
    /// an abort their answers go nowhere; this frees the reply objects).
    pub(crate) fn drop_parked(&self) -> usize {
        let parked = std::mem::take(&mut lock(&self.state).parked);
        let n = parked.len();
        for job in parked {
            self.fail(job);
        }
        n
    }

    pub(crate) fn status(&self) -> Status {
        let (mode, parked) = {
            let st = lock(&self.state);
            (st.mode, st.parked.len())
        };
        Status {
            mode,
            parked,
            delayed: lock(&self.timer).queue.len(),
            injected: self.injected.load(AtomicOrdering::Relaxed),
        }
    }

    /// Stop for good: every waiting request fails with EIO now, every later
    /// one at once; the timer thread ends. Idempotent.
    pub(crate) fn shutdown(&self) {
        let parked = {
            let mut st = lock(&self.state);
            st.closed = true;
            st.mode = Mode::Ok;
            std::mem::take(&mut st.parked)
        };
        for job in parked {
            self.fail(job);
        }
        lock(&self.timer).stop = true;
        self.timer_cv.notify_all();
        let t = lock(&self.timer_thread).take();
        if let Some(t) = t {
            // The timer thread only fails the queue and returns; a panic in
            // a job has already been reported by the panic hook.
            let _ = t.join();
        }
    }
}

/// A snapshot of one mount's fault state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// The current mode.
    pub mode: Mode,
    /// Requests parked by `Hang` and not answered yet.
    pub parked: usize,
    /// Requests waiting out a `Delay`.
    pub delayed: usize,
    /// Requests answered with an injected EIO since the mount started
    /// (including parked requests released with EIO).
    pub injected: u64,
}

/// `parked=N delayed=N injected=N mode=<mode>`: the mode comes last because
/// its text may contain a space (`delay 250`).
impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "parked={} delayed={} injected={} mode={}",
            self.parked, self.delayed, self.injected, self.mode
        )
    }
}

/// Sets and reads the fault mode of one mount, in process. Cheap to clone;
/// every clone controls the same mount.
#[derive(Clone)]
pub struct FaultHandle {
    pub(crate) faults: Arc<Faults>,
}

impl fmt::Debug for FaultHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultHandle")
            .field("status", &self.status())
            .finish()
    }
}

impl FaultHandle {
    /// Set the mode for requests from now on. Leaving [`Mode::Hang`] answers
    /// every parked request with EIO (a hung I/O completes with an error,
    /// never with late data). Returns the number of requests so released.
    pub fn set(&self, mode: Mode) -> usize {
        self.faults.set(mode)
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        lock(&self.faults.state).mode
    }

    /// Back to [`Mode::Ok`]; parked requests fail with EIO. Same as
    /// `set(Mode::Ok)`.
    pub fn recover(&self) -> usize {
        self.faults.set(Mode::Ok)
    }

    /// Back to [`Mode::Ok`], but parked requests are performed (in arrival
    /// order) and answered with their real results: storage that comes
    /// back, with writes issued during the hang landing late.
    pub fn resume(&self) -> usize {
        self.faults.resume()
    }

    /// Mode and counters.
    pub fn status(&self) -> Status {
        self.faults.status()
    }
}
