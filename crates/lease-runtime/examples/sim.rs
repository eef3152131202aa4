//! Runs one cluster simulation and prints its report:
//! `cargo run --release -p nosplit-lease-runtime --example sim -- SEED [control]`.

use std::time::{Duration, Instant};

use nosplit_lease_runtime::sim::chaos::{run, SimConfig};

fn main() {
    let mut args = std::env::args().skip(1);
    let seed = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let protection = args.next().as_deref() != Some("control");
    let cfg = SimConfig {
        seed,
        hosts: 3,
        io_timeout_ms: 1000,
        duration: Duration::from_secs(240),
        protection,
        fault_every: Some(Duration::from_secs(20)),
        shared_ratio: 0.15,
    };
    let t0 = Instant::now();
    let r = run(&cfg);
    println!("{r:#?}\nwall {:?}", t0.elapsed());
}
