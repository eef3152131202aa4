#![allow(clippy::unwrap_used)]
//! `werror=stop,rerror=stop` for real: a TCG guest whose disk sits on a
//! fault filesystem (the lab's, in-process here) pauses itself when its
//! storage answers EIO (QMP `BLOCK_IO_ERROR`, state `io-error`), writes
//! nothing while paused, and runs and writes again after the storage
//! recovers and it is resumed. The guest is never left running against
//! a failing disk.

use std::path::Path;
use std::time::Duration;

use nosplit_faultfs::Mode;
use nosplit_vmrt::conformance::{max_seq, qemu_spec, wait_for, GuestSlot, KillGuard};
use nosplit_vmrt::driver::{QemuDriver, VmDriver, VmEvent, VmState};
use nosplit_vmrt::image::build_guest;

#[test]
fn a_guest_pauses_on_storage_errors_and_resumes_after() {
    let _slot = GuestSlot::acquire().unwrap();
    let image = build_guest(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("vmrt-guest")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (backing, mnt) = (dir.path().join("backing"), dir.path().join("mnt"));
    std::fs::create_dir(&backing).unwrap();
    std::fs::create_dir(&mnt).unwrap();
    std::fs::write(backing.join("g.img"), vec![0u8; 1 << 20]).unwrap();
    let fs = nosplit_faultfs::spawn(&backing, &mnt, None).unwrap();
    let faults = fs.handle();
    let spec = qemu_spec(
        "vm-eio",
        fs.mountpoint().join("g.img"),
        dir.path().join("run"),
    );
    // The oracle's view: the backing file, read past the fault.
    let seq = || max_seq(&backing.join("g.img"), &spec.id, &spec.inst).unwrap();
    let driver = QemuDriver::new(image);
    let prepared = driver.prepare(&spec).unwrap();
    let _guard = KillGuard(prepared.identity());
    let mut vm = prepared.start().unwrap();
    assert!(
        wait_for(Duration::from_secs(90), || seq().is_some()),
        "the guest never wrote"
    );

    faults.set(Mode::Eio {
        reads: true,
        writes: true,
    });
    assert!(
        wait_for(Duration::from_secs(30), || vm.state().unwrap()
            == VmState::IoErrorPaused),
        "still {:?} on a failing disk",
        vm.state()
    );
    let events = vm.try_events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, VmEvent::Qmp(q) if q.name == "BLOCK_IO_ERROR")),
        "{events:?}"
    );
    // Paused: nothing reaches the disk, even once the storage is back.
    faults.set(Mode::Ok);
    let at_pause = seq();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(seq(), at_pause, "a paused guest wrote");
    assert_eq!(vm.state().unwrap(), VmState::IoErrorPaused);

    vm.resume().unwrap();
    assert!(
        wait_for(Duration::from_secs(30), || seq() > at_pause),
        "no writes after the resume"
    );
    assert_eq!(vm.state().unwrap(), VmState::Running);
    vm.stop(Duration::from_secs(10)).unwrap();
}
