//! Runs a scenario: brings the lab up, starts the VMs, applies the steps
//! on time while the lab's recovery policy ([`crate::failover`]) restarts
//! lost VMs, then stops the oracle and writes the report.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nosplit_clock::{Clock, RealClock};
use nosplit_lease::Liveness;

use super::report::RunReport;
use super::{Action, Hosts, Scenario, Step};
use crate::failover::{Command, Event, Failover, Phase, Policy};
use crate::{Lab, LabError, LabSpec, LaunchError};

/// How long VMs may take to write their first heartbeat.
const FIRST_RUN_TIMEOUT: Duration = Duration::from_secs(180);
/// The loop's period.
const TICK: Duration = Duration::from_millis(100);

/// Where and how to run.
#[derive(Debug, Clone)]
pub struct RunOpts {
    /// The `nosplit` binary for the hosts.
    pub bin: PathBuf,
    /// Lab name.
    pub lab: String,
    /// Lab root (default `/run/nosplit-lab/<lab>`).
    pub root: Option<PathBuf>,
    /// Heartbeat interval.
    pub interval_ms: u32,
    /// Address prefix of the lab's planes.
    pub prefix: nosplit_labnet::Prefix,
}

/// The runner's view of one host, as fed to the policy.
fn host_state(lab: &Lab, n: u32, net_timeout: Duration) -> Liveness {
    let store = lab.liveness(n).unwrap_or(Liveness::Free);
    if store == Liveness::Dead || lab.net_lost(n, net_timeout) {
        Liveness::Dead
    } else {
        store
    }
}

/// Runs `sc`; `say` gets progress lines.
pub fn run(
    sc: &Scenario,
    opts: &RunOpts,
    say: &mut dyn FnMut(&str),
) -> Result<RunReport, LabError> {
    let spec = LabSpec {
        name: opts.lab.clone(),
        hosts: sc.hosts,
        io_timeout_ms: sc.io_timeout_ms,
        root: opts.root.clone(),
        bin: opts.bin.clone(),
        protection: sc.protection,
        vms: sc.vms.iter().map(|v| (v.name.clone(), v.kind)).collect(),
        interval_ms: opts.interval_ms,
        prefix: opts.prefix,
        engine: sc.engine,
        // A run owns its lab name: a lab left by an earlier (crashed) run
        // is replaced, and `Lab::up` says so.
        replace: true,
    };
    say(&format!(
        "scenario {:?}: {} hosts, {} VMs, protection {}",
        sc.name,
        sc.hosts,
        sc.vms.len(),
        if sc.protection {
            "on"
        } else {
            "OFF (control run)"
        }
    ));
    let mut lab = Lab::up(spec, &mut |s| say(s))?;
    let result = drive(&mut lab, sc, say);
    let oracle = lab.oracle.take().map(|o| o.stop()).unwrap_or_default();
    let mut timeline = lab.timeline.clone();
    if let Some(e) = &lab.engine {
        // The engine's own account, on the lab's clock.
        let offset = lab.t0.saturating_since(lab.engine_epoch());
        let mut lines = crate::engine::events(e);
        lines.extend(crate::engine::tasks(e));
        for (ms, line) in lines {
            let t = Duration::from_millis(ms).saturating_sub(offset);
            timeline.push((t, line));
        }
        timeline.sort_by_key(|(t, _)| *t);
    }
    let down = lab.down();
    let (start_ns, steps) = result?;
    say(&format!("lab down: {}", down?));
    Ok(RunReport::build(sc, start_ns, &steps, oracle, timeline))
}

/// The main loop; returns the steps' start time (oracle clock) and when
/// each step ran.
fn drive(
    lab: &mut Lab,
    sc: &Scenario,
    say: &mut dyn FnMut(&str),
) -> Result<(u64, Vec<(u64, Step)>), LabError> {
    let clock = RealClock;
    let mut policy = Failover::new(Policy::default());
    let mut seen: BTreeMap<u32, Liveness> = BTreeMap::new();
    let feed_hosts = |lab: &mut Lab, policy: &mut Failover, seen: &mut BTreeMap<u32, Liveness>| {
        lab.check_resets();
        let now = clock.now();
        for n in 1..=sc.hosts {
            let l = host_state(lab, n, sc.net_timeout);
            if seen.insert(n, l) != Some(l) {
                let why = format!(
                    "h{n}: judged {l:?} (storage {:?}, management plane {})",
                    lab.liveness(n),
                    if lab.net_lost(n, sc.net_timeout) {
                        "silent"
                    } else {
                        "answers"
                    }
                );
                lab.log(why);
                policy.on_event(
                    Event::Host {
                        host: n,
                        liveness: l,
                    },
                    now,
                );
            }
        }
    };
    // Place nothing before every host is seen renewing (first placements
    // honour the scenario's hosts).
    let since = Instant::now();
    loop {
        feed_hosts(lab, &mut policy, &mut seen);
        if seen.values().all(|l| *l == Liveness::Live) && seen.len() == sc.hosts as usize {
            break;
        }
        if since.elapsed() > Duration::from_secs(30) {
            return Err(LabError::Invalid(format!(
                "hosts not all live on storage after 30 s: {seen:?}"
            )));
        }
        std::thread::sleep(TICK);
    }
    for v in &sc.vms {
        policy.on_event(
            Event::Add {
                vm: v.name.clone(),
                ha: v.ha,
                host: v.host,
            },
            clock.now(),
        );
    }
    say("starting VMs; waiting for every VM's first heartbeat");
    let first = Instant::now();
    loop {
        step_policy(lab, &mut policy, sc, say);
        feed_hosts(lab, &mut policy, &mut seen);
        let snap = lab
            .oracle
            .as_ref()
            .map(|o| o.snapshot())
            .unwrap_or_default();
        let waiting: Vec<&str> = sc
            .vms
            .iter()
            .filter(|v| snap.vms.get(&v.name).is_none_or(|r| r.instances.is_empty()))
            .map(|v| v.name.as_str())
            .collect();
        if waiting.is_empty() {
            break;
        }
        if first.elapsed() > FIRST_RUN_TIMEOUT {
            return Err(LabError::Invalid(format!(
                "VMs without a heartbeat after {FIRST_RUN_TIMEOUT:?}: {}",
                waiting.join(", ")
            )));
        }
        std::thread::sleep(TICK);
    }
    let start = Instant::now();
    let start_ns = clock.now().as_nanos();
    lab.log("every VM running: scenario clock starts");
    say(&format!(
        "every VM heartbeats ({:.1} s); running {:.0} s of scenario",
        first.elapsed().as_secs_f64(),
        sc.duration.as_secs_f64()
    ));
    let mut pending: Vec<&Step> = sc.steps.iter().collect();
    let mut done = Vec::new();
    while start.elapsed() < sc.duration {
        while let Some(s) = pending.first().copied().filter(|s| start.elapsed() >= s.at) {
            pending.remove(0);
            say(&format!(
                "t={:>5.1}s  {}",
                start.elapsed().as_secs_f64(),
                describe(s)
            ));
            apply(lab, s)?;
            done.push((clock.now().as_nanos(), s.clone()));
        }
        if lab.engine.is_some() {
            // The engine recovers; the lab only watches.
            lab.check_resets();
        } else {
            feed_hosts(lab, &mut policy, &mut seen);
            step_policy(lab, &mut policy, sc, say);
        }
        std::thread::sleep(TICK);
    }
    Ok((start_ns, done))
}

/// One round: exits and reports in, commands out.
fn step_policy(lab: &mut Lab, policy: &mut Failover, sc: &Scenario, say: &mut dyn FnMut(&str)) {
    let clock = RealClock;
    for (vm, host, _) in lab.exits() {
        policy.on_event(Event::Exited { vm, host }, clock.now());
    }
    // What hosts that are up (renewing on storage and reachable) report
    // running. A host judged dead is not believed: storage is the truth.
    let alive: Vec<(String, u32)> = lab
        .instances
        .iter()
        .filter(|(_, i)| !i.reported_exit)
        .map(|(vm, i)| (vm.clone(), i.host))
        .collect();
    for (vm, host) in alive {
        if lab.is_on(host) && host_state(lab, host, sc.net_timeout) == Liveness::Live {
            let lost = matches!(
                policy.vms().get(&vm).map(|t| &t.phase),
                Some(Phase::Waiting { .. })
            );
            if lost {
                policy.on_event(Event::Reported { vm, host }, clock.now());
            }
        }
    }
    for cmd in policy.tick(clock.now()) {
        match cmd {
            Command::Start { vm, host } => match lab.start_vm(&vm, host) {
                Ok(()) => {
                    say(&format!("        {vm} started on h{host}"));
                    policy.on_event(Event::Started { vm, host }, clock.now());
                }
                Err(e) => {
                    // Both retry soon and without limit: the lease, or
                    // the host's join, decides when.
                    let busy = matches!(e, LaunchError::Busy(_) | LaunchError::NotReady(_));
                    if !busy {
                        say(&format!("        {vm} failed to start on h{host}: {e}"));
                        lab.log(format!("{vm}: start on h{host} failed: {e}"));
                    }
                    policy.on_event(Event::StartFailed { vm, host, busy }, clock.now());
                }
            },
            Command::GiveUp { vm, reason } => {
                say(&format!("        {vm}: given up ({reason})"));
                lab.log(format!("{vm}: given up ({reason})"));
            }
        }
    }
}

fn describe(s: &Step) -> String {
    let h = match s.hosts {
        Hosts::One(n) => format!("h{n}"),
        Hosts::All => "all hosts".into(),
    };
    match &s.action {
        Action::PowerOff => format!("power off {h}"),
        Action::PowerOn => format!("power on {h}"),
        Action::Storage { mode } => format!("storage {mode} on {h}"),
        Action::Net { plane, fault } => format!("net {plane:?} {fault:?} on {h}"),
        Action::LeasedKill => format!("kill -9 leased on {h}"),
        Action::LeasedStart => format!("start leased on {h}"),
        Action::Heal => "heal every fault".into(),
    }
}

fn apply(lab: &mut Lab, s: &Step) -> Result<(), LabError> {
    let hosts: Vec<u32> = match s.hosts {
        Hosts::One(n) => vec![n],
        Hosts::All => lab.hosts.keys().copied().collect(),
    };
    if s.action == Action::Heal {
        return lab.heal();
    }
    for n in hosts {
        match &s.action {
            Action::PowerOff => lab.power_off(n)?,
            // "all": the hosts that are off (reset by their watchdog, say).
            Action::PowerOn if s.hosts == Hosts::All && lab.is_on(n) => {}
            Action::PowerOn => lab.power_on(n)?,
            Action::Storage { mode } => lab.storage(n, mode)?,
            Action::Net { plane, fault } => lab.net(n, *plane, *fault)?,
            Action::LeasedKill => lab.leased_kill(n)?,
            Action::LeasedStart => lab.leased_start(n)?,
            Action::Heal => {}
        }
    }
    Ok(())
}
