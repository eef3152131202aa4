//! The agent's core against a real `leased` and real VMs (process VMs, and
//! QEMU guests): start bound to the lease, refusal when the lease is held,
//! crash detection, and agent restarts that disturb no VM: with a VM the
//! operator paused, with `leased` unreachable, with a guest's QMP socket
//! gone.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nosplit_agent::core::{Agent, CoreConfig};
use nosplit_agent::model::{AgentError, AgentOps, LeaseSpec, StartVm, VmKind, VmStatus};

const BIN: &str = env!("CARGO_BIN_EXE_nosplit");

fn run_ok(args: &[&str]) {
    let o = Command::new(BIN).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A leased with one joined lockspace and a lease file with slots for VMs.
struct Host {
    dir: tempfile::TempDir,
    leased: Child,
}

impl Host {
    fn start() -> Host {
        let dir = tempfile::Builder::new()
            .prefix("agent")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let p = |n: &str| dir.path().join(n).display().to_string();
        run_ok(&[
            "lease",
            "init",
            "lockspace",
            &p("ids"),
            "--name",
            "ls1",
            "--io-timeout-ms",
            "1000",
            "--max-hosts",
            "8",
            "--create",
        ]);
        for vm in ["a", "b", "g"] {
            run_ok(&[
                "lease",
                "init",
                "resource",
                &p(&format!("{vm}.lease")),
                "--lockspace",
                "ls1",
                "--name",
                vm,
                "--max-hosts",
                "8",
                "--create",
            ]);
            std::fs::write(p(&format!("{vm}.img")), vec![0u8; 1 << 20]).unwrap();
        }
        let run = dir.path().join("leased");
        std::fs::create_dir_all(&run).unwrap();
        let cfg = dir.path().join("leased.toml");
        std::fs::write(
            &cfg,
            format!(
                "host_name = \"h1\"\nrun_dir = \"{}\"\n[watchdog]\nbackend = \"none\"\nallow_none = true\n[[lockspace]]\nname = \"ls1\"\npath = \"{}\"\nhost_id = 1\n",
                run.display(),
                p("ids")
            ),
        )
        .unwrap();
        let leased = Command::new(BIN)
            .args(["leased", "--config"])
            .arg(&cfg)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let h = Host { dir, leased };
        let start = Instant::now();
        loop {
            let o = Command::new(BIN)
                .args(["lease", "status", "--socket"])
                .arg(h.socket())
                .args(["--json"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&o.stdout).contains("\"joined\"") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "leased did not join"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        h
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("leased/leased.sock")
    }

    fn path(&self, n: &str) -> String {
        self.dir.path().join(n).display().to_string()
    }

    fn agent(&self, run: &str) -> Arc<Agent> {
        self.agent_via(run, &self.socket())
    }

    /// An agent reaching leased at `socket` (e.g. a link to the real one).
    fn agent_via(&self, run: &str, socket: &Path) -> Arc<Agent> {
        Agent::start(CoreConfig {
            host_name: "h1".into(),
            host_id: 1,
            leased_socket: socket.to_path_buf(),
            run_dir: self.dir.path().join(run),
            bin: PathBuf::from(BIN),
            guest_cache: PathBuf::from("/var/cache/nosplit/guest"),
            allow_unleased: false,
            planes: Vec::new(),
        })
        .unwrap()
    }

    fn req(&self, vm: &str, kind: VmKind) -> StartVm {
        StartVm {
            id: vm.into(),
            kind,
            disk: self.path(&format!("{vm}.img")),
            extra_disks: vec![],
            memory_mib: 128,
            vcpus: 1,
            lease: Some(LeaseSpec {
                lockspace: "ls1".into(),
                path: self.path(&format!("{vm}.lease")),
                offset: 0,
            }),
            inst: None,
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.leased.kill();
        let _ = self.leased.wait();
    }
}

/// Highest heartbeat sequence on a VM disk (0: none).
fn max_seq(disk: &str) -> u64 {
    let mut f = std::fs::File::open(disk).unwrap();
    nosplit_heartbeat::disk::read_ring(&mut f, Path::new(disk))
        .unwrap()
        .iter()
        .filter_map(|s| match s {
            nosplit_heartbeat::record::Slot::Record(r) => Some(r.seq),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn holds(h: &Host, pid: u32, vm: &str) -> bool {
    let mut c = nosplit_leased::client::Client::connect(&h.socket()).unwrap();
    match c
        .call(&nosplit_leased::api::Request::Inquire { pid: Some(pid) })
        .unwrap()
    {
        nosplit_leased::api::Response::Leases { leases } => {
            leases.iter().any(|l| l.lease.resource == vm)
        }
        _ => false,
    }
}

#[test]
fn a_vm_runs_only_with_its_lease_and_survives_an_agent_restart() {
    let h = Host::start();
    let agent = h.agent("agent");
    let info = agent.start_vm(h.req("a", VmKind::Process)).unwrap();
    assert_eq!(info.status, VmStatus::Running);
    assert!(info.lver.is_some());
    assert!(
        holds(&h, info.pid, "a"),
        "leased holds the lease for the VM's pid"
    );
    let disk = h.path("a.img");
    wait_for("heartbeats", Duration::from_secs(5), || max_seq(&disk) >= 3);

    // Same id again: refused while it runs.
    let e = agent.start_vm(h.req("a", VmKind::Process)).unwrap_err();
    assert!(matches!(e, AgentError::Conflict(_)), "{e}");
    // A second agent (another run dir) cannot start it either: the lease is held.
    let other = h.agent("other");
    let e = other.start_vm(h.req("a", VmKind::Process)).unwrap_err();
    assert!(matches!(e, AgentError::Conflict(_)), "{e}");
    other.shutdown();
    assert!(max_seq(&disk) > 0);

    // Pause and resume.
    agent.pause_vm("a").unwrap();
    let s1 = max_seq(&disk);
    std::thread::sleep(Duration::from_millis(600));
    assert!(max_seq(&disk) <= s1 + 1, "paused: no new heartbeats");
    agent.resume_vm("a").unwrap();
    wait_for("heartbeats after resume", Duration::from_secs(3), || {
        max_seq(&disk) > s1 + 2
    });

    // Restart the agent: the VM keeps running and is adopted.
    agent.shutdown();
    drop(agent);
    let before = max_seq(&disk);
    let agent = h.agent("agent");
    let vm = agent.get_vm("a").unwrap();
    assert_eq!(vm.status, VmStatus::Running, "{vm:?}");
    assert_eq!(vm.pid, info.pid, "same process");
    wait_for("heartbeats go on", Duration::from_secs(3), || {
        max_seq(&disk) > before + 2
    });
    assert!(holds(&h, info.pid, "a"));

    // A crash is seen and reported; leased releases the dead holder's lease.
    let ev0 = agent
        .events_since(0, Duration::ZERO)
        .last()
        .map_or(0, |e| e.seq);
    Command::new("kill")
        .args(["-9", &info.pid.to_string()])
        .status()
        .unwrap();
    wait_for("crash seen", Duration::from_secs(5), || {
        agent.get_vm("a").unwrap().status == VmStatus::Crashed
    });
    assert!(agent
        .events_since(ev0, Duration::ZERO)
        .iter()
        .any(|e| e.kind == "vm-crashed"));
    // Then it can start again (the lease was released).
    wait_for("restart after crash", Duration::from_secs(5), || {
        agent.start_vm(h.req("a", VmKind::Process)).is_ok()
    });
    agent.kill_vm("a").unwrap();
    agent.shutdown();
}

#[test]
fn an_adopted_vm_without_its_lease_is_killed() {
    let h = Host::start();
    let agent = h.agent("agent");
    let info = agent.start_vm(h.req("b", VmKind::Process)).unwrap();
    agent.shutdown();
    drop(agent);
    // Behind the agent's back, the lease goes away.
    let mut c = nosplit_leased::client::Client::connect(&h.socket()).unwrap();
    let r = c
        .call(&nosplit_leased::api::Request::Release {
            pid: Some(info.pid),
            lockspace: "ls1".into(),
            resource: "b".into(),
        })
        .unwrap();
    assert!(matches!(r, nosplit_leased::api::Response::Ok), "{r:?}");
    let agent = h.agent("agent");
    let vm = agent.get_vm("b").unwrap();
    assert_eq!(vm.status, VmStatus::Crashed, "{vm:?}");
    wait_for("process gone", Duration::from_secs(5), || {
        !Path::new(&format!("/proc/{}", info.pid)).exists()
            || std::fs::read_to_string(format!("/proc/{}/stat", info.pid))
                .map(|s| s.contains(") Z"))
                .unwrap_or(true)
    });
    agent.shutdown();
}

#[test]
fn unleased_vms_are_refused_and_bad_ids_rejected() {
    let h = Host::start();
    let agent = h.agent("agent");
    let mut r = h.req("a", VmKind::Process);
    r.lease = None;
    let e = agent.start_vm(r).unwrap_err();
    assert!(matches!(e, AgentError::Invalid(_)), "{e}");
    let mut r = h.req("a", VmKind::Process);
    r.id = "../etc".into();
    assert!(matches!(
        agent.start_vm(r).unwrap_err(),
        AgentError::Invalid(_)
    ));
    assert!(matches!(
        agent.get_vm("nope").unwrap_err(),
        AgentError::NotFound(_)
    ));
    agent.shutdown();
}

#[test]
fn a_qemu_guest_under_the_agent_runs_pauses_resumes_and_stops() {
    let h = Host::start();
    let agent = h.agent("agent");
    let info = agent.start_vm(h.req("g", VmKind::Qemu)).unwrap();
    assert!(holds(&h, info.pid, "g"));
    let disk = h.path("g.img");
    wait_for("guest heartbeats", Duration::from_secs(60), || {
        max_seq(&disk) >= 2
    });
    agent.pause_vm("g").unwrap();
    let s = max_seq(&disk);
    std::thread::sleep(Duration::from_millis(800));
    assert!(max_seq(&disk) <= s + 1);
    agent.resume_vm("g").unwrap();
    wait_for(
        "guest heartbeats after resume",
        Duration::from_secs(10),
        || max_seq(&disk) > s + 2,
    );
    // The freeze hook pauses through the second QMP socket and confirms.
    let sock = h
        .dir
        .path()
        .join("agent/vms/g")
        .join(&info.inst)
        .join("freeze.sock");
    let o = Command::new(BIN)
        .args(["vm-freeze", "--qmp"])
        .arg(&sock)
        .args(["--pid", &info.pid.to_string()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = max_seq(&disk);
    std::thread::sleep(Duration::from_millis(800));
    assert!(max_seq(&disk) <= s + 1, "frozen: no new heartbeats");
    nosplit_agent::freeze::thaw_qemu(&sock, Duration::from_secs(2)).unwrap();
    wait_for("thawed", Duration::from_secs(10), || max_seq(&disk) > s + 2);
    let stopped = agent.stop_vm("g", Duration::from_secs(10)).unwrap();
    assert_eq!(stopped.status, VmStatus::Stopped);
    agent.shutdown();
}

fn has_event(agent: &Agent, kind: &str, vm: &str) -> bool {
    agent
        .events_since(0, Duration::ZERO)
        .iter()
        .any(|e| e.kind == kind && e.vm.as_deref() == Some(vm))
}

/// The scheduler state of a process.
fn proc_state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit_once(')')
        .unwrap()
        .1
        .trim_start()
        .chars()
        .next()
        .unwrap()
}

#[test]
fn an_operator_paused_vm_is_paused_and_resumable_after_an_agent_restart() {
    let h = Host::start();
    let agent = h.agent("agent");
    let info = agent.start_vm(h.req("a", VmKind::Process)).unwrap();
    let disk = h.path("a.img");
    wait_for("heartbeats", Duration::from_secs(5), || max_seq(&disk) >= 2);
    agent.pause_vm("a").unwrap();
    wait_for("stopped", Duration::from_secs(5), || {
        proc_state(info.pid) == 'T'
    });
    agent.shutdown();
    drop(agent);

    let agent = h.agent("agent");
    let vm = agent.get_vm("a").unwrap();
    assert_eq!(vm.status, VmStatus::Paused, "not frozen: {vm:?}");
    assert_eq!(vm.pid, info.pid);
    assert_eq!(proc_state(info.pid), 'T', "still paused");
    let vm = agent.resume_vm("a").unwrap();
    assert_eq!(vm.status, VmStatus::Running);
    let s = max_seq(&disk);
    wait_for("heartbeats after resume", Duration::from_secs(5), || {
        max_seq(&disk) > s + 2
    });
    agent.kill_vm("a").unwrap();
    agent.shutdown();
}

#[test]
fn an_agent_restarted_while_leased_is_unreachable_keeps_its_vm_and_checks_later() {
    let h = Host::start();
    let link = h.dir.path().join("leased.link");
    std::os::unix::fs::symlink(h.socket(), &link).unwrap();
    let agent = h.agent_via("agent", &link);
    let info = agent.start_vm(h.req("b", VmKind::Process)).unwrap();
    let disk = h.path("b.img");
    wait_for("heartbeats", Duration::from_secs(5), || max_seq(&disk) >= 2);
    agent.shutdown();
    drop(agent);

    // leased cannot be reached by the new agent.
    std::fs::remove_file(&link).unwrap();
    let agent = h.agent_via("agent", &link);
    let vm = agent.get_vm("b").unwrap();
    assert_eq!(vm.status, VmStatus::Running, "kept as it is: {vm:?}");
    assert_eq!(vm.pid, info.pid);
    assert!(has_event(&agent, "vm-lease-unconfirmed", "b"));
    assert!(!has_event(&agent, "vm-killed", "b"));
    let s = max_seq(&disk);
    wait_for("heartbeats go on", Duration::from_secs(5), || {
        max_seq(&disk) > s + 2
    });
    let recorded = std::fs::read_to_string(h.dir.path().join("agent/agent.json")).unwrap();
    assert!(recorded.contains(&info.inst), "still recorded: {recorded}");

    // leased is back: the lease is confirmed, nothing is killed.
    std::os::unix::fs::symlink(h.socket(), &link).unwrap();
    wait_for("lease confirmed", Duration::from_secs(15), || {
        has_event(&agent, "vm-lease-confirmed", "b")
    });
    assert_eq!(agent.get_vm("b").unwrap().status, VmStatus::Running);
    assert!(holds(&h, info.pid, "b"));

    // Behind the agent's back, the lease goes: the next check kills it.
    let mut c = nosplit_leased::client::Client::connect(&h.socket()).unwrap();
    let r = c
        .call(&nosplit_leased::api::Request::Release {
            pid: Some(info.pid),
            lockspace: "ls1".into(),
            resource: "b".into(),
        })
        .unwrap();
    assert!(matches!(r, nosplit_leased::api::Response::Ok), "{r:?}");
    wait_for("killed without its lease", Duration::from_secs(15), || {
        agent.get_vm("b").unwrap().status == VmStatus::Crashed
    });
    assert!(has_event(&agent, "vm-killed", "b"));
    agent.shutdown();
}

#[test]
fn a_qemu_guest_whose_qmp_cannot_be_reached_after_a_restart_is_kept_and_reached_later() {
    let h = Host::start();
    let agent = h.agent("agent");
    let info = agent.start_vm(h.req("g", VmKind::Qemu)).unwrap();
    let disk = h.path("g.img");
    wait_for("guest heartbeats", Duration::from_secs(60), || {
        max_seq(&disk) >= 2
    });
    agent.shutdown();
    drop(agent);

    let run = h.dir.path().join("agent/vms/g").join(&info.inst);
    std::fs::rename(run.join("qmp.sock"), run.join("qmp.away")).unwrap();
    let agent = h.agent("agent");
    let vm = agent.get_vm("g").unwrap();
    assert_eq!(vm.status, VmStatus::Unknown, "{vm:?}");
    assert_eq!(vm.pid, info.pid, "kept");
    assert!(has_event(&agent, "vm-unreachable", "g"));
    let recorded = std::fs::read_to_string(h.dir.path().join("agent/agent.json")).unwrap();
    assert!(recorded.contains(&info.inst), "still recorded: {recorded}");
    let s = max_seq(&disk);
    wait_for("the guest runs on", Duration::from_secs(10), || {
        max_seq(&disk) > s + 1
    });

    std::fs::rename(run.join("qmp.away"), run.join("qmp.sock")).unwrap();
    wait_for("reached again", Duration::from_secs(15), || {
        agent.get_vm("g").unwrap().status == VmStatus::Running
    });
    assert!(has_event(&agent, "vm-reachable", "g"));
    let stopped = agent.stop_vm("g", Duration::from_secs(10)).unwrap();
    assert_eq!(stopped.status, VmStatus::Stopped);
    agent.shutdown();
}
