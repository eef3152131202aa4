//! The lab end to end: shipped scenarios run with `nosplit lab run` on real
//! namespaces, FUSE mounts, daemons and VMs, judged by the split-brain
//! oracle. Each fault has its control: with lease protection off the same
//! fault must make the oracle fire; with it on the oracle must stay silent.
//!
//! The tests run one at a time (nextest test group `lab`), each with its own
//! lab name and address prefix, and clean up with `nosplit lab down` even
//! when they fail.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_nosplit");

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scenarios")
        .join(format!("{name}.toml"))
}

/// Removes the lab when dropped (also when the test panics).
struct Down(&'static str);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .args(["lab", "down", "--lab", self.0])
            .output();
    }
}

/// Runs a scenario; returns (exit code, stdout, report JSON).
fn run(name: &str, lab: &'static str, prefix: &str) -> (i32, String, Value) {
    let _down = Down(lab);
    let out = tempfile::tempdir().unwrap();
    let o = Command::new(BIN)
        .args(["lab", "run"])
        .arg(scenario(name))
        .args(["--lab", lab, "--prefix", prefix, "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let report = std::fs::read_to_string(out.path().join("report.json"))
        .unwrap_or_else(|e| panic!("no report ({e}):\n{stdout}\n{stderr}"));
    let last = stdout.lines().rev().nth(1).unwrap_or_default();
    assert!(
        last.starts_with("summary: vms="),
        "the summary line ends the summary: {last:?}\n{stdout}"
    );
    (
        o.status.code().unwrap_or(-1),
        format!("{stdout}\n{stderr}"),
        serde_json::from_str(&report).unwrap(),
    )
}

fn split_brains(r: &Value) -> u64 {
    r["split_brains"].as_u64().unwrap()
}

fn vm<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["vm"] == name)
        .unwrap()
}

fn instances(r: &Value, name: &str) -> Vec<String> {
    vm(r, name)["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_string())
        .collect()
}

/// Every VM heartbeats at the end, and `moved` VMs run on another host than h1.
fn assert_recovered(r: &Value, moved: &[&str], log: &str) {
    for v in r["vms"].as_array().unwrap() {
        assert_eq!(v["running_at_end"], true, "{v}\n{log}");
    }
    for name in moved {
        let inst = instances(r, name);
        assert!(inst.len() >= 2, "{name} did not move: {inst:?}\n{log}");
        assert!(inst[0].ends_with(".h1"), "{inst:?}");
        assert!(!inst.last().unwrap().ends_with(".h1"), "{inst:?}");
        assert_eq!(vm(r, name)["failover_s"].as_array().unwrap().len(), 1);
    }
}

#[test]
fn power_off_moves_the_vms_without_split_brain() {
    let (code, log, r) = run("power-off", "tpo", "10.91");
    assert_eq!(code, 0, "{log}");
    assert_eq!(split_brains(&r), 0, "{log}");
    assert_recovered(&r, &["p1"], &log);
}

#[test]
fn storage_hang_stops_the_vms_before_takeover() {
    let (code, log, r) = run("storage-hang", "tsh", "10.92");
    assert_eq!(code, 0, "{log}");
    assert_eq!(split_brains(&r), 0, "{log}");
    assert_recovered(&r, &["p1"], &log);
}

#[test]
fn storage_hang_control_without_leases_fires_the_oracle() {
    let (code, log, r) = run("storage-hang-control", "tshc", "10.93");
    assert_eq!(code, 0, "expectation (split brain) met:\n{log}");
    assert!(split_brains(&r) >= 1, "{log}");
    let v = r["oracle"]["violations"].as_array().unwrap();
    assert!(
        v.iter()
            .any(|v| v["older_inst"].as_str().unwrap().ends_with(".h1")),
        "{log}"
    );
}

#[test]
fn a_host_cut_off_keeps_its_vms_because_the_lease_refuses() {
    let (code, log, r) = run("isolated-net", "tin", "10.94");
    assert_eq!(code, 0, "{log}");
    assert_eq!(split_brains(&r), 0, "{log}");
    // Nothing moved: every restart elsewhere was refused while h1 renewed.
    assert_eq!(instances(&r, "p1").len(), 1, "{log}");
}

#[test]
fn a_host_cut_off_without_leases_is_a_split_brain() {
    let (code, log, r) = run("isolated-net-control", "tinc", "10.95");
    assert_eq!(code, 0, "expectation (split brain) met:\n{log}");
    assert!(split_brains(&r) >= 1, "{log}");
}

#[test]
fn an_unmet_expectation_fails_the_run_with_exit_6() {
    // The control scenario with its expectation inverted: the oracle fires,
    // so the run must fail.
    let text = std::fs::read_to_string(scenario("isolated-net-control"))
        .unwrap()
        .replace("split_brain = true", "split_brain = false")
        .replace("duration_s = 20", "duration_s = 8");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("inverted.toml");
    std::fs::write(&f, text).unwrap();
    let _down = Down("tinv");
    let o = Command::new(BIN)
        .args(["lab", "run"])
        .arg(&f)
        .args(["--lab", "tinv", "--prefix", "10.96", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("expectation not met"));
}

#[test]
fn the_demo_brings_a_qemu_guest_back_on_another_host() {
    let _down = Down("tdemo");
    let out = tempfile::tempdir().unwrap();
    let o = Command::new(BIN)
        .args([
            "lab", "demo", "--lab", "tdemo", "--prefix", "10.97", "--out",
        ])
        .arg(out.path())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{log}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(split_brains(&r), 0, "{log}");
    assert_recovered(&r, &["g1"], &log);
    assert!(log.contains("oracle: silent"), "{log}");
    // The engine did it: its events and its task for g1 are on the timeline.
    assert!(log.contains("engine: warning host-recovering h1"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("engine task") && l.contains("g1 ->") && l.contains("succeeded")),
        "{log}"
    );
}

/// `lab down` after the runner was killed with SIGKILL: processes, mounts,
/// namespaces, links and cgroups all go, and a second `down` is fine.
#[test]
fn down_cleans_up_after_a_crashed_runner_and_twice() {
    let _down = Down("tcr");
    let out = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["lab", "run"])
        .arg(scenario("power-off"))
        .args(["--lab", "tcr", "--prefix", "10.98", "--out"])
        .arg(out.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let start = Instant::now();
    for line in lines {
        if line.unwrap().contains("every VM heartbeats") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "lab never came up"
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let root = Path::new("/run/nosplit-lab/tcr");
    let mnt = root.join("hosts/h1/mnt");
    assert!(mounted(&mnt), "the lab was up");
    let o = Command::new(BIN)
        .args(["lab", "down", "--lab", "tcr"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!mounted(&mnt));
    assert!(!root.exists());
    assert!(!Path::new("/run/netns/tcr-h1").exists());
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&links.stdout).contains("tcr"));
    let procs = Command::new("pgrep")
        .args(["-f", "nosplit-lab/tcr"])
        .output()
        .unwrap();
    assert!(
        procs.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&procs.stdout)
    );
    let again = Command::new(BIN)
        .args(["lab", "down", "--lab", "tcr"])
        .output()
        .unwrap();
    assert!(again.status.success());
}

fn mounted(p: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(p.to_str().unwrap()))
}

#[test]
fn bad_scenarios_are_refused_with_every_problem_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.toml");
    std::fs::write(&f, "name = 3\nduration_s = -1\n[[vm]]\nkind = 'vmware'\n").unwrap();
    let o = Command::new(BIN)
        .args(["lab", "check"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    for want in ["name:", "duration_s:", "vm[0].name:", "vm[0].kind:"] {
        assert!(err.contains(want), "{want} in {err}");
    }
    let o = Command::new(BIN)
        .args(["lab", "run", "/nonexistent/x.toml", "--lab", "tbad"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/x.toml"));
    let o = Command::new(BIN)
        .args(["lab", "run", "x.toml", "--lab", "Bad-Name!"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let o = Command::new(BIN)
        .args(["lab", "demo", "--prefix", "8.8"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "a public prefix is refused by the parser"
    );
}

/// L2: a 30 s cluster-wide storage outage (I/O errors) freezes the VMs
/// instead of killing them; after revalidation the same instances resume.
#[test]
fn a_cluster_wide_storage_outage_freezes_and_resumes_the_same_vms() {
    let (code, log, r) = run("storage-outage", "tso", "10.99");
    assert_eq!(code, 0, "{log}");
    assert_eq!(split_brains(&r), 0, "{log}");
    for v in r["vms"].as_array().unwrap() {
        assert_eq!(
            v["instances"].as_array().unwrap().len(),
            1,
            "no restart: {v}\n{log}"
        );
        assert_eq!(v["running_at_end"], true, "resumed: {v}\n{log}");
        assert!(
            v["downtime_s"].as_f64().unwrap() >= 25.0,
            "it was frozen: {v}"
        );
    }
}
