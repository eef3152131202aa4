//! Lockspace records: the header (sector 0) and the host slots (delta
//! leases, sector `host_id`).

use super::codec::{Dec, Enc};
use super::{FormatError, Geometry, Name, Record};

/// Magic of a lockspace header: "NSLS".
pub const LOCKSPACE_MAGIC: u32 = u32::from_le_bytes(*b"NSLS");
/// Magic of a host slot: "NSHL".
pub const HOST_MAGIC: u32 = u32::from_le_bytes(*b"NSHL");

/// Smallest accepted `io_timeout`.
pub const MIN_IO_TIMEOUT_MS: u32 = 50;
/// Largest accepted `io_timeout`.
pub const MAX_IO_TIMEOUT_MS: u32 = 300_000;

const HDR_CRC: usize = 88;
const SLOT_CRC: usize = 104;
const FLAG_RELEASED: u16 = 1;

/// Sector 0 of a lockspace: what it is and the timing every host derives
/// its deadlines from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LockspaceHeader {
    /// Lockspace name.
    pub name: Name,
    /// Sector size, host count, alignment.
    pub geometry: Geometry,
    /// The one timing parameter; see `timing`.
    pub io_timeout_ms: u32,
    /// Random id of this initialisation; a re-initialised lockspace gets a
    /// new one, so hosts notice.
    pub uuid: [u8; 16],
}

impl LockspaceHeader {
    /// Encodes into `sector` (at least 92 bytes; the rest is zeroed).
    pub fn encode(&self, sector: &mut [u8]) {
        let mut e = Enc::new(sector);
        e.u32(0, LOCKSPACE_MAGIC);
        e.u16(4, super::VERSION);
        e.u32(8, self.geometry.sector_size());
        e.u32(12, self.geometry.max_hosts());
        e.u32(16, self.geometry.align_kib());
        e.u32(20, self.io_timeout_ms);
        e.bytes(24, &self.uuid);
        e.bytes(40, &self.name.to_field());
        e.seal(HDR_CRC);
    }

    /// Decodes and validates.
    pub fn decode(sector: &[u8]) -> Result<Self, FormatError> {
        let d = Dec::open(sector, Record::LockspaceHeader, LOCKSPACE_MAGIC, HDR_CRC)?;
        d.zero(6, 2, "flags")?;
        let geometry = Geometry::from_disk(d.u32(8), d.u32(12), d.u32(16))
            .map_err(|e| d.bad("geometry", e.to_string()))?;
        let io_timeout_ms = d.u32(20);
        check_io_timeout(io_timeout_ms).map_err(|r| d.bad("io_timeout_ms", r))?;
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(d.bytes(24, 16));
        let name = Name::from_field(d.bytes(40, 48)).map_err(|e| d.bad("name", e.to_string()))?;
        Ok(LockspaceHeader {
            name,
            geometry,
            io_timeout_ms,
            uuid,
        })
    }
}

/// Checks an `io_timeout` value; the error names the accepted range.
pub fn check_io_timeout(ms: u32) -> Result<(), String> {
    if (MIN_IO_TIMEOUT_MS..=MAX_IO_TIMEOUT_MS).contains(&ms) {
        Ok(())
    } else {
        Err(format!(
            "{ms} ms is outside {MIN_IO_TIMEOUT_MS} ms to {MAX_IO_TIMEOUT_MS} ms"
        ))
    }
}

/// One host's delta lease. The owner rewrites it every renewal with `seq`
/// incremented; other hosts judge liveness by watching it change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostSlot {
    /// The slot's host id (equals its position).
    pub host_id: u32,
    /// Incremented on every join: identifies one incarnation of the host.
    pub generation: u64,
    /// Incremented on every renewal.
    pub seq: u64,
    /// The owner's monotonic clock at the renewal, in ms. Informational
    /// only: no other host compares it to its own clock.
    pub owner_time_ms: u64,
    /// The io_timeout the owner was using.
    pub io_timeout_ms: u32,
    /// Set by a clean leave: the host holds nothing in this lockspace.
    pub released: bool,
    /// The lockspace initialisation this slot belongs to.
    pub ls_uuid: [u8; 16],
    /// The owner's host name.
    pub host_name: Name,
}

impl HostSlot {
    /// Encodes into `sector` (at least 108 bytes; the rest is zeroed).
    pub fn encode(&self, sector: &mut [u8]) {
        let mut e = Enc::new(sector);
        e.u32(0, HOST_MAGIC);
        e.u16(4, super::VERSION);
        e.u16(6, if self.released { FLAG_RELEASED } else { 0 });
        e.u32(8, self.host_id);
        e.u32(12, self.io_timeout_ms);
        e.u64(16, self.generation);
        e.u64(24, self.seq);
        e.u64(32, self.owner_time_ms);
        e.bytes(40, &self.ls_uuid);
        e.bytes(56, &self.host_name.to_field());
        e.seal(SLOT_CRC);
    }

    /// Decodes the slot at position `expected_host`.
    pub fn decode(sector: &[u8], expected_host: u32) -> Result<Self, FormatError> {
        let d = Dec::open(sector, Record::HostSlot, HOST_MAGIC, SLOT_CRC)?;
        let flags = d.u16(6);
        if flags & !FLAG_RELEASED != 0 {
            return Err(d.bad("flags", format!("unknown flags {flags:#06x}")));
        }
        let host_id = d.u32(8);
        if host_id != expected_host {
            return Err(d.bad(
                "host_id",
                format!("slot {expected_host} holds host id {host_id}"),
            ));
        }
        check_io_timeout(d.u32(12)).map_err(|r| d.bad("io_timeout_ms", r))?;
        let generation = d.u64(16);
        if generation == 0 {
            return Err(d.bad("generation", "0 is never written".into()));
        }
        let mut ls_uuid = [0u8; 16];
        ls_uuid.copy_from_slice(d.bytes(40, 16));
        let host_name =
            Name::from_field(d.bytes(56, 48)).map_err(|e| d.bad("host_name", e.to_string()))?;
        Ok(HostSlot {
            host_id,
            generation,
            seq: d.u64(24),
            owner_time_ms: d.u64(32),
            io_timeout_ms: d.u32(12),
            released: flags & FLAG_RELEASED != 0,
            ls_uuid,
            host_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::FormatError;

    fn hdr() -> LockspaceHeader {
        LockspaceHeader {
            name: Name::new("ls").unwrap(),
            geometry: Geometry::default_512(),
            io_timeout_ms: 1000,
            uuid: [7; 16],
        }
    }

    fn slot() -> HostSlot {
        HostSlot {
            host_id: 3,
            generation: 2,
            seq: 99,
            owner_time_ms: 123,
            io_timeout_ms: 1000,
            released: false,
            ls_uuid: [7; 16],
            host_name: Name::new("host-a").unwrap(),
        }
    }

    #[test]
    fn header_roundtrip() {
        let mut s = [0u8; 512];
        hdr().encode(&mut s);
        assert_eq!(LockspaceHeader::decode(&s).unwrap(), hdr());
    }

    #[test]
    fn slot_roundtrip_and_checks() {
        let mut s = [0u8; 512];
        slot().encode(&mut s);
        assert_eq!(HostSlot::decode(&s, 3).unwrap(), slot());
        assert!(matches!(
            HostSlot::decode(&s, 4),
            Err(FormatError::BadField {
                field: "host_id",
                ..
            })
        ));
        s[30] ^= 1;
        assert!(matches!(
            HostSlot::decode(&s, 3),
            Err(FormatError::BadChecksum { .. })
        ));
        assert!(matches!(
            HostSlot::decode(&[0u8; 512], 3),
            Err(FormatError::Blank { .. })
        ));
        assert!(matches!(
            HostSlot::decode(&[1u8; 20], 3),
            Err(FormatError::TooShort { .. })
        ));
    }

    #[test]
    fn header_rejects_wrong_kind() {
        let mut s = [0u8; 512];
        slot().encode(&mut s);
        assert!(matches!(
            LockspaceHeader::decode(&s),
            Err(FormatError::BadMagic { .. })
        ));
    }
}
