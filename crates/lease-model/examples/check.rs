//! Checks every protocol variant against the bound presets and prints what the checker found.
//!
//! ```text
//! cargo run -p nosplit-lease-model --release --example check            # every preset
//! cargo run -p nosplit-lease-model --release --example check -- crash-restart storage-failure
//! cargo run -p nosplit-lease-model --release --example check -- --trace  # print counterexamples
//! cargo run -p nosplit-lease-model --release --example check -- storage-failure host_dead=2
//! ```
//!
//! `field=value` arguments override that field of [`Bounds`] in every preset run.
//!
//! Exits non-zero if the correct protocol violates a property or misses an example, or a
//! broken variant is not caught.

use nosplit_lease_model::{check, Bounds, LeaseModel, PropertyOutcome, Variant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let trace = args.iter().any(|a| a == "--trace");
    let wanted: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--") && !a.contains('='))
        .map(String::as_str)
        .collect();
    let overrides: Vec<(&str, u8)> = args
        .iter()
        .filter_map(|a| a.split_once('='))
        .map(|(k, v)| {
            let v = v.parse().unwrap_or_else(|_| {
                eprintln!("{k}={v}: not a number from 0 to 255");
                std::process::exit(2)
            });
            (k, v)
        })
        .collect();
    for w in &wanted {
        if !Bounds::PRESETS.iter().any(|(n, _)| n == w) {
            let names: Vec<&str> = Bounds::PRESETS.iter().map(|(n, _)| *n).collect();
            eprintln!("unknown preset {w}; presets: {}", names.join(", "));
            std::process::exit(2);
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut ok = true;
    for (name, mut bounds) in Bounds::PRESETS {
        if !wanted.is_empty() && !wanted.contains(&name) {
            continue;
        }
        for &(k, v) in &overrides {
            if !set(&mut bounds, k, v) {
                eprintln!("unknown bounds field {k}");
                std::process::exit(2);
            }
        }
        if let Err(e) = bounds.validate() {
            eprintln!("{e}");
            std::process::exit(2);
        }
        println!("== preset {name}: {bounds:?}");
        for variant in Variant::ALL {
            if !variant.can_fail_within(&bounds) {
                println!("{variant}: skipped (these bounds have no failure it needs)");
                continue;
            }
            let report = check(variant, bounds, threads);
            print!("{report}");
            let good = match variant {
                Variant::Correct => report.all_as_expected(),
                _ => report.violations_as_expected(),
            };
            if !good {
                println!("    ^^^ UNEXPECTED RESULT");
                ok = false;
            }
            if trace {
                for p in &report.properties {
                    if let PropertyOutcome::Violated(t) = &p.outcome {
                        println!("    counterexample to \"{}\":", p.name);
                        for line in LeaseModel::new(variant, bounds).explain(t) {
                            println!("      {line}");
                        }
                    }
                }
            }
        }
    }
    if !ok {
        std::process::exit(1);
    }
}

fn set(b: &mut Bounds, field: &str, v: u8) -> bool {
    let slot = match field {
        "hosts" => &mut b.hosts,
        "renew_fail" => &mut b.renew_fail,
        "kill_grace" => &mut b.kill_grace,
        "host_dead" => &mut b.host_dead,
        "io_timeout" => &mut b.io_timeout,
        "max_gen" => &mut b.max_gen,
        "max_crashes" => &mut b.max_crashes,
        "max_storage_failures" => &mut b.max_storage_failures,
        "max_late_writes" => &mut b.max_late_writes,
        "max_lver" => &mut b.max_lver,
        "max_ballot" => &mut b.max_ballot,
        _ => return false,
    };
    *slot = v;
    true
}
