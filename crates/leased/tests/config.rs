//! The daemon configuration: parsing, defaults, and that every problem is
//! reported at once, each naming its field.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};
use std::time::Duration;

use nosplit_lease::Name;
use nosplit_leased::config::{
    load, parse, Config, ConfigErrors, LockspaceConfig, Problem, WatchdogConfig,
};
use nosplit_storage::SectorSize;

/// A group that does not exist on any sane test host.
const NO_SUCH_GROUP: &str = "nosplit-test-no-such-group-7f3a";

const FULL: &str = r#"
host_name = "hostA"
run_dir = "/var/run/nosplit-test"
socket_group = 4242
freeze_hook_timeout_ms = 1500

[watchdog]
backend = "device"
device = "/dev/watchdog1"

[[lockspace]]
name = "ls1"
path = "/shared/ids"
offset = 0
host_id = 1
sector_size = 512

[[lockspace]]
name = "ls2"
path = "/shared/ids"
offset = 1048576
host_id = 1
sector_size = 4096

[[lockspace]]
name = "ls3"
path = "/dev/mapper/leases"
host_id = 2000
"#;

const MINIMAL: &str = r#"
host_name = "hostA"
[watchdog]
backend = "device"
"#;

fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}

fn errors(text: &str) -> ConfigErrors {
    match parse(text) {
        Ok(c) => panic!("expected problems, parsed {c:#?}\n--- from:\n{text}"),
        Err(e) => e,
    }
}

/// Asserts that `text` is rejected with a problem on `field` whose message
/// contains `needle`; returns that problem.
#[track_caller]
fn rejects(text: &str, field: &str, needle: &str) -> Problem {
    let e = errors(text);
    let found = e
        .for_field(field)
        .find(|p| p.message.contains(needle))
        .cloned();
    found.unwrap_or_else(|| {
        panic!("no problem on {field:?} mentioning {needle:?}; got:\n{e}\n--- from:\n{text}")
    })
}

/// `MINIMAL` plus top-level lines (before the tables).
fn with_top(lines: &str) -> String {
    format!("host_name = \"hostA\"\n{lines}\n[watchdog]\nbackend = \"device\"\n")
}

/// A config with the given `[watchdog]` body.
fn with_watchdog(body: &str) -> String {
    format!("host_name = \"hostA\"\n[watchdog]\n{body}\n")
}

/// `MINIMAL` plus lockspace tables, each given as its body.
fn with_lockspaces(bodies: &[&str]) -> String {
    let mut s = MINIMAL.to_string();
    for b in bodies {
        s.push_str("\n[[lockspace]]\n");
        s.push_str(b);
        s.push('\n');
    }
    s
}

const LS_OK: &str = "name = \"ls1\"\npath = \"/shared/ids\"\nhost_id = 1";

#[test]
fn full_valid_config() {
    let c = parse(FULL).unwrap();
    assert_eq!(
        c,
        Config {
            host_name: name("hostA"),
            run_dir: PathBuf::from("/var/run/nosplit-test"),
            socket_group: Some(4242),
            freeze_hook_timeout: Duration::from_millis(1500),
            watchdog: WatchdogConfig::Device {
                path: PathBuf::from("/dev/watchdog1")
            },
            lockspaces: vec![
                LockspaceConfig {
                    name: name("ls1"),
                    path: PathBuf::from("/shared/ids"),
                    offset: 0,
                    host_id: 1,
                    sector_size: SectorSize::B512,
                },
                LockspaceConfig {
                    name: name("ls2"),
                    path: PathBuf::from("/shared/ids"),
                    offset: 1048576,
                    host_id: 1,
                    sector_size: SectorSize::B4096,
                },
                LockspaceConfig {
                    name: name("ls3"),
                    path: PathBuf::from("/dev/mapper/leases"),
                    offset: 0,
                    host_id: 2000,
                    sector_size: SectorSize::B512,
                },
            ],
        }
    );
    assert_eq!(
        c.socket_path(),
        Path::new("/var/run/nosplit-test/leased.sock")
    );
    assert_eq!(
        c.state_path(),
        Path::new("/var/run/nosplit-test/state.json")
    );
}

#[test]
fn defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(
        c,
        Config {
            host_name: name("hostA"),
            run_dir: PathBuf::from("/run/nosplit"),
            socket_group: None,
            freeze_hook_timeout: Duration::from_millis(500),
            watchdog: WatchdogConfig::Device {
                path: PathBuf::from("/dev/watchdog")
            },
            lockspaces: vec![],
        }
    );
    assert_eq!(c.socket_path(), Path::new("/run/nosplit/leased.sock"));
    assert_eq!(c.state_path(), Path::new("/run/nosplit/state.json"));

    let c = parse(&with_lockspaces(&[LS_OK])).unwrap();
    assert_eq!(c.lockspaces[0].offset, 0);
    assert_eq!(c.lockspaces[0].sector_size, SectorSize::B512);
}

#[test]
fn other_watchdog_backends() {
    let c = parse(&with_watchdog(
        "backend = \"lab\"\nlab_socket = \"/run/nosplit/wd.sock\"",
    ))
    .unwrap();
    assert_eq!(
        c.watchdog,
        WatchdogConfig::Lab {
            socket: PathBuf::from("/run/nosplit/wd.sock")
        }
    );
    let c = parse(&with_watchdog("backend = \"none\"\nallow_none = true")).unwrap();
    assert_eq!(c.watchdog, WatchdogConfig::None);
}

#[test]
fn socket_group_forms() {
    // Numeric gids are taken as is, as an integer or a string of digits.
    assert_eq!(
        parse(&with_top("socket_group = 0")).unwrap().socket_group,
        Some(0)
    );
    assert_eq!(
        parse(&with_top("socket_group = \"54321\""))
            .unwrap()
            .socket_group,
        Some(54321)
    );
    // "root" is group 0 wherever the test runs (Linux).
    assert_eq!(
        parse(&with_top("socket_group = \"root\""))
            .unwrap()
            .socket_group,
        Some(0)
    );
}

#[test]
fn nonexistent_group() {
    let p = rejects(
        &with_top(&format!("socket_group = \"{NO_SUCH_GROUP}\"")),
        "socket_group",
        "does not exist",
    );
    assert!(p.message.contains(NO_SUCH_GROUP), "{p}");
}

#[test]
fn same_host_id_in_different_lockspaces_is_fine() {
    let c = parse(&with_lockspaces(&[
        LS_OK,
        "name = \"ls2\"\npath = \"/shared/other\"\nhost_id = 1",
    ]))
    .unwrap();
    assert_eq!(c.lockspaces.len(), 2);
}

#[test]
fn json_has_the_file_shape() {
    let c = parse(FULL).unwrap();
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "host_name": "hostA",
            "run_dir": "/var/run/nosplit-test",
            "socket_group": 4242,
            "freeze_hook_timeout_ms": 1500,
            "watchdog": { "backend": "device", "device": "/dev/watchdog1" },
            "lockspace": [
                { "name": "ls1", "path": "/shared/ids", "offset": 0, "host_id": 1, "sector_size": 512 },
                { "name": "ls2", "path": "/shared/ids", "offset": 1048576, "host_id": 1, "sector_size": 4096 },
                { "name": "ls3", "path": "/dev/mapper/leases", "offset": 0, "host_id": 2000, "sector_size": 512 },
            ],
        })
    );
    let none = parse(&with_watchdog("backend = \"none\"\nallow_none = true")).unwrap();
    assert_eq!(
        serde_json::to_value(&none).unwrap()["watchdog"],
        serde_json::json!({ "backend": "none" })
    );
}

/// Every single invalid case: (config, field, part of the message).
#[test]
fn every_invalid_case_names_its_field() {
    let cases: Vec<(String, &str, &str)> = vec![
        // host_name
        (
            "[watchdog]\nbackend = \"device\"".into(),
            "host_name",
            "required",
        ),
        (
            "host_name = \"\"\n[watchdog]\nbackend = \"device\"".into(),
            "host_name",
            "empty",
        ),
        (
            "host_name = \"host A\"\n[watchdog]\nbackend = \"device\"".into(),
            "host_name",
            "character",
        ),
        (
            format!(
                "host_name = \"{}\"\n[watchdog]\nbackend = \"device\"",
                "h".repeat(49)
            ),
            "host_name",
            "longer than 48",
        ),
        (
            "host_name = 7\n[watchdog]\nbackend = \"device\"".into(),
            "host_name",
            "expected a string",
        ),
        // run_dir
        (
            with_top("run_dir = \"run/nosplit\""),
            "run_dir",
            "not an absolute path",
        ),
        (
            with_top("run_dir = \"\""),
            "run_dir",
            "not an absolute path",
        ),
        (with_top("run_dir = \"/run/\\u0000x\""), "run_dir", "NUL"),
        (
            with_top("run_dir = 1"),
            "run_dir",
            "expected an absolute path",
        ),
        // socket_group
        (
            with_top(&format!("socket_group = \"{NO_SUCH_GROUP}\"")),
            "socket_group",
            "does not exist",
        ),
        (with_top("socket_group = \"\""), "socket_group", "empty"),
        (
            with_top("socket_group = -1"),
            "socket_group",
            "not a valid gid",
        ),
        (
            with_top("socket_group = 4294967295"),
            "socket_group",
            "not a valid gid",
        ),
        (
            with_top("socket_group = 4294967296"),
            "socket_group",
            "not a valid gid",
        ),
        (
            with_top("socket_group = true"),
            "socket_group",
            "expected a group name or numeric gid",
        ),
        // freeze_hook_timeout_ms
        (
            with_top("freeze_hook_timeout_ms = 0"),
            "freeze_hook_timeout_ms",
            "out of range 1..=60000",
        ),
        (
            with_top("freeze_hook_timeout_ms = 60001"),
            "freeze_hook_timeout_ms",
            "out of range",
        ),
        (
            with_top("freeze_hook_timeout_ms = -5"),
            "freeze_hook_timeout_ms",
            "out of range",
        ),
        (
            with_top("freeze_hook_timeout_ms = 1.5"),
            "freeze_hook_timeout_ms",
            "expected an integer",
        ),
        (
            with_top("freeze_hook_timeout_ms = \"500\""),
            "freeze_hook_timeout_ms",
            "expected an integer",
        ),
        // watchdog
        ("host_name = \"hostA\"".into(), "watchdog", "required"),
        (
            "host_name = \"hostA\"\nwatchdog = \"device\"".into(),
            "watchdog",
            "expected a table",
        ),
        (with_watchdog(""), "watchdog.backend", "required"),
        (
            with_watchdog("backend = \"softdog\""),
            "watchdog.backend",
            "unknown backend \"softdog\"",
        ),
        (
            with_watchdog("backend = 1"),
            "watchdog.backend",
            "expected a string",
        ),
        (
            with_watchdog("backend = \"device\"\ndevice = \"watchdog\""),
            "watchdog.device",
            "not an absolute path",
        ),
        (
            with_watchdog("backend = \"device\"\ndevice = false"),
            "watchdog.device",
            "expected an absolute path",
        ),
        (
            with_watchdog("backend = \"lab\""),
            "watchdog.lab_socket",
            "required",
        ),
        (
            with_watchdog("backend = \"lab\"\nlab_socket = \"wd.sock\""),
            "watchdog.lab_socket",
            "not an absolute path",
        ),
        (
            with_watchdog("backend = \"none\""),
            "watchdog.allow_none",
            "allow_none = true",
        ),
        (
            with_watchdog("backend = \"none\"\nallow_none = false"),
            "watchdog.allow_none",
            "allow_none = true",
        ),
        (
            with_watchdog("backend = \"none\"\nallow_none = \"yes\""),
            "watchdog.allow_none",
            "expected a boolean",
        ),
        (
            with_watchdog("backend = \"device\"\nlab_socket = \"/run/wd.sock\""),
            "watchdog.lab_socket",
            "only applies to backend = \"lab\"",
        ),
        (
            with_watchdog(
                "backend = \"lab\"\nlab_socket = \"/run/wd.sock\"\ndevice = \"/dev/watchdog\"",
            ),
            "watchdog.device",
            "only applies to backend = \"device\"",
        ),
        (
            with_watchdog("backend = \"device\"\nallow_none = true"),
            "watchdog.allow_none",
            "only applies to backend = \"none\"",
        ),
        // lockspace
        (
            with_top("lockspace = 3"),
            "lockspace",
            "expected an array of tables",
        ),
        (
            "host_name = \"hostA\"\nlockspace = [1]\n[watchdog]\nbackend = \"device\"".into(),
            "lockspace[0]",
            "expected a table",
        ),
        (
            format!("{MINIMAL}\n[lockspace]\n{LS_OK}"),
            "lockspace",
            "expected an array of tables",
        ),
        (
            with_lockspaces(&["path = \"/shared/ids\"\nhost_id = 1"]),
            "lockspace[0].name",
            "required",
        ),
        (
            with_lockspaces(&["name = \"ls 1\"\npath = \"/shared/ids\"\nhost_id = 1"]),
            "lockspace[0].name",
            "character",
        ),
        (
            with_lockspaces(&["name = \"ls1\"\nhost_id = 1"]),
            "lockspace[0].path",
            "required",
        ),
        (
            with_lockspaces(&["name = \"ls1\"\npath = \"shared/ids\"\nhost_id = 1"]),
            "lockspace[0].path",
            "not an absolute path",
        ),
        (
            with_lockspaces(&["name = \"ls1\"\npath = \"/shared/ids\""]),
            "lockspace[0].host_id",
            "required",
        ),
        (
            with_lockspaces(&["name = \"ls1\"\npath = \"/shared/ids\"\nhost_id = 0"]),
            "lockspace[0].host_id",
            "out of range 1..=2000",
        ),
        (
            with_lockspaces(&["name = \"ls1\"\npath = \"/shared/ids\"\nhost_id = 2001"]),
            "lockspace[0].host_id",
            "out of range 1..=2000",
        ),
        (
            with_lockspaces(&["name = \"ls1\"\npath = \"/shared/ids\"\nhost_id = \"1\""]),
            "lockspace[0].host_id",
            "expected an integer",
        ),
        (
            with_lockspaces(&[&format!("{LS_OK}\noffset = -512")]),
            "lockspace[0].offset",
            "out of range",
        ),
        (
            with_lockspaces(&[&format!("{LS_OK}\noffset = 100")]),
            "lockspace[0].offset",
            "not a multiple of the sector size 512",
        ),
        (
            with_lockspaces(&[&format!("{LS_OK}\noffset = 512\nsector_size = 4096")]),
            "lockspace[0].offset",
            "not a multiple of the sector size 4096",
        ),
        (
            with_lockspaces(&[&format!("{LS_OK}\nsector_size = 1024")]),
            "lockspace[0].sector_size",
            "expected 512 or 4096",
        ),
        (
            with_lockspaces(&[&format!("{LS_OK}\nsector_size = \"512\"")]),
            "lockspace[0].sector_size",
            "expected 512 or 4096",
        ),
        // unknown fields, in every table
        (
            with_top("hostname = \"x\""),
            "hostname",
            "unknown field `hostname`",
        ),
        (
            with_watchdog("backend = \"device\"\ndevise = \"/dev/watchdog\""),
            "watchdog.devise",
            "unknown field `devise`",
        ),
        (
            with_lockspaces(&[&format!("{LS_OK}\nhostid = 1")]),
            "lockspace[0].hostid",
            "unknown field `hostid`",
        ),
    ];
    for (text, field, needle) in &cases {
        rejects(text, field, needle);
    }
}

#[test]
fn many_problems_are_reported_at_once() {
    let text = format!(
        r#"
host_name = "bad name"
run_dir = "relative/dir"
socket_group = "{NO_SUCH_GROUP}"
freeze_hook_timeout_ms = 0
colour = "blue"

[watchdog]
backend = "none"
device = "dev/watchdog"

[[lockspace]]
name = "ls1"
path = "/shared/ids"
host_id = 0
offset = 100

[[lockspace]]
name = "ls1"
path = "shared/ids"
host_id = 1
sector_size = 1000

[[lockspace]]
name = "ls3"
path = "/shared/ids"
host_id = 1
extra = 1
"#
    );
    let e = errors(&text);
    let expected = [
        "host_name",
        "run_dir",
        "socket_group",
        "freeze_hook_timeout_ms",
        "colour",
        "watchdog.device",
        "watchdog.allow_none",
        "lockspace[0].host_id",
        "lockspace[0].offset",
        "lockspace[1].name",
        "lockspace[1].path",
        "lockspace[1].sector_size",
        "lockspace[2].extra",
    ];
    for field in expected {
        assert!(
            e.for_field(field).next().is_some(),
            "no problem on {field}; got:\n{e}"
        );
    }
    // watchdog.device is both not absolute and not for backend "none".
    assert_eq!(e.for_field("watchdog.device").count(), 2, "{e}");
    // Display: a header, then one line per problem.
    let shown = e.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), e.problems.len() + 1, "{shown}");
    assert!(
        lines[0].contains(&format!("{} problems", e.problems.len())),
        "{shown}"
    );
    for p in &e.problems {
        assert!(lines.contains(&format!("  {p}").as_str()), "{shown}");
    }
}

#[test]
fn unknown_field_rejected_naming_it() {
    let e = errors(&with_top("wachdog_timeout = 3"));
    assert_eq!(e.problems.len(), 1, "{e}");
    assert_eq!(e.problems[0].field, "wachdog_timeout");
    assert!(e.to_string().contains("wachdog_timeout"), "{e}");
    // Every unknown field is reported, not only the first.
    let e = errors(&with_top("a = 1\nb = 2"));
    assert_eq!(
        e.for_field("a").count() + e.for_field("b").count(),
        2,
        "{e}"
    );
}

#[test]
fn none_backend_needs_allow_none() {
    let e = errors(&with_watchdog("backend = \"none\""));
    assert_eq!(e.problems.len(), 1, "{e}");
    assert!(e.problems[0].message.contains("allow_none"), "{e}");
    assert!(e.to_string().contains("allow_none = true"), "{e}");
}

#[test]
fn duplicate_names_and_areas() {
    // The same name, different areas.
    let e = errors(&with_lockspaces(&[
        LS_OK,
        "name = \"ls1\"\npath = \"/shared/other\"\nhost_id = 2",
    ]));
    assert_eq!(e.problems.len(), 1, "{e}");
    assert_eq!(e.problems[0].field, "lockspace[1].name");
    assert!(e.problems[0].message.contains("lockspace[0]"), "{e}");

    // Different names, the same (path, offset): an explicit 0 equals the
    // default, and paths compare component-wise.
    let e = errors(&with_lockspaces(&[
        LS_OK,
        "name = \"ls2\"\npath = \"/shared//ids/\"\noffset = 0\nhost_id = 2",
    ]));
    assert_eq!(e.problems.len(), 1, "{e}");
    assert_eq!(e.problems[0].field, "lockspace[1].path");
    assert!(e.problems[0].message.contains("lockspace[0]"), "{e}");

    // The same path at another offset is fine.
    parse(&with_lockspaces(&[
        LS_OK,
        "name = \"ls2\"\npath = \"/shared/ids\"\noffset = 4096\nhost_id = 2",
    ]))
    .unwrap();

    // Both, three times over: every repeat is reported against the first.
    let e = errors(&with_lockspaces(&[LS_OK, LS_OK, LS_OK]));
    let fields: Vec<&str> = e.problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "lockspace[1].name",
            "lockspace[1].path",
            "lockspace[2].name",
            "lockspace[2].path"
        ],
        "{e}"
    );

    // A duplicate is found even when the lockspace has other problems.
    let e = errors(&with_lockspaces(&[
        LS_OK,
        "name = \"ls1\"\npath = \"/shared/x\"\nhost_id = 0",
    ]));
    assert!(e.for_field("lockspace[1].name").next().is_some(), "{e}");
    assert!(e.for_field("lockspace[1].host_id").next().is_some(), "{e}");
}

#[test]
fn relative_paths() {
    let text = r#"
host_name = "hostA"
run_dir = "./run"
[watchdog]
backend = "lab"
lab_socket = "wd.sock"
[[lockspace]]
name = "ls1"
path = "../ids"
host_id = 1
"#;
    let e = errors(text);
    for field in ["run_dir", "watchdog.lab_socket", "lockspace[0].path"] {
        let p = e.for_field(field).next();
        assert!(
            p.is_some_and(|p| p.message.contains("not an absolute path")),
            "{field}: {e}"
        );
    }
    assert_eq!(e.problems.len(), 3, "{e}");
}

#[test]
fn syntax_error_has_line_and_column() {
    let e = errors("host_name = \"hostA\"\n[watchdog]\nbackend = = \"device\"\n");
    assert_eq!(e.problems.len(), 1, "{e}");
    assert_eq!(e.problems[0].field, "");
    let m = &e.problems[0].message;
    assert!(m.contains("line 3, column"), "{m}");
    assert!(!m.contains('\n'), "{m}");

    // A duplicate key is a TOML error too.
    let e = errors("host_name = \"a\"\nhost_name = \"b\"\n");
    assert!(e.problems[0].message.contains("line 2"), "{e}");
}

#[test]
fn load_reads_a_file_and_names_an_unreadable_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leased.toml");
    std::fs::write(&path, FULL).unwrap();
    assert_eq!(load(&path).unwrap(), parse(FULL).unwrap());

    let missing = dir.path().join("missing.toml");
    let e = load(&missing).unwrap_err();
    assert_eq!(e.problems.len(), 1, "{e}");
    assert!(
        e.problems[0]
            .message
            .contains(&missing.display().to_string()),
        "{e}"
    );
}
