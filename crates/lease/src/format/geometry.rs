//! Where each record lives: sector size, host count and area alignment.

/// Default number of host ids per lockspace (and ballot blocks per lease).
pub const DEFAULT_MAX_HOSTS: u32 = 128;
/// Largest supported host id count.
pub const MAX_MAX_HOSTS: u32 = 2000;
/// Default alignment (and size) of a lockspace or resource lease area.
pub const DEFAULT_ALIGN: u64 = 1 << 20;
const MAX_ALIGN: u64 = 64 << 20;

/// The shape shared by a lockspace and the leases that use it.
///
/// A lockspace area is sector 0 (header) then one sector per host id
/// (`1..=max_hosts`). A resource area is sector 0 (leader), sector 1
/// (request), then one ballot sector per host id. Each area occupies a
/// multiple of `align` bytes so areas can be packed back to back in a file
/// or device (the lease index does that).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Geometry {
    sector_size: u32,
    max_hosts: u32,
    align: u64,
}

/// An impossible geometry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    /// Sector size other than 512 or 4096.
    #[error("sector size {0} is not supported (use 512 or 4096)")]
    SectorSize(u64),
    /// Host count out of range.
    #[error("max hosts {0} is out of range (1 to 2000)")]
    MaxHosts(u64),
    /// Alignment not a power of two multiple of the sector size, or too big.
    #[error("alignment {align} is not a power of two between the sector size {sector} and 64 MiB")]
    Align {
        /// The alignment.
        align: u64,
        /// The sector size.
        sector: u64,
    },
    /// The areas do not fit the alignment.
    #[error("{max_hosts} hosts need {need} bytes per lease area but the alignment is {align}")]
    DoesNotFit {
        /// Hosts.
        max_hosts: u32,
        /// Bytes needed.
        need: u64,
        /// The alignment.
        align: u64,
    },
}

impl Geometry {
    /// Validates a geometry.
    pub fn new(sector_size: u64, max_hosts: u64, align: u64) -> Result<Geometry, GeometryError> {
        if sector_size != 512 && sector_size != 4096 {
            return Err(GeometryError::SectorSize(sector_size));
        }
        let max_hosts = match u32::try_from(max_hosts) {
            Ok(h) if (1..=MAX_MAX_HOSTS).contains(&h) => h,
            _ => return Err(GeometryError::MaxHosts(max_hosts)),
        };
        if !align.is_power_of_two() || align < sector_size || align > MAX_ALIGN {
            return Err(GeometryError::Align {
                align,
                sector: sector_size,
            });
        }
        let need = (2 + u64::from(max_hosts)) * sector_size;
        if need > align {
            return Err(GeometryError::DoesNotFit {
                max_hosts,
                need,
                align,
            });
        }
        // Checked above: 512 or 4096.
        let sector_size = if sector_size == 512 { 512 } else { 4096 };
        Ok(Geometry {
            sector_size,
            max_hosts,
            align,
        })
    }

    /// 512-byte sectors, default hosts and alignment.
    pub fn default_512() -> Geometry {
        Geometry {
            sector_size: 512,
            max_hosts: DEFAULT_MAX_HOSTS,
            align: DEFAULT_ALIGN,
        }
    }

    /// Sector size in bytes.
    pub fn sector_size(&self) -> u32 {
        self.sector_size
    }
    /// Sector size in bytes, as `usize`.
    pub fn sector(&self) -> usize {
        self.sector_size as usize
    }
    /// Number of host ids (valid ids are `1..=max_hosts`).
    pub fn max_hosts(&self) -> u32 {
        self.max_hosts
    }
    /// Area alignment in bytes.
    pub fn align(&self) -> u64 {
        self.align
    }
    /// Bytes of one lockspace area.
    pub fn lockspace_len(&self) -> u64 {
        self.align
    }
    /// Bytes of one resource lease area.
    pub fn resource_len(&self) -> u64 {
        self.align
    }
    /// Offset of a host's slot within a lockspace area.
    pub fn host_slot_offset(&self, host_id: u32) -> u64 {
        u64::from(host_id) * u64::from(self.sector_size)
    }
    /// Offset of a host's ballot block within a resource area.
    pub fn ballot_offset(&self, host_id: u32) -> u64 {
        (1 + u64::from(host_id)) * u64::from(self.sector_size)
    }
    /// Bytes from the start of a resource area to the end of its last
    /// ballot block: one read of this many bytes sees the whole lease.
    pub fn resource_used_len(&self) -> usize {
        (2 + self.max_hosts as usize) * self.sector()
    }
    /// Is `host_id` a valid id?
    pub fn valid_host(&self, host_id: u32) -> bool {
        (1..=self.max_hosts).contains(&host_id)
    }
    /// Alignment in KiB as stored on disk.
    pub(crate) fn align_kib(&self) -> u32 {
        u32::try_from(self.align >> 10).unwrap_or(u32::MAX)
    }
    /// Rebuilds from stored fields, validating them.
    pub(crate) fn from_disk(
        sector_size: u32,
        max_hosts: u32,
        align_kib: u32,
    ) -> Result<Geometry, GeometryError> {
        Geometry::new(
            u64::from(sector_size),
            u64::from(max_hosts),
            u64::from(align_kib) << 10,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates() {
        assert!(Geometry::new(512, 128, 1 << 20).is_ok());
        assert!(Geometry::new(4096, 250, 2 << 20).is_ok());
        assert_eq!(
            Geometry::new(1024, 8, 1 << 20),
            Err(GeometryError::SectorSize(1024))
        );
        assert_eq!(
            Geometry::new(512, 0, 1 << 20),
            Err(GeometryError::MaxHosts(0))
        );
        assert!(matches!(
            Geometry::new(512, 8, 3 << 20),
            Err(GeometryError::Align { .. })
        ));
        assert!(matches!(
            Geometry::new(4096, 2000, 1 << 20),
            Err(GeometryError::DoesNotFit { .. })
        ));
        assert!(Geometry::new(512, 2000, 2 << 20).is_ok());
    }

    #[test]
    fn offsets() {
        let g = Geometry::new(4096, 4, 1 << 20).unwrap();
        assert_eq!(g.host_slot_offset(1), 4096);
        assert_eq!(g.ballot_offset(1), 8192);
        assert_eq!(g.resource_used_len(), 6 * 4096);
        assert!(g.valid_host(4) && !g.valid_host(0) && !g.valid_host(5));
    }
}
