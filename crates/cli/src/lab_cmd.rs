//! `nosplit lab ...` and `nosplit vm-proc`: the one-machine lab's commands.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Subcommand;
use nosplit_lab::control;
use nosplit_lab::scenario::{self, RunOpts};

/// The demo scenario (also in `scenarios/demo.toml`).
const DEMO: &str = include_str!("../../../scenarios/demo.toml");

/// `nosplit lab`.
#[derive(Debug, Subcommand)]
pub enum LabCmd {
    /// Run a scenario file (TOML): lab up, VMs, faults over time, report, lab down.
    Run {
        /// The scenario.
        file: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// The README's demo: 3 hosts, 2 HA QEMU guests and 4 process VMs; the host
    /// running a guest is powered off and the guest comes back on another host.
    Demo {
        #[command(flatten)]
        common: Common,
    },
    /// Bring a lab up and leave it running: hosts with their daemons, and VMs
    /// (placed round robin) under leases. Use status, fault, power, exec, down.
    Up {
        #[command(flatten)]
        at: At,
        /// Hosts.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=16))]
        hosts: u32,
        /// Lockspace io_timeout, ms (50 to 300000).
        #[arg(long, default_value_t = 1000, value_parser = io_timeout)]
        io_timeout_ms: u32,
        /// QEMU guests to start (g1, g2, ...).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=6))]
        qemu: u32,
        /// Process VMs to start (p1, p2, ...).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=500))]
        procs: u32,
        /// Address prefix of the planes (a private `a.b`).
        #[arg(long, default_value = "10.77")]
        prefix: nosplit_labnet::Prefix,
        /// Remove a lab of the same name first (without this, `up` refuses
        /// when the lab exists).
        #[arg(long)]
        replace: bool,
    },
    /// Each host: power, planes, storage faults, lease state and processes.
    Status {
        #[command(flatten)]
        at: At,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a command on a host (in its network namespace and cgroup).
    Exec {
        #[command(flatten)]
        at: At,
        /// Host number.
        #[arg(value_parser = host_number)]
        host: u32,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
    /// Inject or clear a fault on a host: `storage MODE` (ok, eio, eio-read,
    /// eio-write, hang, delay:<ms>) or `net PLANE FAULT` (PLANE mgmt, svc, stor,
    /// all; FAULT down, drop, drop-in, drop-out, ok).
    #[command(
        subcommand_value_name = "storage|net",
        subcommand_help_heading = "Faults"
    )]
    Fault {
        #[command(flatten)]
        at: At,
        /// Host number.
        #[arg(value_parser = host_number)]
        host: u32,
        #[command(subcommand)]
        fault: FaultCmd,
    },
    /// Power a host off (every process at once) or on (daemons start and rejoin).
    Power {
        #[command(flatten)]
        at: At,
        /// Host number.
        #[arg(value_parser = host_number)]
        host: u32,
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Check a scenario file and print it as JSON.
    Check {
        /// The scenario.
        file: PathBuf,
    },
    /// Remove everything a lab made (processes, mounts, namespaces, links,
    /// cgroups, files), even after a crash. Safe to run twice.
    Down {
        /// Lab name.
        #[arg(long, default_value = "nsl", value_parser = lab_name)]
        lab: String,
        /// Lab root directory.
        #[arg(long)]
        root: Option<PathBuf>,
    },
}

/// `lab fault HOST ...`: what to inject.
#[derive(Debug, Subcommand)]
pub enum FaultCmd {
    /// The host's storage: ok, eio, eio-read, eio-write, hang, delay:<ms>.
    Storage {
        /// The mode.
        #[arg(value_parser = scenario::storage_mode)]
        mode: String,
    },
    /// One of the host's planes (mgmt, svc, stor, all): down, drop, drop-in,
    /// drop-out, ok.
    Net {
        /// The plane.
        #[arg(value_parser = scenario::plane)]
        plane: scenario::PlaneSel,
        /// The fault.
        #[arg(value_parser = scenario::net_fault)]
        fault: scenario::NetFault,
    },
}

/// Which lab.
#[derive(Debug, clap::Args)]
pub struct At {
    /// Lab name.
    #[arg(long, default_value = "nsl", value_parser = lab_name)]
    lab: String,
    /// Lab root directory (default /run/nosplit-lab/<lab>).
    #[arg(long)]
    root: Option<PathBuf>,
}

/// Options shared by `run` and `demo`.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// Lab name ([a-z][a-z0-9]{0,4}).
    #[arg(long, default_value = "nsl", value_parser = lab_name)]
    lab: String,
    /// Lab root directory (default /run/nosplit-lab/<lab>).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Where to write report.json and summary.txt.
    #[arg(long, default_value = "lab-report")]
    out: PathBuf,
    /// Address prefix of the lab's planes (`a.b`, a private range): 10.77 gives
    /// 10.77.1.0/24 (management), 10.77.2.0/24 (service), 10.77.3.0/24 (storage).
    #[arg(long, default_value = "10.77")]
    prefix: nosplit_labnet::Prefix,
    /// Heartbeat interval of the VMs, ms.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(50..=5000))]
    interval_ms: u32,
}

/// A run whose expectation (`[expect]`) was not met.
#[derive(Debug, thiserror::Error)]
#[error("scenario expectation not met: split brain expected {expected}, oracle found {found}")]
pub struct ExpectationFailed {
    expected: bool,
    found: usize,
}

pub fn run(cmd: LabCmd) -> Result<()> {
    match cmd {
        LabCmd::Run { file, common } => {
            let sc = scenario::parse_file(&file)?;
            run_scenario(&sc, &common)
        }
        LabCmd::Demo { common } => {
            let sc = scenario::parse(DEMO, "built-in demo")?;
            run_scenario(&sc, &common)
        }
        LabCmd::Up {
            at,
            hosts,
            io_timeout_ms,
            qemu,
            procs,
            prefix,
            replace,
        } => {
            let mut vms: Vec<(String, scenario::VmKind)> = (1..=qemu)
                .map(|i| (format!("g{i}"), scenario::VmKind::Qemu))
                .collect();
            vms.extend((1..=procs).map(|i| (format!("p{i}"), scenario::VmKind::Process)));
            let spec = nosplit_lab::LabSpec {
                name: at.lab.clone(),
                hosts,
                io_timeout_ms,
                root: at.root,
                bin: std::env::current_exe().context("finding the nosplit binary")?,
                protection: true,
                vms,
                interval_ms: 200,
                prefix,
                engine: false,
                replace,
            };
            let f = control::up(spec, &mut |l| println!("{l}"))?;
            println!(
                "lab {} is up: {} hosts, {} VMs, root {} (nosplit lab status --lab {})",
                f.name,
                f.hosts,
                f.vms.len(),
                f.root.display(),
                f.name
            );
            Ok(())
        }
        LabCmd::Status { at, json } => {
            let f = control::LabFile::load(&at.lab, at.root)?;
            let st = control::status(&f)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
                return Ok(());
            }
            println!(
                "lab {} ({} hosts, io_timeout {} ms, prefix {})",
                f.name, f.hosts, f.io_timeout_ms, f.prefix
            );
            for h in st {
                println!(
                    "h{}: {}  mount {}  storage {}  lease {}",
                    h.host,
                    if h.on { "ON " } else { "OFF" },
                    if h.mounted { "yes" } else { "no" },
                    h.storage,
                    h.lease
                );
                let planes: Vec<String> = h
                    .planes
                    .iter()
                    .map(|(p, up, drop)| {
                        format!(
                            "{p} {}{}",
                            if *up { "up" } else { "DOWN" },
                            if drop == "none" {
                                String::new()
                            } else {
                                format!(" drop {drop}")
                            }
                        )
                    })
                    .collect();
                println!("    planes: {}", planes.join(", "));
                for (pid, cmd) in h.processes {
                    println!("    {pid:>7} {cmd}");
                }
            }
            Ok(())
        }
        LabCmd::Exec { at, host, argv } => {
            let f = control::LabFile::load(&at.lab, at.root)?;
            f.host(host)?;
            let lab = nosplit_labnet::LabName::new(&f.name)?;
            let args: Vec<&str> = argv.iter().map(String::as_str).collect();
            let o = nosplit_labnet::run_in_host(&lab, host, &args)?;
            use std::io::Write as _;
            std::io::stdout().write_all(&o.stdout)?;
            std::io::stderr().write_all(&o.stderr)?;
            if !o.status.success() {
                anyhow::bail!("{argv:?} on h{host}: {}", o.status);
            }
            Ok(())
        }
        LabCmd::Fault { at, host, fault } => {
            let f = control::LabFile::load(&at.lab, at.root)?;
            match fault {
                FaultCmd::Storage { mode } => println!("{}", f.host(host)?.storage_fault(&mode)?),
                FaultCmd::Net { plane, fault } => {
                    control::net_fault(&f, host, plane, fault)?;
                    println!("h{host}: net {plane:?} {fault:?}");
                }
            }
            Ok(())
        }
        LabCmd::Power { at, host, state } => {
            let f = control::LabFile::load(&at.lab, at.root)?;
            if state == "off" {
                let left = control::power_off(&f, host)?;
                println!(
                    "h{host}: powered off{}",
                    if left.is_empty() {
                        String::new()
                    } else {
                        format!(" ({} processes still exiting: {left:?})", left.len())
                    }
                );
            } else {
                control::power_on(&f, host)?;
                println!("h{host}: powered on and joined");
            }
            Ok(())
        }
        LabCmd::Check { file } => {
            let sc = scenario::parse_file(&file)?;
            println!("{}", serde_json::to_string_pretty(&sc)?);
            Ok(())
        }
        LabCmd::Down { lab, root } => {
            println!("{}", nosplit_lab::down(&lab, root)?);
            Ok(())
        }
    }
}

fn run_scenario(sc: &scenario::Scenario, c: &Common) -> Result<()> {
    let opts = RunOpts {
        bin: std::env::current_exe().context("finding the nosplit binary")?,
        lab: c.lab.clone(),
        root: c.root.clone(),
        interval_ms: c.interval_ms,
        prefix: c.prefix,
    };
    let start = std::time::Instant::now();
    let report = scenario::run(sc, &opts, &mut |line| {
        println!("[{:>6.1}s] {line}", start.elapsed().as_secs_f64());
    })?;
    std::fs::create_dir_all(&c.out).with_context(|| format!("creating {}", c.out.display()))?;
    let json = c.out.join("report.json");
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let summary = report.summary();
    std::fs::write(c.out.join("summary.txt"), format!("{summary}\n"))
        .with_context(|| format!("writing {}", c.out.display()))?;
    // The summary line (`summary: vms=...`) is the last line of stdout.
    println!("report: {}", json.display());
    println!("{summary}");
    if report.expectation_met == Some(false) {
        return Err(ExpectationFailed {
            expected: sc.expect_split_brain.unwrap_or_default(),
            found: report.split_brains,
        }
        .into());
    }
    Ok(())
}

/// `nosplit vm-proc`: a process "VM" that writes heartbeat records to its disk.
#[derive(Debug, clap::Args)]
pub struct VmProcArgs {
    /// The VM's disk (at least 32 KiB).
    #[arg(long)]
    disk: PathBuf,
    /// VM id.
    #[arg(long)]
    vm: String,
    /// Instance id.
    #[arg(long)]
    inst: String,
    /// Time between records, ms.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    interval_ms: u64,
}

pub fn vm_proc(a: VmProcArgs) -> Result<()> {
    use nosplit_heartbeat::writer::{run, WriterConfig};
    let mut cfg = WriterConfig::new(a.disk, a.vm, a.inst);
    cfg.interval = Duration::from_millis(a.interval_ms);
    // SIGTERM keeps its default action: a process VM dies at once, as a
    // guest would at a hard stop.
    static STOP: AtomicBool = AtomicBool::new(false);
    let stats = run(&cfg, &STOP)?;
    eprintln!("vm-proc: stopped: {stats:?}");
    Ok(())
}

/// `--io-timeout-ms`: a number the lockspace format accepts.
fn io_timeout(s: &str) -> Result<u32, String> {
    let ms: u32 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number of milliseconds ({e})"))?;
    nosplit_lease::format::check_io_timeout(ms)?;
    Ok(ms)
}

/// `--lab`: a valid lab name.
fn lab_name(s: &str) -> Result<String, String> {
    nosplit_labnet::LabName::new(s)
        .map(|n| n.to_string())
        .map_err(|e| format!("{e} (a lab name is 1 to 5 of a-z 0-9, starting with a letter)"))
}

/// A host number (a lab has at most 64 hosts; the lab's own count is
/// checked once its record is read).
fn host_number(s: &str) -> Result<u32, String> {
    let max = nosplit_labnet::naming::MAX_HOSTS;
    match s.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a host number (1..={max})")),
    }
}

/// `nosplit vm-freeze`: the freeze hook the agent registers with leased.
#[derive(Debug, clap::Args)]
pub struct VmFreezeArgs {
    /// The VM's second QMP socket (QEMU guests); absent for process VMs.
    #[arg(long)]
    qmp: Option<PathBuf>,
    /// The VM's process (leased appends it).
    #[arg(long)]
    pid: u32,
    /// How long the pause may take, ms (the drain hangs on dead storage).
    #[arg(long, default_value_t = 400, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    timeout_ms: u64,
}

/// Exit 0 only when the VM is frozen with no I/O in flight.
pub fn vm_freeze(a: VmFreezeArgs) -> Result<()> {
    let t = Duration::from_millis(a.timeout_ms);
    match a.qmp {
        Some(sock) => {
            let st = nosplit_agent::freeze::freeze_qemu(&sock, t)?;
            println!("frozen: QEMU pid {} {st}", a.pid);
        }
        None => {
            nosplit_agent::freeze::freeze_process(a.pid, t)?;
            println!("frozen: process {}", a.pid);
        }
    }
    Ok(())
}
