#![allow(clippy::unwrap_used)]
//! The conformance suite against the process backend (a `/bin/sh` heartbeat loop).

use nosplit_vmrt::conformance::{run_all, ConformanceEnv};
use nosplit_vmrt::driver::{DriverError, ProcIdentity, ProcessDriver, VmDriver, VmKind, VmSpec};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const LOOP: &str = r#"seq=1
while :; do
  printf '%-511s\n' "NSHB1 $2 $3 $seq $(date +%s)000 END" |
    dd of="$1" bs=512 count=1 seek=$((seq % 64)) iflag=fullblock oflag=direct conv=notrunc 2>/dev/null
  seq=$((seq + 1))
  sleep 0.1
done"#;

fn spec(root: &Path, case: &str) -> VmSpec {
    let disk = root.join(format!("{case}.img"));
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let vm = format!("vm-{case}");
    let inst = format!("i{}", std::process::id());
    VmSpec {
        id: vm.clone(),
        inst: inst.clone(),
        disk: disk.clone(),
        extra_disks: vec![],
        memory_mib: 0,
        vcpus: 0,
        run_dir: root.join(format!("run-{case}")),
        kind: VmKind::Process {
            program: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                LOOP.into(),
                "sh".into(),
                disk.display().to_string(),
                vm,
                inst,
            ],
            env: vec![],
        },
        spawn_hook: None,
    }
}

#[test]
fn process_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let env = ConformanceEnv {
        make_spec: Box::new(move |case| spec(&root, case)),
        boot_timeout: Duration::from_secs(10),
        quiet_period: Duration::from_millis(600),
    };
    run_all(&ProcessDriver::new(), &env).unwrap();
}

#[test]
fn spawn_hook_runs_before_our_gate() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let mut s = spec(dir.path(), "hook");
    s.spawn_hook = Some(Arc::new(move |cmd| {
        c2.fetch_add(1, Ordering::SeqCst);
        cmd.env("NOSPLIT_HOOK", "yes");
    }));
    if let VmKind::Process { args, .. } = &mut s.kind {
        args[1] = r#"echo "hook=$NOSPLIT_HOOK"; exec sleep 30"#.into();
    }
    let d = ProcessDriver::new();
    let p = d.prepare(&s).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let mut vm = p.start().unwrap();
    let console = s.run_dir.join("console.log");
    assert!(nosplit_vmrt::conformance::wait_for(
        Duration::from_secs(5),
        || {
            std::fs::read_to_string(&console)
                .unwrap_or_default()
                .contains("hook=yes")
        }
    ));
    vm.kill().unwrap();
    vm.wait_exit(Duration::from_secs(5)).unwrap();
}

#[test]
fn reused_pid_is_never_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(dir.path(), "reuse");
    std::fs::create_dir_all(&s.run_dir).unwrap();
    let me = ProcIdentity::of(std::process::id()).unwrap();
    let fake = ProcIdentity {
        start_time: me.start_time + 7,
        ..me
    };
    fake.write_file(&s.run_dir.join("vm.ident")).unwrap();
    let err = ProcessDriver::new().adopt(&s).unwrap_err();
    assert!(matches!(err, DriverError::Adopt(_)), "{err}");
}

#[test]
fn bad_ids_and_missing_program_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), "bad");
    s.id = "has space".into();
    assert!(matches!(
        ProcessDriver::new().prepare(&s),
        Err(DriverError::InvalidSpec(_))
    ));
    let mut s = spec(dir.path(), "noprog");
    if let VmKind::Process { program, .. } = &mut s.kind {
        *program = "/nonexistent/prog".into();
    }
    let p = ProcessDriver::new().prepare(&s).unwrap();
    let ident = p.identity();
    let err = p.start().unwrap_err();
    assert!(matches!(err, DriverError::Spawn { .. }), "{err}");
    assert!(!ident.is_alive());
}
