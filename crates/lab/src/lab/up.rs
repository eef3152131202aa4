//! Bringing a lab up: the spec is checked before anything is made, a lab of
//! the same name that is up already is refused (or replaced when asked),
//! and a failed up removes whatever it made before it returns its error.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nosplit_clock::{Clock, RealClock};
use nosplit_heartbeat::oracle::Oracle;
use nosplit_labnet::{LabName, NetPlan, Plane};
use nosplit_lease_runtime::watch::LockspaceWatch;

use super::{down, HostRt, Lab, LabSpec};
use crate::domain;
use crate::host::HostCtx;
use crate::layout::Layout;
use crate::netprobe::NetProbe;
use crate::scenario::VmKind as Kind;
use crate::LabError;

/// Checks a spec without touching the system: every problem a later stage
/// would only find after the network, cgroups and files exist.
pub(crate) fn check_spec(spec: &LabSpec) -> Result<(), LabError> {
    LabName::new(&spec.name)?;
    let max = nosplit_labnet::naming::MAX_HOSTS;
    if !(1..=max).contains(&spec.hosts) {
        return Err(LabError::Invalid(format!(
            "hosts: {}: a lab has 1 to {max} hosts",
            spec.hosts
        )));
    }
    nosplit_lease::format::check_io_timeout(spec.io_timeout_ms)
        .map_err(|e| LabError::Invalid(format!("io_timeout_ms: {e}")))?;
    let mut seen = std::collections::BTreeSet::new();
    for (vm, _) in &spec.vms {
        crate::scenario::check_vm_id(vm)
            .map_err(|e| LabError::Invalid(format!("VM {vm:?}: {e}")))?;
        if !seen.insert(vm) {
            return Err(LabError::Invalid(format!("two VMs are named {vm:?}")));
        }
    }
    Ok(())
}

/// What of lab `name` exists now (namespaces, links, cgroups, its root
/// directory); empty when nothing does.
pub fn existing(name: &LabName, layout: &Layout) -> Result<Vec<String>, LabError> {
    let mut found = nosplit_labnet::lab_objects(name)?;
    if layout.root().exists() {
        found.push(layout.root().display().to_string());
    }
    Ok(found)
}

impl Lab {
    /// Builds the lab: network, cgroups, storage domain, host daemons
    /// (joined), watchers and oracle. `progress` gets one line per stage.
    ///
    /// The spec is checked first. A lab of the same name that exists is
    /// refused with [`LabError::Exists`] unless `spec.replace` (then it is
    /// removed first, and `progress` says so). If a stage fails, what was
    /// made is removed again before the error is returned.
    pub fn up(spec: LabSpec, progress: &mut dyn FnMut(&str)) -> Result<Lab, LabError> {
        check_spec(&spec)?;
        let name = LabName::new(&spec.name)?;
        let layout = Layout::new(
            spec.root
                .clone()
                .unwrap_or_else(|| Layout::default_root(&spec.name)),
        );
        let found = existing(&name, &layout)?;
        if !found.is_empty() {
            if !spec.replace {
                return Err(LabError::Exists {
                    lab: spec.name.clone(),
                    found,
                });
            }
            progress(&format!(
                "lab {name} exists already ({} object(s), e.g. {}): replacing it",
                found.len(),
                found[0]
            ));
            progress(&down(&spec.name, Some(layout.root().to_path_buf()))?);
        }
        match build(spec, &name, &layout, progress) {
            Ok(lab) => Ok(lab),
            Err(e) => {
                progress(&format!("lab up failed ({e}); removing what it made"));
                match down(name.as_str(), Some(layout.root().to_path_buf())) {
                    Ok(report) => progress(&report),
                    Err(d) => progress(&format!(
                        "removing it failed too ({d}): run nosplit lab down --lab {name}"
                    )),
                }
                Err(e)
            }
        }
    }
}

/// Every stage of [`Lab::up`]; on error, whatever it made is left for the
/// caller to remove (the daemons it started run in the lab's cgroups, the
/// engine is killed when dropped).
fn build(
    spec: LabSpec,
    name: &LabName,
    layout: &Layout,
    progress: &mut dyn FnMut(&str),
) -> Result<Lab, LabError> {
    progress(&format!("network: {} hosts, 3 planes each", spec.hosts));
    let plan = NetPlan::new(name.clone(), spec.hosts)?.with_prefix(spec.prefix);
    nosplit_labnet::up(&plan)?;
    let vms: Vec<String> = spec.vms.iter().map(|(v, _)| v.clone()).collect();
    progress(&format!(
        "storage domain: lockspace (io_timeout {} ms), {} VM leases and disks",
        spec.io_timeout_ms,
        vms.len()
    ));
    if spec.vms.iter().any(|(_, k)| *k == Kind::Qemu) {
        // Built once here; the agents find it in the cache.
        progress("guest image: kernel + initramfs from Debian packages (cached)");
        nosplit_vmrt::image::build_guest(&layout.guest_cache())
            .map_err(|e| LabError::Invalid(format!("guest image: {e}")))?;
    }
    std::fs::create_dir_all(layout.shared())
        .map_err(|e| LabError::io("creating", layout.shared(), e))?;
    let engine_epoch = RealClock.now();
    let (leases, engine) = if spec.engine {
        progress("engine: nosplit engine with its store; domain and VMs through its API");
        let e = crate::engine::LabEngine::start(name, layout, &spec.bin, spec.prefix)?;
        let leases =
            crate::engine::register_domain_and_vms(&e, layout, spec.io_timeout_ms, &spec.vms)?;
        (leases, Some(e))
    } else {
        (domain::create(layout, spec.io_timeout_ms, &vms)?, None)
    };
    let clock = RealClock;
    let mut lab = Lab {
        kinds: spec.vms.iter().cloned().collect(),
        spec,
        name: name.clone(),
        layout: layout.clone(),
        hosts: BTreeMap::new(),
        leases,
        instances: Vec::new(),
        counter: 0,
        t0: clock.now(),
        timeline: Vec::new(),
        store: None,
        net: None,
        oracle: None,
        probes_since: Instant::now(),
        engine,
        engine_epoch,
    };
    for n in 1..=lab.spec.hosts {
        let ctx = HostCtx {
            lab: name.clone(),
            layout: layout.clone(),
            bin: lab.spec.bin.clone(),
            n,
            prefix: lab.spec.prefix,
            protection: lab.spec.protection,
        };
        progress(&format!(
            "host h{n}: fault filesystem, watchdog, leased, agent"
        ));
        let daemons = ctx.power_on()?;
        lab.hosts.insert(
            n,
            HostRt {
                ctx,
                daemons: Some(daemons),
                storage: "ok".into(),
            },
        );
    }
    progress("hosts joining the lockspace");
    for h in lab.hosts.values() {
        h.ctx.wait_joined(Duration::from_secs(30))?;
    }
    if let Some(e) = &lab.engine {
        crate::engine::register_hosts(e, &lab)?;
    }
    lab.store = Some(LockspaceWatch::start(&layout.ids())?);
    let addrs = (1..=lab.spec.hosts)
        .map(|n| plan.host_addrs(n).map(|a| (n, a.get(Plane::Management))))
        .collect::<Result<Vec<_>, _>>()?;
    lab.net = Some(NetProbe::start(&addrs));
    lab.probes_since = Instant::now();
    let mut oracle = Oracle::new(Duration::from_secs(1));
    for v in &vms {
        oracle.add_disk(v.clone(), layout.disk(v));
    }
    // 50 ms polls for a few VMs; slower for many (each poll reads 32 KiB
    // per disk), still well inside the 64-slot ring (12.8 s at 200 ms).
    let every = if vms.len() <= 24 { 50 } else { 250 };
    lab.oracle = Some(oracle.spawn(Duration::from_millis(every)));
    lab.t0 = clock.now();
    lab.log("lab up");
    Ok(lab)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> LabSpec {
        LabSpec {
            name: "t".into(),
            hosts: 2,
            io_timeout_ms: 1000,
            root: None,
            bin: "/bin/true".into(),
            protection: true,
            vms: vec![("p1".into(), Kind::Process)],
            interval_ms: 200,
            prefix: nosplit_labnet::Prefix::default(),
            engine: false,
            replace: false,
        }
    }

    #[test]
    fn a_bad_spec_is_refused_before_anything_is_made() {
        assert!(check_spec(&spec()).is_ok());
        type Break = fn(&mut LabSpec);
        let cases: [(&str, Break); 6] = [
            ("io_timeout_ms", |s| s.io_timeout_ms = 0),
            ("io_timeout_ms", |s| s.io_timeout_ms = 400_000),
            ("hosts", |s| s.hosts = 0),
            ("lab name", |s| s.name = "Bad-Name".into()),
            ("VM \"a b\"", |s| s.vms[0].0 = "a b".into()),
            ("two VMs", |s| s.vms.push(("p1".into(), Kind::Qemu))),
        ];
        for (want, break_it) in cases {
            let mut s = spec();
            break_it(&mut s);
            let e = check_spec(&s).expect_err(want).to_string();
            assert!(e.contains(want), "{want} in {e}");
        }
    }
}
