//! The heartbeat record: one 512-byte ASCII sector, the shared contract
//! between the guest init, the process-VM writer and the oracle.
//!
//! Layout (see `heartbeat-format.md`): `NSHB1 <vm> <inst> <seq> <time_ms> END`,
//! fields separated by one space, padded with spaces through byte 510, byte
//! 511 is `\n`. Record `seq` lives in slot `seq % 64` of a 64-slot ring at the
//! start of the disk. An all-zero slot is empty; anything else that does not
//! parse is garbled. Decoding is strict (canonical numbers, exact spacing) so
//! that a torn read is much more likely to be rejected than misread.

use std::fmt;

use thiserror::Error;

/// Size of one record slot in bytes.
pub const RECORD_SIZE: usize = 512;
/// Number of slots in the ring.
pub const SLOTS: usize = 64;
/// Bytes covered by the ring (32 KiB): the minimum size of a heartbeat disk.
pub const RING_BYTES: usize = RECORD_SIZE * SLOTS;
/// Maximum length of the vm and inst fields.
pub const MAX_ID_LEN: usize = 48;
/// First token of every record.
pub const MAGIC: &str = "NSHB1";

/// One heartbeat record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Record {
    /// The VM's id.
    pub vm: String,
    /// The instance id (unique per start of the VM).
    pub inst: String,
    /// Record number, from 1.
    pub seq: u64,
    /// The writer's clock in ms (informative only).
    pub time_ms: u64,
}

/// What a slot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// All zeros: never written.
    Empty,
    /// A well-formed record.
    Record(Record),
    /// Written but not a well-formed record.
    Garbled(GarbleReason),
}

/// Why a slot did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GarbleReason {
    /// The slot is not exactly 512 bytes.
    WrongLength,
    /// Byte 511 is not `\n`.
    NoNewline,
    /// A byte before 511 is not printable ASCII.
    NotPrintable,
    /// The padding after `END` is not all spaces, or `END` is missing.
    NoEnd,
    /// Not six fields separated by single spaces.
    BadFields,
    /// The first field is not `NSHB1`.
    BadMagic,
    /// The vm field is not `[A-Za-z0-9._-]{1,48}`.
    BadVm,
    /// The inst field is not `[A-Za-z0-9._-]{1,48}`.
    BadInst,
    /// The seq field is not a canonical decimal u64 >= 1.
    BadSeq,
    /// The time field is not a canonical decimal u64.
    BadTime,
}

impl fmt::Display for GarbleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            GarbleReason::WrongLength => "slot is not 512 bytes",
            GarbleReason::NoNewline => "byte 511 is not a newline",
            GarbleReason::NotPrintable => "non-printable byte before byte 511",
            GarbleReason::NoEnd => "missing END or non-space padding",
            GarbleReason::BadFields => "not six single-space separated fields",
            GarbleReason::BadMagic => "magic is not NSHB1",
            GarbleReason::BadVm => "invalid vm field",
            GarbleReason::BadInst => "invalid inst field",
            GarbleReason::BadSeq => "invalid seq field",
            GarbleReason::BadTime => "invalid time field",
        };
        f.write_str(s)
    }
}

/// A record that cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    /// The vm id does not match `[A-Za-z0-9._-]{1,48}`.
    #[error("invalid vm id {0:?}: must match [A-Za-z0-9._-]{{1,48}}")]
    InvalidVm(String),
    /// The instance id does not match `[A-Za-z0-9._-]{1,48}`.
    #[error("invalid instance id {0:?}: must match [A-Za-z0-9._-]{{1,48}}")]
    InvalidInst(String),
    /// Sequence numbers start at 1.
    #[error("invalid seq 0: sequence numbers start at 1")]
    ZeroSeq,
}

/// Whether `s` is a valid vm or inst id: `[A-Za-z0-9._-]{1,48}`.
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Byte offset of the slot that holds record `seq`.
pub fn slot_offset(seq: u64) -> u64 {
    (seq % SLOTS as u64) * RECORD_SIZE as u64
}

/// Checks a record's fields against the format.
pub fn validate(rec: &Record) -> Result<(), RecordError> {
    if !valid_id(&rec.vm) {
        return Err(RecordError::InvalidVm(rec.vm.clone()));
    }
    if !valid_id(&rec.inst) {
        return Err(RecordError::InvalidInst(rec.inst.clone()));
    }
    if rec.seq == 0 {
        return Err(RecordError::ZeroSeq);
    }
    Ok(())
}

/// Encodes a record into its 512-byte sector.
pub fn encode(rec: &Record) -> Result<[u8; RECORD_SIZE], RecordError> {
    validate(rec)?;
    let text = format!(
        "{MAGIC} {} {} {} {} END",
        rec.vm, rec.inst, rec.seq, rec.time_ms
    );
    // At most 5+1+48+1+48+1+20+1+20+4 = 149 bytes: always fits before byte 511.
    let mut out = [b' '; RECORD_SIZE];
    out[..text.len()].copy_from_slice(text.as_bytes());
    out[RECORD_SIZE - 1] = b'\n';
    Ok(out)
}

/// Decodes one slot. Never panics, whatever the input.
pub fn decode(bytes: &[u8]) -> Slot {
    match parse(bytes) {
        Ok(Some(rec)) => Slot::Record(rec),
        Ok(None) => Slot::Empty,
        Err(reason) => Slot::Garbled(reason),
    }
}

fn parse(bytes: &[u8]) -> Result<Option<Record>, GarbleReason> {
    if bytes.len() != RECORD_SIZE {
        return Err(GarbleReason::WrongLength);
    }
    if bytes.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    let (body, last) = bytes.split_at(RECORD_SIZE - 1);
    if last != b"\n" {
        return Err(GarbleReason::NoNewline);
    }
    if !body.iter().all(|&b| (0x20..0x7f).contains(&b)) {
        return Err(GarbleReason::NotPrintable);
    }
    // Printable ASCII only, so this is valid UTF-8.
    let text = std::str::from_utf8(body).map_err(|_| GarbleReason::NotPrintable)?;
    let text = text.trim_end_matches(' ');
    let fields: Vec<&str> = text.split(' ').collect();
    if fields.last() != Some(&"END") {
        return Err(GarbleReason::NoEnd);
    }
    let [magic, vm, inst, seq, time, _end] = fields.as_slice() else {
        return Err(GarbleReason::BadFields);
    };
    if *magic != MAGIC {
        return Err(GarbleReason::BadMagic);
    }
    if !valid_id(vm) {
        return Err(GarbleReason::BadVm);
    }
    if !valid_id(inst) {
        return Err(GarbleReason::BadInst);
    }
    let seq = parse_u64(seq)
        .filter(|&s| s > 0)
        .ok_or(GarbleReason::BadSeq)?;
    let time_ms = parse_u64(time).ok_or(GarbleReason::BadTime)?;
    Ok(Some(Record {
        vm: (*vm).to_owned(),
        inst: (*inst).to_owned(),
        seq,
        time_ms,
    }))
}

/// Canonical decimal: digits only, no leading zero unless the value is 0.
fn parse_u64(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical {
        s.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn rec(seq: u64) -> Record {
        Record {
            vm: "vm-1".into(),
            inst: "i.A_2".into(),
            seq,
            time_ms: 1_700_000_000_123,
        }
    }

    #[test]
    fn encode_layout_matches_contract() {
        let b = encode(&rec(7)).unwrap();
        let want = "NSHB1 vm-1 i.A_2 7 1700000000123 END";
        assert_eq!(&b[..want.len()], want.as_bytes());
        assert!(b[want.len()..511].iter().all(|&c| c == b' '));
        assert_eq!(b[511], b'\n');
    }

    #[test]
    fn encode_rejects_bad_fields() {
        let mut r = rec(1);
        r.vm = "a b".into();
        assert!(matches!(encode(&r), Err(RecordError::InvalidVm(_))));
        let mut r = rec(1);
        r.inst = "x".repeat(49);
        assert!(matches!(encode(&r), Err(RecordError::InvalidInst(_))));
        let mut r = rec(1);
        r.inst = String::new();
        assert!(matches!(encode(&r), Err(RecordError::InvalidInst(_))));
        assert_eq!(encode(&rec(0)), Err(RecordError::ZeroSeq));
        let mut r = rec(u64::MAX);
        r.vm = "v".repeat(48);
        r.inst = "i".repeat(48);
        r.time_ms = u64::MAX;
        assert_eq!(decode(&encode(&r).unwrap()), Slot::Record(r));
    }

    #[test]
    fn empty_and_garbled() {
        assert_eq!(decode(&[0u8; 512]), Slot::Empty);
        assert_eq!(
            decode(&[0u8; 511]),
            Slot::Garbled(GarbleReason::WrongLength)
        );
        let good = encode(&rec(3)).unwrap();
        let mut b = good;
        b[511] = 0;
        assert_eq!(decode(&b), Slot::Garbled(GarbleReason::NoNewline));
        let mut b = good;
        b[100] = 0;
        assert_eq!(decode(&b), Slot::Garbled(GarbleReason::NotPrintable));
        let mut b = good;
        b[200] = b'x';
        assert_eq!(decode(&b), Slot::Garbled(GarbleReason::NoEnd));
        let mut b = good;
        b[0] = b'X';
        assert_eq!(decode(&b), Slot::Garbled(GarbleReason::BadMagic));
    }

    fn text_slot(s: &str) -> Slot {
        let mut b = [b' '; 512];
        b[..s.len()].copy_from_slice(s.as_bytes());
        b[511] = b'\n';
        decode(&b)
    }

    #[test]
    fn strict_fields() {
        use GarbleReason::*;
        assert!(matches!(text_slot("NSHB1 v i 1 2 END"), Slot::Record(_)));
        assert_eq!(text_slot("NSHB1 v i 01 2 END"), Slot::Garbled(BadSeq));
        assert_eq!(text_slot("NSHB1 v i 0 2 END"), Slot::Garbled(BadSeq));
        assert_eq!(text_slot("NSHB1 v i +1 2 END"), Slot::Garbled(BadSeq));
        assert_eq!(
            text_slot("NSHB1 v i 18446744073709551616 2 END"),
            Slot::Garbled(BadSeq)
        );
        assert_eq!(text_slot("NSHB1 v i 1 x END"), Slot::Garbled(BadTime));
        assert_eq!(text_slot("NSHB1  v i 1 2 END"), Slot::Garbled(BadFields));
        assert_eq!(text_slot("NSHB1 v i 1 END"), Slot::Garbled(BadFields));
        assert_eq!(text_slot("NSHB1 v/ i 1 2 END"), Slot::Garbled(BadVm));
        assert_eq!(text_slot("NSHB1 v i* 1 2 END"), Slot::Garbled(BadInst));
        assert_eq!(text_slot(" NSHB1 v i 1 2 END"), Slot::Garbled(BadFields));
    }

    #[test]
    fn slot_offsets() {
        assert_eq!(slot_offset(1), 512);
        assert_eq!(slot_offset(63), 63 * 512);
        assert_eq!(slot_offset(64), 0);
        assert_eq!(slot_offset(u64::MAX), 63 * 512);
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 512)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn decode_never_panics_near_valid(
            seq in 1u64..,
            idx in 0usize..512,
            byte in any::<u8>(),
        ) {
            let mut b = encode(&rec(seq)).unwrap();
            b[idx] = byte;
            if let Slot::Record(r) = decode(&b) {
                prop_assert_eq!(encode(&r).unwrap(), b);
            }
        }

        #[test]
        fn round_trip(
            vm in "[A-Za-z0-9._-]{1,48}",
            inst in "[A-Za-z0-9._-]{1,48}",
            seq in 1u64..,
            time_ms in any::<u64>(),
        ) {
            let r = Record { vm, inst, seq, time_ms };
            prop_assert_eq!(decode(&encode(&r).unwrap()), Slot::Record(r));
        }
    }
}
