//! Parsing and checking of scenario files (format in the parent module).

use std::fmt;
use std::path::Path;
use std::time::Duration;

use toml::{Table, Value};

use super::{
    check_vm_id, Action, Hosts, NetFault, PlaneSel, Scenario, Step, VmKind, VmSpec, MAX_VM_ID,
};
use nosplit_tomlcheck::{Fields, Problem};

/// Every problem found in a scenario file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioErrors {
    /// The file (or `<input>`).
    pub source_name: String,
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ScenarioErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} problem(s) in the scenario:",
            self.source_name,
            self.problems.len()
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// Reads and checks a scenario file.
pub fn parse_file(path: &Path) -> Result<Scenario, ScenarioErrors> {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &name),
        Err(e) => Err(ScenarioErrors {
            source_name: name,
            problems: vec![Problem {
                field: String::new(),
                message: format!("cannot read the file: {e}"),
            }],
        }),
    }
}

/// Checks a scenario's text; `source_name` names it in errors.
pub fn parse(text: &str, source_name: &str) -> Result<Scenario, ScenarioErrors> {
    let mut problems = Vec::new();
    let table: Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            problems.push(Problem {
                field: String::new(),
                message: format!("not valid TOML: {}", e.message()),
            });
            return Err(ScenarioErrors {
                source_name: source_name.into(),
                problems,
            });
        }
    };
    let sc = check(&table, &mut problems);
    match sc {
        Some(sc) if problems.is_empty() => Ok(sc),
        _ => Err(ScenarioErrors {
            source_name: source_name.into(),
            problems,
        }),
    }
}

fn check(t: &Table, problems: &mut Vec<Problem>) -> Option<Scenario> {
    let mut f = Fields::new(t, String::new(), problems);
    let name = f.str("name");
    if name.is_none() && !t.contains_key("name") {
        f.missing("name", "the scenario's name");
    }
    let description = f.str("description").unwrap_or_default();
    let hosts = f.int32("hosts", 1, 16).unwrap_or(3);
    let io_timeout_ms = f.int32("io_timeout_ms", 1, 3_600_000);
    if let Some(ms) = io_timeout_ms {
        if let Err(e) = nosplit_lease::format::check_io_timeout(ms) {
            f.problem("io_timeout_ms", e.to_string());
        }
    }
    let protection = f.bool("protection").unwrap_or(true);
    let engine = f.bool("engine").unwrap_or(false);
    if engine && !protection {
        f.problem(
            "engine",
            "the engine always uses leases: it cannot run a control run (protection = false)",
        );
    }
    let duration = f.num("duration_s", 0.1, 3600.0);
    if duration.is_none() && !t.contains_key("duration_s") {
        f.missing(
            "duration_s",
            "run length in seconds after every VM first ran",
        );
    }
    let net_timeout = f.int("net_timeout_ms", 100, 600_000).unwrap_or(3000);
    let vm_tables = f.tables("vm");
    let step_tables = f.tables("step");
    let expect = f.take_table("expect");
    f.finish();

    let mut vms = Vec::new();
    for (i, vt) in vm_tables.into_iter().enumerate() {
        check_vm(vt, i, hosts, &mut vms, problems);
    }
    let mut seen = std::collections::BTreeSet::new();
    for v in &vms {
        if !seen.insert(v.name.clone()) {
            problems.push(Problem {
                field: "vm".into(),
                message: format!("two VMs are named {:?}", v.name),
            });
        }
    }
    if vms.is_empty() {
        problems.push(Problem {
            field: "vm".into(),
            message: "required: at least one [[vm]]".into(),
        });
    }
    let dur = duration.map(Duration::from_secs_f64);
    let mut steps = Vec::new();
    for (i, st) in step_tables.into_iter().enumerate() {
        if let Some(s) = check_step(st, i, hosts, dur, problems) {
            steps.push(s);
        }
    }
    steps.sort_by_key(|s| s.at);
    let mut expect_split_brain = None;
    if let Some(et) = expect {
        let mut ef = Fields::new(et, "expect".into(), problems);
        expect_split_brain = ef.bool("split_brain");
        ef.finish();
    }
    Some(Scenario {
        name: name?,
        description,
        hosts,
        io_timeout_ms: io_timeout_ms.unwrap_or(1000),
        protection,
        engine,
        duration: dur?,
        net_timeout: Duration::from_millis(net_timeout),
        vms,
        steps,
        expect_split_brain,
    })
}

fn check_vm(t: &Table, i: usize, hosts: u32, out: &mut Vec<VmSpec>, problems: &mut Vec<Problem>) {
    let mut f = Fields::new(t, format!("vm[{i}]"), problems);
    let name = f.str("name");
    if name.is_none() && !t.contains_key("name") {
        f.missing("name", "the VM's id");
    }
    let kind = match f.str("kind").as_deref() {
        Some("qemu") => Some(VmKind::Qemu),
        Some("process") => Some(VmKind::Process),
        Some(other) => {
            f.problem(
                "kind",
                format!("{other:?}: expected \"qemu\" or \"process\""),
            );
            None
        }
        None => {
            if !t.contains_key("kind") {
                f.missing("kind", "\"qemu\" or \"process\"");
            }
            None
        }
    };
    let host = f.int32("host", 1, hosts);
    let ha = f.bool("ha").unwrap_or(true);
    let count = f.int("count", 1, 500);
    if count.is_some() && kind == Some(VmKind::Qemu) {
        f.problem(
            "count",
            "only process VMs can be counted (QEMU guests are few)",
        );
    }
    // The longest id this entry makes: the name, or its last counted copy.
    let longest = match (&name, count) {
        (Some(n), Some(c)) => Some(format!("{n}-{c}")),
        (Some(n), None) => Some(n.clone()),
        _ => None,
    };
    let mut name_ok = true;
    if let (Some(n), Some(id)) = (&name, &longest) {
        if let Err(e) = check_vm_id(n) {
            f.problem("name", e);
            name_ok = false;
        } else if id.len() > MAX_VM_ID {
            f.problem(
                "name",
                format!(
                    "{n:?} with count {} makes VM ids up to {id:?} ({} characters); a VM id may have at most {MAX_VM_ID}, so that its instance ids (<vm>.<n>.h<host>) fit in {}",
                    count.unwrap_or_default(),
                    id.len(),
                    super::MAX_INSTANCE_ID
                ),
            );
            name_ok = false;
        }
    }
    f.finish();
    let (Some(name), Some(kind), true) = (name, kind, name_ok) else {
        return;
    };
    match count {
        None => out.push(VmSpec {
            name,
            kind,
            host,
            ha,
        }),
        Some(n) => {
            for k in 1..=n {
                out.push(VmSpec {
                    name: format!("{name}-{k}"),
                    kind,
                    host,
                    ha,
                });
            }
        }
    }
}

fn check_step(
    t: &Table,
    i: usize,
    hosts: u32,
    duration: Option<Duration>,
    problems: &mut Vec<Problem>,
) -> Option<Step> {
    let mut f = Fields::new(t, format!("step[{i}]"), problems);
    let at = f.num("at_s", 0.0, 3600.0).map(Duration::from_secs_f64);
    if at.is_none() && !t.contains_key("at_s") {
        f.missing("at_s", "seconds after every VM first ran");
    }
    if let (Some(at), Some(d)) = (at, duration) {
        if at > d {
            f.problem(
                "at_s",
                format!("{at:?} is after the end of the run ({d:?})"),
            );
        }
    }
    let host_sel = match t.get("host") {
        None => None,
        Some(Value::String(s)) if s == "all" => Some(Hosts::All),
        Some(Value::Integer(n)) if (1..=i64::from(hosts)).contains(n) => {
            u32::try_from(*n).ok().map(Hosts::One)
        }
        Some(v) => {
            f.problem(
                "host",
                format!("{v}: expected a host 1..={hosts} or \"all\""),
            );
            None
        }
    };
    f.mark("host");
    let action_name = f.str("action");
    let mode = f.str("mode");
    let plane_name = f.str("plane");
    let fault = f.str("fault");
    let action = match action_name.as_deref() {
        Some("power-off") => Some(Action::PowerOff),
        Some("power-on") => Some(Action::PowerOn),
        Some("leased-kill") => Some(Action::LeasedKill),
        Some("leased-start") => Some(Action::LeasedStart),
        Some("heal") => Some(Action::Heal),
        Some("storage") => storage_step(&mut f, mode.as_deref()),
        Some("net") => net_step(&mut f, plane_name.as_deref(), fault.as_deref()),
        Some(other) => {
            f.problem("action", format!("{other:?}: expected power-off, power-on, storage, net, leased-kill, leased-start or heal"));
            None
        }
        None => {
            if !t.contains_key("action") {
                f.missing("action", "what the step does");
            }
            None
        }
    };
    let applies = |field: &str| match (action_name.as_deref(), field) {
        (Some("storage"), "mode") | (Some("net"), "plane" | "fault") => true,
        (Some(_), _) => false,
        (None, _) => true,
    };
    for (key, given) in [
        ("mode", mode.is_some()),
        ("plane", plane_name.is_some()),
        ("fault", fault.is_some()),
    ] {
        if given && !applies(key) {
            f.problem(key, "does not apply to this action");
        }
    }
    let hosts_sel = match (&action, host_sel) {
        (Some(Action::Heal), None) => Some(Hosts::All),
        (Some(_), None) => {
            f.missing("host", "a host number or \"all\"");
            None
        }
        (
            Some(Action::PowerOff | Action::PowerOn | Action::LeasedKill | Action::LeasedStart),
            Some(Hosts::All),
        ) => Some(Hosts::All),
        (_, h) => h,
    };
    f.finish();
    Some(Step {
        at: at?,
        hosts: hosts_sel?,
        action: action?,
    })
}

/// The storage modes, as `lab fault` and scenario files write them.
pub const STORAGE_MODES: &str = "ok, eio, eio-read, eio-write, hang or delay:<ms> (1..=600000)";

/// A storage mode (`ok`, `eio`, `eio-read`, `eio-write`, `hang`,
/// `delay:<ms>`) in the fault filesystem's syntax (`delay 200`).
pub fn storage_mode(mode: &str) -> Result<String, String> {
    match mode {
        "ok" | "eio" | "eio-read" | "eio-write" | "hang" => Ok(mode.to_string()),
        m => match m.strip_prefix("delay:").map(str::parse::<u32>) {
            Some(Ok(ms)) if (1..=600_000).contains(&ms) => Ok(format!("delay {ms}")),
            _ => Err(format!("{mode:?}: expected {STORAGE_MODES}")),
        },
    }
}

/// A network plane: `mgmt`, `svc`, `stor` or `all`.
pub fn plane(p: &str) -> Result<PlaneSel, String> {
    match p {
        "mgmt" => Ok(PlaneSel::Mgmt),
        "svc" => Ok(PlaneSel::Svc),
        "stor" => Ok(PlaneSel::Stor),
        "all" => Ok(PlaneSel::All),
        _ => Err(format!("{p:?}: expected mgmt, svc, stor or all")),
    }
}

/// A network fault: `down`, `drop`, `drop-in`, `drop-out` or `ok`.
pub fn net_fault(x: &str) -> Result<NetFault, String> {
    match x {
        "down" => Ok(NetFault::Down),
        "drop" => Ok(NetFault::Drop),
        "drop-in" => Ok(NetFault::DropIn),
        "drop-out" => Ok(NetFault::DropOut),
        "ok" => Ok(NetFault::Ok),
        _ => Err(format!(
            "{x:?}: expected down, drop, drop-in, drop-out or ok"
        )),
    }
}

fn storage_step(f: &mut Fields<'_, '_>, mode: Option<&str>) -> Option<Action> {
    let Some(mode) = mode else {
        f.missing("mode", STORAGE_MODES);
        return None;
    };
    match storage_mode(mode) {
        Ok(mode) => Some(Action::Storage { mode }),
        Err(e) => {
            f.problem("mode", e);
            None
        }
    }
}

fn net_step(f: &mut Fields<'_, '_>, p: Option<&str>, x: Option<&str>) -> Option<Action> {
    let plane = match p.map(plane) {
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => {
            f.problem("plane", e);
            None
        }
        None => {
            f.missing("plane", "mgmt, svc, stor or all");
            None
        }
    };
    let fault = match x.map(net_fault) {
        Some(Ok(x)) => Some(x),
        Some(Err(e)) => {
            f.problem("fault", e);
            None
        }
        None => {
            f.missing("fault", "down, drop, drop-in, drop-out or ok");
            None
        }
    };
    Some(Action::Net {
        plane: plane?,
        fault: fault?,
    })
}

#[cfg(test)]
mod tests;
