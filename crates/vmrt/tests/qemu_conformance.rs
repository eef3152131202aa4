#![allow(clippy::unwrap_used)]
//! The conformance suite against the QEMU backend: real TCG guests (at most
//! `GuestSlot::SLOTS` booted at once across test processes).

use nosplit_vmrt::conformance::{run_all, ConformanceEnv, GuestSlot};
use nosplit_vmrt::driver::{QemuDriver, VmKind, VmSpec};
use nosplit_vmrt::image::build_guest;
use std::path::Path;
use std::time::Duration;

pub fn qemu_spec(root: &Path, case: &str) -> VmSpec {
    let disk = root.join(format!("{case}.img"));
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    VmSpec {
        id: format!("vm-{case}"),
        inst: format!("i{}", std::process::id()),
        disk,
        extra_disks: vec![],
        memory_mib: 128,
        vcpus: 1,
        run_dir: root.join(format!("run-{case}")),
        kind: VmKind::Qemu {
            interval_ms: 100,
            extra_args: vec![],
        },
        spawn_hook: None,
    }
}

#[test]
fn qemu_backend_conforms() {
    let image = build_guest(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("vmrt-guest")).unwrap();
    let _slot = GuestSlot::acquire().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let env = ConformanceEnv {
        make_spec: Box::new(move |case| qemu_spec(&root, case)),
        boot_timeout: Duration::from_secs(90),
        quiet_period: Duration::from_millis(1500),
    };
    let r = run_all(&QemuDriver::new(image), &env);
    if r.is_err() {
        for entry in std::fs::read_dir(dir.path()).unwrap().flatten() {
            for f in ["console.log", "qemu.log"] {
                let p = entry.path().join(f);
                if let Ok(t) = std::fs::read_to_string(&p) {
                    eprintln!("--- {}:\n{t}", p.display());
                }
            }
        }
    }
    r.unwrap();
}
