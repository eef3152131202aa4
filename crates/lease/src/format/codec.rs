//! Little-endian field access for fixed-layout records, and the checksum.
//!
//! Records are built with [`Enc`] and read with [`Dec`]; both work on a
//! sector-sized byte slice and never panic on short input (the decoders
//! check the length once, up front, against the record's fixed size).

use super::{FormatError, Record};

/// Writes fields at fixed offsets into a zeroed record buffer.
pub(crate) struct Enc<'a> {
    buf: &'a mut [u8],
}

impl<'a> Enc<'a> {
    /// `buf` must be at least the record's length; callers allocate it.
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        buf.fill(0);
        Enc { buf }
    }
    pub(crate) fn u8(&mut self, off: usize, v: u8) {
        self.buf[off] = v;
    }
    pub(crate) fn u16(&mut self, off: usize, v: u16) {
        self.buf[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u32(&mut self, off: usize, v: u32) {
        self.buf[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, off: usize, v: u64) {
        self.buf[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn bytes(&mut self, off: usize, v: &[u8]) {
        self.buf[off..off + v.len()].copy_from_slice(v);
    }
    /// Stores the crc32c of `buf[..crc_off]` at `crc_off`.
    pub(crate) fn seal(&mut self, crc_off: usize) {
        let crc = crc32c::crc32c(&self.buf[..crc_off]);
        self.u32(crc_off, crc);
    }
}

/// Reads fields at fixed offsets from a record whose length was checked.
pub(crate) struct Dec<'a> {
    buf: &'a [u8],
    record: Record,
}

impl<'a> Dec<'a> {
    /// Checks length, magic, version and checksum, in that order.
    pub(crate) fn open(
        buf: &'a [u8],
        record: Record,
        magic: u32,
        crc_off: usize,
    ) -> Result<Self, FormatError> {
        let need = crc_off + 4;
        if buf.len() < need {
            return Err(FormatError::TooShort {
                record,
                len: buf.len(),
                need,
            });
        }
        if buf[..need].iter().all(|&b| b == 0) {
            return Err(FormatError::Blank { record });
        }
        let d = Dec { buf, record };
        let found = d.u32(0);
        if found != magic {
            return Err(FormatError::BadMagic {
                record,
                found,
                expected: magic,
            });
        }
        let version = d.u16(4);
        if version != super::VERSION {
            return Err(FormatError::BadVersion {
                record,
                found: version,
            });
        }
        let stored = d.u32(crc_off);
        let computed = crc32c::crc32c(&buf[..crc_off]);
        if stored != computed {
            return Err(FormatError::BadChecksum {
                record,
                stored,
                computed,
            });
        }
        Ok(d)
    }
    pub(crate) fn u16(&self, off: usize) -> u16 {
        u16::from_le_bytes([self.buf[off], self.buf[off + 1]])
    }
    pub(crate) fn u32(&self, off: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.buf[off..off + 4]);
        u32::from_le_bytes(b)
    }
    pub(crate) fn u64(&self, off: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.buf[off..off + 8]);
        u64::from_le_bytes(b)
    }
    pub(crate) fn bytes(&self, off: usize, len: usize) -> &'a [u8] {
        &self.buf[off..off + len]
    }
    /// Fails unless `buf[off..off + len]` is all zero (reserved bytes).
    pub(crate) fn zero(
        &self,
        off: usize,
        len: usize,
        field: &'static str,
    ) -> Result<(), FormatError> {
        if self.buf[off..off + len].iter().any(|&b| b != 0) {
            return Err(self.bad(field, "reserved bytes are not zero".into()));
        }
        Ok(())
    }

    /// A field that failed validation.
    pub(crate) fn bad(&self, field: &'static str, reason: String) -> FormatError {
        FormatError::BadField {
            record: self.record,
            field,
            reason,
        }
    }
}
