//! One emulated host's daemons: its fault filesystem (its view of the
//! shared storage), its lab watchdog, and its `leased`. They run in the
//! host's network namespace and cgroup (its power domain), started by the
//! `nosplit` binary. Power off kills the cgroup at once; power on starts
//! them again on a fresh mount.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nosplit_labnet::LabName;
use nosplit_leased::api::{Request, Response};
use nosplit_leased::client::Client;

use crate::layout::{Layout, LOCKSPACE};
use crate::LabError;

/// Watchdog slack after the armed expiry (the lab supervisor's margin).
const WATCHDOG_MARGIN_MS: u64 = 500;

/// How long a daemon may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The daemons of a powered-on host.
#[derive(Debug, Default)]
pub struct Daemons {
    /// The fault filesystem server.
    pub faultfs: Option<Child>,
    /// The lab watchdog.
    pub watchdog: Option<Child>,
    /// The lease daemon.
    pub leased: Option<Child>,
    /// The host agent.
    pub agent: Option<Child>,
}

/// Everything needed to act on host `n`.
#[derive(Debug, Clone)]
pub struct HostCtx {
    /// Lab name.
    pub lab: LabName,
    /// Lab paths.
    pub layout: Layout,
    /// The `nosplit` binary.
    pub bin: PathBuf,
    /// Host number (= host id in the lockspace).
    pub n: u32,
    /// Address prefix of the lab's planes.
    pub prefix: nosplit_labnet::Prefix,
    /// VMs must hold leases (false: the agent allows unleased VMs, for
    /// control runs).
    pub protection: bool,
}

/// Port of the agents' HTTP API (on the management plane).
pub const AGENT_PORT: u16 = 7410;
/// Port of the engine's API (on the management bridge).
pub const ENGINE_PORT: u16 = 7400;
/// Capacity each lab host offers the engine: lab VMs are small (process
/// VMs use almost nothing, guests 128 MiB), and hosts share one machine,
/// so a nominal room for a few hundred VMs per host.
const LAB_CPUS: u32 = 512;
/// See [`LAB_CPUS`].
const LAB_MEMORY_MIB: u64 = 262_144;
/// Port the heartbeats go to on each plane's bridge address.
pub const BEAT_PORT: u16 = 7411;

impl HostCtx {
    /// The fault filesystem's control socket.
    pub fn faultfs_socket(&self) -> PathBuf {
        self.layout.run(self.n).join("faultfs.sock")
    }

    /// The watchdog socket.
    pub fn watchdog_socket(&self) -> PathBuf {
        self.layout.run(self.n).join("wd.sock")
    }

    /// `leased`'s run directory.
    pub fn leased_dir(&self) -> PathBuf {
        self.layout.run(self.n).join("leased")
    }

    /// `leased`'s socket.
    pub fn leased_socket(&self) -> PathBuf {
        self.leased_dir().join("leased.sock")
    }

    /// The agent's API address (management plane).
    pub fn agent_addr(&self) -> Result<std::net::SocketAddr, LabError> {
        let a = nosplit_labnet::naming::host_addrs(self.prefix, self.n)?;
        Ok(std::net::SocketAddr::from((
            a.get(nosplit_labnet::Plane::Management),
            AGENT_PORT,
        )))
    }

    /// The lab's directory of per-host agent tokens (the engine's
    /// `agent_token_dir`).
    pub fn token_dir(layout: &Layout) -> PathBuf {
        layout.root().join("agents")
    }

    /// This host's agent token file (each host has its own).
    pub fn token_file(&self) -> PathBuf {
        Self::token_dir(&self.layout).join(format!("h{}.token", self.n))
    }

    /// Makes the token directory (mode 0700) if it is not there.
    pub(crate) fn ensure_token_dir(layout: &Layout) -> Result<PathBuf, LabError> {
        use std::os::unix::fs::PermissionsExt;
        let dir = Self::token_dir(layout);
        std::fs::create_dir_all(&dir).map_err(|e| LabError::io("creating", &dir, e))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| LabError::io("chmod 700", &dir, e))?;
        Ok(dir)
    }

    /// Makes this host's token (a fresh random secret, mode 0600) unless
    /// it has one already.
    fn ensure_token(&self) -> Result<(), LabError> {
        Self::ensure_token_dir(&self.layout)?;
        if !self.token_file().exists() {
            crate::engine::secret_file(&self.token_file())?;
        }
        Ok(())
    }

    /// A client of the host's agent.
    pub fn agent_client(&self) -> Result<nosplit_agent::client::AgentClient, LabError> {
        let token = std::fs::read_to_string(self.token_file())
            .map_err(|e| LabError::io("reading", self.token_file(), e))?;
        Ok(nosplit_agent::client::AgentClient::new(
            self.agent_addr()?,
            token.trim(),
        ))
    }

    /// Writes the agent's configuration and starts it.
    pub fn start_agent(&self) -> Result<Child, LabError> {
        use nosplit_labnet::Plane;
        let a = nosplit_labnet::naming::host_addrs(self.prefix, self.n)?;
        let mut planes = String::new();
        for (p, name) in [
            (Plane::Management, "mgmt"),
            (Plane::Service, "svc"),
            (Plane::Storage, "stor"),
        ] {
            let engine = nosplit_labnet::naming::bridge_addr(self.prefix, p);
            planes.push_str(&format!(
                "\n[[plane]]\nname = \"{name}\"\naddress = \"{}\"\nengine = \"{engine}:{BEAT_PORT}\"\n",
                a.get(p)
            ));
        }
        self.ensure_token()?;
        // With an engine in the lab, the agent registers itself there.
        if let Ok(url) = std::fs::read_to_string(self.layout.root().join("engine.url")) {
            planes.push_str(&format!(
                "\n[engine]\nurl = \"{}\"\ncpus = {LAB_CPUS}\nmemory_mib = {LAB_MEMORY_MIB}\n",
                url.trim()
            ));
        }
        let cfg = self.layout.run(self.n).join("agent.toml");
        let text = format!(
            "host_name = \"h{n}\"\nhost_id = {n}\nlisten = \"{listen}\"\ntoken_file = \"{token}\"\nleased_socket = \"{leased}\"\nrun_dir = \"{run}\"\nbin = \"{bin}\"\nallow_unleased = {unleased}\nheartbeat_interval_ms = 250\n{planes}",
            n = self.n,
            listen = self.agent_addr()?,
            token = self.token_file().display(),
            leased = self.leased_socket().display(),
            run = self.layout.run(self.n).join("agent").display(),
            bin = self.bin.display(),
            unleased = !self.protection,
        );
        std::fs::write(&cfg, text).map_err(|e| LabError::io("writing", &cfg, e))?;
        self.spawn("agent", &["agent", "--config", s(&cfg)])
    }

    fn spawn(&self, what: &str, args: &[&str]) -> Result<Child, LabError> {
        let log = self.layout.log(self.n, what);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| LabError::io("opening the log", &log, e))?;
        let err = file
            .try_clone()
            .map_err(|e| LabError::io("opening the log", &log, e))?;
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .env("RUST_LOG", "info");
        nosplit_labnet::enter_host(&mut cmd, &self.lab, self.n)?;
        cmd.spawn()
            .map_err(|e| LabError::io(format!("starting {what} on host {}", self.n), &self.bin, e))
    }

    /// Starts the host's daemons (the mount is made fresh). Returns once the
    /// mount and the watchdog answer; `leased` joins in the background (see
    /// [`HostCtx::wait_joined`]).
    pub fn power_on(&self) -> Result<Daemons, LabError> {
        let l = &self.layout;
        for d in [
            l.mnt(self.n),
            l.run(self.n),
            self.leased_dir(),
            l.host(self.n).join("log"),
        ] {
            std::fs::create_dir_all(&d).map_err(|e| LabError::io("creating", &d, e))?;
        }
        nosplit_labnet::cgroup_create(&self.lab, self.n)?;
        detach_mount(&l.mnt(self.n))?;
        let mut d = Daemons::default();
        let shared = l.shared();
        let (mnt, fsock) = (l.mnt(self.n), self.faultfs_socket());
        let _ = std::fs::remove_file(&fsock);
        d.faultfs = Some(self.spawn(
            "faultfs",
            &[
                "faultfs",
                "--backing",
                s(&shared),
                "--mount",
                s(&mnt),
                "--control",
                s(&fsock),
            ],
        )?);
        self.wait(&mut d.faultfs, "faultfs", || {
            nosplit_faultfs::control(&fsock, "status").is_ok() && is_mounted(&mnt)
        })?;
        let cg = nosplit_labnet::cgroup_path(&self.lab, self.n)?;
        let wsock = self.watchdog_socket();
        // A watchdog killed with its host left its socket behind: remove
        // it, or the wait below would pass at once and leased would start
        // before the new watchdog listens.
        match std::fs::remove_file(&wsock) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(LabError::io("removing the stale socket", &wsock, e));
            }
            _ => {}
        }
        let margin = WATCHDOG_MARGIN_MS.to_string();
        d.watchdog = Some(self.spawn(
            "watchdog",
            &[
                "watchdog-lab",
                "--socket",
                s(&wsock),
                "--cgroup",
                s(&cg),
                "--margin-ms",
                &margin,
            ],
        )?);
        self.wait(&mut d.watchdog, "watchdog-lab", || wsock.exists())?;
        d.leased = Some(self.start_leased()?);
        d.agent = Some(self.start_agent()?);
        let client = self.agent_client()?;
        self.wait(&mut d.agent, "agent", || client.ready())?;
        Ok(d)
    }

    /// Writes the host's `leased` configuration and starts it.
    pub fn start_leased(&self) -> Result<Child, LabError> {
        let cfg = self.layout.run(self.n).join("leased.toml");
        let text = format!(
            "host_name = \"h{n}\"\nrun_dir = \"{run}\"\n\n[watchdog]\nbackend = \"lab\"\nlab_socket = \"{wd}\"\n\n[[lockspace]]\nname = \"{ls}\"\npath = \"{ids}\"\nhost_id = {n}\n",
            n = self.n,
            run = self.leased_dir().display(),
            wd = self.watchdog_socket().display(),
            ls = LOCKSPACE,
            ids = self.layout.via(self.n, &self.layout.ids()).display(),
        );
        std::fs::write(&cfg, text).map_err(|e| LabError::io("writing", &cfg, e))?;
        self.spawn("leased", &["leased", "--config", s(&cfg)])
    }

    fn wait(
        &self,
        child: &mut Option<Child>,
        what: &str,
        ready: impl Fn() -> bool,
    ) -> Result<(), LabError> {
        let start = Instant::now();
        loop {
            if ready() {
                return Ok(());
            }
            if let Some(c) = child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    return Err(self.fail(format!("{what} exited at start ({st})"), what));
                }
            }
            if start.elapsed() > START_TIMEOUT {
                return Err(self.fail(format!("{what} not ready after {START_TIMEOUT:?}"), what));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn fail(&self, what: String, log: &str) -> LabError {
        let path = self.layout.log(self.n, log);
        let tail = std::fs::read_to_string(&path).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        LabError::Host {
            host: self.n,
            what: format!("{what}; log {}:\n{}", path.display(), tail.join("\n")),
        }
    }

    /// Waits until `leased` reports the lab lockspace joined.
    pub fn wait_joined(&self, timeout: Duration) -> Result<(), LabError> {
        let start = Instant::now();
        let mut last = String::from("no answer");
        while start.elapsed() < timeout {
            match self.leased_call(&Request::Status) {
                Ok(Response::Status(st)) => {
                    match st.lockspaces.iter().find(|l| l.name == LOCKSPACE) {
                        Some(l) if l.state == "joined" => return Ok(()),
                        Some(l) => last = format!("lockspace {}", l.state),
                        None => last = "lockspace not listed".into(),
                    }
                }
                Ok(other) => last = format!("{other:?}"),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(self.fail(
            format!("leased did not join in {timeout:?} ({last})"),
            "leased",
        ))
    }

    /// One request to the host's `leased`.
    pub fn leased_call(&self, req: &Request) -> Result<Response, String> {
        let mut c = Client::connect(&self.leased_socket()).map_err(|e| e.to_string())?;
        c.set_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        c.call(req).map_err(|e| e.to_string())
    }

    /// Sets the host's storage fault (faultfs syntax).
    pub fn storage_fault(&self, mode: &str) -> Result<String, LabError> {
        nosplit_faultfs::control(&self.faultfs_socket(), mode).map_err(|e| LabError::Host {
            host: self.n,
            what: format!("storage fault {mode:?}: {e}"),
        })
    }

    /// Kills every process of the host at once, reaps the daemons and takes
    /// the dead mount away.
    pub fn power_off(&self, d: &mut Daemons) -> Result<Vec<u32>, LabError> {
        let report = nosplit_labnet::power_off(&self.lab, self.n, Duration::from_secs(5))?;
        for c in [&mut d.faultfs, &mut d.watchdog, &mut d.leased, &mut d.agent]
            .into_iter()
            .flatten()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
        *d = Daemons::default();
        detach_mount(&self.layout.mnt(self.n))?;
        Ok(report.stragglers)
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// Is `p` a mount point (listed in our mountinfo)?
pub fn is_mounted(p: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = p.to_string_lossy();
    info.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|m| m == want))
}

/// Takes a (possibly dead) mount at `p` away, lazily.
pub fn detach_mount(p: &Path) -> Result<(), LabError> {
    use rustix::mount::{unmount, UnmountFlags};
    // Mounts may be stacked; a few rounds take them all.
    for _ in 0..8 {
        if !is_mounted(p) {
            return Ok(());
        }
        match unmount(p, UnmountFlags::DETACH) {
            Ok(()) | Err(rustix::io::Errno::INVAL) => {}
            Err(e) => return Err(LabError::io("unmounting", p, e.into())),
        }
    }
    Err(LabError::io(
        "unmounting",
        p,
        std::io::Error::other("still mounted after 8 lazy unmounts"),
    ))
}
