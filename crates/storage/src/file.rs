//! `O_DIRECT` files and block devices.
//!
//! This module owns [`FileStorage`]: opening a path (regular file or block
//! device) with `O_RDWR | O_DIRECT | O_CLOEXEC`, learning its geometry, and
//! running I/O so that no media behaviour can stall the caller.
//!
//! Design:
//! - `submit` validates the request, then hands it to a small worker pool
//!   (two threads to start with) over a channel; it never touches the media.
//! - Workers `pread`/`pwrite` and send results back on a second channel.
//!   `wait` blocks on that channel until the earliest of the caller's `until`
//!   and the earliest outstanding deadline, and completes requests whose
//!   deadline has passed with [`IoError::TimedOut`]. A result that arrives
//!   later (or that the worker finished after the deadline) is discarded.
//! - A worker whose request is past its deadline is *stuck* (think of a dead
//!   NFS server). When every worker is stuck, the next submit spawns another,
//!   up to [`MAX_STUCK`] stuck workers; beyond that, new requests complete at
//!   once with [`IoError::Hung`]. Workers hold the file by `Arc<File>` and are
//!   detached: dropping the storage never waits for them.
//! - A worker does not start a request whose deadline has already passed (its
//!   caller has been told `TimedOut`), but a request it did start may still
//!   land after the caller gave up, as with any real I/O.
//! - Write ordering: a process-wide registry, keyed by the file's
//!   `(st_dev, st_ino)` (a block device's `st_rdev`), holds the byte ranges
//!   of every unfinished write, from every `FileStorage` of this process.
//!   `submit` checks and inserts a write's range in one short critical
//!   section and refuses an overlapping write with
//!   [`IoError::WriteInFlight`]. The range is released when the `pwrite`
//!   returns, or when the write is certain never to start: at its deadline
//!   if no worker has started it (a per-write state word decides the race
//!   with a worker picking it up), when a worker drops it, or when the
//!   storage is dropped. So a write that timed out for its caller but is
//!   still in the kernel keeps its sectors until it lands.

use crate::{
    IoCompletion, IoError, IoId, IoRequest, IoStats, MonoTime, OpenError, SectorSize, Storage,
};
use crossbeam_channel::{Receiver, Sender};
use nosplit_clock::{Clock, RealClock};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

mod inflight;
mod worker;

use inflight::{FileKey, WriteClaim, WriteTicket};
use worker::{Done, Job, Shared, Slot, Worker};

/// Workers started with the storage.
const BASE_WORKERS: usize = 2;

/// Most workers allowed to be stuck past their deadline at once; with this
/// many stuck, new requests complete with [`IoError::Hung`].
pub const MAX_STUCK: usize = 16;

/// Longest single block in `wait`, so a far-away `until` never overflows an
/// `Instant`.
const MAX_BLOCK: Duration = Duration::from_secs(3600);

/// How to open a [`FileStorage`].
#[derive(Debug, Clone, Default)]
pub struct OpenOpts {
    /// Sector size to use. For a block device it must match the device's
    /// logical sector size; for a regular file it defaults to 512.
    pub sector_size: Option<SectorSize>,
    /// Create a missing regular file and extend a shorter one to this many
    /// bytes (never shrinks). Without it a missing path is an error.
    pub create_len: Option<u64>,
}

/// How long past its deadline a write submitted under
/// [`StallWrites`](crate::conformance::StallWrites) is held before its
/// `pwrite`.
const TEST_WRITE_HOLD: Duration = Duration::from_millis(300);

/// A request handed to a worker and not yet completed to the caller.
#[derive(Debug)]
struct Pending {
    id: IoId,
    deadline: MonoTime,
    /// A write's ticket, abandoned if the caller gives up before a worker
    /// starts it.
    ticket: Option<Arc<WriteTicket>>,
}

/// A regular file or block device accessed with `O_DIRECT`.
pub struct FileStorage {
    path: String,
    file: Arc<File>,
    key: FileKey,
    sector: SectorSize,
    size: u64,
    shared: Arc<Shared>,
    jobs_tx: Sender<Job>,
    jobs_rx: Receiver<Job>,
    done_tx: Sender<Done>,
    done_rx: Receiver<Done>,
    slots: Vec<Arc<Slot>>,
    pending: HashMap<u64, Pending>,
    by_deadline: BTreeSet<(MonoTime, u64)>,
    ready: VecDeque<IoCompletion>,
    next_seq: u64,
    /// Test hook: writes submitted now are held past their deadline.
    stall_writes: bool,
}

impl fmt::Debug for FileStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStorage")
            .field("path", &self.path)
            .field("sector", &self.sector)
            .field("size", &self.size)
            .field("workers", &self.slots.len())
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl FileStorage {
    /// Opens `path` for `O_DIRECT` I/O and starts the worker pool.
    pub fn open(path: &Path, opts: OpenOpts) -> Result<FileStorage, OpenError> {
        let name = path.display().to_string();
        let open_err = |source: io::Error| OpenError::Open {
            path: name.clone(),
            source,
        };
        let inspect_err = |source: io::Error| OpenError::Inspect {
            path: name.clone(),
            source,
        };

        // Look before opening, so a directory or fifo is reported as such
        // rather than as whatever `open(O_DIRECT)` makes of it.
        match std::fs::metadata(path) {
            Ok(md) if !is_storage(&md.file_type()) => {
                return Err(OpenError::NotStorage { path: name });
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound && opts.create_len.is_some() => {}
            Err(e) => return Err(open_err(e)),
        }

        let mut oo = OpenOptions::new();
        oo.read(true)
            .write(true)
            .create(opts.create_len.is_some())
            .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC);
        let file = oo.open(path).map_err(open_err)?;
        let md = file.metadata().map_err(inspect_err)?;
        let ft = md.file_type();
        let key = FileKey::of(&md);

        let (sector, size) = if ft.is_block_device() {
            let dev = rustix::fs::ioctl_blksszget(&file).map_err(|e| inspect_err(e.into()))?;
            let dev = u64::from(dev);
            let Some(sector) = SectorSize::from_bytes(dev) else {
                return Err(inspect_err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unsupported logical sector size {dev}"),
                )));
            };
            if let Some(req) = opts.sector_size {
                if req != sector {
                    return Err(OpenError::SectorMismatch {
                        path: name,
                        device: dev,
                        requested: req.bytes(),
                    });
                }
            }
            (sector, block_device_size(&file).map_err(inspect_err)?)
        } else if ft.is_file() {
            let mut size = md.len();
            if let Some(want) = opts.create_len {
                if size < want {
                    file.set_len(want).map_err(open_err)?;
                    size = want;
                }
            }
            (opts.sector_size.unwrap_or(SectorSize::B512), size)
        } else {
            return Err(OpenError::NotStorage { path: name });
        };

        let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded();
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let mut storage = FileStorage {
            path: name.clone(),
            file: Arc::new(file),
            key,
            sector,
            size,
            shared: Arc::new(Shared::default()),
            jobs_tx,
            jobs_rx,
            done_tx,
            done_rx,
            slots: Vec::new(),
            pending: HashMap::new(),
            by_deadline: BTreeSet::new(),
            ready: VecDeque::new(),
            next_seq: 0,
            stall_writes: false,
        };
        for _ in 0..BASE_WORKERS {
            storage.spawn_worker().map_err(open_err)?;
        }
        Ok(storage)
    }

    /// The path this storage was opened with.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// I/O counters (see [`IoStats`]).
    pub fn stats(&self) -> IoStats {
        *self
            .shared
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Worker threads started so far (including stuck ones).
    pub fn workers(&self) -> usize {
        self.slots.len()
    }

    /// Workers currently stuck in a request past its deadline.
    pub fn stuck_workers(&self) -> usize {
        self.count_stuck(RealClock.now())
    }

    /// Workers currently inside a request (stuck or not).
    #[doc(hidden)]
    pub fn busy_workers(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.busy_deadline.load(Ordering::SeqCst) != 0)
            .count()
    }

    /// Test hook: makes every worker sleep `stall` before each I/O it
    /// starts, as a hung mount would. `Duration::ZERO` turns it off.
    #[doc(hidden)]
    pub fn set_test_stall(&self, stall: Duration) {
        let nanos = u64::try_from(stall.as_nanos()).unwrap_or(u64::MAX);
        self.shared.stall_nanos.store(nanos, Ordering::SeqCst);
    }

    /// Writes to this file, from any `FileStorage` of this process, not yet
    /// finished by the media (see [`IoError::WriteInFlight`]).
    pub fn unfinished_writes(&self) -> usize {
        inflight::unfinished(self.key)
    }

    /// Test hook behind [`StallWrites`](crate::conformance::StallWrites):
    /// while on, each write submitted is held by its worker until
    /// [`TEST_WRITE_HOLD`] past its deadline, then performed.
    fn set_stall_writes(&mut self, on: bool) {
        self.stall_writes = on;
    }

    fn spawn_worker(&mut self) -> io::Result<()> {
        let slot = Arc::new(Slot::default());
        let w = Worker {
            file: Arc::clone(&self.file),
            shared: Arc::clone(&self.shared),
            slot: Arc::clone(&slot),
            jobs: self.jobs_rx.clone(),
            done: self.done_tx.clone(),
        };
        // Detached: the handle is dropped, a stuck worker exits on its own
        // once its I/O returns and it finds the channel closed.
        thread::Builder::new()
            .name(format!("nosplit-io-{}", self.slots.len()))
            .spawn(move || w.run())?;
        self.slots.push(slot);
        Ok(())
    }

    fn count_stuck(&self, now: MonoTime) -> usize {
        self.slots
            .iter()
            .filter(|s| {
                let d = s.busy_deadline.load(Ordering::SeqCst);
                d != 0 && d <= now.as_nanos()
            })
            .count()
    }

    /// Makes sure some worker is not stuck: spawns one if needed. Returns
    /// the stuck count when the cap is reached.
    fn ensure_worker(&mut self, now: MonoTime) -> Result<(), usize> {
        let stuck = self.count_stuck(now);
        if stuck < self.slots.len() {
            return Ok(());
        }
        if stuck >= MAX_STUCK {
            return Err(stuck);
        }
        // If the thread cannot be created the request waits in the queue and
        // times out, which is the truth about a storage we cannot serve.
        let _ = self.spawn_worker();
        Ok(())
    }

    /// Turns a worker's answer into a completion, unless the caller has
    /// already been told `TimedOut`.
    fn accept(&mut self, d: Done) -> Option<IoCompletion> {
        let p = self.pending.remove(&d.seq)?;
        self.by_deadline.remove(&(p.deadline, d.seq));
        let result = if d.finished > p.deadline {
            Err(IoError::TimedOut)
        } else {
            d.result
        };
        Some(IoCompletion { id: p.id, result })
    }

    /// Completes the earliest request whose deadline has passed.
    fn expire_one(&mut self, now: MonoTime) -> Option<IoCompletion> {
        let &(deadline, seq) = self.by_deadline.first()?;
        if deadline > now {
            return None;
        }
        self.by_deadline.remove(&(deadline, seq));
        let p = self.pending.remove(&seq)?;
        if let Some(t) = &p.ticket {
            // Never started: it never will be, so its bytes are free.
            // Started: its worker releases them when the I/O returns.
            t.abandon();
        }
        Some(IoCompletion {
            id: p.id,
            result: Err(IoError::TimedOut),
        })
    }
}

impl Drop for FileStorage {
    fn drop(&mut self) {
        // Queued requests have no one to complete to; do not start them.
        // Workers are detached: a stuck one exits when its I/O returns.
        self.shared.closed.store(true, Ordering::SeqCst);
        // Writes no worker has started will never start: free their bytes
        // now, not whenever a (perhaps stuck) worker gets to them.
        for p in self.pending.values() {
            if let Some(t) = &p.ticket {
                t.abandon();
            }
        }
    }
}

impl Storage for FileStorage {
    fn describe(&self) -> String {
        self.path.clone()
    }

    fn sector_size(&self) -> SectorSize {
        self.sector
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn now(&self) -> MonoTime {
        RealClock.now()
    }

    fn submit(&mut self, req: IoRequest) {
        if let Err(e) = req.op.validate(self.sector, self.size) {
            self.ready.push_back(IoCompletion {
                id: req.id,
                result: Err(e),
            });
            return;
        }
        let ticket = if req.op.is_write() {
            let (offset, len) = (req.op.offset(), req.op.len());
            match inflight::claim(self.key, offset, len) {
                Some(t) => Some(t),
                None => {
                    self.ready.push_back(IoCompletion {
                        id: req.id,
                        result: Err(IoError::WriteInFlight { offset, len }),
                    });
                    return;
                }
            }
        } else {
            None
        };
        if let Err(stuck) = self.ensure_worker(RealClock.now()) {
            if let Some(t) = &ticket {
                t.finish();
            }
            self.ready.push_back(IoCompletion {
                id: req.id,
                result: Err(IoError::Hung { stuck }),
            });
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let hold_until =
            (self.stall_writes && ticket.is_some()).then(|| req.deadline + TEST_WRITE_HOLD);
        self.pending.insert(
            seq,
            Pending {
                id: req.id,
                deadline: req.deadline,
                ticket: ticket.clone(),
            },
        );
        self.by_deadline.insert((req.deadline, seq));
        // We hold a receiver, so the channel is never disconnected; were it
        // to be, the request would simply time out (and the dropped job
        // releases its claim).
        let _ = self.jobs_tx.send(Job {
            seq,
            op: req.op,
            deadline: req.deadline,
            claim: ticket.map(WriteClaim),
            hold_until,
        });
    }

    fn wait(&mut self, until: MonoTime) -> Option<IoCompletion> {
        loop {
            if let Some(c) = self.ready.pop_front() {
                return Some(c);
            }
            // Results that already arrived win over the deadline check.
            if let Ok(d) = self.done_rx.try_recv() {
                if let Some(c) = self.accept(d) {
                    return Some(c);
                }
                continue;
            }
            let now = RealClock.now();
            if let Some(c) = self.expire_one(now) {
                // Its worker may now be stuck with others queued behind it.
                if !self.jobs_tx.is_empty() {
                    let _ = self.ensure_worker(now);
                }
                return Some(c);
            }
            if now >= until {
                return None;
            }
            let wake = match self.by_deadline.first() {
                Some(&(deadline, _)) => deadline.min(until),
                None => until,
            };
            let block = (wake - now).min(MAX_BLOCK);
            // Lease I/O is a chain of short requests: spin briefly for the
            // answer before parking, which saves a wake-up per request.
            if !self.by_deadline.is_empty() {
                if let Some(d) = spin_recv(&self.done_rx, block.min(SPIN)) {
                    if let Some(c) = self.accept(d) {
                        return Some(c);
                    }
                    continue;
                }
            }
            if let Ok(d) = self.done_rx.recv_deadline(Instant::now() + block) {
                if let Some(c) = self.accept(d) {
                    return Some(c);
                }
            }
        }
    }

    fn stats(&self) -> Option<IoStats> {
        Some(FileStorage::stats(self))
    }
}

impl crate::conformance::StallWrites for FileStorage {
    fn stall_writes(&mut self, on: bool) {
        self.set_stall_writes(on);
    }
}

/// How long a waiter spins on a channel before it parks.
pub(crate) const SPIN: Duration = Duration::from_micros(150);

/// Polls `rx` for up to `limit`, yielding the CPU hint between polls.
pub(crate) fn spin_recv<T>(rx: &crossbeam_channel::Receiver<T>, limit: Duration) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        for _ in 0..64 {
            if let Ok(v) = rx.try_recv() {
                return Some(v);
            }
            std::hint::spin_loop();
        }
        if Instant::now() >= end {
            return None;
        }
    }
}

fn is_storage(ft: &std::fs::FileType) -> bool {
    ft.is_file() || ft.is_block_device()
}

/// `ioctl(BLKGETSIZE64)`: a block device's size in bytes.
fn block_device_size(file: &File) -> io::Result<u64> {
    // `_IOR(0x12, 114, size_t)` from <linux/fs.h>; the kernel writes a u64.
    const BLKGETSIZE64: rustix::ioctl::Opcode = rustix::ioctl::opcode::read::<usize>(0x12, 114);
    // SAFETY: BLKGETSIZE64 is a getter whose kernel side writes exactly one
    // u64 into the output buffer the `Getter` provides.
    let ctl = unsafe { rustix::ioctl::Getter::<BLKGETSIZE64, u64>::new() };
    // SAFETY: `ctl` matches the opcode's contract (see above) and `file` is an
    // open descriptor for the duration of the call.
    unsafe { rustix::ioctl::ioctl(file, ctl) }.map_err(io::Error::from)
}
