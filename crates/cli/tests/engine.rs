//! `nosplit engine` and its operator CLI end to end (no hosts): the store
//! keeps the inventory across an engine restart, roles are enforced, bad
//! input gets a clear error and exit code, bad config exits 2; VM disks are
//! made and shown; `events` filters, and `--follow` streams new events.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_nosplit");

fn secret(p: &Path, text: &str) {
    std::fs::write(p, text).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

struct Engine {
    child: Child,
    url: String,
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path) -> Engine {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.join("engine.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:{port}\"\nstore = \"{d}/engine.redb\"\nagent_token_dir = \"{d}\"\n[[token]]\nrole = \"admin\"\nfile = \"{d}/admin.token\"\n[[token]]\nrole = \"user\"\nfile = \"{d}/user.token\"\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let child = Command::new(BIN)
        .args(["engine", "--config"])
        .arg(&cfg)
        .spawn()
        .unwrap();
    let e = Engine {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "engine API never came up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    e
}

fn cli(e: &Engine, token: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .args(["--engine", &e.url, "--token-file"])
        .arg(token)
        .output()
        .unwrap()
}

fn ok(e: &Engine, token: &Path, args: &[&str]) -> String {
    let o = cli(e, token, args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn inventory_survives_a_restart_and_roles_are_enforced() {
    let dir = tempfile::Builder::new()
        .prefix("engine")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let d = dir.path();
    let (admin, user) = (d.join("admin.token"), d.join("user.token"));
    secret(&admin, &"a".repeat(40));
    secret(&user, &"u".repeat(40));
    secret(&d.join("agent.token"), &"g".repeat(40));
    let shared = d.join("shared");
    std::fs::create_dir(&shared).unwrap();
    let e = start(d);
    let s = shared.display().to_string();
    ok(
        &e,
        &admin,
        &["domain", "create", "dom1", "--path", &s, "--host-path", &s],
    );
    assert!(
        shared.join("ids").exists() && shared.join("xleases").exists(),
        "lockspace and index made"
    );
    let added = ok(
        &e,
        &admin,
        &[
            "host",
            "add",
            "h1",
            "--id",
            "1",
            "--agent",
            "127.0.0.1:9",
            "--plane",
            "mgmt=127.0.0.1",
        ],
    );
    let state = added.lines().nth(1).unwrap_or("").split_whitespace().nth(1);
    assert!(
        ["up", "suspect", "non-responsive", "recovering", "down"].contains(&state.unwrap_or("")),
        "host add prints the state as host list does: {added}"
    );
    ok(
        &e,
        &user,
        &[
            "vm",
            "create",
            "web1",
            "--kind",
            "process",
            "--domain",
            "dom1",
            "--ha",
            "--priority",
            "70",
        ],
    );
    assert!(shared.join("disks/web1.img").exists(), "disk made");
    ok(
        &e,
        &user,
        &[
            "vm", "create", "db1", "--kind", "qemu", "--domain", "dom1", "--disk", "boot=3",
            "--disk", "data=2",
        ],
    );
    let size = |p: &str| std::fs::metadata(shared.join(p)).unwrap().len();
    assert_eq!(size("disks/db1.img"), 3 << 20);
    assert_eq!(size("disks/db1@data.img"), 2 << 20);
    let show = ok(&e, &user, &["vm", "show", "db1"]);
    let disk_rows: Vec<Vec<&str>> = show
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| matches!(w.first(), Some(&"boot") | Some(&"data")))
        .collect();
    assert_eq!(disk_rows, [vec!["boot", "3"], vec!["data", "2"]], "{show}");
    let show: serde_json::Value =
        serde_json::from_str(&ok(&e, &user, &["vm", "show", "web1", "--json"])).unwrap();
    assert_eq!(
        show["disks"],
        serde_json::json!([{"name": "root", "size_mib": 1}])
    );
    let o = cli(
        &e,
        &user,
        &[
            "vm", "create", "db2", "--kind", "qemu", "--domain", "dom1", "--disk", "Bad=1",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!shared.join("disks/db2.img").exists());
    let list = ok(&e, &user, &["vm", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!((&v[0]["id"], &v[1]["id"]), (&"db1".into(), &"web1".into()));
    assert_eq!(v[1]["ha"], true);
    assert!(v[1]["lease_offset"].as_u64().unwrap() > 0);
    assert_eq!(v[0]["disks"].as_array().map(Vec::len), Some(2));

    // A user may not manage hosts, the strategy or HA settings.
    let o = cli(
        &e,
        &user,
        &[
            "host",
            "add",
            "h2",
            "--id",
            "2",
            "--agent",
            "127.0.0.1:9",
            "--plane",
            "mgmt=127.0.0.1",
        ],
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .to_lowercase()
            .contains("forbidden"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!cli(&e, &user, &["ha", "--global-rate", "5"])
        .status
        .success());
    // Bad input: a clear error and exit 2; nothing changed.
    let o = cli(
        &e,
        &admin,
        &[
            "vm", "create", "bad id!", "--kind", "qemu", "--domain", "dom1",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let bad = d.join("strategy.json");
    std::fs::write(
        &bad,
        r#"{"rows":[{"mgmt":true,"svc":true,"stor":true,"recover":false}]}"#,
    )
    .unwrap();
    let o = cli(&e, &admin, &["strategy", "--set", bad.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    ok(
        &e,
        &admin,
        &[
            "ha",
            "--global-rate",
            "100",
            "--per-host-limit",
            "4",
            "--grace-ms",
            "2500",
        ],
    );
    // A VM cannot start while no host is up (its agent is not there).
    assert!(!cli(&e, &user, &["vm", "start", "web1"]).status.success());

    // Restart: the store kept everything.
    drop(e);
    let e = start(d);
    let hosts = ok(&e, &admin, &["host", "list", "--json"]);
    assert!(hosts.contains("\"h1\""), "{hosts}");
    let ha = ok(&e, &admin, &["ha", "--json"]);
    assert!(ha.contains("\"global_rate\": 100"), "{ha}");
    assert!(ha.contains("\"grace_ms\": 2500"), "{ha}");
    let vms = ok(&e, &user, &["vm", "list"]);
    assert!(vms.contains("web1"), "{vms}");
    let ev = ok(&e, &admin, &["events"]);
    assert!(!ev.contains(&"a".repeat(40)), "no token in events");
}

#[test]
fn a_bad_engine_config_reports_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("engine.toml");
    std::fs::write(
        &cfg,
        "listen = \"nowhere\"\nstore = \"relative\"\ncolour = 1\n",
    )
    .unwrap();
    let o = Command::new(BIN)
        .args(["engine", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    for want in ["listen", "store", "colour", "agent_token_dir", "token"] {
        assert!(err.contains(want), "{want}: {err}");
    }
}

/// Seqs of `nosplit events --json` output, one event a line.
fn seqs(out: &str) -> Vec<u64> {
    out.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["seq"].as_u64().unwrap()
        })
        .collect()
}

#[test]
fn events_filter_by_vm_and_after_and_follow_streams_new_ones() {
    let dir = tempfile::Builder::new()
        .prefix("engine")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let d = dir.path();
    let admin = d.join("admin.token");
    secret(&admin, &"a".repeat(40));
    secret(&d.join("user.token"), &"u".repeat(40));
    let e = start(d);
    ok(
        &e,
        &admin,
        &[
            "host",
            "add",
            "h1",
            "--id",
            "1",
            "--agent",
            "127.0.0.1:9",
            "--plane",
            "mgmt=127.0.0.1",
        ],
    );
    ok(&e, &admin, &["host", "maintenance", "h1", "on"]);
    ok(&e, &admin, &["host", "maintenance", "h1", "off"]);
    let all = seqs(&ok(&e, &admin, &["events", "--json"]));
    assert!(all.len() >= 2, "{all:?}");
    let after = all[0].to_string();
    assert_eq!(
        seqs(&ok(&e, &admin, &["events", "--json", "--after", &after])),
        all[1..],
        "--after"
    );
    let none = ok(&e, &admin, &["events", "--json", "--vm", "no-such-vm"]);
    assert!(none.is_empty(), "--vm: {none}");

    // The follower prints what is there, then what comes.
    let last = *all.last().unwrap();
    let mut follower = Command::new(BIN)
        .args([
            "events",
            "--follow",
            "--json",
            "--engine",
            &e.url,
            "--token-file",
        ])
        .arg(&admin)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    // A hang guard, not a timing check: each line is waited for generously.
    let next = |what: &str| {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no line from the follower: {what}"));
        serde_json::from_str::<serde_json::Value>(&line).unwrap()
    };
    for seq in &all {
        assert_eq!(next("existing")["seq"].as_u64(), Some(*seq));
    }
    ok(&e, &admin, &["host", "maintenance", "h1", "on"]);
    let ev = next("new");
    assert!(ev["seq"].as_u64().unwrap() > last, "{ev}");
    assert_eq!(ev["host"], "h1", "{ev}");
    assert!(
        ev["detail"].as_str().unwrap().contains("maintenance on"),
        "{ev}"
    );
    follower.kill().unwrap();
    follower.wait().unwrap();
}
