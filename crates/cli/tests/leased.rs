//! `nosplit leased` as real processes on one machine: several daemons share
//! one lockspace file, each with its own run directory and host id. A
//! "host" is a process group (its daemon and its holders); powering it off
//! is SIGKILL to the group, which is also what the lab watchdog does.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nosplit_leased::api::{LeaseRef, Request, Response};
use nosplit_leased::client::Client;

const IO_MS: u32 = 300;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_nosplit")
}

fn run_ok(args: &[&str]) {
    let o = Command::new(bin()).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

struct Cluster {
    dir: tempfile::TempDir,
    /// Where the lockspace and lease files live (the dir, or a FUSE mount).
    files: PathBuf,
}

impl Cluster {
    fn new() -> Cluster {
        let dir = tempdir("leased");
        let files = dir.path().to_path_buf();
        Cluster::init(dir, files)
    }

    /// Lease files under `files` (e.g. a fault-injecting FUSE mount).
    fn with_files(files: PathBuf) -> Cluster {
        Cluster::init(tempdir("leased"), files)
    }

    fn init(dir: tempfile::TempDir, files: PathBuf) -> Cluster {
        let c = Cluster { dir, files };
        let (ls, res) = (c.path("ids"), c.path("vm1.lease"));
        let io = IO_MS.to_string();
        run_ok(&[
            "lease",
            "init",
            "lockspace",
            &ls,
            "--name",
            "ls1",
            "--io-timeout-ms",
            &io,
            "--max-hosts",
            "8",
            "--create",
        ]);
        run_ok(&[
            "lease",
            "init",
            "resource",
            &res,
            "--lockspace",
            "ls1",
            "--name",
            "vm1",
            "--max-hosts",
            "8",
            "--create",
        ]);
        c
    }

    fn path(&self, name: &str) -> String {
        self.files.join(name).display().to_string()
    }

    fn lease(&self) -> LeaseRef {
        LeaseRef {
            lockspace: "ls1".into(),
            resource: "vm1".into(),
            path: self.path("vm1.lease"),
            offset: 0,
        }
    }
}

fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

/// One host: a process group holding its daemon and its holders.
struct Host {
    id: u32,
    run_dir: PathBuf,
    config: PathBuf,
    daemon: Option<Child>,
    pgid: i32,
    holders: Vec<Child>,
    supervisor: Option<Child>,
}

impl Host {
    fn start(c: &Cluster, id: u32, lab_watchdog: bool) -> Host {
        let run_dir = c.dir.path().join(format!("run{id}"));
        std::fs::create_dir_all(&run_dir).unwrap();
        let wd = if lab_watchdog {
            format!(
                "backend = \"lab\"\nlab_socket = \"{}\"",
                run_dir.join("wd.sock").display()
            )
        } else {
            "backend = \"none\"\nallow_none = true".to_string()
        };
        let config = run_dir.join("leased.toml");
        std::fs::write(
            &config,
            format!(
                "host_name = \"host{id}\"\nrun_dir = \"{}\"\n[watchdog]\n{wd}\n[[lockspace]]\nname = \"ls1\"\npath = \"{}\"\nhost_id = {id}\n",
                run_dir.display(),
                c.path("ids")
            ),
        )
        .unwrap();
        // The host's process group, led by a stand-in for its init.
        let init = Command::new("sleep")
            .arg("600")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = i32::try_from(init.id()).unwrap();
        let mut h = Host {
            id,
            run_dir,
            config,
            daemon: None,
            pgid,
            holders: vec![init],
            supervisor: None,
        };
        if lab_watchdog {
            let sock = h.run_dir.join("wd.sock");
            let log = std::fs::File::create(h.run_dir.join("watchdog.log")).unwrap();
            h.supervisor = Some(
                Command::new(bin())
                    .args([
                        "watchdog-lab",
                        "--socket",
                        sock.to_str().unwrap(),
                        "--pgid",
                        &pgid.to_string(),
                        "--margin-ms",
                        "300",
                    ])
                    .process_group(0)
                    .stderr(log)
                    .spawn()
                    .unwrap(),
            );
            let end = Instant::now() + Duration::from_secs(5);
            while !sock.exists() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        h.spawn_daemon(pgid);
        h.wait_joined();
        h
    }

    fn spawn_daemon(&mut self, pgid: i32) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.run_dir.join("leased.log"))
            .unwrap();
        let child = Command::new(bin())
            .args(["leased", "--config", self.config.to_str().unwrap()])
            .process_group(pgid)
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemon = Some(child);
    }

    fn socket(&self) -> PathBuf {
        self.run_dir.join("leased.sock")
    }

    fn call(&self, req: Request) -> Response {
        Client::connect(&self.socket()).unwrap().call(&req).unwrap()
    }

    fn wait_joined(&self) {
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if let Ok(mut c) = Client::connect(&self.socket()) {
                if let Ok(Response::Status(s)) = c.call(&Request::Status) {
                    if s.lockspaces.iter().all(|l| l.state == "joined") && !s.lockspaces.is_empty()
                    {
                        return;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("host {} never joined; log:\n{}", self.id, self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.run_dir.join("leased.log")).unwrap_or_default()
    }

    /// A holder process in this host's group, registered with its daemon.
    fn holder(&mut self) -> u32 {
        let child = Command::new("sleep")
            .arg("120")
            .process_group(self.pgid)
            .spawn()
            .unwrap();
        let pid = child.id();
        self.holders.push(child);
        assert_eq!(
            self.call(Request::Register {
                pid: Some(pid),
                freeze_hook: None
            }),
            Response::Registered { pid }
        );
        pid
    }

    fn acquire(&self, pid: u32, c: &Cluster) -> Response {
        self.call(Request::Acquire {
            pid: Some(pid),
            lease: c.lease(),
            mode: nosplit_lease::paxos::LeaseMode::Exclusive,
            lver: None,
        })
    }

    /// Power off: SIGKILL to the whole group.
    fn power_off(&mut self) {
        // SAFETY: kill(2) with a negative pid signals a process group; no
        // memory is involved.
        unsafe {
            libc::kill(-self.pgid, libc::SIGKILL);
        }
        for c in self.holders.iter_mut().chain(self.daemon.as_mut()) {
            let _ = c.kill(); // children spawned outside the group, too
            let _ = c.wait();
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for c in self
            .holders
            .iter_mut()
            .chain(self.daemon.as_mut())
            .chain(self.supervisor.as_mut())
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty() && !stat.contains(") Z")
}

fn leader_owner(c: &Cluster) -> Option<u32> {
    let o = Command::new(bin())
        .args(["lease", "dump", "resource", &c.path("vm1.lease"), "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["leader"]["owner"]["host_id"]
        .as_u64()
        .map(|h| u32::try_from(h).unwrap())
}

fn timing() -> nosplit_lease::Timing {
    nosplit_lease::Timing::from_io_timeout_ms(IO_MS)
}

#[test]
fn acquire_for_a_holder_and_release_when_it_exits() {
    let c = Cluster::new();
    let mut h = Host::start(&c, 1, false);
    let pid = h.holder();
    assert!(
        matches!(h.acquire(pid, &c), Response::Acquired { lver: 1 }),
        "{}",
        h.log()
    );
    assert_eq!(leader_owner(&c), Some(1));
    let Response::Status(s) = h.call(Request::Status) else {
        panic!()
    };
    assert_eq!(s.holders.len(), 1);
    assert_eq!(s.holders[0].leases.len(), 1);
    assert!(!s.lockspaces[0].renewal_latency_ms.is_empty());
    // Acquiring again for another holder on the same host is refused.
    let pid2 = h.holder();
    assert!(matches!(h.acquire(pid2, &c), Response::Error { .. }));
    // The holder exits: its lease is released by the daemon.
    h.holders[1].kill().unwrap();
    h.holders[1].wait().unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    while leader_owner(&c).is_some() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(leader_owner(&c), None, "{}", h.log());
    assert!(matches!(
        h.acquire(pid2, &c),
        Response::Acquired { lver: 2 }
    ));
}

#[test]
fn a_dead_hosts_lease_is_taken_after_host_dead_and_not_before() {
    let c = Cluster::new();
    let mut h1 = Host::start(&c, 1, true);
    let h2 = Host::start(&c, 2, true);
    let mut h3 = Host::start(&c, 3, true);
    let pid = h1.holder();
    assert!(
        matches!(h1.acquire(pid, &c), Response::Acquired { .. }),
        "{}",
        h1.log()
    );
    // Others are refused while host 1 lives.
    let p2 = {
        let child = Command::new("sleep").arg("120").spawn().unwrap();
        let pid = child.id();
        h3.holders.push(child);
        assert!(matches!(
            h2.call(Request::Register {
                pid: Some(pid),
                freeze_hook: None
            }),
            Response::Registered { .. }
        ));
        pid
    };
    assert!(matches!(h2.acquire(p2, &c), Response::Error { ref kind, .. } if kind == "busy"));
    h1.power_off();
    let off = Instant::now();
    let taken = loop {
        match h2.acquire(p2, &c) {
            Response::Acquired { .. } => break off.elapsed(),
            Response::Error { kind, .. } if kind == "busy" => {}
            other => panic!("{other:?}\n{}", h2.log()),
        }
        assert!(off.elapsed() < Duration::from_secs(20), "never taken over");
        std::thread::sleep(Duration::from_millis(100));
    };
    let t = timing();
    // Host 1's last renewal was at most one interval before power-off.
    assert!(
        taken + t.renew_interval >= t.host_dead,
        "taken {taken:?} after power-off, host_dead {:?}",
        t.host_dead
    );
    assert!(
        taken <= t.host_dead + Duration::from_secs(3),
        "slow takeover: {taken:?}"
    );
    assert_eq!(leader_owner(&c), Some(2));
    h3.power_off();
}

#[test]
fn kill_9_of_leased_keeps_holders_and_their_leases() {
    let c = Cluster::new();
    let mut h1 = Host::start(&c, 1, true);
    let h2 = Host::start(&c, 2, false);
    let pid = h1.holder();
    assert!(matches!(h1.acquire(pid, &c), Response::Acquired { .. }));
    // kill -9 the daemon only; the holder runs on.
    let mut d = h1.daemon.take().unwrap();
    d.kill().unwrap();
    d.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    h1.spawn_daemon(h1.pgid);
    h1.wait_joined();
    // Long past host_dead: the holder still runs, its lease is still ours,
    // and host 2 cannot take it.
    std::thread::sleep(timing().host_dead + Duration::from_secs(1));
    assert!(alive(pid), "holder was killed; log:\n{}", h1.log());
    assert_eq!(leader_owner(&c), Some(1));
    let child = Command::new("sleep").arg("120").spawn().unwrap();
    let p2 = child.id();
    assert!(matches!(
        h2.call(Request::Register {
            pid: Some(p2),
            freeze_hook: None
        }),
        Response::Registered { .. }
    ));
    assert!(
        matches!(h2.acquire(p2, &c), Response::Error { ref kind, .. } if kind == "busy"),
        "{}",
        h2.log()
    );
    let Response::Leases { leases } = h1.call(Request::Inquire { pid: Some(pid) }) else {
        panic!()
    };
    assert_eq!(leases.len(), 1, "holder was not re-adopted");
    let mut child = child;
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn without_a_restart_the_lab_watchdog_stops_holders_before_host_dead() {
    let c = Cluster::new();
    let mut h1 = Host::start(&c, 1, true);
    let pid = h1.holder();
    assert!(matches!(h1.acquire(pid, &c), Response::Acquired { .. }));
    let mut d = h1.daemon.take().unwrap();
    let killed = Instant::now();
    d.kill().unwrap();
    d.wait().unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let gone = killed.elapsed();
    assert!(
        !alive(pid),
        "the watchdog never fired; watchdog log:\n{}\nleased log:\n{}",
        std::fs::read_to_string(h1.run_dir.join("watchdog.log")).unwrap_or_default(),
        h1.log()
    );
    // Before any other host could call this one dead.
    assert!(
        gone < timing().host_dead,
        "holder outlived host_dead: {gone:?}"
    );
}

/// A holder whose stop times we measure: its exit is seen by a thread
/// that waits on it.
fn watch_exit(mut child: Child) -> std::sync::mpsc::Receiver<Instant> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = child.wait();
        let _ = tx.send(Instant::now());
    });
    rx
}

#[test]
fn hung_storage_stops_holders_on_time() {
    let root = rustix::process::geteuid().is_root();
    if !root || !std::path::Path::new("/dev/fuse").exists() {
        eprintln!("skipping: needs root and /dev/fuse");
        return;
    }
    let backing = tempdir("backing");
    let mnt = tempdir("mnt");
    let fs = nosplit_faultfs::spawn(backing.path(), mnt.path(), None).unwrap();
    let c = Cluster::with_files(mnt.path().to_path_buf());
    let mut h = Host::start(&c, 1, true);
    let marker = c.dir.path().join("frozen");
    // Holder A has a freeze hook and dies at SIGTERM; holder B ignores
    // SIGTERM and needs SIGKILL.
    let a = Command::new("sleep")
        .arg("120")
        .process_group(h.pgid)
        .spawn()
        .unwrap();
    let b = Command::new("sh")
        .args(["-c", "trap '' TERM; exec sleep 120"])
        .process_group(h.pgid)
        .spawn()
        .unwrap();
    let (pa, pb) = (a.id(), b.id());
    let hook = vec![
        "/bin/sh".into(),
        "-c".into(),
        format!("echo $1 >> {}", marker.display()),
        "hook".into(),
    ];
    assert!(matches!(
        h.call(Request::Register {
            pid: Some(pa),
            freeze_hook: Some(hook)
        }),
        Response::Registered { .. }
    ));
    assert!(matches!(
        h.call(Request::Register {
            pid: Some(pb),
            freeze_hook: None
        }),
        Response::Registered { .. }
    ));
    assert!(
        matches!(h.acquire(pa, &c), Response::Acquired { .. }),
        "{}",
        h.log()
    );
    let lease2 = LeaseRef {
        resource: "vm2".into(),
        path: c.path("vm2.lease"),
        ..c.lease()
    };
    run_ok(&[
        "lease",
        "init",
        "resource",
        &lease2.path,
        "--lockspace",
        "ls1",
        "--name",
        "vm2",
        "--max-hosts",
        "8",
        "--create",
    ]);
    let r = h.call(Request::Acquire {
        pid: Some(pb),
        lease: lease2,
        mode: nosplit_lease::paxos::LeaseMode::Exclusive,
        lver: None,
    });
    assert!(matches!(r, Response::Acquired { .. }), "{r:?}");
    let (ea, eb) = (watch_exit(a), watch_exit(b));
    std::thread::sleep(Duration::from_millis(300));

    fs.handle().set(nosplit_faultfs::Mode::Hang);
    let hung = Instant::now();
    let t = timing();
    let limit = Duration::from_secs(10);
    let da = ea.recv_timeout(limit).expect("holder A was never stopped") - hung;
    let db = eb.recv_timeout(limit).expect("holder B was never stopped") - hung;
    fs.handle().recover();
    eprintln!("hung storage: holder A (hook, SIGTERM) stopped after {da:?}, holder B (SIGKILL) after {db:?}");
    // The last renewal was at most one interval (plus its I/O) before the
    // hang; SIGTERM comes at renew_fail after it, SIGKILL at sigkill_after.
    let slack = Duration::from_millis(250);
    assert!(
        da + t.renew_interval + slack >= t.renew_fail && da <= t.renew_fail + slack,
        "A stopped {da:?} after the hang"
    );
    assert!(
        db + t.renew_interval + slack >= t.sigkill_after && db <= t.kill_deadline + slack,
        "B stopped {db:?} after the hang"
    );
    // Both well before anyone could take their leases over.
    assert!(da < t.host_dead && db < t.host_dead);
    let frozen = std::fs::read_to_string(&marker).unwrap_or_default();
    assert!(
        frozen.contains(&pa.to_string()),
        "freeze hook did not run: {frozen:?}\n{}",
        h.log()
    );
    h.power_off();
    drop(fs);
}

#[test]
fn status_table_config_check_and_events() {
    let c = Cluster::new();
    let mut h = Host::start(&c, 1, false);
    // Events: a holder that exits is reported.
    let events = Client::connect(&h.socket()).unwrap().subscribe().unwrap();
    let pid = h.holder();
    assert!(matches!(h.acquire(pid, &c), Response::Acquired { .. }));
    let sock = h.socket().display().to_string();
    let o = Command::new(bin())
        .args(["lease", "status", "--socket", &sock])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("LOCKSPACE") && table.contains("joined") && table.contains("ls1/vm1"),
        "{table}"
    );
    // Busy through the client CLI: exit code 3.
    let o = Command::new(bin())
        .args([
            "lease",
            "client",
            "acquire",
            "--socket",
            &sock,
            "--pid",
            &h.holder().to_string(),
        ])
        .args([
            "--lockspace",
            "ls1",
            "--resource",
            "vm1",
            "--path",
            &c.path("vm1.lease"),
        ])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    h.holders[1].kill().unwrap();
    h.holders[1].wait().unwrap();
    let mut got = false;
    for e in events {
        if matches!(e.unwrap(), nosplit_leased::api::Event::HolderGone { pid: p } if p == pid) {
            got = true;
            break;
        }
    }
    assert!(got);
    // config check: the daemon's own file is fine; a broken one lists every problem, exit 2.
    let cfg = h.config.display().to_string();
    assert!(Command::new(bin())
        .args(["config", "check", &cfg])
        .status()
        .unwrap()
        .success());
    let bad = c.dir.path().join("bad.toml");
    std::fs::write(&bad, "host_name = \"a b\"\nrun_dir = \"rel\"\n[watchdog]\nbackend = \"none\"\n[[lockspace]]\nname = \"x\"\npath = \"/p\"\nhost_id = 0\nbogus = 1\n").unwrap();
    let o = Command::new(bin())
        .args(["config", "check", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    for field in ["host_name", "run_dir", "allow_none", "host_id", "bogus"] {
        assert!(err.contains(field), "{field} not reported:\n{err}");
    }
}

#[test]
fn only_root_and_the_configured_group_may_connect() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipping: needs root to run clients as other users");
        return;
    }
    let c = Cluster::new();
    let mut h = Host::start(&c, 1, false);
    h.power_off();
    // Restart with socket_group = 65534 (nogroup).
    let text = std::fs::read_to_string(&h.config).unwrap();
    std::fs::write(
        &h.config,
        text.replacen("[watchdog]", "socket_group = 65534\n[watchdog]", 1),
    )
    .unwrap();
    let init = Command::new("sleep")
        .arg("600")
        .process_group(0)
        .spawn()
        .unwrap();
    h.pgid = i32::try_from(init.id()).unwrap();
    h.holders = vec![init];
    h.spawn_daemon(h.pgid);
    h.wait_joined();
    // The run directory must be reachable by the client user.
    let mut dir = Some(h.run_dir.as_path());
    while let Some(d) = dir {
        let _ = std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755));
        dir = d
            .parent()
            .filter(|p| p.starts_with(env!("CARGO_TARGET_TMPDIR")));
    }
    let sock = h.socket().display().to_string();
    let status_as = |uid: u32, gid: u32| {
        use std::os::unix::process::CommandExt as _;
        Command::new(bin())
            .args(["lease", "status", "--socket", &sock])
            .uid(uid)
            .gid(gid)
            .output()
            .unwrap()
    };
    let member = status_as(65534, 65534);
    assert!(
        member.status.success(),
        "group member refused: {}",
        String::from_utf8_lossy(&member.stderr)
    );
    let outsider = status_as(65534, 1);
    assert!(!outsider.status.success(), "an outsider got in");
}

#[test]
fn lockspaces_join_and_leave_at_run_time() {
    let c = Cluster::new();
    let mut h = Host::start(&c, 1, false);
    let pid = h.holder();
    assert!(matches!(h.acquire(pid, &c), Response::Acquired { .. }));
    // Refused while a holder uses it.
    let rem = Request::RemLockspace { name: "ls1".into() };
    assert!(matches!(h.call(rem.clone()), Response::Error { ref kind, .. } if kind == "busy"));
    h.call(Request::Release {
        pid: Some(pid),
        lockspace: "ls1".into(),
        resource: "vm1".into(),
    });
    assert_eq!(h.call(rem), Response::Ok);
    let Response::Status(s) = h.call(Request::Status) else {
        panic!()
    };
    assert!(s.lockspaces.is_empty());
    // Our slot was released cleanly: rejoining needs no host-dead wait.
    let add = Request::AddLockspace {
        name: "ls1".into(),
        path: c.path("ids"),
        offset: 0,
        host_id: 1,
        sector_size: 512,
    };
    let t0 = Instant::now();
    assert!(
        matches!(h.call(add.clone()), Response::Joined { generation: 2 }),
        "{}",
        h.log()
    );
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert!(matches!(h.call(add), Response::Error { ref kind, .. } if kind == "conflict"));
    let bad = Request::AddLockspace {
        name: "nope".into(),
        path: c.path("missing"),
        offset: 0,
        host_id: 1,
        sector_size: 512,
    };
    assert!(matches!(h.call(bad), Response::Error { ref kind, .. } if kind == "io"));
    assert!(matches!(h.acquire(pid, &c), Response::Acquired { .. }));
}
