//! The I/O worker threads of [`FileStorage`](super::FileStorage): what they
//! are handed, what they answer, and the `pread`/`pwrite` they run.

use super::inflight::WriteClaim;
use crate::{AlignedBuf, IoError, IoOk, IoOp, IoStats, MonoTime};
use crossbeam_channel::{Receiver, Sender};
use nosplit_clock::{Clock, RealClock};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

/// One queued request, as a worker sees it.
pub(super) struct Job {
    pub(super) seq: u64,
    pub(super) op: IoOp,
    pub(super) deadline: MonoTime,
    /// A write's claim on its bytes; released when the job is done or
    /// dropped, whichever comes first.
    pub(super) claim: Option<WriteClaim>,
    /// Test hook: once started, do not `pwrite` before this time.
    pub(super) hold_until: Option<MonoTime>,
}

/// A worker's answer.
pub(super) struct Done {
    pub(super) seq: u64,
    /// When the media answered.
    pub(super) finished: MonoTime,
    pub(super) result: Result<IoOk, IoError>,
}

/// State the workers share with the storage.
#[derive(Debug, Default)]
pub(super) struct Shared {
    pub(super) stats: Mutex<IoStats>,
    /// Set when the storage is dropped: workers start nothing more.
    pub(super) closed: AtomicBool,
    /// Test hook: nanoseconds each worker sleeps before doing I/O.
    pub(super) stall_nanos: AtomicU64,
}

/// One worker's progress: the deadline (ns) of the request it is doing, or 0
/// when idle.
#[derive(Debug, Default)]
pub(super) struct Slot {
    pub(super) busy_deadline: AtomicU64,
}

/// One I/O thread.
pub(super) struct Worker {
    pub(super) file: Arc<File>,
    pub(super) shared: Arc<Shared>,
    pub(super) slot: Arc<Slot>,
    pub(super) jobs: Receiver<Job>,
    pub(super) done: Sender<Done>,
}

impl Worker {
    pub(super) fn run(self) {
        let clock = RealClock;
        loop {
            // Right after a request, the next one usually follows at once.
            let job = match super::spin_recv(&self.jobs, super::SPIN) {
                Some(job) => job,
                None => match self.jobs.recv() {
                    Ok(job) => job,
                    Err(_) => break,
                },
            };
            if self.shared.closed.load(Ordering::SeqCst) {
                break;
            }
            if clock.now() >= job.deadline {
                // The caller has been (or is about to be) told TimedOut;
                // do not start an I/O it gave up on. Dropping the job
                // releases a write's claim.
                continue;
            }
            if let Some(claim) = &job.claim {
                if !claim.0.start() {
                    // Abandoned by the storage (deadline or drop): it was
                    // promised never to run.
                    continue;
                }
            }
            self.slot
                .busy_deadline
                .store(job.deadline.as_nanos().max(1), Ordering::SeqCst);
            let stall = self.shared.stall_nanos.load(Ordering::SeqCst);
            if stall > 0 {
                thread::sleep(Duration::from_nanos(stall));
            }
            if let Some(t) = job.hold_until {
                let now = clock.now();
                if t > now {
                    thread::sleep(t - now);
                }
            }
            let (write, len) = (job.op.is_write(), job.op.len());
            let result = do_io(&self.file, job.op);
            let finished = clock.now();
            // The media is done with the bytes: release them before the
            // caller can hear of it, so its next write is not refused.
            drop(job.claim);
            if result.is_ok() {
                let mut st = self
                    .shared
                    .stats
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                st.count(write, len);
            }
            self.slot.busy_deadline.store(0, Ordering::SeqCst);
            if self
                .done
                .send(Done {
                    seq: job.seq,
                    finished,
                    result,
                })
                .is_err()
            {
                break;
            }
        }
    }
}

/// Runs one validated request against the file.
fn do_io(file: &File, op: IoOp) -> Result<IoOk, IoError> {
    match op {
        IoOp::Read { offset, len } => {
            let mut buf = AlignedBuf::zeroed(len);
            let done =
                retry_eintr(|| file.read_at(&mut buf, offset)).map_err(|e| os_error("read", &e))?;
            if done != len {
                return Err(IoError::Short {
                    op: "read",
                    done,
                    len,
                });
            }
            Ok(IoOk::Read(buf))
        }
        IoOp::Write { offset, data } => {
            let len = data.len();
            let done =
                retry_eintr(|| file.write_at(&data, offset)).map_err(|e| os_error("write", &e))?;
            if done != len {
                return Err(IoError::Short {
                    op: "write",
                    done,
                    len,
                });
            }
            Ok(IoOk::Written)
        }
    }
}

fn retry_eintr(mut f: impl FnMut() -> io::Result<usize>) -> io::Result<usize> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

fn os_error(op: &'static str, e: &io::Error) -> IoError {
    let errno = e.raw_os_error().unwrap_or(0);
    let text = e.to_string();
    // `io::Error` appends " (os error N)"; the errno is its own field.
    let message = match text.find(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    IoError::Os { op, errno, message }
}
