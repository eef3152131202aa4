//! `IndexTable::decode` on an arbitrary header sector and entry table;
//! whatever decodes must round-trip through the header and entry encoders.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nosplit_fuzz::{crc_off, fix_crc, with_crc, Input};
use nosplit_lease::format::{is_blank, INDEX_RECORD_LEN};
use nosplit_lease::index::IndexTable;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mode = input.u8();
    let header_len = usize::from(input.u16());
    let header = with_crc(input.take(header_len), crc_off::INDEX_HEADER, mode & 1 != 0);
    let mut table = input.rest().to_vec();
    if mode & 2 != 0 {
        for entry in table.chunks_mut(INDEX_RECORD_LEN) {
            if !is_blank(entry) {
                fix_crc(entry, crc_off::INDEX_RECORD);
            }
        }
    }
    let Ok(t) = IndexTable::decode(&header, &table) else {
        return;
    };
    assert_eq!(
        t.entries.len(),
        t.header.slots as usize,
        "one entry per slot"
    );
    for (k, e) in t.entries.iter().enumerate() {
        assert_eq!(e.slot as usize, k, "entry {k} names slot {}", e.slot);
    }
    let _ = t.check_consistent();

    let mut fresh_header = vec![0u8; t.header.geometry.sector()];
    t.header.encode(&mut fresh_header);
    let table_len = usize::try_from(t.header.table_len()).expect("table fits in memory");
    let mut fresh_table = vec![0u8; table_len];
    for (e, chunk) in t
        .entries
        .iter()
        .zip(fresh_table.chunks_mut(INDEX_RECORD_LEN))
    {
        e.encode(chunk);
    }
    let again = IndexTable::decode(&fresh_header, &fresh_table)
        .expect("re-encoded index table must decode");
    assert_eq!(again.header, t.header, "index header round trip");
    assert_eq!(again.entries, t.entries, "index entries round trip");
});
