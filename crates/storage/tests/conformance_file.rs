//! The conformance suite on `FileStorage` over a temporary file, for both
//! sector sizes (the suite runs each check with 512 and 4096).

use nosplit_storage::{FileStorage, OpenOpts, SectorSize};

/// A fresh zero-filled file in the target's temp dir (a real filesystem that
/// supports `O_DIRECT`, unlike tmpfs). The path is unlinked at once; the open
/// descriptor keeps the file alive.
fn make(size: u64, sector: SectorSize) -> FileStorage {
    let tmp = tempfile::NamedTempFile::new_in(env!("CARGO_TARGET_TMPDIR")).expect("temp file");
    let opts = OpenOpts {
        sector_size: Some(sector),
        create_len: Some(size),
    };
    FileStorage::open(tmp.path(), opts).expect("open temp file")
}

nosplit_storage::storage_conformance_tests!(make, stall_writes);

#[test]
fn run_all_passes() {
    nosplit_storage::conformance::run_all_stalling(&mut make);
}
