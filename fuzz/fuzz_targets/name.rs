//! `Name::from_field` on arbitrary bytes; a decoded name is valid, and its
//! field decodes back to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nosplit_lease::format::{Name, NAME_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(n) = Name::from_field(data) else {
        return;
    };
    assert_eq!(
        Name::new(n.as_str()).as_ref(),
        Ok(&n),
        "decoded name is not valid"
    );
    let field = n.to_field();
    assert_eq!(
        Name::from_field(&field).as_ref(),
        Ok(&n),
        "name field round trip"
    );
    if data.len() == NAME_LEN {
        assert_eq!(
            &field[..],
            data,
            "a name field that decodes is not canonical"
        );
    }
});
