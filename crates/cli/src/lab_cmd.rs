//! `nosplit lab ...` and `nosplit vm-proc`: the one-machine lab's commands.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Subcommand;
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
    /// Check a scenario file and print it as JSON.
    Check {
        /// The scenario.
        file: PathBuf,
    },
    /// Remove everything a lab made (processes, mounts, namespaces, links,
    /// cgroups, files), even after a crash. Safe to run twice.
    Down {
        /// Lab name.
        #[arg(long, default_value = "nsl")]
        lab: String,
        /// Lab root directory.
        #[arg(long)]
        root: Option<PathBuf>,
    },
}

/// Options shared by `run` and `demo`.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// Lab name ([a-z][a-z0-9]{0,4}).
    #[arg(long, default_value = "nsl")]
    lab: String,
    /// Lab root directory (default /run/nosplit-lab/<lab>).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Where to write report.json and summary.txt.
    #[arg(long, default_value = "lab-report")]
    out: PathBuf,
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
    println!("{summary}");
    println!("report: {}", json.display());
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
