//! Checks raw request input (path names, JSON bodies, query strings) into
//! typed requests, reporting every problem of a request in one [`Invalid`]
//! (`"name: ...; io_timeout_ms: ..."`). Unknown JSON fields and query
//! parameters are refused. Pure functions: no I/O, reusable by the CLI.
//!
//! The rules: domain names `[a-z][a-z0-9_-]{0,47}`; host names
//! `[A-Za-z0-9._-]{1,64}`; VM ids `[A-Za-z0-9._-]{1,48}`; paths absolute,
//! without NUL, at most 4096 bytes; disk names `[a-z0-9][a-z0-9_-]{0,31}`;
//! the ranges are the constants below.
//! Host names and VM ids may not be `.` or `..` (they would not survive a
//! URL path or a file name).

mod bodies;
mod query;

pub use bodies::{
    domain, ha_patch, maintenance, new_host, new_vm, new_vm_request, no_body, start_vm, strategy,
    vm_patch,
};
pub use query::{events_query, tasks_query};

pub use nosplit_httpserve::validate::Invalid;
pub(crate) use nosplit_httpserve::validate::{int, object, string, Problems};

use serde_json::{Map, Value};

impl From<Invalid> for crate::types::EngineError {
    fn from(e: Invalid) -> Self {
        crate::types::EngineError::Invalid(e.0)
    }
}

/// Longest domain name.
pub const MAX_DOMAIN_LEN: usize = 48;
/// Longest host name.
pub const MAX_HOST_LEN: usize = 64;
/// Longest VM id.
pub const MAX_VM_ID_LEN: usize = 48;
/// Longest path.
pub const MAX_PATH_LEN: usize = 4096;
/// Host ids.
pub const HOST_IDS: (u64, u64) = (1, 2000);
/// VM vCPUs.
pub const VCPUS: (u64, u64) = (1, 64);
/// VM memory, MiB.
pub const VM_MEMORY_MIB: (u64, u64) = (16, 1_048_576);
/// Host vCPUs.
pub const HOST_CPUS: (u64, u64) = (1, 4096);
/// Host memory, MiB (up to 64 TiB).
pub const HOST_MEMORY_MIB: (u64, u64) = (16, 67_108_864);
/// Priorities.
pub const PRIORITY: (u64, u64) = (0, 100);
/// Lockspace io_timeout, ms.
pub const IO_TIMEOUT_MS: (u64, u64) = (100, 60_000);
/// Rates and per-host limits (0 = no limit).
pub const RATE: (u64, u64) = (0, 100_000);
/// Percent thresholds.
pub const PERCENT: (u64, u64) = (1, 100);
/// Restart attempts per VM.
pub const MAX_ATTEMPTS: (u64, u64) = (1, 100);
/// Grace, ms.
pub const GRACE_MS: (u64, u64) = (0, 3_600_000);
/// Disks per VM.
pub const MAX_DISKS: usize = 16;
/// Disk size, MiB (up to 16 TiB).
pub const DISK_MIB: (u64, u64) = (1, 16_777_216);
/// Longest disk name.
pub const MAX_DISK_NAME_LEN: usize = 32;
/// Task and event limits.
pub const LIMIT: (u64, u64) = (1, 10_000);
/// Longest long poll, ms.
pub const MAX_WAIT_MS: u64 = 30_000;

fn word(s: &str, max: usize, first: impl Fn(u8) -> bool, rest: impl Fn(u8) -> bool) -> bool {
    let b = s.as_bytes();
    (1..=max).contains(&b.len())
        && b.first().is_some_and(|&c| first(c))
        && b.iter().skip(1).all(|&c| rest(c))
}

fn show(s: &str) -> String {
    let cut: String = s.chars().take(80).collect();
    if cut.len() < s.len() {
        format!("{cut:?}...")
    } else {
        format!("{cut:?}")
    }
}

fn id_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"._-".contains(&c)
}

/// `.` and `..` match the id pattern but name no object in a URL path or
/// a directory, so they are refused too.
fn dots(s: &str) -> bool {
    s == "." || s == ".."
}

/// Why `s` is not a domain name (`[a-z][a-z0-9_-]{0,47}`), if it is not.
pub fn domain_name_problem(s: &str) -> Option<String> {
    let rest = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-".contains(&c);
    (!word(s, MAX_DOMAIN_LEN, |c| c.is_ascii_lowercase(), rest)).then(|| {
        format!(
            "{} is not a domain name: a-z, then up to 47 of a-z 0-9 _ -",
            show(s)
        )
    })
}

/// Why `s` is not a disk name (`[a-z0-9][a-z0-9_-]{0,31}`), if it is not.
pub fn disk_name_problem(s: &str) -> Option<String> {
    let first = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let rest = |c: u8| first(c) || b"_-".contains(&c);
    (!word(s, MAX_DISK_NAME_LEN, first, rest)).then(|| {
        format!(
            "{} is not a disk name: a-z or 0-9, then up to 31 of a-z 0-9 _ -",
            show(s)
        )
    })
}

/// Why `s` is not a host name (`[A-Za-z0-9._-]{1,64}`), if it is not.
pub fn host_name_problem(s: &str) -> Option<String> {
    (!word(s, MAX_HOST_LEN, id_char, id_char) || dots(s)).then(|| {
        format!(
            "{} is not a host name: 1 to 64 of A-Z a-z 0-9 . _ -",
            show(s)
        )
    })
}

/// Why `s` is not a VM id (`[A-Za-z0-9._-]{1,48}`), if it is not.
pub fn vm_id_problem(s: &str) -> Option<String> {
    (!word(s, MAX_VM_ID_LEN, id_char, id_char) || dots(s))
        .then(|| format!("{} is not a VM id: 1 to 48 of A-Z a-z 0-9 . _ -", show(s)))
}

fn one(field: &str, problem: Option<String>) -> Result<(), Invalid> {
    match problem {
        None => Ok(()),
        Some(m) => Err(Invalid(format!("{field}: {m}"))),
    }
}

/// Checks a domain name from the path.
pub fn domain_name(s: &str) -> Result<(), Invalid> {
    one("name", domain_name_problem(s))
}

/// Checks a host name from the path.
pub fn host_name(s: &str) -> Result<(), Invalid> {
    one("name", host_name_problem(s))
}

/// Checks a VM id from the path.
pub fn vm_id(s: &str) -> Result<(), Invalid> {
    one("id", vm_id_problem(s))
}

/// A JSON object body that must be there.
pub(crate) fn required_object(body: &[u8], what: &str) -> Result<Map<String, Value>, Invalid> {
    object(body)?.ok_or_else(|| Invalid(format!("body: required: a {what} JSON object")))
}

pub(crate) fn unknown(p: &mut Problems, prefix: &str, m: &Map<String, Value>, known: &[&str]) {
    for key in m.keys().filter(|k| !known.contains(&k.as_str())) {
        let known = if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        };
        let key = if word(key, 64, id_char, id_char) {
            key.clone()
        } else {
            show(key)
        };
        p.add(
            &format!("{prefix}{key}"),
            format!("unknown field (expected: {known})"),
        );
    }
}

/// A string that must pass `check`.
pub(crate) fn named(
    p: &mut Problems,
    field: &str,
    v: Option<&Value>,
    check: fn(&str) -> Option<String>,
) {
    if let Some(e) = string(p, field, v).and_then(check) {
        p.add(field, e);
    }
}

/// A boolean, required or not.
pub(crate) fn boolean(p: &mut Problems, field: &str, v: Option<&Value>, required: bool) {
    match v {
        None | Some(Value::Null) if required => p.add(field, "required"),
        None | Some(Value::Null) | Some(Value::Bool(_)) => {}
        Some(_) => p.add(field, "expected true or false"),
    }
}

/// An absolute path without NUL.
pub(crate) fn abs_path(p: &mut Problems, field: &str, v: Option<&Value>) {
    if let Some(s) = string(p, field, v) {
        if s.contains('\0') {
            p.add(field, "contains a NUL byte");
        } else if !s.starts_with('/') {
            p.add(field, format!("{} is not an absolute path", show(s)));
        } else if s.len() > MAX_PATH_LEN {
            p.add(field, format!("longer than {MAX_PATH_LEN} bytes"));
        }
    }
}

/// Turns a checked object into its type (a failure here is a gap in the
/// checks above, still reported as a 400).
pub(crate) fn into<T: serde::de::DeserializeOwned>(m: Map<String, Value>) -> Result<T, Invalid> {
    serde_json::from_value(Value::Object(m)).map_err(|e| Invalid(format!("body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(domain_name_problem("dom_1-a").is_none());
        assert!(domain_name_problem(&format!("a{}", "b".repeat(47))).is_none());
        for bad in ["", "1a", "Ab", "a.b", "a b", &"a".repeat(49)] {
            assert!(domain_name_problem(bad).is_some(), "{bad:?}");
        }
        assert!(host_name_problem("Host-1.lab_x").is_none());
        assert!(host_name_problem(&"h".repeat(64)).is_none());
        for bad in ["", "a/b", "a b", "h\u{e9}", &"h".repeat(65)] {
            assert!(host_name_problem(bad).is_some(), "{bad:?}");
        }
        assert!(vm_id_problem(&"v".repeat(48)).is_none());
        assert!(vm_id_problem(&"v".repeat(49)).is_some());
        assert!(vm_id_problem("..").is_some() && host_name_problem(".").is_some());
        assert!(vm_id_problem("...").is_none());
        assert!(vm_id_problem("a%2f").is_some());
    }

    #[test]
    fn long_input_is_cut_in_messages() {
        let m = vm_id_problem(&"x".repeat(10_000)).unwrap();
        assert!(m.len() < 200, "{m}");
    }
}
