//! `Ballot::decode` on arbitrary bytes, an arbitrary expected host id and a
//! valid geometry built from the input; whatever decodes must round-trip
//! through `encode` and satisfy the ballot invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nosplit_fuzz::{crc_off, with_crc, Input};
use nosplit_lease::format::{is_blank, Ballot};

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mode = input.u8();
    let expected_host = input.u32();
    let g = input.geometry();
    let sector = with_crc(input.rest(), crc_off::BALLOT, mode & 1 != 0);
    let Ok(v) = Ballot::decode(&sector, expected_host, &g) else {
        return;
    };
    assert_eq!(
        v.host_id, expected_host,
        "decoded a ballot for another host"
    );
    assert!(v.bal <= v.mbal, "bal {} > mbal {}", v.bal, v.mbal);
    assert_eq!(
        v.bal > 0,
        v.inp.is_some(),
        "inp without ballot or ballot without inp"
    );
    if let Some(o) = v.inp {
        assert!(
            g.valid_host(o.host_id),
            "inp host id {} out of range",
            o.host_id
        );
    }
    if sector.get(..crc_off::BALLOT + 4).is_some_and(is_blank) {
        // The never-written block. Encoding it writes a real (non-blank)
        // record, which must still decode to the same value (checked below).
        assert_eq!(
            v,
            Ballot::blank(expected_host),
            "blank block decoded as {v:?}"
        );
    }
    let mut fresh = vec![0u8; g.sector()];
    v.encode(&mut fresh);
    let again = Ballot::decode(&fresh, expected_host, &g).expect("re-encoded ballot must decode");
    assert_eq!(again, v, "ballot round trip");
    let mut twice = vec![0u8; g.sector()];
    again.encode(&mut twice);
    assert_eq!(twice, fresh, "ballot encoding is not stable");
});
