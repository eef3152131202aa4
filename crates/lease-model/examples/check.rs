//! Runs every variant of the lease model and prints what the checker found.
use nosplit_lease_model::{check, Bounds, Variant};

fn main() {
    let three = std::env::args().any(|a| a == "--three");
    let bounds = if three {
        Bounds::three_hosts()
    } else {
        Bounds::two_hosts()
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    for v in Variant::ALL {
        let r = check(v, bounds, threads, v != Variant::Correct);
        print!("{r}");
    }
}
