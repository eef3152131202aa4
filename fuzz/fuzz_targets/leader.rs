//! `Leader::decode` on arbitrary bytes; whatever decodes must round-trip
//! through `encode`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nosplit_fuzz::{crc_off, with_crc, Input, SECTOR};
use nosplit_lease::format::Leader;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mode = input.u8();
    let sector = with_crc(input.rest(), crc_off::LEADER, mode & 1 != 0);
    let Ok(v) = Leader::decode(&sector) else {
        return;
    };
    for o in [v.owner, v.writer].into_iter().flatten() {
        assert!(
            v.geometry.valid_host(o.host_id),
            "decoded host id {} out of range",
            o.host_id
        );
    }
    let mut fresh = vec![0u8; SECTOR];
    v.encode(&mut fresh);
    let again = Leader::decode(&fresh).expect("re-encoded leader must decode");
    assert_eq!(again, v, "leader round trip");
    let mut twice = vec![0u8; SECTOR];
    again.encode(&mut twice);
    assert_eq!(twice, fresh, "leader encoding is not stable");
});
