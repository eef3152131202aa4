//! `HostSlot::decode` on arbitrary bytes and an arbitrary expected host id;
//! whatever decodes must round-trip through `encode`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nosplit_fuzz::{crc_off, with_crc, Input, SECTOR};
use nosplit_lease::format::HostSlot;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mode = input.u8();
    let expected_host = input.u32();
    let sector = with_crc(input.rest(), crc_off::HOST_SLOT, mode & 1 != 0);
    let Ok(v) = HostSlot::decode(&sector, expected_host) else {
        return;
    };
    assert_eq!(v.host_id, expected_host, "decoded a slot for another host");
    let mut fresh = vec![0u8; SECTOR];
    v.encode(&mut fresh);
    let again = HostSlot::decode(&fresh, expected_host).expect("re-encoded host slot must decode");
    assert_eq!(again, v, "host slot round trip");
    let mut twice = vec![0u8; SECTOR];
    again.encode(&mut twice);
    assert_eq!(twice, fresh, "host slot encoding is not stable");
});
