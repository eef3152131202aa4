//! `IndexRecord::decode` on arbitrary bytes and an arbitrary expected slot;
//! whatever decodes must round-trip through `encode`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nosplit_fuzz::{crc_off, with_crc, Input};
use nosplit_lease::format::{IndexRecord, INDEX_RECORD_LEN};

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mode = input.u8();
    let expected_slot = input.u32();
    let entry = with_crc(input.rest(), crc_off::INDEX_RECORD, mode & 1 != 0);
    let Ok(v) = IndexRecord::decode(&entry, expected_slot) else {
        return;
    };
    assert_eq!(v.slot, expected_slot, "decoded an entry for another slot");
    let mut fresh = [0u8; INDEX_RECORD_LEN];
    v.encode(&mut fresh);
    let again =
        IndexRecord::decode(&fresh, expected_slot).expect("re-encoded index record must decode");
    assert_eq!(again, v, "index record round trip");
    let mut twice = [0u8; INDEX_RECORD_LEN];
    again.encode(&mut twice);
    assert_eq!(twice, fresh, "index record encoding is not stable");
});
