//! Watchdog backends: the lab supervisor against real process groups, the
//! device backend's error paths, and the no-watchdog backend.

use std::os::unix::net::UnixDatagram;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nosplit_clock::{Clock, MonoTime, RealClock};
use nosplit_leased::config::WatchdogConfig;
use nosplit_leased::watchdog::{
    self, run_lab_supervisor, DeviceWatchdog, FireReport, KillTarget, LabMessage, LabWatchdog,
    NoWatchdog, Watchdog, WatchdogError,
};

const MARGIN: Duration = Duration::from_millis(100);

/// A `sleep 30` in its own process group, killed when dropped.
struct Group {
    child: Child,
}

impl Group {
    fn spawn() -> Group {
        let child = Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("spawn sleep");
        Group { child }
    }
    fn target(&self) -> KillTarget {
        KillTarget::ProcessGroup(self.child.id())
    }
    fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
    /// Waits up to `limit` for the child to die; returns when it died.
    fn wait_dead(&mut self, limit: Duration) -> Option<Instant> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status:?}");
                return Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Lab {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    thread: Option<JoinHandle<Result<FireReport, WatchdogError>>>,
}

impl Lab {
    fn start(target: KillTarget) -> Lab {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("wd.sock");
        let s = socket.clone();
        let thread = std::thread::spawn(move || run_lab_supervisor(&s, target, MARGIN));
        wait_for_socket(&socket);
        Lab {
            _dir: dir,
            socket,
            thread: Some(thread),
        }
    }
    fn client(&self) -> LabWatchdog {
        LabWatchdog::connect(&self.socket, MARGIN).expect("connect")
    }
    fn send_raw(&self, msg: &LabMessage) {
        let s = UnixDatagram::unbound().expect("socket");
        s.send_to(msg.encode().as_bytes(), &self.socket)
            .expect("send");
    }
    fn report(&mut self) -> FireReport {
        let t = self.thread.take().expect("not joined yet");
        let end = Instant::now() + Duration::from_secs(2);
        while !t.is_finished() {
            assert!(Instant::now() < end, "supervisor did not return");
            std::thread::sleep(Duration::from_millis(5));
        }
        t.join()
            .expect("supervisor thread")
            .expect("supervisor result")
    }
}

fn wait_for_socket(p: &Path) {
    let end = Instant::now() + Duration::from_secs(2);
    while !p.exists() {
        assert!(
            Instant::now() < end,
            "supervisor never bound {}",
            p.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn now() -> MonoTime {
    RealClock.now()
}

fn sleep_until(t: Instant) {
    std::thread::sleep(t.saturating_duration_since(Instant::now()));
}

#[test]
fn not_rearmed_kills_the_group_after_expiry_plus_margin() {
    let mut g = Group::spawn();
    let mut lab = Lab::start(g.target());
    let mut wd = lab.client();
    // `start` is taken first, so the kill may not come before start + 300 ms.
    let start = Instant::now();
    let expiry = now() + Duration::from_millis(200);
    wd.arm(expiry).expect("arm");
    for check in [150, 270] {
        sleep_until(start + Duration::from_millis(check));
        let dead = !g.alive();
        // Judged by when the check returned, so a slow test thread cannot
        // make a correct supervisor look early.
        let t = start.elapsed();
        assert!(
            !dead || t >= Duration::from_millis(300),
            "killed {t:?} after an arm with expiry +200 ms, margin 100 ms"
        );
    }
    let died = g
        .wait_dead(Duration::from_millis(700))
        .expect("not killed after expiry + margin");
    let after = died - start;
    assert!(
        after < Duration::from_millis(450),
        "killed only after {after:?}"
    );
    let r = lab.report();
    assert!(r.reason.starts_with("not re-armed: expiry"), "{}", r.reason);
    assert!(r.reason.contains("passed by 1"), "{}", r.reason); // 100..=199 ms
    assert!(r.delivered);
    assert_eq!(r.target, g.target());
    assert!(r.at > expiry + MARGIN);
}

#[test]
fn rearming_keeps_the_group_alive() {
    let mut g = Group::spawn();
    let mut lab = Lab::start(g.target());
    let mut wd = lab.client();
    let start = Instant::now();
    wd.arm(now() + Duration::from_millis(200)).expect("arm");
    while start.elapsed() < Duration::from_millis(600) {
        std::thread::sleep(Duration::from_millis(50));
        wd.arm(now() + Duration::from_millis(200)).expect("re-arm");
    }
    assert!(g.alive(), "killed although re-armed");
    // Stop re-arming: it goes within expiry + margin of the last arm.
    let last = Instant::now();
    let died = g.wait_dead(Duration::from_millis(800)).expect("not killed");
    assert!(
        died - last >= Duration::from_millis(250),
        "{:?}",
        died - last
    );
    assert!(
        died - last < Duration::from_millis(500),
        "{:?}",
        died - last
    );
    assert!(lab.report().reason.starts_with("not re-armed"));
}

#[test]
fn disarm_prevents_firing() {
    let mut g = Group::spawn();
    let mut lab = Lab::start(g.target());
    let mut wd = lab.client();
    let start = Instant::now();
    wd.arm(now() + Duration::from_millis(100)).expect("arm");
    wd.disarm().expect("disarm");
    sleep_until(start + Duration::from_millis(500));
    assert!(g.alive(), "killed although disarmed");
    // Arming again works after a disarm (and an already-passed expiry
    // kills within the margin).
    wd.arm(now()).expect("arm");
    assert!(g.wait_dead(Duration::from_millis(500)).is_some());
    assert!(lab.report().reason.starts_with("not re-armed"));
}

#[test]
fn fire_kills_at_once() {
    let mut g = Group::spawn();
    let mut lab = Lab::start(g.target());
    let mut wd = lab.client();
    wd.arm(now() + Duration::from_secs(10)).expect("arm");
    let start = Instant::now();
    wd.fire("holder pid 42 stuck in D state").expect("fire");
    let died = g.wait_dead(Duration::from_millis(500)).expect("not killed");
    assert!(
        died - start < Duration::from_millis(200),
        "{:?}",
        died - start
    );
    let r = lab.report();
    assert_eq!(r.reason, "fired: holder pid 42 stuck in D state");
    assert!(r.delivered);
}

#[test]
fn fire_while_disarmed_and_with_a_stale_sequence_still_kills() {
    let mut g = Group::spawn();
    let mut lab = Lab::start(g.target());
    lab.client().disarm().expect("disarm");
    lab.send_raw(&LabMessage::Fire {
        seq: 1,
        reason: "test".into(),
    });
    assert!(g.wait_dead(Duration::from_millis(500)).is_some());
    assert_eq!(lab.report().reason, "fired: test");
}

#[test]
fn stale_arm_after_disarm_is_ignored() {
    let mut g = Group::spawn();
    let mut lab = Lab::start(g.target());
    let mut wd = lab.client();
    let start = Instant::now();
    wd.arm(now() + Duration::from_millis(100)).expect("arm");
    wd.disarm().expect("disarm");
    // An arm sent before the disarm (lower sequence) arrives late.
    lab.send_raw(&LabMessage::Arm {
        seq: 1,
        expiry: now(),
    });
    sleep_until(start + Duration::from_millis(450));
    assert!(g.alive(), "a stale arm re-armed the supervisor");
    // A newer one is obeyed.
    lab.send_raw(&LabMessage::Arm {
        seq: u64::MAX,
        expiry: now(),
    });
    assert!(g.wait_dead(Duration::from_millis(500)).is_some());
    assert!(lab.report().reason.starts_with("not re-armed"));
}

#[test]
fn target_already_gone_is_reported_not_an_error() {
    let mut g = Group::spawn();
    let target = g.target();
    let _ = g.child.kill();
    let _ = g.child.wait();
    let mut lab = Lab::start(target);
    lab.client().fire("x").expect("fire");
    let r = lab.report();
    assert!(!r.delivered);
}

#[test]
fn supervisor_replaces_a_stale_socket_but_not_other_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("wd.sock");
    drop(UnixDatagram::bind(&sock).expect("bind"));
    assert!(sock.exists());
    let mut g = Group::spawn();
    let target = g.target();
    let s = sock.clone();
    let t = std::thread::spawn(move || run_lab_supervisor(&s, target, MARGIN));
    // Wait for the new socket to accept datagrams, then stop it.
    let end = Instant::now() + Duration::from_secs(2);
    let mut wd = loop {
        match LabWatchdog::connect(&sock, MARGIN) {
            Ok(wd) => break wd,
            Err(e) => assert!(Instant::now() < end, "{e}"),
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    wd.fire("done").expect("fire");
    assert!(g.wait_dead(Duration::from_millis(500)).is_some());
    assert!(t.join().expect("thread").is_ok());

    let file = dir.path().join("plain");
    std::fs::write(&file, b"keep me").expect("write");
    let e = run_lab_supervisor(&file, KillTarget::ProcessGroup(999_999), MARGIN)
        .expect_err("not a socket");
    assert!(e.to_string().contains("not a socket"), "{e}");
    assert!(e.to_string().contains(&file.display().to_string()), "{e}");
    assert_eq!(std::fs::read(&file).expect("read"), b"keep me");
}

#[test]
fn supervisor_refuses_process_groups_0_and_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    for pgid in [0, 1] {
        let e = run_lab_supervisor(
            &dir.path().join("wd.sock"),
            KillTarget::ProcessGroup(pgid),
            MARGIN,
        )
        .expect_err("refused");
        assert!(e.to_string().contains("refusing"), "{e}");
    }
}

#[test]
fn lab_client_errors_name_the_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nobody-listens.sock");
    let e = LabWatchdog::connect(&missing, MARGIN).expect_err("no supervisor");
    assert!(
        e.to_string().contains(&missing.display().to_string()),
        "{e}"
    );

    // A supervisor that goes away after the connect: sends fail, naming it.
    let sock = dir.path().join("gone.sock");
    let server = UnixDatagram::bind(&sock).expect("bind");
    let mut wd = LabWatchdog::connect(&sock, MARGIN).expect("connect");
    assert_eq!(wd.margin(), MARGIN);
    assert!(wd.describe().contains("gone.sock"));
    wd.arm(now()).expect("arm");
    let mut buf = [0u8; 128];
    let n = server.recv(&mut buf).expect("recv");
    let msg = LabMessage::parse(std::str::from_utf8(&buf[..n]).expect("utf8")).expect("parse");
    assert!(matches!(msg, LabMessage::Arm { .. }));
    drop(server);
    std::fs::remove_file(&sock).expect("rm");
    let e = wd.disarm().expect_err("nobody listens");
    assert!(e.to_string().contains(&sock.display().to_string()), "{e}");
}

#[test]
fn lab_client_sequence_numbers_increase() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("seq.sock");
    let server = UnixDatagram::bind(&sock).expect("bind");
    let mut a = LabWatchdog::connect(&sock, MARGIN).expect("connect");
    let mut b = LabWatchdog::connect(&sock, MARGIN).expect("connect");
    a.arm(now()).expect("arm");
    a.disarm().expect("disarm");
    b.arm(now()).expect("arm"); // a second daemon process, later
    let mut seqs = Vec::new();
    let mut buf = [0u8; 128];
    for _ in 0..3 {
        let n = server.recv(&mut buf).expect("recv");
        let msg = LabMessage::parse(std::str::from_utf8(&buf[..n]).expect("utf8")).expect("parse");
        seqs.push(match msg {
            LabMessage::Arm { seq, .. }
            | LabMessage::Disarm { seq }
            | LabMessage::Fire { seq, .. } => seq,
        });
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

#[test]
fn device_missing_path_names_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("watchdog-missing");
    let e = DeviceWatchdog::open(&missing, Duration::from_secs(1)).expect_err("missing");
    let text = e.to_string();
    assert!(text.contains(&missing.display().to_string()), "{text}");
    assert!(
        matches!(&e, WatchdogError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    );
    let cfg = WatchdogConfig::Device { path: missing };
    assert!(watchdog::open(&cfg).is_err());
}

#[test]
fn device_ioctl_on_a_regular_file_is_a_clean_error() {
    let file = tempfile::NamedTempFile::new().expect("tempfile");
    let e = DeviceWatchdog::open(file.path(), Duration::from_secs(1)).expect_err("not a watchdog");
    let text = e.to_string();
    assert!(text.contains("WDIOC_SETTIMEOUT"), "{text}");
    assert!(text.contains(&file.path().display().to_string()), "{text}");
    assert!(
        matches!(&e, WatchdogError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOTTY)),
        "{e:?}"
    );
    // No magic character written into a regular file.
    assert_eq!(std::fs::read(file.path()).expect("read"), b"");
}

#[test]
fn device_timeout_below_one_second_is_refused() {
    let file = tempfile::NamedTempFile::new().expect("tempfile");
    let e = DeviceWatchdog::open(file.path(), Duration::from_millis(999)).expect_err("too short");
    assert!(e.to_string().contains("at least 1 s"), "{e}");
}

#[test]
fn no_watchdog_succeeds_at_everything() {
    let mut wd = NoWatchdog::new();
    let _second = NoWatchdog::new(); // warns only once (see stderr)
    assert!(wd.arm(now()).is_ok());
    assert!(wd.fire("test").is_ok());
    assert!(wd.disarm().is_ok());
    assert_eq!(wd.margin(), Duration::ZERO);
    assert!(wd.describe().contains("NOT protected"));
    let boxed = watchdog::open(&WatchdogConfig::None).expect("none");
    assert!(boxed.describe().starts_with("none"));
}

/// The cgroup v2 mount: `/sys/fs/cgroup/unified` on hybrid systems, else `/sys/fs/cgroup`.
fn cgroup2_root() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        if !post.starts_with("cgroup2 ") {
            return None;
        }
        pre.split(' ').nth(4).map(PathBuf::from)
    })
}

#[test]
fn supervisor_kills_a_whole_cgroup_when_not_rearmed() {
    let root = cgroup2_root().expect("a cgroup v2 mount");
    let cg = root.join(format!("nosplit-wdtest-{}", std::process::id()));
    std::fs::create_dir(&cg).expect("mkdir cgroup");
    struct Rm(PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::write(self.0.join("cgroup.kill"), "1");
            std::thread::sleep(Duration::from_millis(50));
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _rm = Rm(cg.clone());
    // Two unrelated processes (different sessions) in one cgroup.
    let mut kids: Vec<Child> = (0..2)
        .map(|_| {
            let c = Command::new("sleep")
                .arg("30")
                .process_group(0)
                .spawn()
                .expect("spawn");
            std::fs::write(cg.join("cgroup.procs"), c.id().to_string()).expect("move");
            c
        })
        .collect();
    let mut lab = Lab::start(KillTarget::Cgroup(cg.clone()));
    let mut wd = lab.client();
    wd.arm(now() + Duration::from_millis(100)).expect("arm");
    let report = lab.report();
    assert!(report.reason.contains("not re-armed"), "{report:?}");
    assert!(report.delivered);
    for k in &mut kids {
        let st = k.wait().expect("wait");
        assert_eq!(st.signal(), Some(9), "{st:?}");
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let e = run_lab_supervisor(
        &dir.path().join("x.sock"),
        KillTarget::Cgroup(PathBuf::from("/nonexistent-cgroup")),
        MARGIN,
    )
    .expect_err("not a cgroup");
    assert!(e.to_string().contains("cgroup.kill"), "{e}");
}
