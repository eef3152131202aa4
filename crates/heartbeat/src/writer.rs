//! The process "VM": writes one heartbeat record per tick to its disk.
//!
//! [`Writer`] owns the open disk (O_DIRECT, one sector-aligned 512-byte
//! `pwrite` per record at slot `seq % 64`) and the sequence counter;
//! [`run`] is the main loop used by `nosplit vm-proc`. Like a real VM, the
//! writer does not die when its storage fails: a failed write is counted,
//! logged to stderr once per error streak, and the next tick writes the next
//! record. Sleeping is plain `nanosleep` (restarted after signals), so
//! SIGSTOP/SIGCONT only delays the loop: after a thaw the next record is
//! written at once, with no catch-up burst.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use thiserror::Error;

use crate::disk::{disk_len, DiskError};
use crate::record::{encode, slot_offset, Record, RecordError, RECORD_SIZE, RING_BYTES};

/// Default time between records.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(200);
/// Longest single sleep, so a stop request is seen promptly.
const STOP_CHECK: Duration = Duration::from_millis(20);

/// What to write, where and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterConfig {
    /// The VM's disk (a raw file or block device of at least 32 KiB).
    pub disk: PathBuf,
    /// The VM's id.
    pub vm: String,
    /// This instance's id.
    pub inst: String,
    /// Time between records.
    pub interval: Duration,
    /// Sequence number of the first record (default 1).
    pub start_seq: u64,
    /// Stop after this many records (written or failed); `None` = until stopped.
    pub max_records: Option<u64>,
}

impl WriterConfig {
    /// A config with the default interval (200 ms), starting at seq 1, unbounded.
    pub fn new(disk: impl Into<PathBuf>, vm: impl Into<String>, inst: impl Into<String>) -> Self {
        WriterConfig {
            disk: disk.into(),
            vm: vm.into(),
            inst: inst.into(),
            interval: DEFAULT_INTERVAL,
            start_seq: 1,
            max_records: None,
        }
    }
}

/// What a writer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Records written successfully.
    pub written: u64,
    /// Records whose write failed.
    pub errors: u64,
    /// The sequence number the next record would get.
    pub next_seq: u64,
    /// The most recent write error, if any.
    pub last_error: Option<String>,
}

/// Errors that stop a writer before it starts.
#[derive(Debug, Error)]
pub enum WriterError {
    /// The vm, inst or start seq is not valid for a record.
    #[error("invalid writer config: {0}")]
    Config(#[from] RecordError),
    /// A zero interval would spin.
    #[error("invalid writer config: interval must be greater than zero")]
    ZeroInterval,
    /// The disk could not be opened with O_DIRECT.
    #[error("open disk {path} with O_DIRECT: {source}")]
    Open {
        /// The disk.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The disk is missing its ring or cannot be sized.
    #[error(transparent)]
    Disk(#[from] DiskError),
}

/// One 512-byte record in a buffer aligned for O_DIRECT on any sector size.
#[repr(C, align(4096))]
struct AlignedSector([u8; RECORD_SIZE]);

/// An open heartbeat disk and the next record to write.
#[derive(Debug)]
pub struct Writer {
    file: File,
    path: PathBuf,
    vm: String,
    inst: String,
    stats: WriterStats,
    streak: u64,
}

impl Writer {
    /// Validates the ids and opens the disk (read-write, O_DIRECT). The disk
    /// must already hold at least the 32 KiB ring; it is never extended.
    pub fn open(cfg: &WriterConfig) -> Result<Self, WriterError> {
        encode(&Record {
            vm: cfg.vm.clone(),
            inst: cfg.inst.clone(),
            seq: cfg.start_seq,
            time_ms: 0,
        })?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(&cfg.disk)
            .map_err(|source| WriterError::Open {
                path: cfg.disk.clone(),
                source,
            })?;
        let len = disk_len(&mut file, &cfg.disk)?;
        if len < RING_BYTES as u64 {
            return Err(DiskError::TooSmall {
                path: cfg.disk.clone(),
                len,
            }
            .into());
        }
        Ok(Writer {
            file,
            path: cfg.disk.clone(),
            vm: cfg.vm.clone(),
            inst: cfg.inst.clone(),
            stats: WriterStats {
                next_seq: cfg.start_seq,
                ..WriterStats::default()
            },
            streak: 0,
        })
    }

    /// What the writer has done so far.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Writes the next record (one aligned 512-byte pwrite) and advances the
    /// sequence whether or not the write succeeded. Returns the seq used.
    /// A failure is counted and logged to stderr on the first of a streak.
    pub fn write_next(&mut self) -> Result<u64, io::Error> {
        let seq = self.stats.next_seq;
        self.stats.next_seq = seq.saturating_add(1);
        let result = self.write_seq(seq);
        match &result {
            Ok(()) => {
                if self.streak > 0 {
                    eprintln!(
                        "nosplit-heartbeat: {}/{}: writes to {} recovered after {} failed",
                        self.vm,
                        self.inst,
                        self.path.display(),
                        self.streak
                    );
                }
                self.streak = 0;
                self.stats.written += 1;
            }
            Err(e) => {
                if self.streak == 0 {
                    eprintln!(
                        "nosplit-heartbeat: {}/{}: write of seq {seq} to {} failed: {e} \
                         (retrying each tick; further errors in this streak not logged)",
                        self.vm,
                        self.inst,
                        self.path.display()
                    );
                }
                self.streak += 1;
                self.stats.errors += 1;
                self.stats.last_error = Some(format!("seq {seq}: {e}"));
            }
        }
        result.map(|()| seq)
    }

    fn write_seq(&mut self, seq: u64) -> Result<(), io::Error> {
        let rec = Record {
            vm: self.vm.clone(),
            inst: self.inst.clone(),
            seq,
            time_ms: realtime_ms(),
        };
        let bytes = encode(&rec).map_err(io::Error::other)?;
        let buf = AlignedSector(bytes);
        loop {
            match self.file.write_at(&buf.0, slot_offset(seq)) {
                Ok(RECORD_SIZE) => return Ok(()),
                Ok(n) => {
                    return Err(io::Error::other(format!(
                        "short write: {n} of {RECORD_SIZE} bytes"
                    )))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The disk this writer writes to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn realtime_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Sleeps for `d` in short steps; returns early (false) if `stop` is set.
fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + d;
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(STOP_CHECK));
    }
}

/// Runs the writer until `stop` is set or `max_records` records were tried.
/// Write failures do not end the loop; only a bad config or an unusable disk
/// at start does.
pub fn run(cfg: &WriterConfig, stop: &AtomicBool) -> Result<WriterStats, WriterError> {
    if cfg.interval.is_zero() {
        return Err(WriterError::ZeroInterval);
    }
    let mut w = Writer::open(cfg)?;
    let mut tried: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        if cfg.max_records.is_some_and(|m| tried >= m) || w.stats.next_seq == u64::MAX {
            break;
        }
        let _ = w.write_next();
        tried += 1;
        if cfg.max_records.is_some_and(|m| tried >= m) {
            break;
        }
        if !sleep_unless_stopped(cfg.interval, stop) {
            break;
        }
    }
    Ok(w.stats.clone())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::disk::{create_disk, read_ring};
    use crate::record::Slot;

    #[test]
    fn writes_records_at_their_slots() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.raw");
        create_disk(&p, 0).unwrap();
        let mut cfg = WriterConfig::new(&p, "vm1", "a");
        cfg.interval = Duration::from_millis(1);
        cfg.start_seq = 60;
        cfg.max_records = Some(10);
        let stats = run(&cfg, &AtomicBool::new(false)).unwrap();
        assert_eq!((stats.written, stats.errors, stats.next_seq), (10, 0, 70));
        let slots = read_ring(&mut File::open(&p).unwrap(), &p).unwrap();
        for (i, s) in slots.iter().enumerate() {
            match s {
                Slot::Record(r) => {
                    assert_eq!(r.seq % 64, i as u64);
                    assert!((60..70).contains(&r.seq));
                    assert_eq!((r.vm.as_str(), r.inst.as_str()), ("vm1", "a"));
                }
                Slot::Empty => assert!(!(60..70).any(|q| q % 64 == i as u64)),
                Slot::Garbled(g) => panic!("slot {i} garbled: {g}"),
            }
        }
    }

    #[test]
    fn rejects_bad_config_and_small_disk() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("small.raw");
        std::fs::write(&p, vec![0u8; 4096]).unwrap();
        let stop = AtomicBool::new(false);
        let cfg = WriterConfig::new(&p, "vm1", "a");
        assert!(matches!(
            run(&cfg, &stop),
            Err(WriterError::Disk(DiskError::TooSmall { len: 4096, .. }))
        ));
        let cfg = WriterConfig::new(&p, "vm 1", "a");
        assert!(matches!(run(&cfg, &stop), Err(WriterError::Config(_))));
        let mut cfg = WriterConfig::new(&p, "vm1", "a");
        cfg.start_seq = 0;
        assert!(matches!(run(&cfg, &stop), Err(WriterError::Config(_))));
        cfg.interval = Duration::ZERO;
        assert!(matches!(run(&cfg, &stop), Err(WriterError::ZeroInterval)));
        let cfg = WriterConfig::new(dir.path().join("missing"), "vm1", "a");
        assert!(matches!(run(&cfg, &stop), Err(WriterError::Open { .. })));
    }

    #[test]
    fn failed_writes_are_counted_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.raw");
        create_disk(&p, 0).unwrap();
        // A read-only descriptor makes every pwrite fail (EBADF).
        let mut w = Writer {
            file: File::open(&p).unwrap(),
            path: p.clone(),
            vm: "v".into(),
            inst: "i".into(),
            stats: WriterStats {
                next_seq: 5,
                ..WriterStats::default()
            },
            streak: 0,
        };
        assert!(w.write_next().is_err());
        assert!(w.write_next().is_err());
        assert_eq!(
            (w.stats().errors, w.stats().written, w.stats().next_seq),
            (2, 0, 7)
        );
        assert!(w
            .stats()
            .last_error
            .as_deref()
            .unwrap()
            .starts_with("seq 6:"));
        // Storage comes back: the next tick writes the next record.
        w.file = OpenOptions::new().write(true).open(&p).unwrap();
        assert_eq!(w.write_next().unwrap(), 7);
        assert_eq!((w.stats().errors, w.stats().written, w.streak), (2, 1, 0));
    }

    #[test]
    fn stop_flag_ends_loop() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.raw");
        create_disk(&p, 0).unwrap();
        let stop = AtomicBool::new(true);
        let stats = run(&WriterConfig::new(&p, "v", "i"), &stop).unwrap();
        assert_eq!(stats.written, 0);
    }
}
