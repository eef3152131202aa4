//! Resource lease records: the leader (sector 0), the request record
//! (sector 1) and one ballot block per host id (sector `1 + host_id`),
//! which also carries the host's shared-mode mark.

use super::codec::{Dec, Enc};
use super::{is_blank, FormatError, Geometry, Name, Record};

/// Magic of a leader record: "NSRL".
pub const LEADER_MAGIC: u32 = u32::from_le_bytes(*b"NSRL");
/// Magic of a request record: "NSRQ".
pub const REQUEST_MAGIC: u32 = u32::from_le_bytes(*b"NSRQ");
/// Magic of a ballot block: "NSBB".
pub const BALLOT_MAGIC: u32 = u32::from_le_bytes(*b"NSBB");

const LEADER_CRC: usize = 160;
const REQUEST_CRC: usize = 24;
const BALLOT_CRC: usize = 56;
const FLAG_SHARED: u16 = 1;

/// One incarnation of a host: its host id and the generation of its host
/// lease. A resource lease is owned by an `OwnerId`; one renewal of that
/// host lease keeps every lease it owns alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct OwnerId {
    /// Host id, `1..=max_hosts`.
    pub host_id: u32,
    /// Host lease generation.
    pub generation: u64,
}

impl std::fmt::Display for OwnerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host {} gen {}", self.host_id, self.generation)
    }
}

fn owner(host_id: u32, generation: u64) -> Option<OwnerId> {
    (host_id != 0).then_some(OwnerId {
        host_id,
        generation,
    })
}

/// Sector 0 of a resource lease: who owns it at which lease version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Leader {
    /// The lockspace whose host leases back this lease.
    pub lockspace: Name,
    /// The resource name.
    pub resource: Name,
    /// Geometry (must match the lockspace's).
    pub geometry: Geometry,
    /// Lease version: bumped by every successful acquire.
    pub lver: u64,
    /// The owner, or `None` when free.
    pub owner: Option<OwnerId>,
    /// Who wrote this record (for diagnostics).
    pub writer: Option<OwnerId>,
    /// Writer's monotonic ms at the write; informational only.
    pub write_time_ms: u64,
}

impl Leader {
    /// Encodes into `sector` (at least 164 bytes; the rest is zeroed).
    pub fn encode(&self, sector: &mut [u8]) {
        let mut e = Enc::new(sector);
        e.u32(0, LEADER_MAGIC);
        e.u16(4, super::VERSION);
        e.u32(8, self.geometry.sector_size());
        e.u32(12, self.geometry.max_hosts());
        e.u32(16, self.geometry.align_kib());
        e.u64(24, self.lver);
        let o = self.owner.unwrap_or(OwnerId {
            host_id: 0,
            generation: 0,
        });
        let w = self.writer.unwrap_or(OwnerId {
            host_id: 0,
            generation: 0,
        });
        e.u32(32, o.host_id);
        e.u32(36, w.host_id);
        e.u64(40, o.generation);
        e.u64(48, w.generation);
        e.u64(56, self.write_time_ms);
        e.bytes(64, &self.lockspace.to_field());
        e.bytes(112, &self.resource.to_field());
        e.seal(LEADER_CRC);
    }

    /// Decodes and validates.
    pub fn decode(sector: &[u8]) -> Result<Self, FormatError> {
        let d = Dec::open(sector, Record::Leader, LEADER_MAGIC, LEADER_CRC)?;
        d.zero(20, 4, "reserved")?;
        if d.u16(6) != 0 {
            return Err(d.bad("flags", format!("unknown flags {:#06x}", d.u16(6))));
        }
        let geometry = Geometry::from_disk(d.u32(8), d.u32(12), d.u32(16))
            .map_err(|e| d.bad("geometry", e.to_string()))?;
        let owner = owner_checked(&d, d.u32(32), d.u64(40), &geometry, "owner_host_id")?;
        let writer = owner_checked(&d, d.u32(36), d.u64(48), &geometry, "writer")?;
        let lockspace =
            Name::from_field(d.bytes(64, 48)).map_err(|e| d.bad("lockspace", e.to_string()))?;
        let resource =
            Name::from_field(d.bytes(112, 48)).map_err(|e| d.bad("resource", e.to_string()))?;
        Ok(Leader {
            lockspace,
            resource,
            geometry,
            lver: d.u64(24),
            owner,
            writer,
            write_time_ms: d.u64(56),
        })
    }
}

fn owner_checked(
    d: &Dec<'_>,
    host_id: u32,
    generation: u64,
    g: &Geometry,
    field: &'static str,
) -> Result<Option<OwnerId>, FormatError> {
    if host_id == 0 && generation != 0 {
        return Err(d.bad(field, format!("no host, but generation {generation}")));
    }
    let o = owner(host_id, generation);
    if let Some(o) = o {
        if !g.valid_host(o.host_id) {
            return Err(d.bad(field, format!("host id {} exceeds max hosts", o.host_id)));
        }
    }
    Ok(o)
}

/// Sector 1 of a resource lease: a request that the owner release it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Request {
    /// The lease version the request applies to.
    pub lver: u64,
    /// 0: ask the owner to release; 1: ask it to kill its holder first.
    pub force_mode: u32,
    /// Who asked.
    pub requester: u32,
}

impl Request {
    /// Encodes into `sector` (at least 28 bytes).
    pub fn encode(&self, sector: &mut [u8]) {
        let mut e = Enc::new(sector);
        e.u32(0, REQUEST_MAGIC);
        e.u16(4, super::VERSION);
        e.u32(8, self.requester);
        e.u32(12, self.force_mode);
        e.u64(16, self.lver);
        e.seal(REQUEST_CRC);
    }

    /// Decodes; a blank sector is "no request".
    pub fn decode(sector: &[u8]) -> Result<Option<Self>, FormatError> {
        if sector.len() >= REQUEST_CRC + 4 && is_blank(&sector[..REQUEST_CRC + 4]) {
            return Ok(None);
        }
        let d = Dec::open(sector, Record::Request, REQUEST_MAGIC, REQUEST_CRC)?;
        d.zero(6, 2, "flags")?;
        let force_mode = d.u32(12);
        if force_mode > 1 {
            return Err(d.bad("force_mode", format!("{force_mode} is not 0 or 1")));
        }
        Ok(Some(Request {
            lver: d.u64(16),
            force_mode,
            requester: d.u32(8),
        }))
    }
}

/// One host's Disk Paxos block for a resource, plus its shared-mode mark.
/// Only that host ever writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Ballot {
    /// The writer (equals the block's position).
    pub host_id: u32,
    /// The lease version this ballot is for.
    pub lver: u64,
    /// Highest ballot number this host started.
    pub mbal: u64,
    /// Ballot number of the last value this host accepted (0: none).
    pub bal: u64,
    /// The value accepted at `bal`: the proposed owner.
    pub inp: Option<OwnerId>,
    /// The host holds the lease in shared mode as this generation.
    pub shared: Option<u64>,
}

impl Ballot {
    /// The state of a never-written block.
    pub fn blank(host_id: u32) -> Ballot {
        Ballot {
            host_id,
            ..Ballot::default()
        }
    }

    /// Encodes into `sector` (at least 60 bytes).
    pub fn encode(&self, sector: &mut [u8]) {
        let mut e = Enc::new(sector);
        e.u32(0, BALLOT_MAGIC);
        e.u16(4, super::VERSION);
        e.u16(
            6,
            if self.shared.is_some() {
                FLAG_SHARED
            } else {
                0
            },
        );
        e.u32(8, self.host_id);
        let inp = self.inp.unwrap_or(OwnerId {
            host_id: 0,
            generation: 0,
        });
        e.u32(12, inp.host_id);
        e.u64(16, self.lver);
        e.u64(24, self.mbal);
        e.u64(32, self.bal);
        e.u64(40, inp.generation);
        e.u64(48, self.shared.unwrap_or(0));
        e.seal(BALLOT_CRC);
    }

    /// Decodes the block at position `expected_host`; blank is
    /// [`Ballot::blank`].
    pub fn decode(sector: &[u8], expected_host: u32, g: &Geometry) -> Result<Self, FormatError> {
        if sector.len() >= BALLOT_CRC + 4 && is_blank(&sector[..BALLOT_CRC + 4]) {
            return Ok(Ballot::blank(expected_host));
        }
        let d = Dec::open(sector, Record::Ballot, BALLOT_MAGIC, BALLOT_CRC)?;
        let flags = d.u16(6);
        if flags & !FLAG_SHARED != 0 {
            return Err(d.bad("flags", format!("unknown flags {flags:#06x}")));
        }
        let host_id = d.u32(8);
        if host_id != expected_host {
            return Err(d.bad(
                "host_id",
                format!("block {expected_host} holds host id {host_id}"),
            ));
        }
        let inp = owner_checked(&d, d.u32(12), d.u64(40), g, "inp_host_id")?;
        let (mbal, bal) = (d.u64(24), d.u64(32));
        if bal > mbal {
            return Err(d.bad("bal", format!("bal {bal} exceeds mbal {mbal}")));
        }
        if (bal == 0) != inp.is_none() {
            return Err(d.bad(
                "inp",
                "an accepted value needs a ballot and vice versa".into(),
            ));
        }
        let shared = match (flags & FLAG_SHARED != 0, d.u64(48)) {
            (true, 0) => {
                return Err(d.bad(
                    "shared_generation",
                    "a shared mark needs a generation".into(),
                ))
            }
            (true, g) => Some(g),
            (false, 0) => None,
            (false, g) => {
                return Err(d.bad("shared_generation", format!("{g} without the SHARED flag")))
            }
        };
        Ok(Ballot {
            host_id,
            lver: d.u64(16),
            mbal,
            bal,
            inp,
            shared,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g() -> Geometry {
        Geometry::new(512, 8, 1 << 20).unwrap()
    }

    #[test]
    fn leader_roundtrip() {
        let l = Leader {
            lockspace: Name::new("ls").unwrap(),
            resource: Name::new("vm-1").unwrap(),
            geometry: g(),
            lver: 5,
            owner: Some(OwnerId {
                host_id: 2,
                generation: 3,
            }),
            writer: Some(OwnerId {
                host_id: 2,
                generation: 3,
            }),
            write_time_ms: 77,
        };
        let mut s = [0u8; 512];
        l.encode(&mut s);
        assert_eq!(Leader::decode(&s).unwrap(), l);
        let free = Leader { owner: None, ..l };
        free.encode(&mut s);
        assert_eq!(Leader::decode(&s).unwrap().owner, None);
    }

    #[test]
    fn leader_rejects_owner_beyond_max_hosts() {
        let l = Leader {
            lockspace: Name::new("ls").unwrap(),
            resource: Name::new("r").unwrap(),
            geometry: g(),
            lver: 1,
            owner: Some(OwnerId {
                host_id: 9,
                generation: 1,
            }),
            writer: None,
            write_time_ms: 0,
        };
        let mut s = [0u8; 512];
        l.encode(&mut s);
        assert!(matches!(
            Leader::decode(&s),
            Err(FormatError::BadField {
                field: "owner_host_id",
                ..
            })
        ));
    }

    #[test]
    fn ballot_roundtrip_blank_and_checks() {
        let b = Ballot {
            host_id: 4,
            lver: 2,
            mbal: 12,
            bal: 12,
            inp: Some(OwnerId {
                host_id: 4,
                generation: 1,
            }),
            shared: Some(1),
        };
        let mut s = [0u8; 512];
        b.encode(&mut s);
        assert_eq!(Ballot::decode(&s, 4, &g()).unwrap(), b);
        assert!(Ballot::decode(&s, 5, &g()).is_err());
        assert_eq!(
            Ballot::decode(&[0u8; 512], 5, &g()).unwrap(),
            Ballot::blank(5)
        );
        let bad = Ballot { bal: 13, ..b };
        bad.encode(&mut s);
        assert!(matches!(
            Ballot::decode(&s, 4, &g()),
            Err(FormatError::BadField { field: "bal", .. })
        ));
    }

    #[test]
    fn request_roundtrip() {
        let r = Request {
            lver: 3,
            force_mode: 1,
            requester: 2,
        };
        let mut s = [0u8; 512];
        assert_eq!(Request::decode(&s).unwrap(), None);
        r.encode(&mut s);
        assert_eq!(Request::decode(&s).unwrap(), Some(r));
    }
}
