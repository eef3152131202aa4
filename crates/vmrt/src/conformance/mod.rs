//! One behaviour suite for every [`VmDriver`] backend. A test supplies a driver and a
//! [`ConformanceEnv`] that makes a fresh [`VmSpec`] (own disk of zeros, own run dir) per
//! case; [`run_all`] runs every case in [`CASES`] and reports the failures. The guest
//! must write heartbeat records (see the shared heartbeat format) to its disk.
//!
//! Cases: prepare runs nothing (no heartbeat, state `Prelaunch`), start makes heartbeats
//! appear, pause stops them and resume restarts them, a second prepare on a live run dir
//! is refused, adopt after dropping the handle sees the same process, stop is graceful;
//! kill makes the process gone; dropping or aborting a prepared VM leaves no process.

mod support;

pub use support::{max_seq, qemu_spec, wait_for, GuestSlot, KillGuard, RING_BYTES};

use crate::driver::{DriverError, VmDriver, VmEvent, VmSpec, VmState};
use std::time::Duration;

/// What the suite needs from the test.
pub struct ConformanceEnv {
    /// Makes a fresh spec for the named case (unique disk, run dir, vm and inst ids).
    pub make_spec: Box<dyn Fn(&str) -> VmSpec>,
    /// How long a started VM may take to write its first heartbeats.
    pub boot_timeout: Duration,
    /// How long "nothing happens" is observed (a few heartbeat intervals).
    pub quiet_period: Duration,
}

impl std::fmt::Debug for ConformanceEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConformanceEnv")
            .field("boot_timeout", &self.boot_timeout)
            .field("quiet_period", &self.quiet_period)
            .finish()
    }
}

/// A case: returns `Err(description)` on failure.
pub type Case = fn(&dyn VmDriver, &ConformanceEnv) -> Result<(), String>;

/// All cases, by name.
pub const CASES: &[(&str, Case)] = &[
    ("lifecycle", lifecycle),
    ("kill_makes_it_gone", kill_makes_it_gone),
    (
        "drop_prepared_leaves_no_process",
        drop_prepared_leaves_no_process,
    ),
];

/// Runs every case; `Err` lists the failed ones.
pub fn run_all(driver: &dyn VmDriver, env: &ConformanceEnv) -> Result<(), String> {
    let failures: Vec<String> = CASES
        .iter()
        .filter_map(|(name, case)| case(driver, env).err().map(|e| format!("{name}: {e}")))
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} backend failed:\n{}",
            driver.kind(),
            failures.join("\n")
        ))
    }
}

fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(msg())
    }
}

fn e2s(what: &str) -> impl FnOnce(DriverError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn seq_of(spec: &VmSpec) -> Option<u64> {
    max_seq(&spec.disk, &spec.id, &spec.inst).ok().flatten()
}

/// Waits until the heartbeat seq exceeds `above`; returns it.
fn beats_past(spec: &VmSpec, above: u64, timeout: Duration) -> Result<u64, String> {
    let mut last = None;
    let ok = wait_for(timeout, || {
        last = seq_of(spec);
        last.is_some_and(|s| s > above)
    });
    match (ok, last) {
        (true, Some(s)) => Ok(s),
        _ => Err(format!(
            "no heartbeat past seq {above} within {timeout:?} (last {last:?})"
        )),
    }
}

fn lifecycle(driver: &dyn VmDriver, env: &ConformanceEnv) -> Result<(), String> {
    let spec = (env.make_spec)("lifecycle");
    let mut prepared = driver.prepare(&spec).map_err(e2s("prepare"))?;
    let _guard = KillGuard(prepared.identity());
    check(prepared.pid() > 0 && prepared.identity().is_alive(), || {
        "no live pid".into()
    })?;
    let st = prepared.state().map_err(e2s("prepared state"))?;
    check(st == VmState::Prelaunch, || {
        format!("prepared state {st:?}")
    })?;
    std::thread::sleep(env.quiet_period);
    check(seq_of(&spec).is_none(), || {
        "heartbeat written before start".into()
    })?;

    let mut vm = prepared.start().map_err(e2s("start"))?;
    let first = beats_past(&spec, 1, env.boot_timeout)?;
    let st = vm.state().map_err(e2s("state"))?;
    check(st == VmState::Running, || {
        format!("state after start {st:?}")
    })?;

    vm.pause().map_err(e2s("pause"))?;
    let paused = wait_for(Duration::from_secs(5), || {
        vm.state().ok() == Some(VmState::Paused)
    });
    check(paused, || "state never became Paused".into())?;
    std::thread::sleep(env.quiet_period / 2); // let an in-flight write land
    let frozen = seq_of(&spec).unwrap_or(0);
    std::thread::sleep(env.quiet_period);
    let later = seq_of(&spec).unwrap_or(0);
    check(later == frozen, || {
        format!("heartbeats went on while paused: {frozen} -> {later}")
    })?;
    check(frozen >= first, || "seq went backwards".into())?;

    vm.resume().map_err(e2s("resume"))?;
    let st = vm.state().map_err(e2s("state"))?;
    check(st == VmState::Running, || {
        format!("state after resume {st:?}")
    })?;
    beats_past(&spec, frozen, env.boot_timeout)?;

    match driver.prepare(&spec) {
        Err(DriverError::AlreadyRunning { pid, .. }) if pid == vm.pid() => {}
        other => return Err(format!("second prepare on a live run dir gave {other:?}")),
    }

    let ident = vm.identity();
    drop(vm); // like an agent restart: the VM keeps running
    check(ident.is_alive(), || {
        "dropping the handle stopped the VM".into()
    })?;
    let mut vm = driver.adopt(&spec).map_err(e2s("adopt"))?;
    check(vm.identity() == ident, || {
        format!("adopted {:?}, expected {ident:?}", vm.identity())
    })?;
    let st = vm.state().map_err(e2s("adopted state"))?;
    check(st == VmState::Running, || format!("adopted state {st:?}"))?;
    let now = seq_of(&spec).unwrap_or(0);
    beats_past(&spec, now, env.boot_timeout)?;

    let report = vm.stop(Duration::from_secs(20)).map_err(e2s("stop"))?;
    check(!report.forced, || "stop needed SIGKILL".into())?;
    check(!ident.is_alive(), || "process alive after stop".into())?;
    let st = vm.state().map_err(e2s("state after stop"))?;
    check(st.is_dead(), || format!("state after stop {st:?}"))?;
    check(driver.adopt(&spec).is_err(), || "adopted a dead VM".into())
}

fn kill_makes_it_gone(driver: &dyn VmDriver, env: &ConformanceEnv) -> Result<(), String> {
    let spec = (env.make_spec)("kill");
    let prepared = driver.prepare(&spec).map_err(e2s("prepare"))?;
    let ident = prepared.identity();
    let _guard = KillGuard(ident);
    let mut vm = prepared.start().map_err(e2s("start"))?;
    beats_past(&spec, 0, env.boot_timeout)?;
    vm.kill().map_err(e2s("kill"))?;
    let st = vm
        .wait_exit(Duration::from_secs(10))
        .map_err(e2s("wait_exit"))?;
    check(st.is_dead(), || format!("state after kill {st:?}"))?;
    check(!ident.is_alive(), || "process alive after kill".into())?;
    let events = vm.try_events();
    let exited = events
        .iter()
        .any(|e| matches!(e, VmEvent::Exited(_) | VmEvent::Gone));
    check(exited, || format!("no exit event in {events:?}"))?;
    check(
        vm.try_events()
            .iter()
            .all(|e| !matches!(e, VmEvent::Exited(_))),
        || "exit reported twice".into(),
    )?;
    match vm.pause() {
        Err(DriverError::WrongState(s)) if s.is_dead() => Ok(()),
        other => Err(format!("pause of a dead VM gave {other:?}")),
    }
}

fn drop_prepared_leaves_no_process(
    driver: &dyn VmDriver,
    env: &ConformanceEnv,
) -> Result<(), String> {
    let spec = (env.make_spec)("drop-prepared");
    let prepared = driver.prepare(&spec).map_err(e2s("prepare"))?;
    let ident = prepared.identity();
    let _guard = KillGuard(ident);
    drop(prepared);
    check(
        crate::driver::ProcIdentity::of(ident.pid) != Some(ident),
        || "dropped prepared VM still exists (not reaped)".into(),
    )?;
    let spec = (env.make_spec)("abort-prepared");
    let prepared = driver.prepare(&spec).map_err(e2s("prepare"))?;
    let ident = prepared.identity();
    let _guard = KillGuard(ident);
    prepared.abort();
    check(
        crate::driver::ProcIdentity::of(ident.pid) != Some(ident),
        || "aborted prepared VM still exists".into(),
    )?;
    check(seq_of(&spec).is_none(), || {
        "aborted VM wrote a heartbeat".into()
    })
}
