//! `nosplit lease ...`: direct, daemon-less lease tools for operators,
//! scripts and tests (like `sanlock direct`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use nosplit_lease::format::{Geometry, Name, OwnerId, DEFAULT_MAX_HOSTS};
use nosplit_lease::host::JoinMode;
use nosplit_lease::paxos::{LeaseInfo, LeaseMode, OpKind, OpResult};
use nosplit_lease::view::HostView;
use nosplit_lease_runtime::direct::{self, Direct, LockspaceDump};
use nosplit_lease_runtime::exec::{pump_host, AreaRef};
use nosplit_lease_runtime::target::parse_size;
use nosplit_lease_runtime::{bench, index, Target};
use nosplit_storage::{SectorSize, Storage};

use crate::table::render;

/// Direct lease commands.
#[derive(Debug, Subcommand)]
pub enum LeaseCmd {
    /// Initialise a lockspace, a resource lease or a lease index.
    #[command(subcommand)]
    Init(InitCmd),
    /// Show what is on storage, as a table or JSON.
    #[command(subcommand)]
    Dump(DumpCmd),
    /// Join a lockspace as a host (and keep renewing for --hold seconds).
    Join(JoinArgs),
    /// Acquire a resource lease as a joined host incarnation.
    Acquire(OpArgs),
    /// Release a resource lease.
    Release(OpArgs),
    /// Lease index operations.
    Index(IndexArgs),
    /// Benchmark acquire/release, renewals and join on files in --dir.
    Bench(BenchArgs),
    /// Talk to a running leased: register, acquire, release, inquire, lockspaces, events.
    #[command(subcommand)]
    Client(crate::leased_cmd::ClientCmd),
    /// What a running leased holds: lockspaces, renewal latency, hosts, leases.
    Status {
        #[command(flatten)]
        socket: crate::leased_cmd::SocketArg,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

/// Sector size choices.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Sector {
    #[value(name = "512")]
    B512,
    #[value(name = "4096")]
    B4096,
}

impl From<Sector> for SectorSize {
    fn from(s: Sector) -> SectorSize {
        match s {
            Sector::B512 => SectorSize::B512,
            Sector::B4096 => SectorSize::B4096,
        }
    }
}

/// Geometry options shared by the init commands.
#[derive(Debug, Args)]
pub struct GeometryArgs {
    /// Sector size of the storage.
    #[arg(long, value_enum, default_value = "512")]
    sector_size: Sector,
    /// Number of host ids.
    #[arg(long, default_value_t = DEFAULT_MAX_HOSTS)]
    max_hosts: u32,
    /// Size and alignment of each lease area (e.g. 1M, 2M, 8M).
    #[arg(long, default_value = "1M", value_parser = parse_size_arg)]
    align: u64,
    /// Create (or extend) a regular file to the size needed.
    #[arg(long)]
    create: bool,
}

fn parse_size_arg(s: &str) -> Result<u64, String> {
    parse_size(s).ok_or_else(|| format!("{s:?} is not a size (e.g. 4096, 1M)"))
}

impl GeometryArgs {
    fn geometry(&self) -> Result<Geometry> {
        let s = SectorSize::from(self.sector_size).bytes() as u64;
        Ok(Geometry::new(s, u64::from(self.max_hosts), self.align)?)
    }
}

/// What to initialise.
#[derive(Debug, Subcommand)]
pub enum InitCmd {
    /// A lockspace (host leases) at TARGET.
    Lockspace {
        /// PATH[:OFFSET].
        target: Target,
        /// Lockspace name.
        #[arg(long)]
        name: Name,
        /// The one timing parameter (ms); every other duration derives from it.
        #[arg(long, default_value_t = 10_000)]
        io_timeout_ms: u32,
        #[command(flatten)]
        geometry: GeometryArgs,
    },
    /// A free resource lease at TARGET.
    Resource {
        /// PATH[:OFFSET].
        target: Target,
        /// The lockspace it belongs to.
        #[arg(long)]
        lockspace: Name,
        /// Resource name.
        #[arg(long)]
        name: Name,
        #[command(flatten)]
        geometry: GeometryArgs,
    },
    /// An empty lease index with SLOTS lease slots at TARGET.
    Index {
        /// PATH[:OFFSET].
        target: Target,
        /// The lockspace its leases belong to.
        #[arg(long)]
        lockspace: Name,
        /// Number of lease slots.
        #[arg(long, default_value_t = 1024)]
        slots: u32,
        #[command(flatten)]
        geometry: GeometryArgs,
    },
}

/// What to show.
#[derive(Debug, Subcommand)]
pub enum DumpCmd {
    /// A lockspace: header, timing and every host slot.
    Lockspace {
        /// PATH[:OFFSET].
        target: Target,
        /// JSON output.
        #[arg(long)]
        json: bool,
        /// Watch the slots this many seconds and report each host as FREE,
        /// LIVE, FAIL or DEAD (DEAD needs at least the host-dead time).
        #[arg(long)]
        observe: Option<f64>,
        /// Sector size of the storage.
        #[arg(long, value_enum, default_value = "512")]
        sector_size: Sector,
    },
    /// A resource lease: leader, request, ballots, shared holders.
    Resource {
        /// PATH[:OFFSET].
        target: Target,
        /// JSON output.
        #[arg(long)]
        json: bool,
        /// Sector size of the storage.
        #[arg(long, value_enum, default_value = "512")]
        sector_size: Sector,
    },
}

/// `lease join`.
#[derive(Debug, Args)]
pub struct JoinArgs {
    /// Lockspace PATH[:OFFSET].
    target: Target,
    /// Lockspace name.
    #[arg(long)]
    lockspace: Name,
    /// Our host id.
    #[arg(long)]
    host_id: u32,
    /// Our host name.
    #[arg(long)]
    host_name: Name,
    /// Keep renewing this many seconds after joining.
    #[arg(long, default_value_t = 0.0)]
    hold: f64,
    /// Do not leave at the end: the slot stays as a crash would leave it.
    #[arg(long)]
    no_leave: bool,
    /// Sector size of the storage.
    #[arg(long, value_enum, default_value = "512")]
    sector_size: Sector,
}

/// `lease acquire` / `lease release`.
#[derive(Debug, Args)]
pub struct OpArgs {
    /// Lockspace PATH[:OFFSET].
    #[arg(long)]
    lockspace_path: Target,
    /// Resource lease PATH[:OFFSET].
    #[arg(long)]
    resource_path: Target,
    /// Resource name.
    #[arg(long)]
    resource: Name,
    /// Act as this host id...
    #[arg(long)]
    host_id: u32,
    /// ...at this generation (printed by `lease join`).
    #[arg(long)]
    generation: u64,
    /// Shared mode.
    #[arg(long)]
    shared: bool,
    /// Acquire only at this lease version.
    #[arg(long)]
    lver: Option<u64>,
    /// Retry a busy lease for up to this many seconds.
    #[arg(long)]
    wait: Option<f64>,
    /// JSON output.
    #[arg(long)]
    json: bool,
    /// Sector size of the storage.
    #[arg(long, value_enum, default_value = "512")]
    sector_size: Sector,
}

/// `lease index`: options shared by every index operation.
#[derive(Debug, Args)]
pub struct IndexArgs {
    /// Sector size of the storage.
    #[arg(long, value_enum, default_value = "512", global = true)]
    sector_size: Sector,
    #[command(subcommand)]
    cmd: IndexCmd,
}

/// Index operations.
#[derive(Debug, Subcommand)]
pub enum IndexCmd {
    /// Add a lease named NAME (a free lease in the first free slot).
    Add { target: Target, name: Name },
    /// Remove NAME (refused while held).
    Remove { target: Target, name: Name },
    /// Print NAME's slot and its byte offset.
    Lookup { target: Target, name: Name },
    /// List every lease.
    List {
        /// Index PATH[:OFFSET].
        target: Target,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild the entries from the slots after an interrupted update.
    Rebuild { target: Target },
}

/// `lease bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Directory for the lease files (a real disk, not tmpfs).
    #[arg(long)]
    dir: PathBuf,
    /// Uncontended acquire + release iterations.
    #[arg(long, default_value_t = 500)]
    iterations: usize,
    /// io_timeout of the fresh lockspace.
    #[arg(long, default_value_t = 1000)]
    io_timeout_ms: u32,
    /// Host ids in the lockspace.
    #[arg(long, default_value_t = DEFAULT_MAX_HOSTS)]
    max_hosts: u32,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

fn open_at(t: &Target, sector: Sector, create: Option<u64>) -> Result<Box<dyn Storage>> {
    Ok(Box::new(direct::open(
        &t.path,
        Some(sector.into()),
        create,
    )?))
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Runs a lease command.
pub fn run(cmd: LeaseCmd) -> Result<()> {
    match cmd {
        LeaseCmd::Init(c) => init(c),
        LeaseCmd::Dump(c) => dump(c),
        LeaseCmd::Join(a) => join(a),
        LeaseCmd::Acquire(a) => op(a, true),
        LeaseCmd::Release(a) => op(a, false),
        LeaseCmd::Index(c) => index_cmd(c),
        LeaseCmd::Client(c) => crate::leased_cmd::client(c),
        LeaseCmd::Status { socket, json } => crate::leased_cmd::status(socket, json),
        LeaseCmd::Bench(a) => {
            let opts = bench::BenchOpts {
                dir: a.dir,
                iterations: a.iterations.max(1),
                io_timeout_ms: a.io_timeout_ms,
                max_hosts: a.max_hosts,
            };
            let r = bench::run(&opts)?;
            if a.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                print_json(&r)?;
            }
            Ok(())
        }
    }
}

fn init(c: InitCmd) -> Result<()> {
    match c {
        InitCmd::Lockspace {
            target,
            name,
            io_timeout_ms,
            geometry,
        } => {
            let g = geometry.geometry()?;
            let create = geometry.create.then_some(target.offset + g.lockspace_len());
            let mut s = open_at(&target, geometry.sector_size, create)?;
            let h = direct::init_lockspace(
                &mut *s,
                target.offset,
                name,
                g,
                io_timeout_ms,
                rand::random(),
            )?;
            println!(
                "initialised lockspace {} at {target}: {} hosts, {}-byte sectors, io_timeout {} ms",
                h.name,
                g.max_hosts(),
                g.sector(),
                h.io_timeout_ms
            );
        }
        InitCmd::Resource {
            target,
            lockspace,
            name,
            geometry,
        } => {
            let g = geometry.geometry()?;
            let create = geometry.create.then_some(target.offset + g.resource_len());
            let mut s = open_at(&target, geometry.sector_size, create)?;
            direct::init_resource(&mut *s, target.offset, lockspace.clone(), name.clone(), g)?;
            println!("initialised resource lease {lockspace}/{name} at {target}");
        }
        InitCmd::Index {
            target,
            lockspace,
            slots,
            geometry,
        } => {
            let g = geometry.geometry()?;
            let need = index::index_len(&lockspace, g, slots);
            let create = geometry.create.then_some(target.offset + need);
            let mut s = open_at(&target, geometry.sector_size, create)?;
            index::init(&mut *s, target.offset, lockspace.clone(), g, slots)?;
            println!(
                "initialised lease index for {lockspace} at {target}: {slots} slots, {need} bytes"
            );
        }
    }
    Ok(())
}

fn owner(o: Option<OwnerId>) -> String {
    o.map(|o| format!("{}:{}", o.host_id, o.generation))
        .unwrap_or_else(|| "-".into())
}

fn print_lockspace(d: &LockspaceDump) {
    let h = &d.header;
    let t = &d.timing;
    println!(
        "lockspace {}  sector {}  max_hosts {}  align {}  io_timeout {} ms",
        h.name,
        h.geometry.sector(),
        h.geometry.max_hosts(),
        h.geometry.align(),
        h.io_timeout_ms
    );
    println!(
        "timing: renew every {:?}, fail {:?}, kill deadline {:?}, watchdog {:?}, host dead {:?}, join wait {:?}",
        t.renew_interval, t.renew_fail, t.kill_deadline, t.watchdog_fire, t.host_dead, t.join_wait
    );
    let rows: Vec<Vec<String>> = d
        .slots
        .iter()
        .map(|s| match (&s.slot, &s.error) {
            (Some(x), _) => vec![
                s.host_id.to_string(),
                x.host_name.to_string(),
                x.generation.to_string(),
                x.seq.to_string(),
                x.owner_time_ms.to_string(),
                if x.released {
                    "released".into()
                } else {
                    "in use".into()
                },
            ],
            (None, e) => vec![
                s.host_id.to_string(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                format!("CORRUPT: {}", e.clone().unwrap_or_default()),
            ],
        })
        .collect();
    print!(
        "{}",
        render(&["HOST", "NAME", "GEN", "SEQ", "OWNER_MS", "STATE"], &rows)
    );
}

fn print_resource(i: &LeaseInfo) {
    let l = &i.leader;
    println!(
        "resource {}/{}  lver {}  owner {}  written by {}",
        l.lockspace,
        l.resource,
        l.lver,
        owner(l.owner),
        owner(l.writer)
    );
    if let Some(r) = &i.request {
        println!(
            "request: lver {} force {} by host {}",
            r.lver, r.force_mode, r.requester
        );
    }
    let rows: Vec<Vec<String>> = i
        .ballots
        .iter()
        .map(|b| {
            vec![
                b.host_id.to_string(),
                b.lver.to_string(),
                b.mbal.to_string(),
                b.bal.to_string(),
                owner(b.inp),
                b.shared
                    .map(|g| format!("gen {g}"))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print!(
        "{}",
        render(&["HOST", "LVER", "MBAL", "BAL", "INP", "SHARED"], &rows)
    );
}

fn dump(c: DumpCmd) -> Result<()> {
    match c {
        DumpCmd::Lockspace {
            target,
            json,
            observe: Some(secs),
            sector_size,
        } => {
            let mut s = open_at(&target, sector_size, None)?;
            let watch = Duration::try_from_secs_f64(secs)
                .map_err(|_| anyhow::anyhow!("--observe {secs}: not a duration"))?;
            let (d, states) = direct::observe_lockspace(&mut *s, target.offset, watch)?;
            if json {
                let states: Vec<_> = states
                    .iter()
                    .map(|(h, l)| serde_json::json!({"host_id": h, "state": l}))
                    .collect();
                return print_json(
                    &serde_json::json!({"lockspace": d, "observed_s": secs, "hosts": states}),
                );
            }
            print_lockspace(&d);
            println!("observed for {secs} s from this host's clock:");
            let rows: Vec<Vec<String>> = states
                .iter()
                .map(|(h, l)| vec![h.to_string(), l.to_string()])
                .collect();
            print!("{}", render(&["HOST", "LIVENESS"], &rows));
            Ok(())
        }
        DumpCmd::Lockspace {
            target,
            json,
            observe: None,
            sector_size,
        } => {
            let mut s = open_at(&target, sector_size, None)?;
            let d = direct::read_lockspace(&mut *s, target.offset)?;
            if json {
                print_json(&d)
            } else {
                print_lockspace(&d);
                Ok(())
            }
        }
        DumpCmd::Resource {
            target,
            json,
            sector_size,
        } => {
            let mut s = open_at(&target, sector_size, None)?;
            let i = direct::read_resource(&mut *s, target.offset)?;
            if json {
                print_json(&i)
            } else {
                print_resource(&i);
                Ok(())
            }
        }
    }
}

fn join(a: JoinArgs) -> Result<()> {
    let mut s = open_at(&a.target, a.sector_size, None)?;
    let mut ls = AreaRef {
        storage: &mut *s,
        base: a.target.offset,
    };
    let t0 = std::time::Instant::now();
    let (mut host, _) = direct::join(
        &mut ls,
        a.lockspace,
        a.host_id,
        a.host_name,
        JoinMode::New { prior_gone: false },
    )?;
    let gen = host.owner_id().map(|o| o.generation).unwrap_or(0);
    println!(
        "joined as host {} generation {gen} in {:.3} s",
        a.host_id,
        t0.elapsed().as_secs_f64()
    );
    if a.hold > 0.0 {
        let until = ls.storage.now() + Duration::from_secs_f64(a.hold);
        let events = pump_host(&mut host, &mut ls, until, |e| {
            matches!(e, nosplit_lease::host::HostEvent::Lost(_))
        });
        if let Some(nosplit_lease::host::HostEvent::Lost(r)) = events.last() {
            anyhow::bail!("host lease lost while holding: {r}");
        }
    }
    if !a.no_leave {
        direct::leave(&mut host, &mut ls)?;
        println!("left");
    }
    Ok(())
}

fn op(a: OpArgs, acquire: bool) -> Result<()> {
    let mut ls_s = open_at(&a.lockspace_path, a.sector_size, None)?;
    let mut res_s = open_at(&a.resource_path, a.sector_size, None)?;
    let mut ls = AreaRef {
        storage: &mut *ls_s,
        base: a.lockspace_path.offset,
    };
    let mut res = AreaRef {
        storage: &mut *res_s,
        base: a.resource_path.offset,
    };
    let me = OwnerId {
        host_id: a.host_id,
        generation: a.generation,
    };
    let d = Direct::prepare(&mut ls, a.resource.clone(), me)?;
    let mode = if a.shared {
        LeaseMode::Shared
    } else {
        LeaseMode::Exclusive
    };
    let mut view = HostView::default();
    let r = if acquire {
        let wait = a.wait.map(Duration::from_secs_f64);
        d.acquire(mode, a.lver, wait, &mut ls, &mut res, &mut view)?
    } else {
        d.run(OpKind::Release { mode }, &mut ls, &mut res, &mut view)?
    };
    let text = match r {
        OpResult::Acquired {
            lver,
            mode,
            already,
        } => {
            if a.json {
                return print_json(
                    &serde_json::json!({"acquired": true, "lver": lver, "mode": mode, "already": already}),
                );
            }
            format!(
                "acquired {} {mode:?} at lver {lver}{}",
                a.resource,
                if already { " (already held)" } else { "" }
            )
        }
        OpResult::Released => {
            if a.json {
                return print_json(&serde_json::json!({"released": true}));
            }
            format!("released {}", a.resource)
        }
        OpResult::Info(_) => String::new(),
    };
    println!("{text}");
    Ok(())
}

fn index_cmd(a: IndexArgs) -> Result<()> {
    let sector = a.sector_size;
    let open = |t: &Target| open_at(t, sector, None);
    match a.cmd {
        IndexCmd::Add { target, name } => {
            let mut s = open(&target)?;
            let (slot, off) = index::add(&mut *s, target.offset, &name)?;
            println!("added {name} in slot {slot} at offset {off}");
        }
        IndexCmd::Remove { target, name } => {
            let mut s = open(&target)?;
            let slot = index::remove(&mut *s, target.offset, &name)?;
            println!("removed {name} from slot {slot}");
        }
        IndexCmd::Lookup { target, name } => {
            let mut s = open(&target)?;
            let (slot, off) = index::lookup(&mut *s, target.offset, &name)?;
            println!("{name} slot {slot} offset {off}");
        }
        IndexCmd::List { target, json } => {
            let mut s = open(&target)?;
            let (t, leases) =
                index::list(&mut *s, target.offset).context("listing the lease index")?;
            if json {
                let v: Vec<_> = leases
                    .iter()
                    .map(|(slot, l)| match l {
                        Ok(l) => serde_json::json!({"slot": slot, "offset": target.offset + t.header.slot_offset(*slot), "leader": l}),
                        Err(e) => serde_json::json!({"slot": slot, "error": e}),
                    })
                    .collect();
                return print_json(&serde_json::json!({"header": t.header, "leases": v}));
            }
            println!(
                "index for lockspace {}: {} slots, {} used",
                t.header.lockspace,
                t.header.slots,
                leases.len()
            );
            let rows: Vec<Vec<String>> = leases
                .iter()
                .map(|(slot, l)| match l {
                    Ok(l) => vec![
                        slot.to_string(),
                        (target.offset + t.header.slot_offset(*slot)).to_string(),
                        l.resource.to_string(),
                        l.lver.to_string(),
                        owner(l.owner),
                    ],
                    Err(e) => vec![
                        slot.to_string(),
                        "-".into(),
                        format!("CORRUPT: {e}"),
                        "-".into(),
                        "-".into(),
                    ],
                })
                .collect();
            print!(
                "{}",
                render(&["SLOT", "OFFSET", "NAME", "LVER", "OWNER"], &rows)
            );
        }
        IndexCmd::Rebuild { target } => {
            let mut s = open(&target)?;
            let r = index::rebuild(&mut *s, target.offset)?;
            println!(
                "rebuilt: {} leases, {} corrupt slots, {} foreign slots",
                r.used,
                r.corrupt.len(),
                r.foreign.len()
            );
            for (slot, e) in r.corrupt {
                println!("  slot {slot}: {e}");
            }
        }
    }
    Ok(())
}
