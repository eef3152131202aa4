//! The decoder accepts records written the way the guest init writes them
//! (`printf | dd oflag=direct`), and rejects the off-by-one `%-510s` form.
#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::path::Path;
use std::process::Command;

use nosplit_heartbeat::disk::{create_disk, read_ring};
use nosplit_heartbeat::record::{GarbleReason, Slot};

/// Runs the guest's write command for one record; false if dd cannot do it here.
fn shell_write(disk: &Path, width: u32, inst: &str, seq: u64, time_ms: u64) -> bool {
    let script = format!(
        "printf '%-{width}s\\n' \"NSHB1 vm1 {inst} {seq} {time_ms} END\" | \
         dd of=\"$DISK\" bs=512 count=1 seek=$(({seq} % 64)) iflag=fullblock oflag=direct conv=notrunc"
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env("DISK", disk)
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!(
            "skipping: dd with oflag=direct failed here: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status.success()
}

#[test]
fn guest_shell_records_decode() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("guest.raw");
    create_disk(&disk, 0).unwrap();
    for seq in [1u64, 2, 63, 64, 65] {
        if !shell_write(&disk, 511, "i-1", seq, 1_700_000_000_000 + seq) {
            return;
        }
    }
    let slots = read_ring(&mut File::open(&disk).unwrap(), &disk).unwrap();
    // 65 overwrote 1 (both slot 1).
    for (slot, seq) in [(1usize, 65u64), (2, 2), (63, 63), (0, 64)] {
        match &slots[slot] {
            Slot::Record(r) => {
                assert_eq!((r.vm.as_str(), r.inst.as_str(), r.seq), ("vm1", "i-1", seq));
                assert_eq!(r.time_ms, 1_700_000_000_000 + seq);
            }
            other => panic!("slot {slot}: {other:?}"),
        }
    }
    let filled = slots.iter().filter(|s| **s != Slot::Empty).count();
    assert_eq!(filled, 4);
}

#[test]
fn printf_510_writes_newline_at_byte_510_and_is_garbled() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("off-by-one.raw");
    create_disk(&disk, 0).unwrap();
    if !shell_write(&disk, 510, "i-1", 5, 1) {
        return;
    }
    let slots = read_ring(&mut File::open(&disk).unwrap(), &disk).unwrap();
    assert_eq!(slots[5], Slot::Garbled(GarbleReason::NoNewline));
}
