//! Checks raw request input (path ids, JSON bodies, query strings) into the
//! [`crate::model`] types, reporting every problem of a request in one 400
//! `invalid` error (`"id: ...; memory_mib: ..."`). Unknown fields and query
//! parameters are rejected.

use std::time::Duration;

use serde_json::{Map, Value};

use nosplit_httpserve::validate::{self, int, string, Problems};

use super::error::ApiError;
use crate::model::{StartVm, MAX_EXTRA_DISKS};

/// Longest VM (and instance) id.
pub const MAX_ID_LEN: usize = 48;
/// Default `timeout_ms` of a stop.
pub const DEFAULT_STOP_TIMEOUT_MS: u64 = 10_000;
/// Largest `timeout_ms` of a stop.
pub const MAX_STOP_TIMEOUT_MS: u64 = 600_000;
/// Largest `wait_ms` of an events long poll.
pub const MAX_EVENTS_WAIT_MS: u64 = 30_000;

/// Why `id` is not a VM id (`[A-Za-z0-9._-]{1,48}`), if it is not.
pub fn id_problem(id: &str) -> Option<String> {
    let ok = (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    (!ok).then(|| format!("{id:?} is not an id: 1 to {MAX_ID_LEN} of A-Z a-z 0-9 . _ -"))
}

/// Checks a VM id from the path.
pub fn vm_id(id: &str) -> Result<(), ApiError> {
    match id_problem(id) {
        None => Ok(()),
        Some(m) => Err(ApiError::invalid(format!("id: {m}"))),
    }
}

/// Parses a JSON body as an object; an empty body is `None`.
fn object(body: &[u8]) -> Result<Option<Map<String, Value>>, ApiError> {
    Ok(validate::object(body)?)
}

fn unknown(p: &mut Problems, prefix: &str, m: &Map<String, Value>, known: &[&str]) {
    for key in m.keys().filter(|k| !known.contains(&k.as_str())) {
        p.add(
            &format!("{prefix}{key}"),
            format!("unknown field (expected one of: {})", known.join(", ")),
        );
    }
}

fn abs_path(p: &mut Problems, field: &str, v: Option<&Value>) {
    if let Some(s) = string(p, field, v) {
        if s.contains('\0') {
            p.add(field, "contains a NUL byte");
        } else if !s.starts_with('/') {
            p.add(field, format!("{s:?} is not an absolute path"));
        }
    }
}

/// Checks a start request body into a [`StartVm`].
pub fn start_vm(body: &[u8]) -> Result<StartVm, ApiError> {
    let Some(m) = object(body)? else {
        return Err(ApiError::invalid("body: required: a StartVm JSON object"));
    };
    let mut p = Problems::default();
    if let Some(id) = string(&mut p, "id", m.get("id")) {
        if let Some(e) = id_problem(id) {
            p.add("id", e);
        }
    }
    match string(&mut p, "kind", m.get("kind")) {
        Some("qemu" | "process") | None => {}
        Some(k) => p.add("kind", format!("{k:?}: expected \"qemu\" or \"process\"")),
    }
    abs_path(&mut p, "disk", m.get("disk"));
    extra_disks(&mut p, m.get("disk"), m.get("extra_disks"));
    int(
        &mut p,
        "memory_mib",
        m.get("memory_mib"),
        (16, 65_536),
        false,
    );
    int(&mut p, "vcpus", m.get("vcpus"), (1, 64), false);
    match m.get("lease") {
        None | Some(Value::Null) => {}
        Some(Value::Object(l)) => lease(&mut p, l),
        Some(_) => p.add("lease", "expected an object or null"),
    }
    match m.get("inst") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            if let Some(e) = id_problem(s) {
                p.add("inst", e);
            }
        }
        Some(_) => p.add("inst", "expected a string or null"),
    }
    unknown(&mut p, "", &m, START_FIELDS);
    p.finish(|| {
        serde_json::from_value(Value::Object(m))
            .map_err(|e| ApiError::invalid(format!("body: {e}")))
    })
}

const START_FIELDS: &[&str] = &[
    "id",
    "kind",
    "disk",
    "extra_disks",
    "memory_mib",
    "vcpus",
    "lease",
    "inst",
];

/// Checks `extra_disks`: absent, or an array of at most
/// [`MAX_EXTRA_DISKS`] absolute paths, none twice and none the first disk.
fn extra_disks(p: &mut Problems, disk: Option<&Value>, v: Option<&Value>) {
    let items = match v {
        None => return,
        Some(Value::Array(a)) => a,
        Some(_) => {
            p.add("extra_disks", "expected an array of paths");
            return;
        }
    };
    if items.len() > MAX_EXTRA_DISKS {
        p.add(
            "extra_disks",
            format!(
                "{} disks: at most {MAX_EXTRA_DISKS} besides the first",
                items.len()
            ),
        );
    }
    let mut seen: Vec<&str> = disk.and_then(Value::as_str).into_iter().collect();
    for (i, item) in items.iter().enumerate() {
        let field = format!("extra_disks[{i}]");
        abs_path(p, &field, Some(item));
        if let Some(s) = item.as_str() {
            if seen.contains(&s) {
                p.add(&field, format!("{s:?} is given twice"));
            }
            seen.push(s);
        }
    }
}
const LEASE_FIELDS: &[&str] = &["lockspace", "path", "offset"];

fn lease(p: &mut Problems, l: &Map<String, Value>) {
    if let Some(ls) = string(p, "lease.lockspace", l.get("lockspace")) {
        if let Err(e) = nosplit_lease::Name::new(ls) {
            p.add("lease.lockspace", e);
        }
    }
    abs_path(p, "lease.path", l.get("path"));
    if let Some(off) = int(p, "lease.offset", l.get("offset"), (0, u64::MAX), true) {
        if off % 512 != 0 {
            p.add("lease.offset", format!("{off} is not a multiple of 512"));
        }
    }
    unknown(p, "lease.", l, LEASE_FIELDS);
}

/// Checks a stop body: empty, or `{"timeout_ms": n}`.
pub fn stop_timeout(body: &[u8]) -> Result<Duration, ApiError> {
    let mut p = Problems::default();
    let mut ms = DEFAULT_STOP_TIMEOUT_MS;
    if let Some(m) = object(body)? {
        let range = (0, MAX_STOP_TIMEOUT_MS);
        if let Some(n) = int(&mut p, "timeout_ms", m.get("timeout_ms"), range, false) {
            ms = n;
        }
        unknown(&mut p, "", &m, &["timeout_ms"]);
    }
    p.finish(|| Ok(Duration::from_millis(ms)))
}

/// Checks a body that must be empty (or an empty object).
pub fn no_body(body: &[u8]) -> Result<(), ApiError> {
    let mut p = Problems::default();
    if let Some(m) = object(body)? {
        unknown(&mut p, "", &m, &[]);
    }
    p.finish(|| Ok(()))
}

/// Checks the events query (`after=N&wait_ms=M`) into `(after, wait)`.
pub fn events_query(query: Option<&str>) -> Result<(u64, Duration), ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|e| ApiError::invalid(format!("query: {e}")))?;
    let mut p = Problems::default();
    let (mut after, mut wait) = (None, None);
    for (k, v) in pairs {
        let (slot, max) = match k.as_str() {
            "after" => (&mut after, u64::MAX),
            "wait_ms" => (&mut wait, MAX_EVENTS_WAIT_MS),
            _ => {
                p.add(&k, "unknown query parameter (expected after, wait_ms)");
                continue;
            }
        };
        if slot.is_some() {
            p.add(&k, "given twice");
            continue;
        }
        match v.parse::<u64>() {
            Ok(n) if n <= max => *slot = Some(n),
            _ => p.add(&k, format!("{v:?} is not an integer in 0..={max}")),
        }
    }
    p.finish(|| Ok((after.unwrap_or(0), Duration::from_millis(wait.unwrap_or(0)))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_vm_reports_everything() {
        let body = br#"{"id":"a b","kind":"xen","disk":"rel","memory_mib":8,"vcpus":0,
            "lease":{"lockspace":"","path":"/x\u0000","offset":100,"extra":1},"inst":5,"zzz":1}"#;
        let e = start_vm(body).unwrap_err();
        let fields: Vec<&str> = e
            .message
            .split("; ")
            .map(|s| s.split(':').next().unwrap())
            .collect();
        assert_eq!(
            fields,
            [
                "id",
                "kind",
                "disk",
                "memory_mib",
                "vcpus",
                "lease.lockspace",
                "lease.path",
                "lease.offset",
                "lease.extra",
                "inst",
                "zzz"
            ]
        );
    }

    #[test]
    fn start_vm_accepts_good_input() {
        let body = br#"{"id":"vm-1","kind":"qemu","disk":"/d/vm-1.img",
            "lease":{"lockspace":"ls1","path":"/s/xleases","offset":1048576}}"#;
        let s = start_vm(body).unwrap();
        assert_eq!((s.id.as_str(), s.memory_mib, s.vcpus), ("vm-1", 128, 1));
        assert_eq!(s.lease.unwrap().offset, 1_048_576);
        assert!(start_vm(b"").is_err());
        assert!(start_vm(b"[1]").is_err());
    }

    #[test]
    fn extra_disks_are_checked_all_at_once() {
        let ok = br#"{"id":"vm-1","kind":"qemu","disk":"/d/a.img",
            "extra_disks":["/d/a@b.img","/d/a@c.img"]}"#;
        assert_eq!(
            start_vm(ok).unwrap().extra_disks,
            ["/d/a@b.img", "/d/a@c.img"]
        );
        let old = br#"{"id":"vm-1","kind":"qemu","disk":"/d/a.img"}"#;
        assert!(start_vm(old).unwrap().extra_disks.is_empty());
        // A relative path, a non-string, the first disk again, one twice.
        let bad = br#"{"id":"vm-1","kind":"qemu","disk":"/d/a.img",
            "extra_disks":["rel.img",7,"/d/a.img","/d/b.img","/d/b.img"]}"#;
        let e = start_vm(bad).unwrap_err().message;
        let fields: Vec<&str> = e
            .split("; ")
            .map(|s| s.split(':').next().unwrap())
            .collect();
        assert_eq!(
            fields,
            [
                "extra_disks[0]",
                "extra_disks[1]",
                "extra_disks[2]",
                "extra_disks[4]"
            ],
            "{e}"
        );
        assert!(
            e.contains("not an absolute path") && e.contains("given twice"),
            "{e}"
        );
        // 15 are fine, 16 are too many.
        let many = |n: usize| {
            let paths: Vec<String> = (0..n).map(|i| format!("/d/x{i}.img")).collect();
            serde_json::to_vec(&serde_json::json!({
                "id": "vm-1", "kind": "process", "disk": "/d/a.img", "extra_disks": paths
            }))
            .unwrap()
        };
        assert_eq!(start_vm(&many(15)).unwrap().extra_disks.len(), 15);
        let e = start_vm(&many(16)).unwrap_err().message;
        assert!(e.starts_with("extra_disks: 16 disks: at most 15"), "{e}");
        let e = start_vm(br#"{"id":"v","kind":"qemu","disk":"/a","extra_disks":"/b"}"#)
            .unwrap_err()
            .message;
        assert!(e.contains("extra_disks: expected an array"), "{e}");
    }

    #[test]
    fn stop_and_events() {
        assert_eq!(stop_timeout(b"").unwrap(), Duration::from_secs(10));
        assert_eq!(stop_timeout(b"{}").unwrap(), Duration::from_secs(10));
        assert_eq!(
            stop_timeout(br#"{"timeout_ms":0}"#).unwrap(),
            Duration::ZERO
        );
        assert!(stop_timeout(br#"{"timeout_ms":600001}"#).is_err());
        assert!(stop_timeout(br#"{"timeout":1}"#).is_err());
        assert_eq!(
            events_query(Some("after=7&wait_ms=250")).unwrap(),
            (7, Duration::from_millis(250))
        );
        assert_eq!(events_query(None).unwrap(), (0, Duration::ZERO));
        let e = events_query(Some("after=-1&wait_ms=30001&x=1")).unwrap_err();
        assert_eq!(e.message.matches("; ").count(), 2);
        assert!(events_query(Some("after=1&after=2")).is_err());
    }

    #[test]
    fn ids() {
        assert!(id_problem("vm-1.a_b").is_none());
        assert!(id_problem(&"a".repeat(48)).is_none());
        assert!(id_problem(&"a".repeat(49)).is_some());
        assert!(id_problem("").is_some());
        assert!(id_problem("a/b").is_some());
    }
}
