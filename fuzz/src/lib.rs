//! Helpers shared by the fuzz targets: carving decoder arguments out of the
//! fuzzer's bytes.
//!
//! Every target reads its input as
//!
//! ```text
//! mode: u8 | extra arguments (u32s, geometry) | record bytes
//! ```
//!
//! Bit 0 of `mode` asks the target to recompute the record's crc32c before
//! decoding. Random bytes almost never carry a valid checksum, so without
//! this the fuzzer would spend nearly all its time in the checksum check;
//! with it, it explores the field validation behind the checksum (where the
//! interesting bugs are). Bit 1 does the same for every entry of an index
//! table. Missing bytes read as zero, so any input is usable.

use nosplit_lease::format::Geometry;

/// Largest alignment a geometry may have (mirrors the format's limit).
const MAX_ALIGN: u64 = 64 << 20;

/// Reads arguments off the front of the fuzzer's input.
#[derive(Debug)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Wraps the fuzzer's bytes.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// Takes `n` bytes (fewer if the input is shorter).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// Takes one byte (0 when exhausted).
    pub fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }

    /// Takes a little-endian u16 (zero padded).
    pub fn u16(&mut self) -> u16 {
        let mut b = [0u8; 2];
        let h = self.take(2);
        b[..h.len()].copy_from_slice(h);
        u16::from_le_bytes(b)
    }

    /// Takes a little-endian u32 (zero padded).
    pub fn u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        let h = self.take(4);
        b[..h.len()].copy_from_slice(h);
        u32::from_le_bytes(b)
    }

    /// Takes 4 bytes and builds a valid geometry from them: sector size 512
    /// or 4096, 1 to 2000 hosts, and the smallest alignment that fits times
    /// 1, 2, 4 or 8 (capped at 64 MiB).
    pub fn geometry(&mut self) -> Geometry {
        let sector: u64 = if self.u8() & 1 == 0 { 512 } else { 4096 };
        let hosts = u64::from(self.u16()) % 2000 + 1;
        let shift = self.u8() % 4;
        let align = (((2 + hosts) * sector).next_power_of_two() << shift).min(MAX_ALIGN);
        match Geometry::new(sector, hosts, align) {
            Ok(g) => g,
            Err(e) => panic!("fuzz harness built an invalid geometry: {e}"),
        }
    }

    /// The rest of the input.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.data.len())
    }
}

/// Copies `bytes`; when `fix` is set and they hold a record whose crc is
/// at `crc_off`, stores the right crc32c there.
pub fn with_crc(bytes: &[u8], crc_off: usize, fix: bool) -> Vec<u8> {
    let mut v = bytes.to_vec();
    if fix {
        fix_crc(&mut v, crc_off);
    }
    v
}

/// Stores the crc32c of `buf[..crc_off]` at `crc_off`, if `buf` is long
/// enough.
pub fn fix_crc(buf: &mut [u8], crc_off: usize) {
    if buf.len() >= crc_off + 4 {
        let crc = crc32c::crc32c(&buf[..crc_off]);
        buf[crc_off..crc_off + 4].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Where each record keeps its crc32c (the record is `crc_off + 4` bytes).
pub mod crc_off {
    /// Lockspace header.
    pub const LOCKSPACE_HEADER: usize = 88;
    /// Host slot.
    pub const HOST_SLOT: usize = 104;
    /// Resource leader.
    pub const LEADER: usize = 160;
    /// Resource request.
    pub const REQUEST: usize = 24;
    /// Ballot block.
    pub const BALLOT: usize = 56;
    /// Index header.
    pub const INDEX_HEADER: usize = 72;
    /// Index entry.
    pub const INDEX_RECORD: usize = 60;
}

/// Size of the fresh sector a decoded record is re-encoded into.
pub const SECTOR: usize = 512;
