//! `nosplit engine` (the daemon) and the operator commands that talk to it
//! over its REST API: `domain`, `host`, `vm`, `strategy`, `ha`, `task`,
//! `events`, `status`. Tables by default, JSON with `--json`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use nosplit_engine_api::client::Client;
use nosplit_engine_api::types::{host_state_name, VmView};
use nosplit_engine_api::types::{EventQuery, HaPatch, NewHost, NewVm, TaskQuery, VmPatch};
use nosplit_engine_core::model::{Disk, Domain, Plane, Strategy, Vm, VmKind};

use crate::table::render;

/// Runs the engine daemon.
pub fn engine(config: PathBuf) -> Result<()> {
    let cfg = nosplit_engine::config::load(&config)?;
    let store = nosplit_engine_store::RedbStore::open(&cfg.store)
        .with_context(|| format!("opening the store {}", cfg.store.display()))?;
    let tokens: Vec<(&str, &str)> = cfg
        .tokens
        .iter()
        .map(|(r, t)| {
            let role = match r {
                nosplit_engine::config::Role::Admin => "admin",
                nosplit_engine::config::Role::User => "user",
            };
            (role, t.as_str())
        })
        .collect();
    let tokens = nosplit_engine_api::auth::Tokens::parse(tokens).context("API tokens")?;
    let listen = cfg.listen;
    let (engine, _beats) = nosplit_engine::Engine::start(cfg, Box::new(store))?;
    let ops: Arc<dyn nosplit_engine_api::ops::EngineOps> = engine;
    let server = nosplit_engine_api::server::spawn_server(listen, tokens, ops)
        .with_context(|| format!("serving the API on {listen}"))?;
    eprintln!("engine: API on {}", server.local_addr());
    server.wait().context("the API server stopped")?;
    Ok(())
}

/// Where the engine is and who we are.
#[derive(Debug, Args)]
pub struct Conn {
    /// The engine's API.
    #[arg(
        long,
        env = "NOSPLIT_ENGINE",
        default_value = "http://127.0.0.1:7400",
        global = true
    )]
    engine: String,
    /// File holding our API token.
    #[arg(
        long,
        env = "NOSPLIT_TOKEN_FILE",
        default_value = "/etc/nosplit/admin.token",
        global = true
    )]
    token_file: PathBuf,
    /// JSON output.
    #[arg(long, global = true)]
    json: bool,
}

impl Conn {
    fn client(&self) -> Result<Client> {
        let t = std::fs::read_to_string(&self.token_file)
            .with_context(|| format!("reading the token {}", self.token_file.display()))?;
        Ok(Client::new(&self.engine, t.trim())?.with_timeout(Duration::from_secs(60)))
    }
}

/// Prints JSON or a table.
fn out<T: serde::Serialize>(
    c: &Conn,
    v: &T,
    header: &[&str],
    rows: Vec<Vec<String>>,
) -> Result<()> {
    if c.json {
        println!("{}", serde_json::to_string_pretty(v)?);
    } else {
        print!("{}", render(header, &rows));
    }
    Ok(())
}

/// `nosplit domain`.
#[derive(Debug, Subcommand)]
pub enum DomainCmd {
    /// Create a storage domain (its lockspace and lease index).
    Create {
        /// Name (also the lockspace name).
        name: String,
        /// The directory as the engine sees it.
        #[arg(long)]
        path: String,
        /// The directory as hosts see it (`{host}` = host name).
        #[arg(long)]
        host_path: String,
        /// Lockspace io_timeout, ms.
        #[arg(long, default_value_t = 1000)]
        io_timeout_ms: u32,
    },
    /// List domains.
    List,
    /// Delete a domain (refused while VMs use it).
    Delete {
        /// Name.
        name: String,
    },
}

/// `nosplit host`.
#[derive(Debug, Subcommand)]
pub enum HostCmd {
    /// Add a host.
    Add {
        /// Name.
        name: String,
        /// Host id in the lockspaces.
        #[arg(long)]
        id: u32,
        /// Its agent's API (ip:port).
        #[arg(long)]
        agent: String,
        /// Its planes: `mgmt=IP`, `svc=IP`, `stor=IP` (repeat).
        #[arg(long = "plane", value_parser = parse_plane)]
        planes: Vec<(Plane, String)>,
        /// vCPUs.
        #[arg(long, default_value_t = 2)]
        cpus: u32,
        /// Memory, MiB.
        #[arg(long, default_value_t = 4096)]
        memory_mib: u64,
    },
    /// List hosts and their states.
    List,
    /// Delete a host.
    Delete {
        /// Name.
        name: String,
    },
    /// HA maintenance for one host (its VMs are not recovered).
    Maintenance {
        /// Name.
        name: String,
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
}

fn parse_plane(s: &str) -> Result<(Plane, String), String> {
    let (p, ip) = s.split_once('=').ok_or("expected PLANE=IP")?;
    let p = match p {
        "mgmt" => Plane::Mgmt,
        "svc" => Plane::Svc,
        "stor" => Plane::Stor,
        other => return Err(format!("unknown plane {other:?}: mgmt, svc or stor")),
    };
    Ok((p, ip.to_string()))
}

fn parse_disk(s: &str) -> Result<Disk, String> {
    let (name, size) = s.split_once('=').ok_or("expected NAME=SIZE_MIB")?;
    let size_mib = size
        .parse()
        .map_err(|_| format!("{size:?} is not a size in MiB"))?;
    Ok(Disk {
        name: name.to_string(),
        size_mib,
    })
}

/// `nosplit vm`.
#[derive(Debug, Subcommand)]
pub enum VmCmd {
    /// Create a VM (its lease and disks in the domain).
    Create {
        /// Id.
        id: String,
        /// qemu or process.
        #[arg(long, value_parser = ["qemu", "process"])]
        kind: String,
        /// Domain.
        #[arg(long)]
        domain: String,
        /// vCPUs.
        #[arg(long, default_value_t = 1)]
        vcpus: u32,
        /// Memory, MiB.
        #[arg(long, default_value_t = 128)]
        memory_mib: u32,
        /// Highly available.
        #[arg(long)]
        ha: bool,
        /// Priority 0..=100 (higher restarts first).
        #[arg(long, default_value_t = 0)]
        priority: u8,
        /// A disk, `NAME=SIZE_MIB` (repeat; the first is the one its host
        /// is given). Default: one 1 MiB disk `root`.
        #[arg(long = "disk", value_parser = parse_disk)]
        disks: Vec<Disk>,
    },
    /// List VMs.
    List,
    /// Show one VM and its disks.
    Show {
        /// Id.
        id: String,
    },
    /// Start a VM (on a host, or the least loaded one); shows progress.
    Start {
        /// Id.
        id: String,
        /// Host.
        #[arg(long)]
        host: Option<String>,
    },
    /// Stop a VM on purpose (HA never restarts it).
    Stop {
        /// Id.
        id: String,
    },
    /// Delete a stopped VM (and its lease).
    Delete {
        /// Id.
        id: String,
    },
    /// Change HA flag or priority.
    Set {
        /// Id.
        id: String,
        /// HA on or off.
        #[arg(long, value_parser = ["on", "off"])]
        ha: Option<String>,
        /// Priority.
        #[arg(long)]
        priority: Option<u8>,
    },
}

/// The engine's operator commands without a group of their own.
#[derive(Debug, Subcommand)]
pub enum OpsCmd {
    /// Show the HA strategy, or set it from a JSON file.
    Strategy {
        #[command(flatten)]
        conn: Conn,
        /// JSON file with {"rows": [...]}.
        #[arg(long)]
        set: Option<PathBuf>,
    },
    /// Show or change HA settings.
    Ha {
        #[command(flatten)]
        conn: Conn,
        /// Cluster-wide HA maintenance.
        #[arg(long, value_parser = ["on", "off"])]
        maintenance: Option<String>,
        /// Restarts per second (0: no limit).
        #[arg(long)]
        global_rate: Option<u32>,
        /// Restarts in flight per host (0: no limit).
        #[arg(long)]
        per_host_limit: Option<u32>,
        /// Attempts per VM.
        #[arg(long)]
        max_attempts: Option<u32>,
        /// Self-defense threshold, % of hosts lost.
        #[arg(long)]
        defense_pct: Option<u8>,
        /// Self-recovery threshold, % of hosts up.
        #[arg(long)]
        recover_pct: Option<u8>,
        /// Grace before a silent host is acted on, ms.
        #[arg(long)]
        grace_ms: Option<u64>,
    },
    /// Restart tasks.
    Task {
        #[command(flatten)]
        conn: Conn,
        /// Only this VM.
        #[arg(long)]
        vm: Option<String>,
        /// How many (latest).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Events and alarms.
    Events {
        #[command(flatten)]
        conn: Conn,
        /// Only this kind.
        #[arg(long)]
        kind: Option<String>,
        /// Only this host.
        #[arg(long)]
        host: Option<String>,
        /// Only this VM.
        #[arg(long)]
        vm: Option<String>,
        /// Only this severity.
        #[arg(long)]
        severity: Option<String>,
        /// Only events after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Keep streaming.
        #[arg(long)]
        follow: bool,
    },
    /// Cluster summary.
    Status {
        #[command(flatten)]
        conn: Conn,
    },
}

/// `nosplit domain ...`.
pub fn domain(conn: &Conn, cmd: DomainCmd) -> Result<()> {
    let c = conn.client()?;
    match cmd {
        DomainCmd::Create {
            name,
            path,
            host_path,
            io_timeout_ms,
        } => {
            let d = c.create_domain(&Domain {
                name,
                path,
                host_path,
                io_timeout_ms,
            })?;
            out(
                conn,
                &d,
                &["domain", "path"],
                vec![vec![d.name.clone(), d.path.clone()]],
            )
        }
        DomainCmd::List => {
            let ds = c.list_domains()?;
            let rows = ds
                .iter()
                .map(|d| {
                    vec![
                        d.name.clone(),
                        d.path.clone(),
                        d.host_path.clone(),
                        d.io_timeout_ms.to_string(),
                    ]
                })
                .collect();
            out(
                conn,
                &ds,
                &["domain", "path", "host path", "io_timeout_ms"],
                rows,
            )
        }
        DomainCmd::Delete { name } => Ok(c.delete_domain(&name)?),
    }
}

/// `nosplit host ...`.
pub fn host(conn: &Conn, cmd: HostCmd) -> Result<()> {
    let c = conn.client()?;
    match cmd {
        HostCmd::Add {
            name,
            id,
            agent,
            planes,
            cpus,
            memory_mib,
        } => {
            let h = c.add_host(&NewHost {
                name,
                host_id: id,
                agent,
                planes,
                cpus,
                memory_mib,
            })?;
            out(
                conn,
                &h,
                &["host", "state"],
                vec![vec![
                    h.host.name.clone(),
                    host_state_name(h.state).to_string(),
                ]],
            )
        }
        HostCmd::List => {
            let hs = c.list_hosts()?;
            let rows = hs
                .iter()
                .map(|h| {
                    vec![
                        h.host.name.clone(),
                        h.host.host_id.to_string(),
                        host_state_name(h.state).to_string(),
                        h.host.agent.clone(),
                        if h.host.maintenance {
                            "yes".into()
                        } else {
                            "no".into()
                        },
                    ]
                })
                .collect();
            out(
                conn,
                &hs,
                &["host", "id", "state", "agent", "maintenance"],
                rows,
            )
        }
        HostCmd::Delete { name } => Ok(c.delete_host(&name)?),
        HostCmd::Maintenance { name, state } => {
            let h = c.set_host_maintenance(&name, state == "on")?;
            out(
                conn,
                &h,
                &["host", "maintenance"],
                vec![vec![h.host.name.clone(), state]],
            )
        }
    }
}

/// `nosplit strategy|ha|task|events|status`.
pub fn ops(o: OpsCmd) -> Result<()> {
    match o {
        OpsCmd::Strategy { conn, set } => {
            let c = conn.client()?;
            let s = match set {
                Some(f) => {
                    let text = std::fs::read_to_string(&f)
                        .with_context(|| format!("reading {}", f.display()))?;
                    let s: Strategy = serde_json::from_str(&text)
                        .with_context(|| format!("{}: not a strategy", f.display()))?;
                    c.put_strategy(&s)?
                }
                None => c.strategy()?,
            };
            let yn = |b: bool| if b { "up" } else { "DOWN" }.to_string();
            let rows = s
                .rows
                .iter()
                .map(|r| {
                    vec![
                        yn(r.mgmt),
                        yn(r.svc),
                        yn(r.stor),
                        if r.recover {
                            "recover".into()
                        } else {
                            "leave".into()
                        },
                    ]
                })
                .collect();
            out(&conn, &s, &["mgmt", "svc", "stor", "action"], rows)
        }
        OpsCmd::Ha {
            conn,
            maintenance,
            global_rate,
            per_host_limit,
            max_attempts,
            defense_pct,
            recover_pct,
            grace_ms,
        } => {
            let c = conn.client()?;
            let p = HaPatch {
                maintenance: maintenance.map(|m| m == "on"),
                global_rate,
                per_host_limit,
                max_attempts,
                defense_pct,
                recover_pct,
                grace_ms,
            };
            let s = if p == HaPatch::default() {
                c.ha()?
            } else {
                c.patch_ha(&p)?
            };
            let v = serde_json::to_value(s)?;
            let rows = v
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| vec![k.clone(), v.to_string()])
                        .collect()
                })
                .unwrap_or_default();
            out(&conn, &s, &["setting", "value"], rows)
        }
        OpsCmd::Task { conn, vm, limit } => {
            let ts = conn.client()?.tasks(&TaskQuery { vm, limit })?;
            let rows = ts
                .iter()
                .map(|t| {
                    vec![
                        t.id.to_string(),
                        t.vm.clone(),
                        t.host.clone(),
                        t.attempt.to_string(),
                        t.state.clone(),
                        t.detail.clone(),
                    ]
                })
                .collect();
            out(
                &conn,
                &ts,
                &["task", "vm", "host", "attempt", "state", "detail"],
                rows,
            )
        }
        OpsCmd::Events {
            conn,
            kind,
            host,
            vm,
            severity,
            after,
            follow,
        } => {
            let c = conn.client()?;
            let mut q = EventQuery {
                after,
                kind,
                host,
                vm,
                severity,
                limit: 1000,
                ..EventQuery::default()
            };
            loop {
                let es = c.events(&q)?;
                for e in &es {
                    if conn.json {
                        println!("{}", serde_json::to_string(e)?);
                    } else {
                        println!(
                            "{:>6} {:>9.1}s {:<8} {:<18} {:<10} {}",
                            e.seq,
                            e.at_ms as f64 / 1000.0,
                            e.severity,
                            e.kind,
                            e.host.as_deref().or(e.vm.as_deref()).unwrap_or("-"),
                            e.detail
                        );
                    }
                    q.after = q.after.max(e.seq);
                }
                if !follow {
                    return Ok(());
                }
                // Shown at once to whoever reads the stream.
                std::io::Write::flush(&mut std::io::stdout())?;
                q.wait = Duration::from_secs(25);
            }
        }
        OpsCmd::Status { conn } => {
            let s = conn.client()?.status()?;
            let mut rows: Vec<Vec<String>> = s
                .hosts
                .iter()
                .map(|(k, v)| vec![format!("hosts {k}"), v.to_string()])
                .collect();
            rows.extend(
                s.vms
                    .iter()
                    .map(|(k, v)| vec![format!("VMs {k}"), v.to_string()]),
            );
            rows.push(vec!["restart queue".into(), s.queue.to_string()]);
            rows.push(vec!["self-defense".into(), s.self_defense.to_string()]);
            rows.push(vec!["maintenance".into(), s.maintenance.to_string()]);
            out(&conn, &s, &["what", "count"], rows)
        }
    }
}

/// `nosplit vm ...`.
pub fn vm(conn: &Conn, cmd: VmCmd) -> Result<()> {
    vm_with(conn, &conn.client()?, cmd)
}

/// `nosplit vm show`: the VM's fields, then its disks.
fn show_vm(conn: &Conn, v: &VmView) -> Result<()> {
    if conn.json {
        return out(conn, v, &[], Vec::new());
    }
    let kv = |k: &str, v: String| vec![k.to_string(), v];
    let rows = vec![
        kv("vm", v.id.clone()),
        kv("kind", format!("{:?}", v.kind).to_lowercase()),
        kv("domain", v.domain.clone()),
        kv("vcpus", v.vcpus.to_string()),
        kv("memory MiB", v.memory_mib.to_string()),
        kv("ha", if v.ha { "yes" } else { "no" }.into()),
        kv("priority", v.priority.to_string()),
        kv("desired", format!("{:?}", v.desired).to_lowercase()),
        kv("host", v.host.clone().unwrap_or_else(|| "-".into())),
        kv("lease offset", v.lease_offset.to_string()),
    ];
    print!("{}", render(&["field", "value"], &rows));
    let disks: Vec<Vec<String>> = v
        .disks
        .iter()
        .map(|d| vec![d.name.clone(), d.size_mib.to_string()])
        .collect();
    print!("{}", render(&["disk", "size MiB"], &disks));
    Ok(())
}

fn vm_with(conn: &Conn, c: &Client, cmd: VmCmd) -> Result<()> {
    let row = |v: &Vm| {
        vec![
            v.id.clone(),
            format!("{:?}", v.kind).to_lowercase(),
            v.domain.clone(),
            if v.ha { "yes".into() } else { "no".into() },
            v.priority.to_string(),
            format!("{:?}", v.desired).to_lowercase(),
            v.host.clone().unwrap_or_else(|| "-".into()),
        ]
    };
    let header = ["vm", "kind", "domain", "ha", "priority", "desired", "host"];
    match cmd {
        VmCmd::Create {
            id,
            kind,
            domain,
            vcpus,
            memory_mib,
            ha,
            priority,
            disks,
        } => {
            let kind = if kind == "qemu" {
                VmKind::Qemu
            } else {
                VmKind::Process
            };
            let nv = NewVm {
                id,
                kind,
                vcpus,
                memory_mib,
                domain,
                ha,
                priority,
            };
            let v = if disks.is_empty() {
                c.create_vm(&nv)?
            } else {
                c.create_vm_with_disks(&nv, &disks)?
            };
            out(conn, &v, &header, vec![row(&v.vm)])
        }
        VmCmd::List => {
            let vs = c.list_vms()?;
            let rows = vs.iter().map(|v| row(&v.vm)).collect();
            out(conn, &vs, &header, rows)
        }
        VmCmd::Show { id } => show_vm(conn, &c.get_vm(&id)?),
        VmCmd::Start { id, host } => {
            let pb = indicatif::ProgressBar::new_spinner();
            pb.set_message(format!("starting {id} (lease, then guest)"));
            pb.enable_steady_tick(Duration::from_millis(100));
            let r = c.start_vm(&id, host.as_deref());
            pb.finish_and_clear();
            let v = r?;
            out(conn, &v, &header, vec![row(&v.vm)])
        }
        VmCmd::Stop { id } => {
            let v = c.stop_vm(&id)?;
            out(conn, &v, &header, vec![row(&v.vm)])
        }
        VmCmd::Delete { id } => Ok(c.delete_vm(&id)?),
        VmCmd::Set { id, ha, priority } => {
            let v = c.patch_vm(
                &id,
                &VmPatch {
                    ha: ha.map(|h| h == "on"),
                    priority,
                },
            )?;
            out(conn, &v, &header, vec![row(&v.vm)])
        }
    }
}
