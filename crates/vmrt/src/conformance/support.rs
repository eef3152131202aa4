//! Helpers for the conformance suite and heavy tests: a minimal heartbeat reader (max
//! `seq` per vm/inst in the 64-slot ring), a polling `wait_for`, a guard that kills a
//! process left behind by a failing case, and [`GuestSlot`], a machine-wide file lock
//! that limits how many QEMU guests tests boot at once, and [`qemu_spec`], the small
//! guest the heavy QEMU tests boot.

use crate::driver::{ProcIdentity, VmKind, VmSpec};
use rustix::fs::{flock, FlockOperation};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A QEMU guest `id` (instance `i1`, 128 MiB, 1 vCPU, a heartbeat every 100 ms) on
/// `disk`, run in `run_dir`, with no further disks.
pub fn qemu_spec(id: &str, disk: PathBuf, run_dir: PathBuf) -> VmSpec {
    VmSpec {
        id: id.into(),
        inst: "i1".into(),
        disk,
        extra_disks: Vec::new(),
        memory_mib: 128,
        vcpus: 1,
        run_dir,
        kind: VmKind::Qemu {
            interval_ms: 100,
            extra_args: Vec::new(),
        },
        spawn_hook: None,
    }
}

/// Size of the heartbeat ring: 64 slots of 512 bytes.
pub const RING_BYTES: usize = 64 * 512;

/// Highest `seq` written by (`vm`, `inst`) in the ring on `disk`, `None` if no record.
/// Garbled slots are ignored.
pub fn max_seq(disk: &Path, vm: &str, inst: &str) -> std::io::Result<Option<u64>> {
    let data = std::fs::read(disk)?;
    let ring = &data[..data.len().min(RING_BYTES)];
    Ok(ring
        .chunks(512)
        .filter_map(|slot| parse_slot(slot, vm, inst))
        .max())
}

fn parse_slot(slot: &[u8], vm: &str, inst: &str) -> Option<u64> {
    let text = std::str::from_utf8(slot).ok()?;
    let f: Vec<&str> = text.split_ascii_whitespace().collect();
    match f.as_slice() {
        ["NSHB1", v, i, seq, _time, "END"] if *v == vm && *i == inst => seq.parse().ok(),
        _ => None,
    }
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills (SIGKILL, whole group) the process on drop if it is still that process.
#[derive(Debug)]
pub struct KillGuard(pub ProcIdentity);

impl Drop for KillGuard {
    fn drop(&mut self) {
        if let (Some(st), Ok(raw)) = (self.0.stat(), i32::try_from(self.0.pid)) {
            if let Some(pid) = rustix::process::Pid::from_raw(raw) {
                let sig = rustix::process::Signal::KILL;
                let _ = if i64::from(st.pgrp) == i64::from(self.0.pid) {
                    rustix::process::kill_process_group(pid, sig)
                } else {
                    rustix::process::kill_process(pid, sig)
                };
            }
        }
    }
}

/// One of [`GuestSlot::SLOTS`] machine-wide slots for booting a QEMU guest in tests.
#[derive(Debug)]
pub struct GuestSlot {
    _file: File,
    /// Slot number.
    pub index: usize,
}

impl GuestSlot {
    /// How many guests tests may boot at once on this machine.
    pub const SLOTS: usize = 2;

    /// Blocks until a slot is free (lock files `/tmp/nosplit-vmrt-guest-slot-N.lock`).
    pub fn acquire() -> std::io::Result<Self> {
        loop {
            for index in 0..Self::SLOTS {
                let path =
                    std::env::temp_dir().join(format!("nosplit-vmrt-guest-slot-{index}.lock"));
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)?;
                match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                    Ok(()) => return Ok(Self { _file: file, index }),
                    Err(rustix::io::Errno::WOULDBLOCK) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_seq_reads_ring_and_skips_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("d");
        let mut data = vec![0u8; RING_BYTES + 512];
        let rec = |s: &str| format!("{s:<511}\n").into_bytes();
        data[512..1024].copy_from_slice(&rec("NSHB1 vm i1 65 100 END"));
        data[1024..1536].copy_from_slice(&rec("NSHB1 vm i1 2 100 END"));
        data[1536..2048].copy_from_slice(&rec("NSHB1 vm i2 99 100 END"));
        data[2048..2560].copy_from_slice(&[0xff; 512]);
        data[RING_BYTES..].copy_from_slice(&rec("NSHB1 vm i1 999 100 END"));
        std::fs::write(&disk, &data).unwrap();
        assert_eq!(max_seq(&disk, "vm", "i1").unwrap(), Some(65));
        assert_eq!(max_seq(&disk, "vm", "i3").unwrap(), None);
    }
}
