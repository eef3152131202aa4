//! The real engine in the lab: `nosplit engine` in the root namespace (the
//! controller sits outside the hosts), its API on the management bridge,
//! listening for heartbeats on the three bridges. The lab creates the
//! storage domain and the VMs through the API; each host's agent registers
//! itself (with its own token, [`crate::host::HostCtx::token_file`]) and
//! the lab waits for all of them. The engine's URL is left in
//! `engine.url` for the agents. In its own cgroup under the lab's, so
//! `lab down` removes it like everything else.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nosplit_engine_api::client::Client;
use nosplit_labnet::{LabName, Plane, Prefix};

use crate::host::{BEAT_PORT, ENGINE_PORT};
use crate::layout::Layout;
use crate::LabError;

/// The lab's engine process and a client with the admin token.
#[derive(Debug)]
pub struct LabEngine {
    child: Child,
    /// Admin client.
    pub client: Client,
    /// Its API address.
    pub addr: SocketAddr,
}

pub(crate) fn secret_file(path: &std::path::Path) -> Result<String, LabError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let token: String = (0..4)
        .map(|_| format!("{:016x}", rand::random::<u64>()))
        .collect();
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| LabError::io("creating", path, e))?;
    f.write_all(token.as_bytes())
        .map_err(|e| LabError::io("writing", path, e))?;
    Ok(token)
}

impl LabEngine {
    /// Starts the engine of lab `lab` and waits for its API.
    pub fn start(
        lab: &LabName,
        layout: &Layout,
        bin: &std::path::Path,
        prefix: Prefix,
    ) -> Result<LabEngine, LabError> {
        let root = layout.root();
        let admin = secret_file(&root.join("admin.token"))?;
        // On the management bridge, where the hosts' agents reach it (the
        // bridge address is the lab's own, so the port is free for it; if
        // not, the engine's bind fails and its log says so below).
        let addr = SocketAddr::from((
            nosplit_labnet::naming::bridge_addr(prefix, Plane::Management),
            ENGINE_PORT,
        ));
        let url_file = root.join("engine.url");
        std::fs::write(&url_file, format!("http://{addr}\n"))
            .map_err(|e| LabError::io("writing", &url_file, e))?;
        let mut beats = String::new();
        for (p, name) in [
            (Plane::Management, "mgmt"),
            (Plane::Service, "svc"),
            (Plane::Storage, "stor"),
        ] {
            beats.push_str(&format!(
                "\n[[heartbeat]]\nplane = \"{name}\"\nlisten = \"{}:{BEAT_PORT}\"\n",
                nosplit_labnet::naming::bridge_addr(prefix, p)
            ));
        }
        let cfg = root.join("engine.toml");
        let text = format!(
            "listen = \"{addr}\"\nstore = \"{}\"\nagent_token_dir = \"{}\"\nplane_timeout_ms = 1500\n\n[[token]]\nrole = \"admin\"\nfile = \"{}\"\n{beats}",
            root.join("engine.redb").display(),
            crate::host::HostCtx::ensure_token_dir(layout)?.display(),
            root.join("admin.token").display(),
        );
        std::fs::write(&cfg, text).map_err(|e| LabError::io("writing", &cfg, e))?;
        let log_path = root.join("engine.log");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| LabError::io("opening", &log_path, e))?;
        let err = log
            .try_clone()
            .map_err(|e| LabError::io("opening", &log_path, e))?;
        let cg = nosplit_labnet::cgroup::lab_cgroup_dir(lab)?.join("engine");
        std::fs::create_dir_all(&cg).map_err(|e| LabError::io("creating", &cg, e))?;
        let child = Command::new(bin)
            .args(["engine", "--config"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| LabError::io("starting the engine", bin, e))?;
        // The engine does not fork: moving it now puts all of it there.
        let procs = cg.join("cgroup.procs");
        std::fs::write(&procs, child.id().to_string())
            .map_err(|e| LabError::io("writing", &procs, e))?;
        let client = Client::new(&format!("http://{addr}"), &admin)
            .map_err(|e| LabError::Invalid(format!("engine client: {e}")))?
            .with_timeout(Duration::from_secs(60));
        let mut e = LabEngine {
            child,
            client,
            addr,
        };
        let start = Instant::now();
        loop {
            if e.client.status().is_ok() {
                return Ok(e);
            }
            if let Ok(Some(st)) = e.child.try_wait() {
                let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(LabError::Invalid(format!(
                    "the engine exited at start ({st}): {tail}"
                )));
            }
            if start.elapsed() > Duration::from_secs(15) {
                return Err(LabError::Invalid(
                    "the engine's API did not answer in 15 s".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for LabEngine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates the lab's storage domain (lockspace `lab`) and its VMs (HA,
/// with their leases and disks) through the engine; returns the lease
/// offsets.
pub fn register_domain_and_vms(
    e: &LabEngine,
    layout: &Layout,
    io_timeout_ms: u32,
    vms: &[(String, crate::scenario::VmKind)],
) -> Result<crate::domain::LeaseOffsets, LabError> {
    use nosplit_engine_core::model::{Domain, VmKind};
    let api = |what: &str, err: nosplit_engine_api::client::ClientError| {
        LabError::Invalid(format!("engine: {what}: {err}"))
    };
    let d = Domain {
        name: crate::layout::LOCKSPACE.into(),
        path: layout.shared().display().to_string(),
        host_path: layout.root().join("hosts/{host}/mnt").display().to_string(),
        io_timeout_ms,
    };
    e.client
        .create_domain(&d)
        .map_err(|x| api("creating the domain", x))?;
    let mut out = crate::domain::LeaseOffsets::new();
    for (id, kind) in vms {
        let v = e
            .client
            .create_vm(&nosplit_engine_api::types::NewVm {
                id: id.clone(),
                kind: match kind {
                    crate::scenario::VmKind::Qemu => VmKind::Qemu,
                    crate::scenario::VmKind::Process => VmKind::Process,
                },
                vcpus: 1,
                memory_mib: 128,
                domain: d.name.clone(),
                ha: true,
                priority: 50,
            })
            .map_err(|x| api(&format!("creating VM {id}"), x))?;
        out.insert(id.clone(), v.lease_offset);
    }
    Ok(out)
}

/// How long the lab waits for every agent to register.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits until every host's agent has registered itself with the engine
/// (name, host id and the plane addresses the lab gave it).
pub fn register_hosts(e: &LabEngine, lab: &crate::Lab) -> Result<(), LabError> {
    let start = Instant::now();
    loop {
        let hosts = e.client.list_hosts().unwrap_or_default();
        let mut missing = Vec::new();
        for n in lab.hosts.keys() {
            let a = nosplit_labnet::naming::host_addrs(lab.spec.prefix, *n)?;
            let mgmt = a.get(Plane::Management).to_string();
            let ok = hosts.iter().any(|v| {
                v.host.name == format!("h{n}")
                    && v.host.host_id == *n
                    && v.host.planes.iter().any(|(_, ip)| *ip == mgmt)
            });
            if !ok {
                missing.push(format!("h{n}"));
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if start.elapsed() > REGISTER_TIMEOUT {
            return Err(LabError::Invalid(format!(
                "hosts {} did not register with the engine in {} s (see their agent logs)",
                missing.join(", "),
                REGISTER_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The engine's events, oldest first, as timeline lines.
pub fn events(e: &LabEngine) -> Vec<(u64, String)> {
    let q = nosplit_engine_api::types::EventQuery {
        limit: 1000,
        ..Default::default()
    };
    e.client
        .events(&q)
        .map(|es| {
            es.into_iter()
                .map(|ev| {
                    let who = match (ev.host, ev.vm) {
                        (Some(h), Some(v)) => format!("{v} on {h}"),
                        (h, v) => h.or(v).unwrap_or_default(),
                    };
                    (
                        ev.at_ms,
                        format!("engine: {} {} {who}: {}", ev.severity, ev.kind, ev.detail),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The engine's restart tasks as timeline lines: `(created ms, text)`.
pub fn tasks(e: &LabEngine) -> Vec<(u64, String)> {
    let q = nosplit_engine_api::types::TaskQuery {
        vm: None,
        limit: 1000,
    };
    e.client
        .tasks(&q)
        .map(|ts| {
            ts.into_iter()
                .map(|t| {
                    (
                        t.finished_ms.unwrap_or(t.created_ms),
                        format!(
                            "engine task {}: {} -> {} attempt {}: {} {}",
                            t.id, t.vm, t.host, t.attempt, t.state, t.detail
                        ),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
