//! `IndexHeader::decode` on arbitrary bytes; whatever decodes must
//! round-trip through `encode`, and its layout arithmetic must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nosplit_fuzz::{crc_off, with_crc, Input, SECTOR};
use nosplit_lease::format::{IndexHeader, MAX_INDEX_SLOTS};

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mode = input.u8();
    let sector = with_crc(input.rest(), crc_off::INDEX_HEADER, mode & 1 != 0);
    let Ok(v) = IndexHeader::decode(&sector) else {
        return;
    };
    assert!(
        (1..=MAX_INDEX_SLOTS).contains(&v.slots),
        "slots {}",
        v.slots
    );
    // Layout helpers on a decoded header: no overflow for any valid one.
    let _ = (
        v.table_len(),
        v.data_offset(),
        v.total_len(),
        v.entry_location(v.slots - 1),
    );
    let mut fresh = vec![0u8; SECTOR];
    v.encode(&mut fresh);
    let again = IndexHeader::decode(&fresh).expect("re-encoded index header must decode");
    assert_eq!(again, v, "index header round trip");
    let mut twice = vec![0u8; SECTOR];
    again.encode(&mut twice);
    assert_eq!(twice, fresh, "index header encoding is not stable");
});
