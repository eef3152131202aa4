#![allow(clippy::unwrap_used)]
//! A real TCG guest given extra disks sees each of them (`/dev/vdb`, `/dev/vdc`) beside
//! the first, and still writes its heartbeats to the first only.

use nosplit_vmrt::conformance::{max_seq, qemu_spec, wait_for, GuestSlot, KillGuard};
use nosplit_vmrt::driver::{QemuDriver, VmDriver};
use nosplit_vmrt::image::build_guest;
use std::path::Path;
use std::time::Duration;

#[test]
fn a_guest_sees_its_extra_disks_in_order() {
    let image = build_guest(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("vmrt-guest")).unwrap();
    let _slot = GuestSlot::acquire().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let disk = |name: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, vec![0u8; 1 << 20]).unwrap();
        p
    };
    let mut spec = qemu_spec("vm-disks", disk("root.img"), dir.path().join("run"));
    spec.extra_disks = vec![disk("data.img"), disk("lo,gs.img")];
    let prepared = QemuDriver::new(image).prepare(&spec).unwrap();
    let _guard = KillGuard(prepared.identity());
    let mut vm = prepared.start().unwrap();
    let console = spec.run_dir.join("console.log");
    let seen = || std::fs::read_to_string(&console).unwrap_or_default();
    let beating = || max_seq(&spec.disk, &spec.id, &spec.inst).unwrap().is_some();
    assert!(
        wait_for(Duration::from_secs(90), beating),
        "no heartbeat; console: {}",
        seen()
    );
    let line = seen()
        .lines()
        // The serial console ends lines with \r\n, the firmware's text may precede.
        .find_map(|l| {
            l.find("nosplit-guest: disks")
                .map(|i| l[i..].trim_end().to_string())
        });
    assert_eq!(
        line.as_deref(),
        Some("nosplit-guest: disks vda vdb vdc"),
        "console: {}",
        seen()
    );
    for extra in &spec.extra_disks {
        assert_eq!(
            max_seq(extra, &spec.id, &spec.inst).unwrap(),
            None,
            "no heartbeat there"
        );
    }
    vm.stop(Duration::from_secs(10)).unwrap();
}
