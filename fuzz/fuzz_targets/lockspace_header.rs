//! `LockspaceHeader::decode` on arbitrary bytes; whatever decodes must
//! round-trip through `encode`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nosplit_fuzz::{crc_off, with_crc, Input, SECTOR};
use nosplit_lease::format::LockspaceHeader;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mode = input.u8();
    let sector = with_crc(input.rest(), crc_off::LOCKSPACE_HEADER, mode & 1 != 0);
    let Ok(v) = LockspaceHeader::decode(&sector) else {
        return;
    };
    let mut fresh = vec![0u8; SECTOR];
    v.encode(&mut fresh);
    let again = LockspaceHeader::decode(&fresh).expect("re-encoded lockspace header must decode");
    assert_eq!(again, v, "lockspace header round trip");
    let mut twice = vec![0u8; SECTOR];
    again.encode(&mut twice);
    assert_eq!(twice, fresh, "lockspace header encoding is not stable");
});
