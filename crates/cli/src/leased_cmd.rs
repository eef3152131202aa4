//! `nosplit leased`, `nosplit config check`, `nosplit lease client ...`,
//! `nosplit lease status` and the lab watchdog supervisor.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use nosplit_lease::paxos::LeaseMode;
use nosplit_leased::api::{LeaseRef, Request, Response, Status};
use nosplit_leased::client::Client;

use crate::table::render;

const DEFAULT_SOCKET: &str = "/run/nosplit/leased.sock";

/// Where the daemon listens.
#[derive(Debug, Args)]
pub struct SocketArg {
    /// The daemon's socket.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
}

/// `nosplit lease client ...`: talk to a running leased.
#[derive(Debug, Subcommand)]
pub enum ClientCmd {
    /// Register a process as a lease holder.
    Register {
        #[command(flatten)]
        socket: SocketArg,
        /// The process.
        #[arg(long)]
        pid: u32,
        /// Freeze hook argv (the pid is appended), e.g. --freeze-hook /usr/bin/pause-vm
        #[arg(long, num_args = 1.., value_delimiter = ' ')]
        freeze_hook: Option<Vec<String>>,
    },
    /// Acquire a resource lease for a registered process.
    Acquire {
        #[command(flatten)]
        socket: SocketArg,
        /// The holder.
        #[arg(long)]
        pid: u32,
        /// Lockspace name.
        #[arg(long)]
        lockspace: String,
        /// Resource name.
        #[arg(long)]
        resource: String,
        /// Lease file or device.
        #[arg(long)]
        path: String,
        /// Byte offset of the lease.
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Shared mode.
        #[arg(long)]
        shared: bool,
        /// Only at this lease version.
        #[arg(long)]
        lver: Option<u64>,
    },
    /// Release a lease held for a process.
    Release {
        #[command(flatten)]
        socket: SocketArg,
        /// The holder.
        #[arg(long)]
        pid: u32,
        /// Lockspace name.
        #[arg(long)]
        lockspace: String,
        /// Resource name.
        #[arg(long)]
        resource: String,
    },
    /// Leases held by a process.
    Inquire {
        #[command(flatten)]
        socket: SocketArg,
        /// The holder.
        #[arg(long)]
        pid: u32,
    },
    /// Join a lockspace.
    AddLockspace {
        #[command(flatten)]
        socket: SocketArg,
        /// Name.
        #[arg(long)]
        name: String,
        /// Storage path.
        #[arg(long)]
        path: String,
        /// Byte offset.
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Our host id.
        #[arg(long)]
        host_id: u32,
        /// Sector size.
        #[arg(long, default_value_t = 512)]
        sector_size: u32,
    },
    /// Leave a lockspace (refused while it has holders).
    RemLockspace {
        #[command(flatten)]
        socket: SocketArg,
        /// Name.
        #[arg(long)]
        name: String,
    },
    /// Print events as JSON lines until interrupted.
    Subscribe {
        #[command(flatten)]
        socket: SocketArg,
    },
}

fn call(socket: &SocketArg, req: Request) -> Result<Response> {
    let mut c = Client::connect(&socket.socket)?;
    let r = c.call(&req)?;
    if let Response::Error { kind, message } = &r {
        return Err(DaemonRefused {
            kind: kind.clone(),
            message: message.clone(),
        }
        .into());
    }
    Ok(r)
}

/// The daemon answered with an error.
#[derive(Debug, thiserror::Error)]
#[error("leased: {message} ({kind})")]
pub struct DaemonRefused {
    /// Kind (busy, not_found, ...).
    pub kind: String,
    /// Message.
    pub message: String,
}

/// Runs a client command.
pub fn client(cmd: ClientCmd) -> Result<()> {
    let (socket, req) = match cmd {
        ClientCmd::Register {
            socket,
            pid,
            freeze_hook,
        } => (
            socket,
            Request::Register {
                pid: Some(pid),
                freeze_hook,
            },
        ),
        ClientCmd::Acquire {
            socket,
            pid,
            lockspace,
            resource,
            path,
            offset,
            shared,
            lver,
        } => {
            let mode = if shared {
                LeaseMode::Shared
            } else {
                LeaseMode::Exclusive
            };
            let lease = LeaseRef {
                lockspace,
                resource,
                path,
                offset,
            };
            (
                socket,
                Request::Acquire {
                    pid: Some(pid),
                    lease,
                    mode,
                    lver,
                },
            )
        }
        ClientCmd::Release {
            socket,
            pid,
            lockspace,
            resource,
        } => (
            socket,
            Request::Release {
                pid: Some(pid),
                lockspace,
                resource,
            },
        ),
        ClientCmd::Inquire { socket, pid } => (socket, Request::Inquire { pid: Some(pid) }),
        ClientCmd::AddLockspace {
            socket,
            name,
            path,
            offset,
            host_id,
            sector_size,
        } => (
            socket,
            Request::AddLockspace {
                name,
                path,
                offset,
                host_id,
                sector_size,
            },
        ),
        ClientCmd::RemLockspace { socket, name } => (socket, Request::RemLockspace { name }),
        ClientCmd::Subscribe { socket } => {
            let c = Client::connect(&socket.socket)?;
            for e in c.subscribe()? {
                println!("{}", serde_json::to_string(&e?)?);
            }
            return Ok(());
        }
    };
    let r = call(&socket, req)?;
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}

/// `nosplit lease status`.
pub fn status(socket: SocketArg, json: bool) -> Result<()> {
    let Response::Status(s) = call(&socket, Request::Status)? else {
        bail!("leased answered status with something else")
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    print_status(&s);
    Ok(())
}

fn print_status(s: &Status) {
    println!("host {}  watchdog {}", s.host_name, s.watchdog);
    let rows: Vec<Vec<String>> = s
        .lockspaces
        .iter()
        .map(|l| {
            let lat = &l.renewal_latency_ms;
            let hist = lat
                .iter()
                .rev()
                .take(8)
                .rev()
                .map(|x| format!("{x:.1}"))
                .collect::<Vec<_>>()
                .join(" ");
            vec![
                l.name.clone(),
                l.host_id.to_string(),
                l.generation.to_string(),
                l.state.clone(),
                l.since_renewal_ms
                    .map(|m| format!("{m} ms"))
                    .unwrap_or_else(|| "-".into()),
                hist,
            ]
        })
        .collect();
    print!(
        "{}",
        render(
            &[
                "LOCKSPACE",
                "HOST_ID",
                "GEN",
                "STATE",
                "SINCE_RENEWAL",
                "RENEWAL_MS (recent)"
            ],
            &rows
        )
    );
    for l in &s.lockspaces {
        let rows: Vec<Vec<String>> = l
            .hosts
            .iter()
            .map(|h| {
                vec![
                    h.host_id.to_string(),
                    h.name.clone(),
                    h.generation.to_string(),
                    h.state.clone(),
                ]
            })
            .collect();
        println!("hosts in {}:", l.name);
        print!("{}", render(&["HOST_ID", "NAME", "GEN", "STATE"], &rows));
    }
    let rows: Vec<Vec<String>> = s
        .holders
        .iter()
        .flat_map(|h| {
            let base = vec![h.pid.to_string()];
            if h.leases.is_empty() {
                vec![[base, vec!["-".into(), "-".into(), "-".into()]].concat()]
            } else {
                h.leases
                    .iter()
                    .map(|l| {
                        [
                            base.clone(),
                            vec![
                                format!("{}/{}", l.lease.lockspace, l.lease.resource),
                                format!("{:?}", l.mode).to_lowercase(),
                                l.lver.to_string(),
                            ],
                        ]
                        .concat()
                    })
                    .collect()
            }
        })
        .collect();
    println!("holders:");
    print!("{}", render(&["PID", "LEASE", "MODE", "LVER"], &rows));
}

/// `nosplit leased --config FILE`.
pub fn leased(config: PathBuf) -> Result<()> {
    let cfg = nosplit_leased::config::load(&config)?;
    nosplit_leased::daemon::run(cfg).context("leased")?;
    Ok(())
}

/// Whose configuration `nosplit config check` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConfigKind {
    /// `nosplit leased`.
    Leased,
    /// `nosplit agent`.
    Agent,
    /// `nosplit engine`.
    Engine,
}

/// Tells a configuration's kind from its top-level keys (a file that is
/// not TOML is left to leased's check, which reports the syntax error).
fn detect_kind(path: &std::path::Path) -> ConfigKind {
    let table = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .unwrap_or_default();
    if table.contains_key("store") {
        ConfigKind::Engine
    } else if table.contains_key("token_file") {
        ConfigKind::Agent
    } else {
        ConfigKind::Leased
    }
}

/// `nosplit config check [--kind K] FILE`.
pub fn config_check(path: PathBuf, kind: Option<ConfigKind>, json: bool) -> Result<()> {
    match kind.unwrap_or_else(|| detect_kind(&path)) {
        ConfigKind::Leased => {}
        ConfigKind::Agent => {
            let cfg = nosplit_agent::config::load(&path)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&cfg)?);
            } else {
                println!(
                    "{}: ok: agent {} (host id {}), API on {}, {} plane(s), {}",
                    path.display(),
                    cfg.host_name,
                    cfg.host_id,
                    cfg.listen,
                    cfg.planes.len(),
                    cfg.engine
                        .as_ref()
                        .map_or("no engine registration".into(), |e| format!(
                            "registers with {}",
                            e.url
                        ))
                );
            }
            return Ok(());
        }
        ConfigKind::Engine => {
            let cfg = nosplit_engine::config::load(&path)?;
            // The checked config holds secrets: print only what is not one.
            if json {
                let beats: Vec<String> = cfg
                    .heartbeats
                    .iter()
                    .map(|(p, a)| format!("{p:?}={a}"))
                    .collect();
                let v = serde_json::json!({
                    "listen": cfg.listen.to_string(),
                    "store": cfg.store,
                    "api_tokens": cfg.tokens.len(),
                    "agent_token_dir": cfg.agent_tokens.dir(),
                    "heartbeats": beats,
                    "plane_timeout_ms": cfg.plane_timeout.as_millis(),
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            println!(
                "{}: ok: engine API on {}, store {}, {} API token(s), agent tokens in {}, {} heartbeat listener(s)",
                path.display(),
                cfg.listen,
                cfg.store.display(),
                cfg.tokens.len(),
                cfg.agent_tokens.dir().display(),
                cfg.heartbeats.len()
            );
            return Ok(());
        }
    }
    let cfg = nosplit_leased::config::load(&path)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&cfg)?);
    } else {
        println!(
            "{}: ok: host {}, {} lockspace(s), watchdog {:?}, socket {}",
            path.display(),
            cfg.host_name,
            cfg.lockspaces.len(),
            cfg.watchdog,
            cfg.socket_path().display()
        );
    }
    Ok(())
}

/// `nosplit watchdog-lab`: runs the lab watchdog supervisor until it fires.
pub fn watchdog_lab(
    socket: PathBuf,
    pgid: Option<u32>,
    cgroup: Option<PathBuf>,
    margin_ms: u64,
) -> Result<()> {
    use nosplit_leased::watchdog::{run_lab_supervisor, KillTarget};
    let margin = std::time::Duration::from_millis(margin_ms);
    let target = match (pgid, cgroup) {
        (_, Some(dir)) => KillTarget::Cgroup(dir),
        (Some(pgid), None) => KillTarget::ProcessGroup(pgid),
        (None, None) => anyhow::bail!("watchdog-lab: give --pgid or --cgroup"),
    };
    let report = run_lab_supervisor(&socket, target, margin)?;
    eprintln!("watchdog-lab: fired: {report:?}");
    Ok(())
}
