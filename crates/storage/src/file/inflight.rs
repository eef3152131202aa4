//! The process-wide registry of unfinished writes, per file: what enforces
//! "a write never overtakes an earlier unfinished write to overlapping bytes
//! of the same file" across every [`FileStorage`](super::FileStorage) open
//! in this process.
//!
//! A write is *claimed* at submit (checked against and inserted into the
//! registry in one short critical section) and *released* exactly once:
//! after its `pwrite` returns, or when it is certain never to start (its
//! worker dropped it past its deadline, the storage abandoned it at its
//! deadline or on drop). A per-write state word arbitrates between the
//! worker starting a queued write and the storage abandoning it.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

/// Which media a descriptor reaches: two opens of one file (or of one
/// block device through different nodes) have the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum FileKey {
    /// A regular file: `(st_dev, st_ino)`.
    Inode {
        /// Device holding the inode.
        dev: u64,
        /// Inode number.
        ino: u64,
    },
    /// A block device: its `st_rdev`, whichever node it was opened by.
    Device {
        /// Device number.
        rdev: u64,
    },
}

impl FileKey {
    /// The key of an open descriptor, from its `fstat`.
    pub(super) fn of(md: &Metadata) -> FileKey {
        if md.file_type().is_block_device() {
            FileKey::Device { rdev: md.rdev() }
        } else {
            FileKey::Inode {
                dev: md.dev(),
                ino: md.ino(),
            }
        }
    }
}

/// One unfinished write: bytes `[start, end)`.
#[derive(Debug)]
struct Span {
    start: u64,
    end: u64,
    token: u64,
}

#[derive(Debug, Default)]
struct Registry {
    next_token: u64,
    files: HashMap<FileKey, Vec<Span>>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Queued: a worker may still start it.
const QUEUED: u8 = 0;
/// A worker started it; only that worker releases it.
const STARTED: u8 = 1;
/// Released (finished, or certain never to start).
const DONE: u8 = 2;

/// One claimed write.
#[derive(Debug)]
pub(super) struct WriteTicket {
    key: FileKey,
    token: u64,
    state: AtomicU8,
}

/// Claims `[offset, offset + len)` of `key` for a new write, unless it
/// overlaps an unfinished one. The caller validated the range (no
/// overflow, non-empty).
pub(super) fn claim(key: FileKey, offset: u64, len: usize) -> Option<Arc<WriteTicket>> {
    let start = offset;
    let end = offset.saturating_add(u64::try_from(len).unwrap_or(u64::MAX));
    let mut reg = registry();
    let token = reg.next_token;
    let spans = reg.files.entry(key).or_default();
    if spans.iter().any(|s| s.start < end && start < s.end) {
        return None;
    }
    spans.push(Span { start, end, token });
    reg.next_token += 1;
    drop(reg);
    Some(Arc::new(WriteTicket {
        key,
        token,
        state: AtomicU8::new(QUEUED),
    }))
}

impl WriteTicket {
    /// A worker is about to start the write: false if it was abandoned and
    /// must not be performed.
    pub(super) fn start(&self) -> bool {
        self.state
            .compare_exchange(QUEUED, STARTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The caller gave up on the write: released now unless a worker has
    /// already started it (that worker releases it when the I/O returns).
    pub(super) fn abandon(&self) {
        if self
            .state
            .compare_exchange(QUEUED, DONE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.release();
        }
    }

    /// The write finished, or was dropped without starting: released.
    pub(super) fn finish(&self) {
        if self.state.swap(DONE, Ordering::AcqRel) != DONE {
            self.release();
        }
    }

    fn release(&self) {
        let mut reg = registry();
        if let Some(spans) = reg.files.get_mut(&self.key) {
            if let Some(i) = spans.iter().position(|s| s.token == self.token) {
                spans.swap_remove(i);
            }
            if spans.is_empty() {
                reg.files.remove(&self.key);
            }
        }
    }
}

/// The worker's hold on a write: finishes the ticket when dropped, so a job
/// that is discarded for any reason releases its bytes.
#[derive(Debug)]
pub(super) struct WriteClaim(pub(super) Arc<WriteTicket>);

impl Drop for WriteClaim {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// Unfinished writes registered for `key` (for tests and debugging).
pub(super) fn unfinished(key: FileKey) -> usize {
    registry().files.get(&key).map_or(0, Vec::len)
}
