//! The interactive lab (`nosplit lab up|status|exec|fault|power|vm|down`):
//! each command acts on the system directly and keeps no process of its
//! own alive. `up` records what it made in `lab.json`; the daemons and VMs it
//! starts outlive it (they are in their hosts' cgroups, so `power off` and
//! `down` find them whatever happened to the command that started them).

use std::path::PathBuf;
use std::time::Duration;

use nosplit_labnet::{LabName, Prefix};
use serde::{Deserialize, Serialize};

use crate::host::{is_mounted, HostCtx};
use crate::layout::Layout;
use crate::scenario::VmKind;
use crate::{Lab, LabError, LabSpec};

/// What `lab up` made, as recorded in `lab.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabFile {
    /// Lab name.
    pub name: String,
    /// Hosts.
    pub hosts: u32,
    /// Lockspace io_timeout.
    pub io_timeout_ms: u32,
    /// Address prefix (`a.b`).
    pub prefix: String,
    /// VMs under leases.
    pub protection: bool,
    /// Root directory.
    pub root: PathBuf,
    /// The `nosplit` binary the hosts run.
    pub bin: PathBuf,
    /// VMs: (name, kind, lease offset).
    pub vms: Vec<(String, String, u64)>,
}

impl LabFile {
    /// Reads the record of lab `name`.
    pub fn load(name: &str, root: Option<PathBuf>) -> Result<LabFile, LabError> {
        let layout = Layout::new(root.unwrap_or_else(|| Layout::default_root(name)));
        let path = layout.state();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            LabError::io(
                format!("reading the record of lab {name} (is it up?)"),
                &path,
                e,
            )
        })?;
        serde_json::from_str(&text)
            .map_err(|e| LabError::Invalid(format!("{}: not a lab record: {e}", path.display())))
    }

    /// Acting on host `n`.
    pub fn host(&self, n: u32) -> Result<HostCtx, LabError> {
        if !(1..=self.hosts).contains(&n) {
            return Err(LabError::Invalid(format!(
                "lab {} has hosts 1..={}, not {n}",
                self.name, self.hosts
            )));
        }
        Ok(HostCtx {
            lab: LabName::new(&self.name)?,
            layout: Layout::new(&self.root),
            bin: self.bin.clone(),
            n,
            prefix: prefix_of(self)?,
            protection: self.protection,
        })
    }
}

/// Brings a lab up with `qemu` guests and `procs` process VMs placed round
/// robin, records it, and returns (the lab keeps running after this). If
/// recording it or starting a VM fails, the lab is removed again.
pub fn up(spec: LabSpec, say: &mut dyn FnMut(&str)) -> Result<LabFile, LabError> {
    let prefix = spec.prefix;
    let mut lab = Lab::up(spec, say)?;
    match record_and_start(&mut lab, prefix, say) {
        Ok(file) => {
            // Dropping the lab leaves its daemons and VMs running.
            drop(lab);
            Ok(file)
        }
        Err(e) => {
            say(&format!("lab up failed ({e}); removing the lab"));
            match lab.down() {
                Ok(report) => say(&report),
                Err(d) => say(&format!("removing it failed too: {d}")),
            }
            Err(e)
        }
    }
}

fn record_and_start(
    lab: &mut Lab,
    prefix: Prefix,
    say: &mut dyn FnMut(&str),
) -> Result<LabFile, LabError> {
    let file = LabFile {
        name: lab.spec.name.clone(),
        hosts: lab.spec.hosts,
        io_timeout_ms: lab.spec.io_timeout_ms,
        prefix: prefix.to_string(),
        protection: lab.spec.protection,
        root: lab.layout.root().to_path_buf(),
        bin: lab.spec.bin.clone(),
        vms: lab
            .spec
            .vms
            .iter()
            .map(|(v, k)| {
                let kind = match k {
                    VmKind::Qemu => "qemu",
                    VmKind::Process => "process",
                };
                (
                    v.clone(),
                    kind.to_string(),
                    lab.leases.get(v).copied().unwrap_or(0),
                )
            })
            .collect(),
    };
    let path = lab.layout.state();
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(&file)
        .map_err(|e| LabError::Invalid(format!("encoding the lab record: {e}")))?;
    std::fs::write(&tmp, text).map_err(|e| LabError::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| LabError::io("writing", &path, e))?;
    let names: Vec<String> = file.vms.iter().map(|v| v.0.clone()).collect();
    for (i, vm) in names.iter().enumerate() {
        let n = u32::try_from(i).unwrap_or(0) % file.hosts + 1;
        lab.start_vm(vm, n)
            .map_err(|e| LabError::Invalid(format!("starting {vm} on h{n}: {e}")))?;
        say(&format!("{vm} started on h{n}"));
    }
    Ok(file)
}

/// One host as `lab status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct HostStatus {
    /// Host number.
    pub host: u32,
    /// Powered on (processes in its cgroup).
    pub on: bool,
    /// Its storage mount is present.
    pub mounted: bool,
    /// Storage fault state as the fault filesystem reports it.
    pub storage: String,
    /// Planes: (plane, link up, drop).
    pub planes: Vec<(String, bool, String)>,
    /// Lockspace state as its leased reports it.
    pub lease: String,
    /// Processes: (pid, command).
    pub processes: Vec<(u32, String)>,
}

/// What every host of the lab looks like now, read from the system.
pub fn status(f: &LabFile) -> Result<Vec<HostStatus>, LabError> {
    let lab = LabName::new(&f.name)?;
    let mut out = Vec::new();
    for n in 1..=f.hosts {
        let h = f.host(n)?;
        let procs = nosplit_labnet::cgroup_procs(&lab, n).unwrap_or_default();
        let processes = procs
            .iter()
            .map(|p| {
                let cmd = std::fs::read(format!("/proc/{p}/cmdline"))
                    .map(|b| {
                        b.split(|c| *c == 0)
                            .filter(|a| !a.is_empty())
                            .take(3)
                            .map(|a| String::from_utf8_lossy(a).into_owned())
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                (*p, cmd)
            })
            .collect();
        let storage = nosplit_faultfs::control(&h.faultfs_socket(), "status")
            .map(|s| s.trim_start_matches("ok ").to_string())
            .unwrap_or_else(|e| format!("unreachable ({e})"));
        let planes = nosplit_labnet::host_status(&lab, n)
            .map(|s| {
                s.planes
                    .iter()
                    .map(|p| (p.plane.to_string(), p.link_up, p.drop.as_str().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let lease = match h.leased_call(&nosplit_leased::api::Request::Status) {
            Ok(nosplit_leased::api::Response::Status(st)) => st
                .lockspaces
                .iter()
                .map(|l| format!("{} {} gen {}", l.name, l.state, l.generation))
                .collect::<Vec<_>>()
                .join(", "),
            Ok(other) => format!("{other:?}"),
            Err(e) => format!("leased unreachable ({e})"),
        };
        out.push(HostStatus {
            host: n,
            on: !procs.is_empty(),
            mounted: is_mounted(&h.layout.mnt(n)),
            storage,
            planes,
            lease,
            processes,
        });
    }
    Ok(out)
}

/// Sets a network fault on host `n`. A powered-off host has no links:
/// refused there (power on brings its links back).
pub fn net_fault(
    f: &LabFile,
    n: u32,
    plane: crate::scenario::PlaneSel,
    fault: crate::scenario::NetFault,
) -> Result<(), LabError> {
    let h = f.host(n)?;
    if nosplit_labnet::cgroup_procs(&h.lab, n)?.is_empty() {
        return Err(LabError::Invalid(format!(
            "host {n} is powered off: it has no links to fault (power it on first)"
        )));
    }
    crate::net_fault(&h.lab, n, plane, fault)
}

/// Powers host `n` off (every process at once) and takes its mount away.
pub fn power_off(f: &LabFile, n: u32) -> Result<Vec<u32>, LabError> {
    let h = f.host(n)?;
    let mut none = crate::host::Daemons::default();
    let left = h.power_off(&mut none)?;
    crate::net_fault(
        &h.lab,
        n,
        crate::scenario::PlaneSel::All,
        crate::scenario::NetFault::Down,
    )?;
    Ok(left)
}

/// Powers host `n` on: its daemons start again and rejoin.
pub fn power_on(f: &LabFile, n: u32) -> Result<(), LabError> {
    let h = f.host(n)?;
    let lab = LabName::new(&f.name)?;
    if !nosplit_labnet::cgroup_procs(&lab, n)?.is_empty() {
        return Err(LabError::Invalid(format!(
            "host {n} is on (power it off first)"
        )));
    }
    crate::net_fault(
        &h.lab,
        n,
        crate::scenario::PlaneSel::All,
        crate::scenario::NetFault::Ok,
    )?;
    let _daemons = h.power_on()?;
    h.wait_joined(Duration::from_secs(30))
}

/// Parses a recorded prefix.
pub fn prefix_of(f: &LabFile) -> Result<Prefix, LabError> {
    f.prefix
        .parse()
        .map_err(|e| LabError::Invalid(format!("lab record: prefix {:?}: {e}", f.prefix)))
}
