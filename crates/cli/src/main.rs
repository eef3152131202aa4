//! `nosplit`: one binary for the daemons, the operator commands, the direct
//! lease tools and the lab. This file parses arguments and maps errors to
//! exit codes; the work is in the library crates.

mod agent_cmd;
mod engine_cmd;
mod lab_cmd;
mod lease_cmd;
mod leased_cmd;
mod table;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nosplit_lease::paxos::LeaseError;
use nosplit_lease_runtime::RuntimeError;

/// nosplit: HA virtual machines on shared storage, without split brains.
#[derive(Debug, Parser)]
#[command(name = "nosplit", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Lease tools: direct (init, dump, join, acquire, release, index, bench) and through leased (client, status).
    #[command(subcommand)]
    Lease(lease_cmd::LeaseCmd),
    /// Run the per-host lease daemon.
    Leased {
        /// Its TOML configuration.
        #[arg(long)]
        config: std::path::PathBuf,
    },
    /// The one-machine lab: scenarios, the demo, cleanup.
    #[command(subcommand)]
    Lab(lab_cmd::LabCmd),
    /// A process "VM": writes heartbeat records to its disk (the lab's scale VMs).
    VmProc(lab_cmd::VmProcArgs),
    /// Freeze hook: pause a VM and succeed only once no I/O is in flight (run by leased).
    VmFreeze(lab_cmd::VmFreezeArgs),
    /// Run the per-host agent: VMs under leases, heartbeats on every plane, the HTTP API.
    Agent {
        /// Its TOML configuration.
        #[arg(long)]
        config: std::path::PathBuf,
    },
    /// Run the engine: inventory, detection over three planes and storage, HA recovery, REST API.
    Engine {
        /// Its TOML configuration.
        #[arg(long)]
        config: std::path::PathBuf,
    },
    /// Storage domains (through the engine's API).
    Domain {
        #[command(flatten)]
        conn: engine_cmd::Conn,
        #[command(subcommand)]
        cmd: engine_cmd::DomainCmd,
    },
    /// Hosts (through the engine's API).
    Host {
        #[command(flatten)]
        conn: engine_cmd::Conn,
        #[command(subcommand)]
        cmd: engine_cmd::HostCmd,
    },
    /// VMs (through the engine's API).
    Vm {
        #[command(flatten)]
        conn: engine_cmd::Conn,
        #[command(subcommand)]
        cmd: engine_cmd::VmCmd,
    },
    #[command(flatten)]
    Ops(engine_cmd::OpsCmd),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Lab storage: serve a directory through FUSE with injectable faults (EIO, delay, hang).
    Faultfs(FaultfsArgs),
    /// Lab watchdog: kills a process group unless re-armed in time (stands in for /dev/watchdog).
    WatchdogLab {
        /// Socket to listen on for arm/disarm/fire.
        #[arg(long)]
        socket: std::path::PathBuf,
        /// Process group to kill when it fires.
        #[arg(long, required_unless_present = "cgroup", conflicts_with = "cgroup")]
        pgid: Option<u32>,
        /// Or: a cgroup v2 directory whose processes it kills (`cgroup.kill`), as the lab does.
        #[arg(long)]
        cgroup: Option<std::path::PathBuf>,
        /// Slack after the armed expiry before firing, ms.
        #[arg(long, default_value_t = 1000)]
        margin_ms: u64,
    },
}

/// `nosplit faultfs`.
#[derive(Debug, clap::Args)]
struct FaultfsArgs {
    /// Directory to serve.
    #[arg(long, required_unless_present = "send")]
    backing: Option<std::path::PathBuf>,
    /// Where to mount it.
    #[arg(long, required_unless_present = "send")]
    mount: Option<std::path::PathBuf>,
    /// Control socket (commands: ok, eio, eio-read, eio-write, delay MS, hang, resume, status, abort).
    #[arg(long)]
    control: Option<std::path::PathBuf>,
    /// Send one command to a running instance's control socket and exit.
    #[arg(long, requires = "control", conflicts_with_all = ["backing", "mount"])]
    send: Option<String>,
}

#[derive(Debug, Subcommand)]
enum ConfigCmd {
    /// Validate a configuration file (leased, agent or engine), reporting every problem.
    Check {
        /// The file.
        path: std::path::PathBuf,
        /// Whose configuration it is; by default, told from its keys
        /// (`store`: the engine's, `token_file`: an agent's, else leased's).
        #[arg(long, value_enum)]
        kind: Option<leased_cmd::ConfigKind>,
        /// Print the checked configuration as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Exit codes: 1 other error, 2 usage (clap) or invalid configuration, 3 lease busy or not owned,
/// 4 corrupted or mismatched on-disk data, 5 storage I/O error or timeout, 6 a lab scenario's
/// expectation (split brain or not) was not met.
fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<nosplit_leased::config::ConfigErrors>()
        .is_some()
    {
        return 2;
    }
    if e.downcast_ref::<nosplit_lab::scenario::ScenarioErrors>()
        .is_some()
    {
        return 2;
    }
    if matches!(
        e.downcast_ref::<nosplit_lab::LabError>(),
        Some(nosplit_lab::LabError::Exists { .. })
    ) {
        return 3;
    }
    if e.downcast_ref::<nosplit_agent::config::ConfigErrors>()
        .is_some()
    {
        return 2;
    }
    if e.downcast_ref::<nosplit_engine::config::ConfigErrors>()
        .is_some()
    {
        return 2;
    }
    if let Some(c) = e.downcast_ref::<nosplit_engine_api::client::ClientError>() {
        return match c.kind().map(|k| format!("{k:?}")).as_deref() {
            Some("Invalid") => 2,
            Some("Conflict") => 3,
            _ => 1,
        };
    }
    if e.downcast_ref::<lab_cmd::ExpectationFailed>().is_some() {
        return 6;
    }
    if let Some(r) = e.downcast_ref::<leased_cmd::DaemonRefused>() {
        return match r.kind.as_str() {
            "busy" | "conflict" => 3,
            "corrupt" => 4,
            "io" => 5,
            _ => 1,
        };
    }
    match e.downcast_ref::<RuntimeError>() {
        Some(RuntimeError::Lease { source, .. }) => match source {
            LeaseError::Busy { .. }
            | LeaseError::BusyShared(_)
            | LeaseError::NotOwner(_)
            | LeaseError::OtherMode(_)
            | LeaseError::VersionMismatch { .. }
            | LeaseError::Contended(_) => 3,
            LeaseError::Corrupt(_) | LeaseError::Mismatch(_) => 4,
            LeaseError::Io(_) => 5,
        },
        Some(
            RuntimeError::Format { .. }
            | RuntimeError::SectorMismatch { .. }
            | RuntimeError::Index { .. },
        ) => 4,
        Some(RuntimeError::Io { .. } | RuntimeError::Timeout { .. } | RuntimeError::Open(_)) => 5,
        _ => 1,
    }
}

fn faultfs(a: FaultfsArgs) -> anyhow::Result<()> {
    if let (Some(cmd), Some(sock)) = (&a.send, &a.control) {
        println!("{}", nosplit_faultfs::control(sock, cmd)?);
        return Ok(());
    }
    let (Some(backing), Some(mount)) = (&a.backing, &a.mount) else {
        anyhow::bail!("--backing and --mount are required to serve");
    };
    nosplit_faultfs::run_foreground(backing, mount, a.control.as_deref())?;
    Ok(())
}

/// The error and its causes, skipping causes the message already contains
/// (typed errors embed their source in their own text).
fn describe(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !text.contains(&c) {
            text = format!("{text}: {c}");
        }
    }
    text
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Lease(c) => lease_cmd::run(c),
        Cmd::Leased { config } => leased_cmd::leased(config),
        Cmd::Config(ConfigCmd::Check { path, kind, json }) => {
            leased_cmd::config_check(path, kind, json)
        }
        Cmd::WatchdogLab {
            socket,
            pgid,
            cgroup,
            margin_ms,
        } => leased_cmd::watchdog_lab(socket, pgid, cgroup, margin_ms),
        Cmd::Faultfs(a) => faultfs(a),
        Cmd::Lab(c) => lab_cmd::run(c),
        Cmd::VmProc(a) => lab_cmd::vm_proc(a),
        Cmd::VmFreeze(a) => lab_cmd::vm_freeze(a),
        Cmd::Agent { config } => agent_cmd::agent(config),
        Cmd::Engine { config } => engine_cmd::engine(config),
        Cmd::Domain { conn, cmd } => engine_cmd::domain(&conn, cmd),
        Cmd::Host { conn, cmd } => engine_cmd::host(&conn, cmd),
        Cmd::Vm { conn, cmd } => engine_cmd::vm(&conn, cmd),
        Cmd::Ops(o) => engine_cmd::ops(o),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nosplit: error: {}", describe(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}
