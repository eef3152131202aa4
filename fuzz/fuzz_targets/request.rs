//! `Request::decode` on arbitrary bytes; whatever decodes must round-trip
//! through `encode`, and "no request" only comes from a blank record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nosplit_fuzz::{crc_off, with_crc, Input, SECTOR};
use nosplit_lease::format::{is_blank, Request};

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mode = input.u8();
    let sector = with_crc(input.rest(), crc_off::REQUEST, mode & 1 != 0);
    match Request::decode(&sector) {
        Err(_) => {}
        Ok(None) => {
            let used = sector
                .get(..crc_off::REQUEST + 4)
                .expect("a blank request is a full record");
            assert!(is_blank(used), "no request decoded from a non-blank record");
        }
        Ok(Some(v)) => {
            assert!(v.force_mode <= 1, "force_mode {}", v.force_mode);
            let mut fresh = vec![0u8; SECTOR];
            v.encode(&mut fresh);
            let again = Request::decode(&fresh).expect("re-encoded request must decode");
            assert_eq!(again, Some(v), "request round trip");
        }
    }
});
