//! Checks of the query strings of `GET /v1/tasks` and `GET /v1/events`:
//! each parameter at most once, no unknown ones, every problem reported.

use std::time::Duration;

use super::{host_name_problem, vm_id_problem, Invalid, Problems, LIMIT, MAX_WAIT_MS};
use crate::types::{EventQuery, TaskQuery};

/// Event severities.
pub const SEVERITIES: &[&str] = &["info", "warning", "alarm"];

fn pairs(query: Option<&str>) -> Result<Vec<(String, String)>, Invalid> {
    serde_urlencoded::from_str(query.unwrap_or("")).map_err(|e| Invalid(format!("query: {e}")))
}

/// Collects parameters by name, reporting unknown and repeated ones.
fn collect<'a>(
    p: &mut Problems,
    pairs: &'a [(String, String)],
    known: &[&str],
) -> Vec<(&'a str, &'a str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for (k, v) in pairs {
        if !known.contains(&k.as_str()) {
            let k: String = k.chars().take(64).collect();
            p.add(
                &k,
                format!("unknown query parameter (expected: {})", known.join(", ")),
            );
        } else if out.iter().any(|(seen, _)| seen == k) {
            p.add(k, "given twice");
        } else {
            out.push((k, v));
        }
    }
    out
}

fn number(p: &mut Problems, k: &str, v: &str, (min, max): (u64, u64)) -> Option<u64> {
    match v.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Some(n),
        _ => {
            let v: String = v.chars().take(32).collect();
            p.add(k, format!("{v:?} is not an integer in {min}..={max}"));
            None
        }
    }
}

fn limit(p: &mut Problems, v: &str) -> usize {
    number(p, "limit", v, LIMIT)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0)
}

fn checked(p: &mut Problems, k: &str, v: &str, check: fn(&str) -> Option<String>) -> String {
    if let Some(e) = check(v) {
        p.add(k, e);
    }
    v.to_string()
}

/// Why `s` is not an event kind (`[a-z][a-z0-9-]{0,63}`), if it is not.
pub fn kind_problem(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let ok = (1..=64).contains(&b.len())
        && b.first().is_some_and(u8::is_ascii_lowercase)
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
    (!ok).then(|| "not an event kind: a-z, then up to 63 of a-z 0-9 -".to_string())
}

fn severity_problem(s: &str) -> Option<String> {
    (!SEVERITIES.contains(&s)).then(|| format!("expected one of {}", SEVERITIES.join(", ")))
}

/// `vm=ID&limit=N` (limit 1..=10000, default 100).
pub fn tasks_query(query: Option<&str>) -> Result<TaskQuery, Invalid> {
    let raw = pairs(query)?;
    let mut p = Problems::default();
    let mut q = TaskQuery::default();
    for (k, v) in collect(&mut p, &raw, &["vm", "limit"]) {
        match k {
            "vm" => q.vm = Some(checked(&mut p, k, v, vm_id_problem)),
            _ => q.limit = limit(&mut p, v),
        }
    }
    p.finish(|| Ok(q))
}

/// `after=N&kind=K&host=H&vm=V&severity=S&limit=N&wait_ms=M` (limit
/// 1..=10000, default 1000; wait_ms 0..=30000, default 0).
pub fn events_query(query: Option<&str>) -> Result<EventQuery, Invalid> {
    let raw = pairs(query)?;
    let mut p = Problems::default();
    let mut q = EventQuery::default();
    let known = [
        "after", "kind", "host", "vm", "severity", "limit", "wait_ms",
    ];
    for (k, v) in collect(&mut p, &raw, &known) {
        match k {
            "after" => q.after = number(&mut p, k, v, (0, u64::MAX)).unwrap_or(0),
            "kind" => q.kind = Some(checked(&mut p, k, v, kind_problem)),
            "host" => q.host = Some(checked(&mut p, k, v, host_name_problem)),
            "vm" => q.vm = Some(checked(&mut p, k, v, vm_id_problem)),
            "severity" => q.severity = Some(checked(&mut p, k, v, severity_problem)),
            "limit" => q.limit = limit(&mut p, v),
            _ => {
                let ms = number(&mut p, k, v, (0, MAX_WAIT_MS)).unwrap_or(0);
                q.wait = Duration::from_millis(ms);
            }
        }
    }
    p.finish(|| Ok(q))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks() {
        assert_eq!(tasks_query(None).unwrap(), TaskQuery::default());
        let q = tasks_query(Some("vm=v1&limit=5")).unwrap();
        assert_eq!((q.vm.as_deref(), q.limit), (Some("v1"), 5));
        let e = tasks_query(Some("vm=a%2Fb&limit=0&x=1&limit=3")).unwrap_err();
        assert_eq!(e.0.matches("; ").count(), 3, "{e}");
    }

    #[test]
    fn events() {
        let q = events_query(Some(
            "after=9&kind=host-down&host=h1&vm=v1&severity=alarm&limit=2&wait_ms=30000",
        ))
        .unwrap();
        assert_eq!(q.after, 9);
        assert_eq!(q.kind.as_deref(), Some("host-down"));
        assert_eq!((q.limit, q.wait), (2, Duration::from_secs(30)));
        let e = events_query(Some(
            "after=-1&kind=Host&host=a+b&severity=fatal&limit=10001&wait_ms=30001",
        ))
        .unwrap_err();
        for f in [
            "after:",
            "kind:",
            "host:",
            "severity:",
            "limit:",
            "wait_ms:",
        ] {
            assert!(e.0.contains(f), "{e} lacks {f}");
        }
        assert!(events_query(Some("after=1&after=2"))
            .unwrap_err()
            .0
            .contains("twice"));
    }
}
