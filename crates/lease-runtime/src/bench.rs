//! The lease benchmark behind `nosplit lease bench`: join time, acquire +
//! release latency (uncontended and two hosts contending), and bytes moved
//! per acquire, release and renewal, on real files with `O_DIRECT`.
//! `bench/lease-vs-sanlock` runs it side by side with sanlock.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nosplit_lease::format::{Geometry, Name, OwnerId};
use nosplit_lease::host::JoinMode;
use nosplit_lease::paxos::{LeaseError, LeaseMode, OpKind};
use nosplit_lease::view::HostView;
use nosplit_storage::file::FileStorage;

use crate::direct::{self, Direct};
use crate::exec::AreaRef;
use crate::host_runner::HostRunner;
use crate::RuntimeError;

/// Benchmark parameters.
#[derive(Debug, Clone)]
pub struct BenchOpts {
    /// Directory for the lease files (use a real disk, not tmpfs).
    pub dir: PathBuf,
    /// Uncontended acquire + release iterations.
    pub iterations: usize,
    /// io_timeout of the fresh lockspace.
    pub io_timeout_ms: u32,
    /// Host ids per lockspace.
    pub max_hosts: u32,
}

/// Figures; the keys match `bench/sanlock_bench.py`'s.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    /// Seconds for host 1 to join a fresh lockspace.
    pub join_s_host1: f64,
    /// Seconds for host 2 to join while host 1 renews.
    pub join_s_host2: f64,
    /// Uncontended acquire + release, median ms.
    pub acq_rel_ms_median: f64,
    /// Uncontended acquire + release, p99 ms.
    pub acq_rel_ms_p99: f64,
    /// Two hosts contending: successful acquire + release, median ms.
    pub contended_ms_median: f64,
    /// Two hosts contending: p99 ms.
    pub contended_ms_p99: f64,
    /// Successful contended acquires.
    pub contended_ok: u64,
    /// Contended acquires that found the lease busy.
    pub contended_busy: u64,
    /// Bytes read per uncontended acquire.
    pub acquire_read_bytes: u64,
    /// Bytes written per uncontended acquire.
    pub acquire_write_bytes: u64,
    /// Bytes read per release.
    pub release_read_bytes: u64,
    /// Bytes written per release.
    pub release_write_bytes: u64,
    /// Bytes read per renewal (including the liveness scan).
    pub renewal_read_bytes: u64,
    /// Bytes written per renewal.
    pub renewal_write_bytes: u64,
    /// Host ids in the lockspace.
    pub max_hosts: u32,
    /// "nosplit x.y.z".
    pub version: String,
}

/// The `permille`-th per-mille sample of sorted values (nearest rank).
fn pct(sorted: &[f64], permille: usize) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let n = sorted.len() - 1;
    sorted[(n * permille.min(1000)).div_ceil(1000).min(n)]
}

fn open(path: &std::path::Path) -> Result<FileStorage, RuntimeError> {
    direct::open(path, None, None)
}

fn name(s: &str) -> Name {
    // Constant names; validated by a test.
    Name::new(s).unwrap_or_else(|_| unreachable!("constant name"))
}

fn start_host(
    ls_path: &std::path::Path,
    id: u32,
) -> Result<(HostRunner, OwnerId, f64), RuntimeError> {
    let mut st = open(ls_path)?;
    let t0 = Instant::now();
    let (host, _) = direct::join(
        &mut AreaRef {
            storage: &mut st,
            base: 0,
        },
        name("bench"),
        id,
        name(&format!("bench-host-{id}")),
        JoinMode::New { prior_gone: false },
    )?;
    let secs = t0.elapsed().as_secs_f64();
    let owner = host.owner_id().ok_or_else(|| RuntimeError::HostLost {
        path: ls_path.display().to_string(),
        reason: "joined without an owner id".into(),
    })?;
    Ok((HostRunner::start(host, Box::new(st), 0), owner, secs))
}

struct Handles {
    ls: FileStorage,
    res: FileStorage,
    view: HostView,
}

impl Handles {
    fn new(ls: &std::path::Path, res: &std::path::Path) -> Result<Handles, RuntimeError> {
        Ok(Handles {
            ls: open(ls)?,
            res: open(res)?,
            view: HostView::default(),
        })
    }
    fn run(&mut self, d: &Direct, kind: OpKind) -> Result<(), RuntimeError> {
        let mut ls = AreaRef {
            storage: &mut self.ls,
            base: 0,
        };
        let mut res = AreaRef {
            storage: &mut self.res,
            base: 0,
        };
        d.run(kind, &mut ls, &mut res, &mut self.view).map(|_| ())
    }
    fn bytes(&self) -> (u64, u64) {
        let (a, b) = (self.ls.stats(), self.res.stats());
        (
            a.bytes_read + b.bytes_read,
            a.bytes_written + b.bytes_written,
        )
    }
}

const ACQ: OpKind = OpKind::Acquire {
    mode: LeaseMode::Exclusive,
    expect_lver: None,
    revalidate: false,
};
const REL: OpKind = OpKind::Release {
    mode: LeaseMode::Exclusive,
};

/// Runs the benchmark.
pub fn run(opts: &BenchOpts) -> Result<BenchReport, RuntimeError> {
    let ls_path = opts.dir.join("nosplit-lockspace");
    let res_path = opts.dir.join("nosplit-resource");
    let g = Geometry::new(512, u64::from(opts.max_hosts), 1 << 20)?;
    {
        let mut ls = direct::open(&ls_path, None, Some(g.lockspace_len()))?;
        direct::init_lockspace(
            &mut ls,
            0,
            name("bench"),
            g,
            opts.io_timeout_ms,
            rand::random(),
        )?;
        let mut res = direct::open(&res_path, None, Some(g.resource_len()))?;
        direct::init_resource(&mut res, 0, name("bench"), name("res"), g)?;
    }
    let (r1, o1, join1) = start_host(&ls_path, 1)?;
    let (r2, o2, join2) = start_host(&ls_path, 2)?;

    let header = direct::read_header(&mut open(&ls_path)?, 0)?;
    let d1 = Direct {
        header: header.clone(),
        resource: name("res"),
        me: o1,
    };
    let d2 = Direct {
        header,
        resource: name("res"),
        me: o2,
    };

    // Uncontended.
    let mut h = Handles::new(&ls_path, &res_path)?;
    let renew0 = r1.state();
    let mut times = Vec::with_capacity(opts.iterations);
    let (mut acq_r, mut acq_w, mut rel_r, mut rel_w) = (0, 0, 0, 0);
    for _ in 0..opts.iterations {
        let b0 = h.bytes();
        let t0 = Instant::now();
        h.run(&d1, ACQ)?;
        let b1 = h.bytes();
        h.run(&d1, REL)?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        let b2 = h.bytes();
        acq_r += b1.0 - b0.0;
        acq_w += b1.1 - b0.1;
        rel_r += b2.0 - b1.0;
        rel_w += b2.1 - b1.1;
    }
    // Make sure the idle window holds a few renewals for the byte counts.
    std::thread::sleep(Duration::from_millis(u64::from(opts.io_timeout_ms) * 2));
    let renew1 = r1.state();
    let n = opts.iterations.max(1) as u64;
    times.sort_by(f64::total_cmp);

    // Contended: both hosts loop on the same lease for a fixed time.
    let window = Duration::from_secs(3);
    let worker = |d: Direct| -> Result<(Vec<f64>, u64), RuntimeError> {
        let mut h = Handles::new(&ls_path, &res_path)?;
        let (mut ok, mut busy) = (Vec::new(), 0u64);
        let end = Instant::now() + window;
        while Instant::now() < end {
            let t0 = Instant::now();
            match h.run(&d, ACQ) {
                Ok(()) => {
                    h.run(&d, REL)?;
                    ok.push(t0.elapsed().as_secs_f64() * 1e3);
                }
                Err(RuntimeError::Lease {
                    source: LeaseError::Busy { .. } | LeaseError::Contended(_),
                    ..
                }) => busy += 1,
                Err(e) => return Err(e),
            }
        }
        Ok((ok, busy))
    };
    let (c1, c2) = std::thread::scope(|s| {
        let a = s.spawn(|| worker(d1.clone()));
        let b = s.spawn(|| worker(d2.clone()));
        (a.join(), b.join())
    });
    let join_err = |_| RuntimeError::HostLost {
        path: "bench".into(),
        reason: "worker panicked".into(),
    };
    let (mut ok1, busy1) = c1.map_err(join_err)??;
    let (ok2, busy2) = c2.map_err(join_err)??;
    ok1.extend(ok2);
    ok1.sort_by(f64::total_cmp);

    r1.stop(true);
    r2.stop(true);
    let renewals = (renew1.renewals - renew0.renewals).max(1);
    Ok(BenchReport {
        join_s_host1: join1,
        join_s_host2: join2,
        acq_rel_ms_median: pct(&times, 500),
        acq_rel_ms_p99: pct(&times, 990),
        contended_ms_median: pct(&ok1, 500),
        contended_ms_p99: pct(&ok1, 990),
        contended_ok: ok1.len() as u64,
        contended_busy: busy1 + busy2,
        acquire_read_bytes: acq_r / n,
        acquire_write_bytes: acq_w / n,
        release_read_bytes: rel_r / n,
        release_write_bytes: rel_w / n,
        renewal_read_bytes: (renew1.read_bytes - renew0.read_bytes) / renewals,
        renewal_write_bytes: (renew1.write_bytes - renew0.write_bytes) / renewals,
        max_hosts: opts.max_hosts,
        version: format!("nosplit {}", env!("CARGO_PKG_VERSION")),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn constant_names_are_valid() {
        for n in ["bench", "res", "bench-host-1", "bench-host-2000"] {
            nosplit_lease::format::Name::new(n).unwrap();
        }
    }
}
