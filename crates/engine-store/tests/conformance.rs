#![allow(clippy::unwrap_used)]
//! Runs the one conformance suite against both backends.

use std::sync::atomic::{AtomicUsize, Ordering};

use nosplit_engine_store::{conformance, Limits, MemStore, RedbStore, Store};

#[test]
fn mem_store_passes_the_conformance_suite() {
    conformance::run_all(&|limits: Limits| -> Box<dyn Store> {
        Box::new(MemStore::with_limits(limits))
    });
}

#[test]
fn redb_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    conformance::run_all(&|limits: Limits| -> Box<dyn Store> {
        let path = dir
            .path()
            .join(format!("store-{}.redb", n.fetch_add(1, Ordering::Relaxed)));
        Box::new(RedbStore::open_with(path, limits).unwrap())
    });
    // Every check got its own fresh file.
    assert_eq!(n.load(Ordering::Relaxed), conformance::check_names().len());
}
