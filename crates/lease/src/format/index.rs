//! Lease index records: the index header (sector 0) and the 64-byte
//! entries that map a lease name to its slot.
//!
//! Layout of an index volume: header sector, then `slots` entries packed
//! 64 bytes each (sector-aligned table), then the lease areas, slot `k` at
//! `data_offset + k * align`. See `index` (the module, not this one) for
//! the crash-safe update protocol.

use super::codec::{Dec, Enc};
use super::{is_blank, FormatError, Geometry, Name, Record};

/// Magic of an index header: "NSIX".
pub const INDEX_MAGIC: u32 = u32::from_le_bytes(*b"NSIX");
/// Bytes per index entry.
pub const INDEX_RECORD_LEN: usize = 64;
/// Largest number of slots in one index.
pub const MAX_INDEX_SLOTS: u32 = 1 << 20;

const HDR_CRC: usize = 72;
const REC_CRC: usize = 60;
const FLAG_REBUILDING: u16 = 1;

/// Sector 0 of a lease index.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IndexHeader {
    /// The lockspace the indexed leases belong to.
    pub lockspace: Name,
    /// Geometry of every lease area in the index.
    pub geometry: Geometry,
    /// Number of lease slots.
    pub slots: u32,
    /// A rebuild was started and did not finish: the entries cannot be
    /// trusted until a rebuild completes.
    pub rebuilding: bool,
}

impl IndexHeader {
    /// Byte offset of the entry table.
    pub fn table_offset(&self) -> u64 {
        u64::from(self.geometry.sector_size())
    }
    /// Bytes of the entry table, rounded up to whole sectors.
    pub fn table_len(&self) -> u64 {
        let s = u64::from(self.geometry.sector_size());
        (u64::from(self.slots) * INDEX_RECORD_LEN as u64).div_ceil(s) * s
    }
    /// Byte offset of lease slot 0.
    pub fn data_offset(&self) -> u64 {
        let a = self.geometry.align();
        (self.table_offset() + self.table_len()).div_ceil(a) * a
    }
    /// Byte offset of lease slot `k`.
    pub fn slot_offset(&self, k: u32) -> u64 {
        self.data_offset() + u64::from(k) * self.geometry.resource_len()
    }
    /// Total bytes the index volume needs.
    pub fn total_len(&self) -> u64 {
        self.slot_offset(self.slots)
    }
    /// Offset of the sector holding entry `k`, and the entry's position in it.
    pub fn entry_location(&self, k: u32) -> (u64, usize) {
        let byte = self.table_offset() + u64::from(k) * INDEX_RECORD_LEN as u64;
        let s = u64::from(self.geometry.sector_size());
        let sector = byte / s * s;
        // Less than one sector: fits in usize.
        (sector, usize::try_from(byte - sector).unwrap_or(0))
    }

    /// Encodes into `sector` (at least 76 bytes).
    pub fn encode(&self, sector: &mut [u8]) {
        let mut e = Enc::new(sector);
        e.u32(0, INDEX_MAGIC);
        e.u16(4, super::VERSION);
        e.u16(6, if self.rebuilding { FLAG_REBUILDING } else { 0 });
        e.u32(8, self.geometry.sector_size());
        e.u32(12, self.geometry.max_hosts());
        e.u32(16, self.geometry.align_kib());
        e.u32(20, self.slots);
        e.bytes(24, &self.lockspace.to_field());
        e.seal(HDR_CRC);
    }

    /// Decodes and validates.
    pub fn decode(sector: &[u8]) -> Result<Self, FormatError> {
        let d = Dec::open(sector, Record::IndexHeader, INDEX_MAGIC, HDR_CRC)?;
        let flags = d.u16(6);
        if flags & !FLAG_REBUILDING != 0 {
            return Err(d.bad("flags", format!("unknown flags {flags:#06x}")));
        }
        let geometry = Geometry::from_disk(d.u32(8), d.u32(12), d.u32(16))
            .map_err(|e| d.bad("geometry", e.to_string()))?;
        let slots = d.u32(20);
        if slots == 0 || slots > MAX_INDEX_SLOTS {
            return Err(d.bad(
                "slots",
                format!("{slots} is outside 1 to {MAX_INDEX_SLOTS}"),
            ));
        }
        let lockspace =
            Name::from_field(d.bytes(24, 48)).map_err(|e| d.bad("lockspace", e.to_string()))?;
        Ok(IndexHeader {
            lockspace,
            geometry,
            slots,
            rebuilding: flags & FLAG_REBUILDING != 0,
        })
    }
}

/// What an index entry says about its slot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", content = "name", rename_all = "snake_case")]
pub enum RecordState {
    /// The slot is unused.
    Free,
    /// The slot holds the lease of this name.
    Used(Name),
    /// An add or remove of this name was started and may not have finished;
    /// the slot's leader record is the truth.
    Updating(Name),
}

/// One index entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IndexRecord {
    /// The slot number (equals the entry's position).
    pub slot: u32,
    /// Its state.
    pub state: RecordState,
}

impl IndexRecord {
    /// Encodes into `out` (exactly [`INDEX_RECORD_LEN`] bytes).
    pub fn encode(&self, out: &mut [u8]) {
        let mut e = Enc::new(&mut out[..INDEX_RECORD_LEN]);
        let (state, name) = match &self.state {
            RecordState::Free => (0, None),
            RecordState::Used(n) => (1, Some(n)),
            RecordState::Updating(n) => (2, Some(n)),
        };
        e.u8(0, state);
        e.u32(4, self.slot);
        if let Some(n) = name {
            e.bytes(8, &n.to_field());
        }
        e.seal(REC_CRC);
    }

    /// Decodes entry `expected_slot`; an all-zero entry is free.
    pub fn decode(entry: &[u8], expected_slot: u32) -> Result<Self, FormatError> {
        let record = Record::IndexRecord;
        if entry.len() < INDEX_RECORD_LEN {
            return Err(FormatError::TooShort {
                record,
                len: entry.len(),
                need: INDEX_RECORD_LEN,
            });
        }
        let entry = &entry[..INDEX_RECORD_LEN];
        if is_blank(entry) {
            return Ok(IndexRecord {
                slot: expected_slot,
                state: RecordState::Free,
            });
        }
        let stored = u32::from_le_bytes([entry[60], entry[61], entry[62], entry[63]]);
        let computed = crc32c::crc32c(&entry[..REC_CRC]);
        if stored != computed {
            return Err(FormatError::BadChecksum {
                record,
                stored,
                computed,
            });
        }
        let bad = |field, reason: String| FormatError::BadField {
            record,
            field,
            reason,
        };
        let slot = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]);
        if slot != expected_slot {
            return Err(bad(
                "slot",
                format!("entry {expected_slot} names slot {slot}"),
            ));
        }
        if entry[1..4].iter().chain(&entry[56..60]).any(|&b| b != 0) {
            return Err(bad("reserved", "not zero".into()));
        }
        let name = || Name::from_field(&entry[8..56]).map_err(|e| bad("name", e.to_string()));
        let state = match entry[0] {
            0 if is_blank(&entry[8..56]) => RecordState::Free,
            0 => return Err(bad("name", "a free entry has a name".into())),
            1 => RecordState::Used(name()?),
            2 => RecordState::Updating(name()?),
            s => return Err(bad("state", format!("unknown state {s}"))),
        };
        Ok(IndexRecord { slot, state })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(slots: u32) -> IndexHeader {
        IndexHeader {
            lockspace: Name::new("ls").unwrap(),
            geometry: Geometry::default_512(),
            slots,
            rebuilding: false,
        }
    }

    #[test]
    fn header_roundtrip_and_layout() {
        let h = hdr(100);
        let mut s = [0u8; 512];
        h.encode(&mut s);
        assert_eq!(IndexHeader::decode(&s).unwrap(), h);
        assert_eq!(h.table_len(), 100 * 64 / 512 * 512 + 512);
        assert_eq!(h.data_offset(), 1 << 20);
        assert_eq!(h.slot_offset(2), 3 << 20);
        assert_eq!(h.entry_location(9), (512 + 512, 64));
    }

    #[test]
    fn record_roundtrip() {
        let n = Name::new("vm-1").unwrap();
        for state in [
            RecordState::Free,
            RecordState::Used(n.clone()),
            RecordState::Updating(n),
        ] {
            let r = IndexRecord { slot: 7, state };
            let mut b = [0u8; 64];
            r.encode(&mut b);
            assert_eq!(IndexRecord::decode(&b, 7).unwrap(), r);
            assert!(IndexRecord::decode(&b, 8).is_err());
        }
        assert_eq!(
            IndexRecord::decode(&[0; 64], 3).unwrap().state,
            RecordState::Free
        );
        let mut b = [0u8; 64];
        IndexRecord {
            slot: 1,
            state: RecordState::Used(Name::new("x").unwrap()),
        }
        .encode(&mut b);
        b[9] ^= 0x40;
        assert!(matches!(
            IndexRecord::decode(&b, 1),
            Err(FormatError::BadChecksum { .. })
        ));
    }
}
