//! Property tests for the on-disk decoders: they take untrusted bytes, so
//! they must never panic, must reject every single-byte corruption of the
//! checksummed part of a record, and must round-trip every valid record.
//!
//! Case counts are kept small so this runs in a few seconds in a debug
//! build; the cargo-fuzz targets under `fuzz/` hammer the same decoders for
//! longer.

use nosplit_lease::format::{
    Ballot, FormatError, Geometry, HostSlot, IndexHeader, IndexRecord, Leader, LockspaceHeader,
    Name, OwnerId, RecordState, Request, INDEX_RECORD_LEN, MAX_INDEX_SLOTS, MAX_IO_TIMEOUT_MS,
    MIN_IO_TIMEOUT_MS, NAME_LEN,
};
use nosplit_lease::index::{IndexError, IndexTable};
use proptest::prelude::*;

/// Every test encodes into a sector of this size (the decoders only look at
/// the record's prefix; the rest must be ignored).
const SECTOR: usize = 512;
const MAX_ALIGN: u64 = 64 << 20;

// ---------------------------------------------------------------------------
// Strategies for valid records.
// ---------------------------------------------------------------------------

fn name() -> impl Strategy<Value = Name> {
    "[A-Za-z0-9._:-]{1,48}".prop_map(|s| Name::new(&s).expect("regex yields valid names"))
}

/// A valid geometry: the smallest alignment that fits, times 1, 2, 4 or 8,
/// capped at 64 MiB (the smallest fitting one is at most 16 MiB).
fn geometry() -> impl Strategy<Value = Geometry> {
    let hosts = prop_oneof![1u64..=8, 1u64..=2000];
    (prop_oneof![Just(512u64), Just(4096u64)], hosts, 0u32..4).prop_map(|(sector, hosts, k)| {
        let min = ((2 + hosts) * sector).next_power_of_two();
        let align = (min << k).min(MAX_ALIGN);
        Geometry::new(sector, hosts, align).expect("constructed to be valid")
    })
}

fn owner(g: Geometry) -> impl Strategy<Value = OwnerId> {
    (1..=g.max_hosts(), any::<u64>()).prop_map(|(host_id, generation)| OwnerId {
        host_id,
        generation,
    })
}

fn lockspace_header() -> impl Strategy<Value = LockspaceHeader> {
    (
        name(),
        geometry(),
        MIN_IO_TIMEOUT_MS..=MAX_IO_TIMEOUT_MS,
        any::<[u8; 16]>(),
    )
        .prop_map(|(name, geometry, io_timeout_ms, uuid)| LockspaceHeader {
            name,
            geometry,
            io_timeout_ms,
            uuid,
        })
}

fn host_slot() -> impl Strategy<Value = HostSlot> {
    (
        any::<u32>(),
        1..=u64::MAX,
        any::<u64>(),
        any::<u64>(),
        MIN_IO_TIMEOUT_MS..=MAX_IO_TIMEOUT_MS,
        any::<bool>(),
        any::<[u8; 16]>(),
        name(),
    )
        .prop_map(
            |(
                host_id,
                generation,
                seq,
                owner_time_ms,
                io_timeout_ms,
                released,
                ls_uuid,
                host_name,
            )| {
                HostSlot {
                    host_id,
                    generation,
                    seq,
                    owner_time_ms,
                    io_timeout_ms,
                    released,
                    ls_uuid,
                    host_name,
                }
            },
        )
}

fn leader() -> impl Strategy<Value = Leader> {
    geometry().prop_flat_map(|g| {
        (
            name(),
            name(),
            any::<u64>(),
            proptest::option::of(owner(g)),
            proptest::option::of(owner(g)),
            any::<u64>(),
        )
            .prop_map(
                move |(lockspace, resource, lver, owner, writer, write_time_ms)| Leader {
                    lockspace,
                    resource,
                    geometry: g,
                    lver,
                    owner,
                    writer,
                    write_time_ms,
                },
            )
    })
}

fn request() -> impl Strategy<Value = Request> {
    (any::<u64>(), 0u32..=1, any::<u32>()).prop_map(|(lver, force_mode, requester)| Request {
        lver,
        force_mode,
        requester,
    })
}

/// A valid ballot block and the geometry it is decoded with: `bal <= mbal`,
/// `inp` is `Some` exactly when `bal > 0`.
fn ballot() -> impl Strategy<Value = (Ballot, Geometry)> {
    geometry().prop_flat_map(|g| {
        let mbal_bal =
            any::<u64>().prop_flat_map(|mbal| (Just(mbal), prop_oneof![Just(0), 0..=mbal]));
        (
            1..=g.max_hosts(),
            any::<u64>(),
            mbal_bal,
            owner(g),
            proptest::option::of(1..=u64::MAX),
        )
            .prop_map(move |(host_id, lver, (mbal, bal), o, shared)| {
                let inp = (bal > 0).then_some(o);
                (
                    Ballot {
                        host_id,
                        lver,
                        mbal,
                        bal,
                        inp,
                        shared,
                    },
                    g,
                )
            })
    })
}

fn record_state() -> impl Strategy<Value = RecordState> {
    prop_oneof![
        Just(RecordState::Free),
        name().prop_map(RecordState::Used),
        name().prop_map(RecordState::Updating),
    ]
}

fn index_record() -> impl Strategy<Value = IndexRecord> {
    (prop_oneof![0u32..64, any::<u32>()], record_state())
        .prop_map(|(slot, state)| IndexRecord { slot, state })
}

fn index_header() -> impl Strategy<Value = IndexHeader> {
    (
        name(),
        geometry(),
        prop_oneof![1u32..=64, 1..=MAX_INDEX_SLOTS],
        any::<bool>(),
    )
        .prop_map(|(lockspace, geometry, slots, rebuilding)| IndexHeader {
            lockspace,
            geometry,
            slots,
            rebuilding,
        })
}

// ---------------------------------------------------------------------------
// One type over every record kind, so each property is written once.
// ---------------------------------------------------------------------------

/// A decoded record, with what its decoder needs besides the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rec {
    LockspaceHeader(LockspaceHeader),
    HostSlot(HostSlot),
    Leader(Leader),
    /// `Some` request, or `None` for a blank request sector.
    Request(Option<Request>),
    Ballot(Ballot, Geometry),
    IndexHeader(IndexHeader),
    IndexRecord(IndexRecord),
}

/// Which decoder to run on some bytes, with its extra arguments.
#[derive(Debug, Clone, Copy)]
enum Kind {
    LockspaceHeader,
    HostSlot(u32),
    Leader,
    Request,
    Ballot(u32, Geometry),
    IndexHeader,
    IndexRecord(u32),
}

impl Kind {
    fn decode(self, bytes: &[u8]) -> Result<Rec, FormatError> {
        Ok(match self {
            Kind::LockspaceHeader => Rec::LockspaceHeader(LockspaceHeader::decode(bytes)?),
            Kind::HostSlot(h) => Rec::HostSlot(HostSlot::decode(bytes, h)?),
            Kind::Leader => Rec::Leader(Leader::decode(bytes)?),
            Kind::Request => Rec::Request(Request::decode(bytes)?),
            Kind::Ballot(h, g) => Rec::Ballot(Ballot::decode(bytes, h, &g)?, g),
            Kind::IndexHeader => Rec::IndexHeader(IndexHeader::decode(bytes)?),
            Kind::IndexRecord(k) => Rec::IndexRecord(IndexRecord::decode(bytes, k)?),
        })
    }

    /// Bytes covered by magic/version/fields/crc: every byte the decoder
    /// must check. (For an index record: the whole 64-byte entry.)
    fn checked_len(self) -> usize {
        match self {
            Kind::LockspaceHeader => 92,
            Kind::HostSlot(_) => 108,
            Kind::Leader => 164,
            Kind::Request => 28,
            Kind::Ballot(..) => 60,
            Kind::IndexHeader => 76,
            Kind::IndexRecord(_) => INDEX_RECORD_LEN,
        }
    }
}

impl Rec {
    /// The decoder (and its arguments) that reads this record back.
    fn kind(&self) -> Kind {
        match self {
            Rec::LockspaceHeader(_) => Kind::LockspaceHeader,
            Rec::HostSlot(s) => Kind::HostSlot(s.host_id),
            Rec::Leader(_) => Kind::Leader,
            Rec::Request(_) => Kind::Request,
            Rec::Ballot(b, g) => Kind::Ballot(b.host_id, *g),
            Rec::IndexHeader(_) => Kind::IndexHeader,
            Rec::IndexRecord(r) => Kind::IndexRecord(r.slot),
        }
    }

    /// Encodes into a fresh sector.
    fn encode(&self) -> Vec<u8> {
        let mut s = vec![0u8; SECTOR];
        match self {
            Rec::LockspaceHeader(h) => h.encode(&mut s),
            Rec::HostSlot(h) => h.encode(&mut s),
            Rec::Leader(l) => l.encode(&mut s),
            Rec::Request(Some(r)) => r.encode(&mut s),
            Rec::Request(None) => {}
            Rec::Ballot(b, _) => b.encode(&mut s),
            Rec::IndexHeader(h) => h.encode(&mut s),
            Rec::IndexRecord(r) => r.encode(&mut s),
        }
        s
    }

    /// Re-encodes a decoded record and checks it decodes to itself.
    fn assert_roundtrip(&self) -> Result<(), TestCaseError> {
        let again = self.kind().decode(&self.encode());
        prop_assert_eq!(
            again.as_ref(),
            Ok(self),
            "re-encoded record decodes differently"
        );
        Ok(())
    }
}

fn valid_record() -> impl Strategy<Value = Rec> {
    prop_oneof![
        lockspace_header().prop_map(Rec::LockspaceHeader),
        host_slot().prop_map(Rec::HostSlot),
        leader().prop_map(Rec::Leader),
        request().prop_map(|r| Rec::Request(Some(r))),
        ballot().prop_map(|(b, g)| Rec::Ballot(b, g)),
        index_header().prop_map(Rec::IndexHeader),
        index_record().prop_map(Rec::IndexRecord),
    ]
}

/// Every decoder, with arbitrary extra arguments.
fn all_kinds(host: u32, slot: u32, g: Geometry) -> [Kind; 7] {
    [
        Kind::LockspaceHeader,
        Kind::HostSlot(host),
        Kind::Leader,
        Kind::Request,
        Kind::Ballot(host, g),
        Kind::IndexHeader,
        Kind::IndexRecord(slot),
    ]
}

/// Runs every decoder on `bytes`; whatever decodes must round-trip.
fn decode_everything(bytes: &[u8], host: u32, slot: u32, g: Geometry) -> Result<(), TestCaseError> {
    for kind in all_kinds(host, slot, g) {
        if let Ok(rec) = kind.decode(bytes) {
            rec.assert_roundtrip()?;
        }
    }
    if let Ok(name) = Name::from_field(bytes) {
        prop_assert_eq!(Name::from_field(&name.to_field()), Ok(name.clone()));
        if bytes.len() == NAME_LEN {
            prop_assert_eq!(
                &name.to_field()[..],
                bytes,
                "a decoded name field is canonical"
            );
        }
    }
    let split = bytes.len().min(SECTOR);
    let (first, table) = bytes.split_at(split);
    if let Ok(t) = IndexTable::decode(first, table) {
        prop_assert_eq!(t.entries.len(), t.header.slots as usize);
        Rec::IndexHeader(t.header.clone()).assert_roundtrip()?;
        for e in t.entries {
            Rec::IndexRecord(e).assert_roundtrip()?;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// (a) Arbitrary bytes: no decoder panics.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..5000),
        host in prop_oneof![1u32..=8, any::<u32>()],
        slot in prop_oneof![0u32..8, any::<u32>()],
        g in geometry(),
    ) {
        decode_everything(&bytes, host, slot, g)?;
    }

    /// (a') Arbitrary bytes behind a valid magic and version, so decoding
    /// gets past the first checks more often (and all-zero sectors).
    #[test]
    fn arbitrary_bytes_behind_valid_magic_never_panic(
        rec in valid_record(),
        tail in proptest::collection::vec(any::<u8>(), 0..600),
        zeros in any::<bool>(),
        host in prop_oneof![1u32..=8, any::<u32>()],
        slot in prop_oneof![0u32..8, any::<u32>()],
        g in geometry(),
    ) {
        let mut bytes = rec.encode();
        bytes.truncate(6);
        if zeros {
            bytes.fill(0);
        }
        bytes.extend_from_slice(&tail);
        decode_everything(&bytes, host, slot, g)?;
    }

    /// Every valid record round-trips, and its encoding is canonical.
    #[test]
    fn valid_records_roundtrip(rec in valid_record()) {
        let bytes = rec.encode();
        let back = rec.kind().decode(&bytes);
        prop_assert_eq!(back.as_ref(), Ok(&rec));
        if let Ok(back) = back {
            prop_assert_eq!(back.encode(), bytes, "encoding is not canonical");
        }
    }

    /// (b) One byte flipped: inside the checked range it is an error (the
    /// crc catches it); outside, the record decodes unchanged.
    #[test]
    fn flipped_byte_is_caught(rec in valid_record(), pos in 0..SECTOR, mask in 1u8..=255) {
        let mut bytes = rec.encode();
        bytes[pos] ^= mask;
        let kind = rec.kind();
        let got = kind.decode(&bytes);
        if pos < kind.checked_len() {
            prop_assert!(got.is_err(), "flip at {} by {:#04x} accepted: {:?}", pos, mask, got);
        } else {
            prop_assert_eq!(got.as_ref(), Ok(&rec));
        }
        decode_everything(&bytes, 1, 0, Geometry::default_512())?;
    }

    /// (b) Truncated: shorter than the record is `TooShort`, anything
    /// longer decodes unchanged.
    #[test]
    fn truncated_record_is_too_short(rec in valid_record(), len in 0..=SECTOR) {
        let bytes = &rec.encode()[..len];
        let kind = rec.kind();
        let got = kind.decode(bytes);
        if len < kind.checked_len() {
            prop_assert!(
                matches!(got, Err(FormatError::TooShort { .. })),
                "truncated to {} bytes: {:?}", len, got
            );
        } else {
            prop_assert_eq!(got.as_ref(), Ok(&rec));
        }
        decode_everything(bytes, 1, 0, Geometry::default_512())?;
    }

    /// A record decoded at the wrong position is rejected.
    #[test]
    fn wrong_position_is_rejected(rec in valid_record(), delta in 1u32..=u32::MAX) {
        let bytes = rec.encode();
        let wrong = match rec.kind() {
            Kind::HostSlot(h) => Kind::HostSlot(h.wrapping_add(delta)),
            Kind::Ballot(h, g) => Kind::Ballot(h.wrapping_add(delta), g),
            // A free entry of slot 0 is all zero but for its crc; every
            // other entry names its slot.
            Kind::IndexRecord(k) => Kind::IndexRecord(k.wrapping_add(delta)),
            _ => return Ok(()),
        };
        prop_assert!(wrong.decode(&bytes).is_err());
    }

    /// Name fields: any bytes, never a panic; valid names round-trip.
    #[test]
    fn name_fields(field in proptest::collection::vec(any::<u8>(), 0..=100), n in name()) {
        if let Ok(got) = Name::from_field(&field) {
            prop_assert_eq!(Name::from_field(&got.to_field()), Ok(got));
        }
        let f = n.to_field();
        prop_assert!(f[n.as_str().len()..].iter().all(|&b| b == 0), "field is zero padded");
        prop_assert_eq!(Name::from_field(&f), Ok(n));
    }
}

// ---------------------------------------------------------------------------
// The index table: a header sector plus packed entries.
// ---------------------------------------------------------------------------

/// A valid index: header with a few slots and a sector-rounded table.
fn index_volume() -> impl Strategy<Value = (IndexHeader, Vec<IndexRecord>)> {
    (name(), geometry(), any::<bool>()).prop_flat_map(|(lockspace, geometry, rebuilding)| {
        proptest::collection::vec(record_state(), 1..=40).prop_map(move |states| {
            let slots = u32::try_from(states.len()).expect("at most 40");
            let header = IndexHeader {
                lockspace: lockspace.clone(),
                geometry,
                slots,
                rebuilding,
            };
            let entries = (0..slots)
                .zip(states)
                .map(|(slot, state)| IndexRecord { slot, state })
                .collect();
            (header, entries)
        })
    })
}

fn encode_index(header: &IndexHeader, entries: &[IndexRecord]) -> (Vec<u8>, Vec<u8>) {
    let mut first = vec![0u8; header.geometry.sector()];
    header.encode(&mut first);
    let mut table = vec![0u8; usize::try_from(header.table_len()).expect("small table")];
    for (e, chunk) in entries.iter().zip(table.chunks_mut(INDEX_RECORD_LEN)) {
        e.encode(chunk);
    }
    (first, table)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn index_table_roundtrip((header, entries) in index_volume()) {
        let (first, table) = encode_index(&header, &entries);
        let t = IndexTable::decode(&first, &table);
        prop_assert!(t.is_ok(), "{:?}", t);
        if let Ok(t) = t {
            prop_assert_eq!(&t.header, &header);
            prop_assert_eq!(&t.entries, &entries);
        }
    }

    /// One byte of the header or of a used part of the table flipped: an
    /// error. A short table: an error, never a panic.
    #[test]
    fn index_table_corruption(
        (header, entries) in index_volume(),
        in_header in any::<bool>(),
        pos in any::<prop::sample::Index>(),
        mask in 1u8..=255,
        cut in any::<prop::sample::Index>(),
    ) {
        let (mut first, mut table) = encode_index(&header, &entries);
        let used = entries.len() * INDEX_RECORD_LEN;
        if in_header {
            first[pos.index(76)] ^= mask;
        } else {
            table[pos.index(used)] ^= mask;
        }
        let got = IndexTable::decode(&first, &table);
        prop_assert!(got.is_err(), "corruption accepted: {:?}", got);

        let (first, table) = encode_index(&header, &entries);
        let short = &table[..cut.index(used)];
        let got = IndexTable::decode(&first, short);
        prop_assert!(
            matches!(got, Err(IndexError::Corrupt(FormatError::TooShort { .. }))),
            "short table: {:?}", got
        );
    }
}

/// A huge slot count with an empty table fails fast with `TooShort`.
#[test]
fn index_table_many_slots_short_table() {
    let header = IndexHeader {
        lockspace: Name::new("ls").expect("valid"),
        geometry: Geometry::default_512(),
        slots: MAX_INDEX_SLOTS,
        rebuilding: false,
    };
    let mut first = vec![0u8; SECTOR];
    header.encode(&mut first);
    for table in [&[][..], &[0u8; 100][..], &[0xffu8; 4096][..]] {
        assert!(IndexTable::decode(&first, table).is_err());
    }
}

/// The blank special cases: all-zero sectors of every length.
#[test]
fn blank_sectors() {
    let g = Geometry::default_512();
    for len in [0, 1, 27, 28, 59, 60, 63, 64, 91, 92, 163, 164, 512, 4096] {
        let z = vec![0u8; len];
        assert!(LockspaceHeader::decode(&z).is_err());
        assert!(HostSlot::decode(&z, 1).is_err());
        assert!(Leader::decode(&z).is_err());
        assert!(IndexHeader::decode(&z).is_err());
        assert_eq!(
            Request::decode(&z).ok(),
            if len >= 28 { Some(None) } else { None }
        );
        assert_eq!(
            Ballot::decode(&z, 3, &g).ok(),
            (len >= 60).then(|| Ballot::blank(3))
        );
        let free = IndexRecord {
            slot: 5,
            state: RecordState::Free,
        };
        assert_eq!(IndexRecord::decode(&z, 5).ok(), (len >= 64).then_some(free));
    }
}
