//! `nosplit leased` as real processes on one machine: several daemons share
//! one lockspace file, each with its own run directory and host id. A
//! "host" is a process group (its daemon and its holders); powering it off
//! is SIGKILL to the group, which is also what the lab watchdog does.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nosplit_leased::api::{Event, LeaseRef, Request, Response};
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
        Host::start_on(c, id, lab_watchdog, &c.files)
    }

    /// A host that sees the lease files under `files` (its own mount of
    /// the shared storage).
    fn start_on(c: &Cluster, id: u32, lab_watchdog: bool, files: &std::path::Path) -> Host {
        let ids = files.join("ids").display().to_string();
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
                ids
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
    leader_at(&c.path("vm1.lease")).0
}

/// The leader record of the lease file at `path`: owner host id, lver.
fn leader_at(path: &str) -> (Option<u32>, u64) {
    let o = Command::new(bin())
        .args(["lease", "dump", "resource", path, "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    (
        v["leader"]["owner"]["host_id"]
            .as_u64()
            .map(|h| u32::try_from(h).unwrap()),
        v["leader"]["lver"].as_u64().unwrap_or(0),
    )
}

/// The host's events, forwarded to a channel (so waits can time out).
fn events(h: &Host) -> std::sync::mpsc::Receiver<Event> {
    let ev = Client::connect(&h.socket()).unwrap().subscribe().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for e in ev {
            let Ok(e) = e else { break };
            if tx.send(e).is_err() {
                break;
            }
        }
    });
    rx
}

/// Collects events until one matches `want` (returned last) or `limit`.
fn wait_event(
    rx: &std::sync::mpsc::Receiver<Event>,
    seen: &mut Vec<Event>,
    limit: Duration,
    want: impl Fn(&Event) -> bool,
) -> Option<Event> {
    let end = Instant::now() + limit;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(e) => {
                seen.push(e.clone());
                if want(&e) {
                    return Some(e);
                }
            }
            Err(_) => return None,
        }
    }
    None
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
    // Holder A has a freeze hook that cannot confirm (exits 1) and dies at
    // SIGTERM; holder B ignores SIGTERM and needs SIGKILL.
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
        format!("echo $1 >> {}; exit 1", marker.display()),
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
    let rx = events(&h);
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
    // The hook ran at the renewal warning, before the failure, and A was
    // not taken for frozen.
    let seen: Vec<Event> = rx.try_iter().collect();
    let pos = |f: &dyn Fn(&Event) -> bool| seen.iter().position(f);
    let hook = pos(
        &|e| matches!(e, Event::HolderAction { pid, action } if *pid == pa && action.starts_with("freeze hook")),
    );
    let failed = pos(&|e| matches!(e, Event::RenewalFailed { .. }));
    let warned = pos(&|e| matches!(e, Event::RenewalWarning { .. }));
    assert!(
        warned.is_some() && hook.is_some() && warned < hook && hook < failed,
        "hook not run between warning and failure: {seen:?}"
    );
    assert!(
        !seen.iter().any(
            |e| matches!(e, Event::HolderAction { pid, action } if *pid == pa && action == "frozen")
        ),
        "{seen:?}"
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

/// A freeze hook as an agent would write it for a process VM: SIGSTOP the
/// holder and exit 0 only once every thread of it is stopped (state T),
/// which it cannot be while a synchronous write is in progress.
fn stop_hook(dir: &std::path::Path) -> Vec<String> {
    let script = dir.join("freeze.sh");
    std::fs::write(
        &script,
        r#"#!/bin/sh
pid=$1
kill -STOP "$pid" || exit 1
i=0
while [ $i -lt 200 ]; do
  ok=1
  for t in /proc/"$pid"/task/*/stat; do
    s=$(sed 's/.*) //' "$t" | cut -c1)
    [ "$s" = T ] || [ "$s" = t ] || ok=0
  done
  [ $ok = 1 ] && exit 0
  sleep 0.01
  i=$((i + 1))
done
exit 1
"#,
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    vec![script.display().to_string()]
}

fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

fn fuse_ok() -> bool {
    let ok = rustix::process::geteuid().is_root() && std::path::Path::new("/dev/fuse").exists();
    if !ok {
        eprintln!("skipping: needs root and /dev/fuse");
    }
    ok
}

/// A holder with the stop hook, holding vm1 on host `h`.
fn frozen_candidate(h: &mut Host, c: &Cluster) -> u32 {
    let child = Command::new("sleep")
        .arg("120")
        .process_group(h.pgid)
        .spawn()
        .unwrap();
    let pid = child.id();
    h.holders.push(child);
    let r = h.call(Request::Register {
        pid: Some(pid),
        freeze_hook: Some(stop_hook(c.dir.path())),
    });
    assert_eq!(r, Response::Registered { pid });
    let r = h.acquire(pid, c);
    assert!(
        matches!(r, Response::Acquired { lver: 1 }),
        "{r:?}\n{}",
        h.log()
    );
    pid
}

fn daemon_alive(h: &mut Host) -> bool {
    h.daemon
        .as_mut()
        .is_some_and(|d| d.try_wait().unwrap().is_none())
}

fn holder_state(h: &Host, pid: u32) -> Response {
    h.call(Request::Revalidate { pid: Some(pid) })
}

#[test]
fn a_frozen_holder_survives_an_outage_past_the_kill_deadline_and_is_revalidated() {
    if !fuse_ok() {
        return;
    }
    let backing = tempdir("backing");
    let mnt = tempdir("mnt");
    let fs = nosplit_faultfs::spawn(backing.path(), mnt.path(), None).unwrap();
    let c = Cluster::with_files(mnt.path().to_path_buf());
    let mut h = Host::start(&c, 1, true);
    let pid = frozen_candidate(&mut h, &c);
    let rx = events(&h);
    let mut seen = Vec::new();
    std::thread::sleep(Duration::from_millis(300));

    fs.handle().set(nosplit_faultfs::Mode::EIO);
    let t = timing();
    // Past the kill deadline (the incarnation is void) and past host_dead.
    let lost = wait_event(&rx, &mut seen, Duration::from_secs(10), |e| {
        matches!(e, Event::LeaseLost { .. })
    });
    assert!(lost.is_some(), "no loss: {seen:?}\n{}", h.log());
    std::thread::sleep(t.host_dead);
    assert!(alive(pid), "frozen holder was killed:\n{}", h.log());
    assert_eq!(proc_state(pid), Some('T'), "holder is not stopped");
    assert!(daemon_alive(&mut h), "the watchdog fired:\n{}", h.log());
    let frozen = holder_state(&h, pid);
    assert!(
        matches!(&frozen, Response::Holder { state, .. } if state == "frozen"),
        "{frozen:?}"
    );
    // Only the hook acted on it, no signal; the hook ran before the failure.
    let acted: Vec<&String> = seen
        .iter()
        .filter_map(|e| match e {
            Event::HolderAction { pid: p, action } if *p == pid => Some(action),
            _ => None,
        })
        .collect();
    assert!(
        acted.iter().all(|a| !a.contains("SIG")) && acted.iter().any(|a| *a == "frozen"),
        "{acted:?}"
    );
    let failed_at = seen
        .iter()
        .position(|e| matches!(e, Event::RenewalFailed { .. }))
        .unwrap();
    let frozen_at = seen
        .iter()
        .position(|e| matches!(e, Event::HolderAction { action, .. } if action == "frozen"))
        .unwrap();
    assert!(frozen_at < failed_at, "{seen:?}");

    // Storage comes back: the daemon rejoins and revalidates the lease.
    fs.handle().recover();
    let ok = wait_event(
        &rx,
        &mut seen,
        Duration::from_secs(20),
        |e| matches!(e, Event::Revalidated { pid: p, .. } | Event::RevalidationFailed { pid: p, .. } if *p == pid),
    );
    let Some(Event::Revalidated { leases, .. }) = ok else {
        panic!("not revalidated: {ok:?}\n{seen:?}\n{}", h.log())
    };
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].lver, 2, "a fresh ballot at the next version");
    assert_eq!(leader_at(&c.path("vm1.lease")), (Some(1), 2));
    let Response::Status(s) = h.call(Request::Status) else {
        panic!()
    };
    assert!(s.lockspaces[0].generation > 1, "not a new generation");
    let thawed = holder_state(&h, pid);
    assert!(
        matches!(&thawed, Response::Holder { state, .. } if state == "thawed"),
        "{thawed:?}"
    );
    // leased never resumes it; the agent does.
    assert_eq!(proc_state(pid), Some('T'));
    // SAFETY: kill(2) on a child pid we spawned; no memory involved.
    unsafe {
        libc::kill(i32::try_from(pid).unwrap(), libc::SIGCONT);
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(alive(pid) && proc_state(pid) != Some('T'));
    assert!(daemon_alive(&mut h));
    h.power_off();
    drop(fs);
}

#[test]
fn revalidation_fails_when_another_host_took_the_lease_meanwhile() {
    if !fuse_ok() {
        return;
    }
    // One shared storage, one mount per host: host 1's mount fails.
    let backing = tempdir("backing");
    let (m1, m2) = (tempdir("mnt1"), tempdir("mnt2"));
    let fs1 = nosplit_faultfs::spawn(backing.path(), m1.path(), None).unwrap();
    let fs2 = nosplit_faultfs::spawn(backing.path(), m2.path(), None).unwrap();
    let c = Cluster::with_files(m1.path().to_path_buf());
    let mut h1 = Host::start(&c, 1, true);
    let mut h2 = Host::start_on(&c, 2, false, m2.path());
    let pid = frozen_candidate(&mut h1, &c);
    let rx = events(&h1);
    let mut seen = Vec::new();
    let lease2 = LeaseRef {
        path: m2.path().join("vm1.lease").display().to_string(),
        ..c.lease()
    };
    let other = Command::new("sleep")
        .arg("120")
        .process_group(h2.pgid)
        .spawn()
        .unwrap();
    let p2 = other.id();
    h2.holders.push(other);
    assert!(matches!(
        h2.call(Request::Register {
            pid: Some(p2),
            freeze_hook: None
        }),
        Response::Registered { .. }
    ));
    std::thread::sleep(Duration::from_millis(300));

    fs1.handle().set(nosplit_faultfs::Mode::EIO);
    // Host 2 takes the lease once host 1 is dead to it.
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let r = h2.call(Request::Acquire {
            pid: Some(p2),
            lease: lease2.clone(),
            mode: nosplit_lease::paxos::LeaseMode::Exclusive,
            lver: None,
        });
        match r {
            Response::Acquired { lver } => {
                assert_eq!(lver, 2);
                break;
            }
            Response::Error { ref kind, .. } if kind == "busy" => {}
            other => panic!("{other:?}\n{}", h2.log()),
        }
        assert!(Instant::now() < end, "host 2 never took the lease");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Host 1's holder is frozen, not killed, and the watchdog did not fire.
    assert!(alive(pid) && proc_state(pid) == Some('T'));
    assert!(daemon_alive(&mut h1), "the watchdog fired:\n{}", h1.log());

    // Storage comes back. The moment host 1's lockspace is healthy again
    // is when a holder would be resumed without revalidation: host 2 holds
    // the lease then, so a blind resume would run two instances (control).
    fs1.handle().recover();
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if let Response::Status(s) = h1.call(Request::Status) {
            if s.lockspaces[0].state == "joined" && s.lockspaces[0].generation > 1 {
                break;
            }
        }
        assert!(Instant::now() < end, "host 1 never rejoined:\n{}", h1.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(leader_at(&lease2.path), (Some(2), 2));

    // Revalidation sees the version moved: the holder is killed.
    let got = wait_event(
        &rx,
        &mut seen,
        Duration::from_secs(10),
        |e| matches!(e, Event::Revalidated { pid: p, .. } | Event::RevalidationFailed { pid: p, .. } if *p == pid),
    );
    let Some(Event::RevalidationFailed { reason, .. }) = got else {
        panic!("expected a failure: {got:?}\n{seen:?}\n{}", h1.log())
    };
    assert!(reason.contains("version"), "{reason}");
    let end = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid), "holder survived a failed revalidation");
    let r = holder_state(&h1, pid);
    assert!(
        matches!(&r, Response::Error { kind, .. } if kind == "revalidation_failed"),
        "{r:?}"
    );
    // Host 2 keeps the lease; its holder runs on.
    assert_eq!(leader_at(&lease2.path), (Some(2), 2));
    assert!(alive(p2));
    assert!(daemon_alive(&mut h1));
    h1.power_off();
    h2.power_off();
    drop(fs1);
    drop(fs2);
}
