//! The oracle against real writers on real files: it must fire when two
//! instances write at once or a frozen one resumes, and stay silent on a
//! clean handover.
#![allow(clippy::unwrap_used)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nosplit_heartbeat::disk::create_disk;
use nosplit_heartbeat::oracle::{Oracle, OracleHandle, OracleReport, ViolationKind};
use nosplit_heartbeat::writer::{run, Writer, WriterConfig, WriterStats};

const POLL: Duration = Duration::from_millis(5);
const TICK: Duration = Duration::from_millis(10);
const DEADLINE: Duration = Duration::from_secs(30);

fn setup(vm: &str) -> (tempfile::TempDir, PathBuf, OracleHandle) {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join(format!("{vm}.raw"));
    create_disk(&disk, 1 << 16).unwrap();
    let mut oracle = Oracle::new(Duration::from_secs(1));
    oracle.add_disk(vm, &disk);
    (dir, disk, oracle.spawn(POLL))
}

/// A writer thread that is stopped (and joined) when dropped.
struct BgWriter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<WriterStats>>,
}

impl BgWriter {
    fn start(disk: &Path, vm: &str, inst: &str, max: Option<u64>) -> Self {
        let mut cfg = WriterConfig::new(disk, vm, inst);
        cfg.interval = TICK;
        cfg.max_records = max;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || run(&cfg, &flag).unwrap());
        BgWriter {
            stop,
            thread: Some(thread),
        }
    }
    fn finish(mut self) -> WriterStats {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
    fn join(mut self) -> WriterStats {
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for BgWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits until `cond` holds on a snapshot; panics with the report at the deadline.
fn wait_for(oracle: &OracleHandle, what: &str, cond: impl Fn(&OracleReport) -> bool) {
    let t0 = Instant::now();
    loop {
        let r = oracle.snapshot();
        if cond(&r) {
            return;
        }
        assert!(
            t0.elapsed() < DEADLINE,
            "timed out waiting for {what}: {r:?}"
        );
        thread::sleep(POLL);
    }
}

/// True once `inst` was seen and the VM was polled `extra` more times since.
fn seen_and_polled(r: &OracleReport, vm: &str, inst: &str, extra: u64) -> bool {
    let v = &r.vms[vm];
    v.instances
        .iter()
        .any(|i| i.id == inst && v.polls >= i.first_poll + 1 + extra)
}

#[test]
fn control_two_live_writers_fire() {
    let (_dir, disk, oracle) = setup("ctl-vm");
    let a = BgWriter::start(&disk, "ctl-vm", "inst-a", None);
    let b = BgWriter::start(&disk, "ctl-vm", "inst-b", None);
    wait_for(&oracle, "a split brain", |r| r.split_brains >= 1);
    a.finish();
    b.finish();
    let r = oracle.stop();
    assert!(r.split_brains >= 1);
    let v = &r.violations[0];
    assert_eq!(v.vm, "ctl-vm");
    let mut pair = [v.older_inst.as_str(), v.newer_inst.as_str()];
    pair.sort_unstable();
    assert_eq!(pair, ["inst-a", "inst-b"]);
    assert!(r.summary_line().starts_with("SPLIT BRAIN"));
}

#[test]
fn clean_handover_is_silent_and_measured() {
    let (_dir, disk, oracle) = setup("clean-vm");
    let a = BgWriter::start(&disk, "clean-vm", "inst-a", Some(15)).join();
    assert_eq!((a.written, a.errors), (15, 0));
    wait_for(&oracle, "a seen", |r| {
        seen_and_polled(r, "clean-vm", "inst-a", 2)
    });
    thread::sleep(Duration::from_millis(100));
    let b = BgWriter::start(&disk, "clean-vm", "inst-b", Some(15)).join();
    assert_eq!(b.written, 15);
    let r = oracle.stop();
    assert_eq!(r.split_brains, 0, "{r:?}");
    let vm = &r.vms["clean-vm"];
    assert_eq!(vm.errors, 0);
    assert_eq!(vm.instances.len(), 2, "{vm:?}");
    assert_eq!(vm.transitions.len(), 1);
    let t = &vm.transitions[0];
    assert_eq!((t.from.as_str(), t.to.as_str()), ("inst-a", "inst-b"));
    assert!(t.failover_ms >= 0, "{t:?}");
    assert_eq!(vm.instances[1].max_seq, 15);
    assert!(r.summary_line().starts_with("OK: no split brain"));
}

#[test]
fn frozen_writer_resuming_after_newer_start_fires() {
    let (_dir, disk, oracle) = setup("frz-vm");
    let mut cfg = WriterConfig::new(&disk, "frz-vm", "old");
    cfg.start_seq = 40;
    let mut old = Writer::open(&cfg).unwrap();
    for _ in 0..3 {
        old.write_next().unwrap();
        thread::sleep(TICK);
    }
    wait_for(&oracle, "old seen", |r| {
        seen_and_polled(r, "frz-vm", "old", 0)
    });
    // "Frozen": old stops writing; a new instance starts and runs a while.
    let new = BgWriter::start(&disk, "frz-vm", "new", None);
    wait_for(&oracle, "new seen", |r| {
        seen_and_polled(r, "frz-vm", "new", 3)
    });
    // Thawed: old carries on where it was.
    let t0 = Instant::now();
    while oracle.snapshot().split_brains == 0 {
        assert!(t0.elapsed() < DEADLINE, "{:?}", oracle.snapshot());
        old.write_next().unwrap();
        thread::sleep(TICK);
    }
    new.finish();
    let r = oracle.stop();
    assert_eq!(r.split_brains, 1, "{r:?}");
    let v = &r.violations[0];
    assert_eq!(v.kind, ViolationKind::OlderWroteAfterNewer);
    assert_eq!(
        (v.older_inst.as_str(), v.newer_inst.as_str()),
        ("old", "new")
    );
    assert!(v.older_seq >= 43 && v.polls_after >= 2, "{v:?}");
}

/// A guest-style shell heartbeat loop in its own process group, killed on drop.
struct ShellGuest(Child);

impl ShellGuest {
    fn start(disk: &Path, vm: &str, inst: &str) -> Self {
        let script = r#"seq=1
while true; do
  printf '%-511s\n' "NSHB1 $VM $INST $seq $(($(date +%s) * 1000)) END" |
    dd of="$DISK" bs=512 count=1 seek=$((seq % 64)) iflag=fullblock oflag=direct conv=notrunc 2>/dev/null
  seq=$((seq + 1))
  sleep 0.01
done"#;
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("VM", vm)
            .env("INST", inst)
            .env("DISK", disk)
            .process_group(0)
            .spawn()
            .unwrap();
        ShellGuest(child)
    }
    fn signal(&self, sig: libc::c_int) {
        let pgid = libc::pid_t::try_from(self.0.id()).unwrap();
        // SAFETY: kill(2) on our own child's process group; no memory involved.
        let rc = unsafe { libc::kill(-pgid, sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", -pgid);
    }
}

impl Drop for ShellGuest {
    fn drop(&mut self) {
        if let Ok(pgid) = libc::pid_t::try_from(self.0.id()) {
            // SAFETY: as above; SIGKILL of our own child's group.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        let _ = self.0.wait();
    }
}

#[test]
fn sigstopped_shell_guest_resuming_after_newer_start_fires() {
    let (_dir, disk, oracle) = setup("stop-vm");
    let guest = ShellGuest::start(&disk, "stop-vm", "guest-1");
    wait_for(&oracle, "guest seen", |r| {
        seen_and_polled(r, "stop-vm", "guest-1", 0)
    });
    guest.signal(libc::SIGSTOP);
    let new = BgWriter::start(&disk, "stop-vm", "proc-2", None);
    wait_for(&oracle, "new seen", |r| {
        seen_and_polled(r, "stop-vm", "proc-2", 3)
    });
    guest.signal(libc::SIGCONT);
    wait_for(&oracle, "a split brain", |r| r.split_brains >= 1);
    drop(guest);
    new.finish();
    let r = oracle.stop();
    let v = &r.violations[0];
    assert_eq!(
        (v.older_inst.as_str(), v.newer_inst.as_str()),
        ("guest-1", "proc-2")
    );
}

#[test]
fn missing_disk_is_an_error_then_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("late.raw");
    let oracle = Oracle::new(Duration::from_secs(1)).spawn(POLL);
    oracle.add_disk("late-vm", &disk);
    wait_for(&oracle, "an error", |r| r.vms["late-vm"].errors >= 2);
    create_disk(&disk, 0).unwrap();
    let w = BgWriter::start(&disk, "late-vm", "i1", Some(3)).join();
    assert_eq!(w.written, 3);
    let r = oracle.stop();
    let vm = &r.vms["late-vm"];
    assert!(vm.last_error.as_deref().unwrap().contains("late.raw"));
    assert_eq!(vm.instances.len(), 1, "{vm:?}");
    assert_eq!(r.split_brains, 0);
}
