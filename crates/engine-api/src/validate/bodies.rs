//! Checks of the JSON request bodies, one function per body shape.

use std::net::{IpAddr, SocketAddr};

use nosplit_engine_core::model::{Disk, Domain, Strategy};
use serde_json::{Map, Value};

use super::{
    abs_path, boolean, disk_name_problem, domain_name_problem, host_name_problem, int, into, named,
    object, required_object, string, unknown, vm_id_problem, Invalid, Problems, DISK_MIB, GRACE_MS,
    HOST_CPUS, HOST_IDS, HOST_MEMORY_MIB, IO_TIMEOUT_MS, MAX_ATTEMPTS, MAX_DISKS, PERCENT,
    PRIORITY, RATE, VCPUS, VM_MEMORY_MIB,
};
use crate::types::{HaPatch, NewHost, NewVm, VmPatch};

/// `POST /v1/domains`.
pub fn domain(body: &[u8]) -> Result<Domain, Invalid> {
    let m = required_object(body, "Domain")?;
    let mut p = Problems::default();
    named(&mut p, "name", m.get("name"), domain_name_problem);
    abs_path(&mut p, "path", m.get("path"));
    abs_path(&mut p, "host_path", m.get("host_path"));
    int(
        &mut p,
        "io_timeout_ms",
        m.get("io_timeout_ms"),
        IO_TIMEOUT_MS,
        true,
    );
    unknown(
        &mut p,
        "",
        &m,
        &["name", "path", "host_path", "io_timeout_ms"],
    );
    p.finish(|| into(m))
}

/// `POST /v1/hosts`.
pub fn new_host(body: &[u8]) -> Result<NewHost, Invalid> {
    let m = required_object(body, "NewHost")?;
    let mut p = Problems::default();
    named(&mut p, "name", m.get("name"), host_name_problem);
    int(&mut p, "host_id", m.get("host_id"), HOST_IDS, true);
    if let Some(a) = string(&mut p, "agent", m.get("agent")) {
        if a.parse::<SocketAddr>().is_err() {
            p.add("agent", format!("{a:?} is not an ip:port address"));
        }
    }
    planes(&mut p, m.get("planes"));
    int(&mut p, "cpus", m.get("cpus"), HOST_CPUS, true);
    int(
        &mut p,
        "memory_mib",
        m.get("memory_mib"),
        HOST_MEMORY_MIB,
        true,
    );
    let known = ["name", "host_id", "agent", "planes", "cpus", "memory_mib"];
    unknown(&mut p, "", &m, &known);
    p.finish(|| into(m))
}

/// `planes`: 1 to 3 `[plane, ip]` pairs, each plane once.
fn planes(p: &mut Problems, v: Option<&Value>) {
    let list = match v {
        Some(Value::Array(a)) if !a.is_empty() => a,
        None | Some(Value::Null) => return p.add("planes", "required"),
        _ => return p.add("planes", "expected a non-empty array of [plane, ip] pairs"),
    };
    let mut seen = Vec::new();
    for (i, pair) in list.iter().enumerate() {
        let field = format!("planes[{i}]");
        let (plane, ip) = match pair.as_array().map(Vec::as_slice) {
            Some([Value::String(plane), Value::String(ip)]) => (plane, ip),
            _ => {
                p.add(&field, "expected [plane, ip], two strings");
                continue;
            }
        };
        if !["mgmt", "svc", "stor"].contains(&plane.as_str()) {
            p.add(
                &field,
                format!("{plane:?} is not a plane (mgmt, svc, stor)"),
            );
        } else if seen.contains(plane) {
            p.add(&field, format!("plane {plane} given twice"));
        } else {
            seen.push(plane.clone());
        }
        if ip.parse::<IpAddr>().is_err() {
            p.add(&field, format!("{ip:?} is not an IP address"));
        }
    }
}

/// `PUT /v1/hosts/{name}/maintenance`: `{"maintenance": bool}`.
pub fn maintenance(body: &[u8]) -> Result<bool, Invalid> {
    let m = required_object(body, "{\"maintenance\": bool}")?;
    let mut p = Problems::default();
    boolean(&mut p, "maintenance", m.get("maintenance"), true);
    unknown(&mut p, "", &m, &["maintenance"]);
    p.finish(|| {
        Ok(m.get("maintenance")
            .and_then(Value::as_bool)
            .unwrap_or(false))
    })
}

/// `POST /v1/vms`, without its disks (see [`new_vm_request`]).
pub fn new_vm(body: &[u8]) -> Result<NewVm, Invalid> {
    Ok(new_vm_request(body)?.0)
}

/// `POST /v1/vms`: the VM and its disks ([`Disk::default_list`] when
/// `disks` is absent).
pub fn new_vm_request(body: &[u8]) -> Result<(NewVm, Vec<Disk>), Invalid> {
    let mut m = required_object(body, "NewVm")?;
    let mut p = Problems::default();
    named(&mut p, "id", m.get("id"), vm_id_problem);
    match string(&mut p, "kind", m.get("kind")) {
        Some("qemu" | "process") | None => {}
        Some(k) => p.add("kind", format!("{k:?}: expected \"qemu\" or \"process\"")),
    }
    int(&mut p, "vcpus", m.get("vcpus"), VCPUS, true);
    int(
        &mut p,
        "memory_mib",
        m.get("memory_mib"),
        VM_MEMORY_MIB,
        true,
    );
    named(&mut p, "domain", m.get("domain"), domain_name_problem);
    boolean(&mut p, "ha", m.get("ha"), false);
    int(&mut p, "priority", m.get("priority"), PRIORITY, false);
    let disks = disks(&mut p, m.remove("disks"));
    let known = [
        "id",
        "kind",
        "vcpus",
        "memory_mib",
        "domain",
        "ha",
        "priority",
        "disks",
    ];
    unknown(&mut p, "", &m, &known);
    p.finish(|| Ok((into(without_nulls(m))?, disks)))
}

/// `disks`: 1 to [`MAX_DISKS`] `{"name", "size_mib"}`, names unique;
/// absent or null is [`Disk::default_list`].
fn disks(p: &mut Problems, v: Option<Value>) -> Vec<Disk> {
    let list = match v {
        None | Some(Value::Null) => return Disk::default_list(),
        Some(Value::Array(a)) if (1..=MAX_DISKS).contains(&a.len()) => a,
        Some(_) => {
            p.add(
                "disks",
                format!("expected 1 to {MAX_DISKS} {{\"name\", \"size_mib\"}} objects"),
            );
            return Vec::new();
        }
    };
    let mut out: Vec<Disk> = Vec::new();
    for (i, d) in list.iter().enumerate() {
        let f = format!("disks[{i}]");
        let Some(o) = d.as_object() else {
            p.add(&f, "expected {\"name\", \"size_mib\"}");
            continue;
        };
        let name = string(p, &format!("{f}.name"), o.get("name")).map(str::to_string);
        if let Some(e) = name.as_deref().and_then(disk_name_problem) {
            p.add(&format!("{f}.name"), e);
        }
        let size = int(
            p,
            &format!("{f}.size_mib"),
            o.get("size_mib"),
            DISK_MIB,
            true,
        );
        unknown(p, &format!("{f}."), o, &["name", "size_mib"]);
        if let (Some(name), Some(size_mib)) = (name, size) {
            if out.iter().any(|d| d.name == name) {
                p.add(&format!("{f}.name"), format!("disk {name:?} given twice"));
            }
            out.push(Disk { name, size_mib });
        }
    }
    out
}

/// `POST /v1/vms/{id}/start`: empty, `{}` or `{"host": name}`.
pub fn start_vm(body: &[u8]) -> Result<Option<String>, Invalid> {
    let Some(m) = object(body)? else {
        return Ok(None);
    };
    let mut p = Problems::default();
    let host = match m.get("host") {
        None | Some(Value::Null) => None,
        v => {
            named(&mut p, "host", v, host_name_problem);
            v.and_then(Value::as_str).map(str::to_string)
        }
    };
    unknown(&mut p, "", &m, &["host"]);
    p.finish(|| Ok(host))
}

/// `PATCH /v1/vms/{id}`: `{"ha"?: bool, "priority"?: 0..=100}`, not empty.
pub fn vm_patch(body: &[u8]) -> Result<VmPatch, Invalid> {
    let m = required_object(body, "VmPatch")?;
    let mut p = Problems::default();
    boolean(&mut p, "ha", m.get("ha"), false);
    int(&mut p, "priority", m.get("priority"), PRIORITY, false);
    unknown(&mut p, "", &m, &["ha", "priority"]);
    let m = without_nulls(m);
    if !has_any(&m, &["ha", "priority"]) {
        p.add("body", "nothing to change: give ha and/or priority");
    }
    p.finish(|| into(m))
}

/// `PUT /v1/strategy`: the rows, then `Strategy::validate`.
pub fn strategy(body: &[u8]) -> Result<Strategy, Invalid> {
    let m = required_object(body, "Strategy")?;
    let mut p = Problems::default();
    match m.get("rows") {
        Some(Value::Array(rows)) => {
            for (i, row) in rows.iter().enumerate() {
                let f = format!("rows[{i}]");
                let Some(r) = row.as_object() else {
                    p.add(&f, "expected an object");
                    continue;
                };
                for k in ["mgmt", "svc", "stor", "recover"] {
                    boolean(&mut p, &format!("{f}.{k}"), r.get(k), true);
                }
                unknown(
                    &mut p,
                    &format!("{f}."),
                    r,
                    &["mgmt", "svc", "stor", "recover"],
                );
            }
        }
        None | Some(Value::Null) => p.add("rows", "required"),
        Some(_) => p.add("rows", "expected an array"),
    }
    unknown(&mut p, "", &m, &["rows"]);
    p.finish(|| {
        let s: Strategy = into(m)?;
        s.validate().map_err(|e| Invalid(format!("rows: {e}")))?;
        Ok(s)
    })
}

/// `PATCH /v1/ha`: any of the settings, not empty; `recover_pct >
/// defense_pct` when both are given (the runtime checks the merged result).
pub fn ha_patch(body: &[u8]) -> Result<HaPatch, Invalid> {
    let m = required_object(body, "HaPatch")?;
    let mut p = Problems::default();
    boolean(&mut p, "maintenance", m.get("maintenance"), false);
    int(&mut p, "global_rate", m.get("global_rate"), RATE, false);
    int(
        &mut p,
        "per_host_limit",
        m.get("per_host_limit"),
        RATE,
        false,
    );
    int(
        &mut p,
        "max_attempts",
        m.get("max_attempts"),
        MAX_ATTEMPTS,
        false,
    );
    let d = int(&mut p, "defense_pct", m.get("defense_pct"), PERCENT, false);
    let r = int(&mut p, "recover_pct", m.get("recover_pct"), PERCENT, false);
    if let (Some(d), Some(r)) = (d, r) {
        if r <= d {
            p.add(
                "recover_pct",
                format!("{r} must be above defense_pct ({d})"),
            );
        }
    }
    int(&mut p, "grace_ms", m.get("grace_ms"), GRACE_MS, false);
    let known = [
        "maintenance",
        "global_rate",
        "per_host_limit",
        "max_attempts",
        "defense_pct",
        "recover_pct",
        "grace_ms",
    ];
    unknown(&mut p, "", &m, &known);
    let m = without_nulls(m);
    if !has_any(&m, &known) {
        p.add(
            "body",
            format!("nothing to change: give any of {}", known.join(", ")),
        );
    }
    p.finish(|| into(m))
}

/// A body that must be empty or `{}`.
pub fn no_body(body: &[u8]) -> Result<(), Invalid> {
    let mut p = Problems::default();
    if let Some(m) = object(body)? {
        unknown(&mut p, "", &m, &[]);
    }
    p.finish(|| Ok(()))
}

/// Whether any of `keys` is in `m`.
fn has_any(m: &Map<String, Value>, keys: &[&str]) -> bool {
    keys.iter().any(|k| m.contains_key(*k))
}

/// Drops `null` members, which the checks treat as absent (so serde's
/// defaults apply to them too).
fn without_nulls(mut m: Map<String, Value>) -> Map<String, Value> {
    m.retain(|_, v| !v.is_null());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(e: Invalid) -> Vec<String> {
        e.0.split("; ")
            .map(|s| s.split(':').next().unwrap().to_string())
            .collect()
    }

    #[test]
    fn new_host_reports_everything() {
        let body = br#"{"name":"a b","host_id":0,"agent":"nowhere","cpus":0,"memory_mib":1,
            "planes":[["mgmt","10.0.0.1"],["mgmt","10.0.0.2"],["wifi","x"],"y"],"z":1}"#;
        assert_eq!(
            fields(new_host(body).unwrap_err()),
            [
                "name",
                "host_id",
                "agent",
                "planes[1]",
                "planes[2]",
                "planes[2]",
                "planes[3]",
                "cpus",
                "memory_mib",
                "z"
            ]
        );
        let ok = br#"{"name":"h1","host_id":2000,"agent":"10.0.0.1:7070","cpus":4,
            "memory_mib":4096,"planes":[["mgmt","10.0.0.1"],["stor","fd00::1"]]}"#;
        let h = new_host(ok).unwrap();
        assert_eq!(h.planes.len(), 2);
        assert!(!h.into_host().maintenance);
    }

    #[test]
    fn new_vm_defaults_and_ranges() {
        let v = new_vm(
            br#"{"id":"v1","kind":"qemu","vcpus":1,"memory_mib":16,"domain":"d",
            "priority":null}"#,
        )
        .unwrap();
        assert_eq!((v.ha, v.priority), (false, 0));
        let e = new_vm(
            br#"{"id":"","kind":"xen","vcpus":65,"memory_mib":1048577,"domain":"D",
            "ha":"yes","priority":101}"#,
        )
        .unwrap_err();
        let want = [
            "id",
            "kind",
            "vcpus",
            "memory_mib",
            "domain",
            "ha",
            "priority",
        ];
        assert_eq!(fields(e), want);
    }

    #[test]
    fn new_vm_disks_default_and_checks() {
        let base = r#""id":"v1","kind":"qemu","vcpus":1,"memory_mib":16,"domain":"d""#;
        let (_, d) = new_vm_request(format!("{{{base}}}").as_bytes()).unwrap();
        assert_eq!(d, Disk::default_list());
        let two = r#""disks":[{"name":"boot","size_mib":2048},{"name":"data-1","size_mib":1}]"#;
        let (_, d) = new_vm_request(format!("{{{base},{two}}}").as_bytes()).unwrap();
        assert_eq!(
            (d.len(), d[0].size_mib, d[1].name.as_str()),
            (2, 2048, "data-1")
        );
        let bad = r#""disks":[{"name":"Boot","size_mib":0},{"name":"a","size_mib":1,"x":1},
            {"name":"b","size_mib":16777217},3]"#;
        assert_eq!(
            fields(new_vm_request(format!("{{{base},{bad}}}").as_bytes()).unwrap_err()),
            [
                "disks[0].name",
                "disks[0].size_mib",
                "disks[1].x",
                "disks[2].size_mib",
                "disks[3]"
            ]
        );
        let dup = r#""disks":[{"name":"a","size_mib":1},{"name":"a","size_mib":2}]"#;
        let e = new_vm_request(format!("{{{base},{dup}}}").as_bytes()).unwrap_err();
        assert_eq!(fields(e), ["disks[1].name"]);
        for bad in [r#""disks":[]"#, r#""disks":{}"#] {
            let b = format!("{{{base},{bad}}}");
            assert_eq!(fields(new_vm_request(b.as_bytes()).unwrap_err()), ["disks"]);
        }
        let many: Vec<String> = (0..17)
            .map(|i| format!(r#"{{"name":"d{i}","size_mib":1}}"#))
            .collect();
        let b = format!(r#"{{{base},"disks":[{}]}}"#, many.join(","));
        assert!(new_vm_request(b.as_bytes()).is_err(), "17 disks");
    }

    #[test]
    fn patches_and_small_bodies() {
        assert!(vm_patch(b"{}").unwrap_err().0.contains("nothing to change"));
        assert_eq!(vm_patch(br#"{"priority":7}"#).unwrap().priority, Some(7));
        let e = ha_patch(br#"{"defense_pct":70,"recover_pct":70,"global_rate":100001}"#);
        assert_eq!(fields(e.unwrap_err()), ["global_rate", "recover_pct"]);
        assert!(ha_patch(br#"{"defense_pct":0}"#).is_err());
        assert_eq!(ha_patch(br#"{"grace_ms":5}"#).unwrap().grace_ms, Some(5));
        assert_eq!(start_vm(b"").unwrap(), None);
        assert_eq!(
            start_vm(br#"{"host":"h1"}"#).unwrap().as_deref(),
            Some("h1")
        );
        assert!(start_vm(br#"{"host":"h/1"}"#).is_err());
        assert!(maintenance(br#"{"maintenance":true}"#).unwrap());
        assert!(maintenance(b"{}").is_err());
        assert!(no_body(b" {} ").is_ok() && no_body(br#"{"x":1}"#).is_err());
    }

    #[test]
    fn strategy_checks_shape_then_table() {
        let good = serde_json::to_vec(&Strategy::default_table()).unwrap();
        assert_eq!(strategy(&good).unwrap(), Strategy::default_table());
        let mut s = Strategy::default_table();
        s.rows[0] = s.rows[1];
        let e = strategy(&serde_json::to_vec(&s).unwrap()).unwrap_err();
        assert!(
            e.0.starts_with("rows: ") && e.0.contains("repeated [1]"),
            "{e}"
        );
        let e = strategy(br#"{"rows":[{"mgmt":1,"x":true},3]}"#).unwrap_err();
        assert_eq!(
            fields(e),
            [
                "rows[0].mgmt",
                "rows[0].svc",
                "rows[0].stor",
                "rows[0].recover",
                "rows[0].x",
                "rows[1]"
            ]
        );
    }

    #[test]
    fn domain_paths() {
        let e = domain(br#"{"name":"d","path":"rel","host_path":"/a\u0000","io_timeout_ms":99}"#);
        assert_eq!(
            fields(e.unwrap_err()),
            ["path", "host_path", "io_timeout_ms"]
        );
        let d =
            domain(br#"{"name":"d1","path":"/s","host_path":"/mnt/{host}","io_timeout_ms":1000}"#);
        assert_eq!(d.unwrap().host_path, "/mnt/{host}");
    }
}
