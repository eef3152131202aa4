#![allow(clippy::unwrap_used)]
//! QEMU fault handling: QEMU killed behind our back (owned and adopted handles), and the
//! QMP socket file removed under a running VM. No panics, clear states and errors.

use nosplit_vmrt::conformance::{max_seq, qemu_spec, wait_for, GuestSlot, KillGuard};
use nosplit_vmrt::driver::{DriverError, QemuDriver, VmDriver, VmEvent, VmSpec, VmState};
use nosplit_vmrt::image::build_guest;
use rustix::process::{kill_process, Pid, Signal};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

fn setup(root: &Path, case: &str) -> (QemuDriver, VmSpec) {
    let image = build_guest(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("vmrt-guest")).unwrap();
    let disk = root.join(format!("{case}.img"));
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let spec = qemu_spec(
        &format!("vm-{case}"),
        disk,
        root.join(format!("run-{case}")),
    );
    (QemuDriver::new(image), spec)
}

fn sigkill(pid: u32) {
    kill_process(
        Pid::from_raw(i32::try_from(pid).unwrap()).unwrap(),
        Signal::KILL,
    )
    .unwrap();
}

#[test]
fn qemu_killed_behind_our_back() {
    let _slot = GuestSlot::acquire().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (driver, spec) = setup(dir.path(), "crash");
    let prepared = driver.prepare(&spec).unwrap();
    let _guard = KillGuard(prepared.identity());
    let mut vm = prepared.start().unwrap();
    assert_eq!(vm.state().unwrap(), VmState::Running);

    // The socket file vanishing does not disturb the open QMP connection ...
    std::fs::remove_file(spec.run_dir.join("qmp.sock")).unwrap();
    vm.pause().unwrap();
    assert_eq!(vm.state().unwrap(), VmState::Paused);
    vm.resume().unwrap();
    let evs = vm.try_events();
    let names: Vec<&str> = evs
        .iter()
        .filter_map(|e| {
            if let VmEvent::Qmp(q) = e {
                Some(q.name.as_str())
            } else {
                None
            }
        })
        .collect();
    assert!(
        names.contains(&"STOP") && names.contains(&"RESUME"),
        "{evs:?}"
    );

    // ... and kill -9 of QEMU (a guest crash) gives Exited(SIGKILL), never a panic.
    sigkill(vm.pid());
    let st = vm.state().unwrap();
    match st {
        VmState::Exited(s) => assert_eq!(s.signal(), Some(9)),
        other => panic!("state after kill -9: {other:?}"),
    }
    let evs = vm.try_events();
    assert!(
        evs.iter().any(|e| matches!(e, VmEvent::Exited(_))),
        "{evs:?}"
    );
    assert!(matches!(
        vm.pause(),
        Err(DriverError::WrongState(VmState::Exited(_)))
    ));
    let report = vm.stop(Duration::from_secs(5)).unwrap();
    assert!(!report.forced);
}

#[test]
fn adopted_qemu_killed_is_gone_and_not_adoptable() {
    let _slot = GuestSlot::acquire().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (driver, spec) = setup(dir.path(), "adopted");
    let prepared = driver.prepare(&spec).unwrap();
    let _guard = KillGuard(prepared.identity());
    let vm = prepared.start().unwrap();
    let pid = vm.pid();
    drop(vm);
    let mut vm = driver.adopt(&spec).unwrap();
    assert_eq!(vm.pid(), pid);
    assert!(wait_for(Duration::from_secs(90), || {
        max_seq(&spec.disk, &spec.id, &spec.inst).unwrap().is_some()
    }));
    sigkill(pid);
    assert_eq!(
        vm.wait_exit(Duration::from_secs(10)).unwrap(),
        VmState::Gone
    );
    assert_eq!(vm.state().unwrap(), VmState::Gone);
    assert!(vm.try_events().contains(&VmEvent::Gone));
    let err = driver.adopt(&spec).unwrap_err();
    assert!(matches!(err, DriverError::Adopt(_)), "{err}");
}
