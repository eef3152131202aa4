//! The conformance suite on a `SimDisk` handle, healthy and with random
//! (reordering) latencies.

use nosplit_storage::conformance::StallWrites;
use nosplit_storage::{Faults, SectorSize, SimDisk, SimHandle};
use std::time::Duration;

fn make(size: u64, sector: SectorSize) -> SimHandle {
    SimDisk::new(7, size, sector).handle("host-a")
}

nosplit_storage::storage_conformance_tests!(make, stall_writes);

mod reordering {
    use super::*;

    /// Latencies drawn independently between 10 µs and 5 ms.
    fn make(size: u64, sector: SectorSize) -> SimHandle {
        let h = SimDisk::new(11, size, sector).handle("host-b");
        h.set_faults(Faults {
            min_latency: Duration::from_micros(10),
            max_latency: Duration::from_millis(5),
            reorder: true,
            ..Faults::default()
        });
        h
    }

    nosplit_storage::storage_conformance_tests!(make, stall_writes);
}

/// The suite through `Box<dyn Storage>`, as runtimes hold a backend.
#[test]
fn boxed_dyn_storage_passes() {
    let mut make = |size, sector| -> Box<dyn StallWrites> { Box::new(make(size, sector)) };
    nosplit_storage::conformance::run_all_stalling(&mut make);
}
