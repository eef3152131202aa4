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
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("summary: vms=")
            && last.contains(" split_brain=")
            && last.contains(" max_failover_s="),
        "the summary line is the last line of stdout: {last:?}\n{stdout}"
    );
    assert!(stdout.contains("\ntotal downtime: "), "{stdout}");
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
    // Every host registered itself, and the new host's agent reported
    // g1's start (its events are copied into the engine's).
    for h in ["h1", "h2", "h3"] {
        assert!(log.contains(&format!("host-registered {h}")), "{h}: {log}");
    }
    assert!(
        log.lines()
            .any(|l| l.contains("agent-vm-started g1 on h") && !l.contains("g1 on h1")),
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
    // A real scenario file: only the lab name is wrong.
    let power_off = scenario("power-off");
    let o = Command::new(BIN)
        .args(["lab", "run"])
        .arg(&power_off)
        .args(["--lab", "Bad-Name!"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--lab") && err.contains("Bad-Name!"), "{err}");
    assert!(err.contains("must start with a-z"), "{err}");
    for cmd in ["status", "down"] {
        let o = nosplit(&["lab", cmd, "--lab", "toolong"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {err}");
        assert!(err.contains("longer than 5 characters"), "{cmd}: {err}");
    }
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

/// `nosplit ARGS...`.
fn nosplit(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// What of lab `name` exists: namespaces, links, cgroups.
fn lab_objects(name: &str) -> Vec<String> {
    nosplit_labnet::lab_objects(&nosplit_labnet::LabName::new(name).unwrap()).unwrap()
}

/// A bad io_timeout is refused before anything is made; an up that fails
/// after its network exists removes it again.
#[test]
fn a_failed_up_leaves_nothing_behind() {
    let _down = Down("tfail");
    let o = nosplit(&["lab", "up", "--lab", "tfail", "--io-timeout-ms", "0"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--io-timeout-ms"), "{err}");
    assert!(err.contains("0 ms is outside"), "{err}");
    assert!(lab_objects("tfail").is_empty());
    // The root cannot be created: that is found after the network is up.
    let o = nosplit(&[
        "lab",
        "up",
        "--lab",
        "tfail",
        "--hosts",
        "2",
        "--prefix",
        "10.81",
        "--root",
        "/dev/null/tfail",
    ]);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(!o.status.success(), "{out}");
    assert!(err.contains("/dev/null/tfail"), "{err}");
    assert!(out.contains("network: 2 hosts"), "it got that far: {out}");
    assert!(out.contains("removing what it made"), "{out}");
    assert!(out.contains(" 2 namespace(s)"), "it had made them: {out}");
    assert!(
        lab_objects("tfail").is_empty(),
        "{:?}",
        lab_objects("tfail")
    );
}

/// `lab fault` checks its arguments before it reads the lab's record: the
/// lab `tnone` does not exist, yet each bad request names its own mistake
/// (exit 2), in the command's words, not the scenario file's.
#[test]
fn bad_fault_arguments_exit_2_before_the_lab_is_looked_up() {
    let at = ["lab", "fault", "--lab", "tnone"];
    for (args, want) in [
        (&["1", "disk", "eio"][..], "unexpected argument 'disk'"),
        (&["1", "storage", "slow"][..], "\"slow\": expected ok, eio"),
        (&["1", "storage", "delay:0"][..], "delay:<ms> (1..=600000)"),
        (
            &["1", "net", "wan", "down"][..],
            "\"wan\": expected mgmt, svc",
        ),
        (
            &["1", "net", "mgmt", "cut"][..],
            "\"cut\": expected down, drop",
        ),
        (&["1", "net", "mgmt"][..], "<FAULT>"),
        (&["0", "storage", "eio"][..], "not a host number"),
    ] {
        let o = nosplit(&[&at[..], args].concat());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {want} in {err}");
        for internal in ["scenario", "step[", "is it up"] {
            assert!(!err.contains(internal), "{args:?}: {internal} in {err}");
        }
    }
    // A good request gets as far as the lab's record, which is not there.
    let o = nosplit(&[&at[..], &["1", "storage", "eio"]].concat());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("lab tnone (is it up?)"), "{err}");
}

/// `nosplit lab CMD --lab tlc ARGS...`: (success, stdout, stderr).
fn tlc(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(BIN)
        .arg("lab")
        .arg(args[0])
        .args(["--lab", "tlc"])
        .args(&args[1..])
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `lab status --json`, host by host.
fn status(lab: &str) -> Vec<Value> {
    let o = nosplit(&["lab", "status", "--json", "--lab", lab]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice::<Value>(&o.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The command lines of a host's processes, as `status` reports them.
fn processes(h: &Value) -> Vec<String> {
    h["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_str().unwrap().to_string())
        .collect()
}

/// Each plane of a host: (name, link up, drop).
fn planes(h: &Value) -> Vec<(String, bool, String)> {
    serde_json::from_value(h["planes"].clone()).unwrap()
}

/// The interactive lab through the real binary: up (and a second up
/// refused), status, exec, storage and network faults with their effects,
/// power off and on, down twice.
#[test]
fn the_interactive_lab_lifecycle() {
    let _down = Down("tlc");
    let (ok, out, err) = tlc(&["up", "--hosts", "2", "--procs", "2", "--prefix", "10.82"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("lab tlc is up: 2 hosts, 2 VMs"), "{out}");
    let (ok, _, err) = tlc(&["up", "--hosts", "2", "--prefix", "10.82"]);
    assert!(!ok && err.contains("lab tlc exists already"), "{err}");
    assert!(err.contains("--replace"), "{err}");

    // status: both hosts on, joined, every plane up, daemons and one VM each.
    let st = status("tlc");
    assert_eq!(st.len(), 2);
    for h in &st {
        assert_eq!(h["on"], true, "{h}");
        assert_eq!(h["mounted"], true, "{h}");
        assert!(h["storage"].as_str().unwrap().ends_with("mode=ok"), "{h}");
        assert!(h["lease"].as_str().unwrap().contains("lab joined"), "{h}");
        assert!(planes(h).iter().all(|(_, up, drop)| *up && drop == "none"));
        let procs = processes(h).join("\n");
        for d in ["faultfs", "watchdog-lab", "leased", "agent", "vm-proc"] {
            assert!(procs.contains(&format!("nosplit {d}")), "{d} in {procs}");
        }
    }
    let (ok, text, _) = tlc(&["status"]);
    assert!(
        ok && text.contains("planes: mgmt up, svc up, stor up"),
        "{text}"
    );

    // exec runs inside the host's namespace: its own addresses.
    let (ok, addrs, err) = tlc(&["exec", "2", "--", "ip", "-br", "addr"]);
    assert!(ok, "{err}");
    for a in ["10.82.1.12/24", "10.82.2.12/24", "10.82.3.12/24"] {
        assert!(addrs.contains(a), "{a} in {addrs}");
    }
    assert!(!addrs.contains("10.82.1.11/"), "{addrs}");
    let (ok, _, err) = tlc(&["exec", "1", "--", "false"]);
    assert!(!ok && err.contains("on h1"), "{err}");

    // Storage: EIO through h1's mount only, then recovered.
    let mnt = |n: u32| PathBuf::from(format!("/run/nosplit-lab/tlc/hosts/h{n}/mnt/ids"));
    let (ok, out, err) = tlc(&["fault", "1", "storage", "eio"]);
    assert!(ok && out.contains("mode=eio"), "{out}{err}");
    let e = std::fs::read(mnt(1)).expect_err("EIO on h1");
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    assert!(std::fs::read(mnt(2)).is_ok(), "h2 unaffected");
    let st = status("tlc");
    assert!(st[0]["storage"].as_str().unwrap().ends_with("mode=eio"));
    assert!(st[1]["storage"].as_str().unwrap().ends_with("mode=ok"));
    let (ok, _, err) = tlc(&["fault", "1", "storage", "ok"]);
    assert!(ok, "{err}");
    assert!(std::fs::read(mnt(1)).is_ok(), "h1 reads again");

    // Network: h2's management plane drops; its service plane still answers.
    let ping = |addr: &str| tlc(&["exec", "1", "--", "ping", "-c1", "-W1", addr]).0;
    assert!(ping("10.82.1.12"));
    let (ok, _, err) = tlc(&["fault", "2", "net", "mgmt", "drop"]);
    assert!(ok, "{err}");
    assert!(!ping("10.82.1.12"), "management plane dropped");
    assert!(ping("10.82.2.12"), "service plane untouched");
    let p = planes(&status("tlc")[1]);
    assert_eq!(p[0], ("mgmt".into(), true, "both".into()), "{p:?}");
    assert_eq!(p[1], ("svc".into(), true, "none".into()), "{p:?}");
    let (ok, _, err) = tlc(&["fault", "2", "net", "mgmt", "ok"]);
    assert!(ok, "{err}");
    assert!(ping("10.82.1.12"), "recovered");

    // Power off: no process, no mount, no link; faults on it are refused.
    let (ok, out, err) = tlc(&["power", "2", "off"]);
    assert!(ok && out.contains("h2: powered off"), "{out}{err}");
    let h2 = &status("tlc")[1];
    assert_eq!(h2["on"], false, "{h2}");
    assert_eq!(h2["mounted"], false, "{h2}");
    assert!(processes(h2).is_empty(), "{h2}");
    assert!(planes(h2).iter().all(|(_, up, _)| !up), "{h2}");
    let (ok, _, err) = tlc(&["fault", "2", "net", "all", "ok"]);
    assert!(!ok && err.contains("powered off"), "{err}");
    assert!(!ping("10.82.2.12"));

    // Power on: the daemons come back and rejoin (a new generation).
    let (ok, out, err) = tlc(&["power", "2", "on"]);
    assert!(ok && out.contains("powered on and joined"), "{out}{err}");
    let h2 = &status("tlc")[1];
    assert_eq!(h2["on"], true, "{h2}");
    assert!(
        h2["lease"].as_str().unwrap().contains("lab joined gen 2"),
        "{h2}"
    );
    let procs = processes(h2).join("\n");
    for d in ["faultfs", "watchdog-lab", "leased", "agent"] {
        assert!(procs.contains(&format!("nosplit {d}")), "{d} in {procs}");
    }
    assert!(ping("10.82.2.12"));
    let (ok, out, err) = tlc(&["power", "2", "on"]);
    assert!(!ok && err.contains("is on"), "{out}{err}");

    // Down, twice.
    let (ok, out, err) = tlc(&["down"]);
    assert!(ok && out.contains("files removed"), "{out}{err}");
    assert!(lab_objects("tlc").is_empty(), "{:?}", lab_objects("tlc"));
    assert!(!Path::new("/run/nosplit-lab/tlc").exists());
    assert!(!mounted(mnt(1).parent().unwrap()));
    let (ok, out, err) = tlc(&["down"]);
    assert!(ok && out.contains("already gone"), "{out}{err}");
}

/// The VMs that ran on h1 moved exactly once, to another host, and run
/// there at the end; the others never moved.
fn assert_moved_once_from_h1(r: &Value, log: &str) {
    let mut moved = 0;
    for v in r["vms"].as_array().unwrap() {
        let name = v["vm"].as_str().unwrap();
        let inst = instances(r, name);
        assert_eq!(v["running_at_end"], true, "{v}\n{log}");
        if inst[0].ends_with(".h1") {
            assert_eq!(inst.len(), 2, "{name} moved once: {inst:?}\n{log}");
            assert!(!inst[1].ends_with(".h1"), "{inst:?}");
            assert_eq!(v["failover_s"].as_array().unwrap().len(), 1, "{v}");
            moved += 1;
        } else {
            assert_eq!(inst.len(), 1, "{name} stayed: {inst:?}\n{log}");
        }
    }
    assert!(moved >= 1, "p1 starts on h1\n{log}");
}

/// Every VM ran as one instance from start to end.
fn assert_nothing_moved(r: &Value, log: &str) {
    for v in r["vms"].as_array().unwrap() {
        assert_eq!(v["instances"].as_array().unwrap().len(), 1, "{v}\n{log}");
        assert_eq!(v["running_at_end"], true, "{v}\n{log}");
    }
}

#[test]
fn eio_on_one_host_moves_its_vms_once_on_the_storage_truth() {
    let (code, log, r) = run("eio", "teio", "10.84");
    assert_eq!(code, 0, "{log}");
    assert_eq!(split_brains(&r), 0, "{log}");
    assert_moved_once_from_h1(&r, &log);
    // Judged dead by its lease on storage, not by the network.
    assert!(
        log.contains("h1: judged Dead (storage Some(Dead), management plane answers)"),
        "{log}"
    );
}

#[test]
fn a_management_plane_cut_moves_nothing() {
    let (code, log, r) = run("mgmt-cut", "tmgc", "10.85");
    assert_eq!(code, 0, "{log}");
    assert_eq!(split_brains(&r), 0, "{log}");
    // The naive detector presumed h1 lost; the lease refused every restart.
    assert!(
        log.contains("h1: judged Dead (storage Some(Live), management plane silent)"),
        "{log}"
    );
    assert_nothing_moved(&r, &log);
}

#[test]
fn an_isolated_host_is_reset_and_its_vms_move_once() {
    let (code, log, r) = run("isolated", "tiso", "10.86");
    assert_eq!(code, 0, "{log}");
    assert_eq!(split_brains(&r), 0, "{log}");
    assert_moved_once_from_h1(&r, &log);
    assert!(log.contains("h1: reset by its watchdog"), "{log}");
    // The heal that follows leaves the powered-off host without links.
    assert!(
        log.contains("h1: heal: powered off, its links stay down"),
        "{log}"
    );
    assert!(!log.contains("h1: net All Ok"), "{log}");
}

#[test]
fn a_leased_restart_keeps_every_vm_running() {
    let (code, log, r) = run("leased-restart", "tlr", "10.87");
    assert_eq!(code, 0, "{log}");
    assert_eq!(split_brains(&r), 0, "{log}");
    assert!(log.contains("h1: leased killed"), "{log}");
    assert!(log.contains("h1: leased started"), "{log}");
    assert!(!log.contains("h1: judged Dead"), "{log}");
    assert_nothing_moved(&r, &log);
}
