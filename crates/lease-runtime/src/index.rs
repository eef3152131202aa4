//! Lease index operations on storage: init, load, add, remove, rebuild.
//! The planning (and the crash-safety argument) is in
//! `nosplit_lease::index`; this module performs the planned writes in
//! order, each after the previous one completed.

use nosplit_lease::format::{Geometry, IndexHeader, Leader, Name};
use nosplit_lease::index::{IndexError, IndexTable, RebuildReport, Write};
use nosplit_storage::Storage;

use crate::direct::{check_area, read, sector_of, write};
use crate::RuntimeError;

fn idx_err(s: &dyn Storage, source: IndexError) -> RuntimeError {
    RuntimeError::Index {
        path: s.describe(),
        source,
    }
}

fn apply(s: &mut dyn Storage, base: u64, writes: &[Write]) -> Result<(), RuntimeError> {
    for w in writes {
        write(s, base + w.offset, &w.data, "writing the lease index")?;
    }
    Ok(())
}

fn check_fits(s: &dyn Storage, base: u64, header: &IndexHeader) -> Result<(), RuntimeError> {
    sector_of(&header.geometry, s)?;
    check_area(s, base, header.total_len())
}

/// Bytes an index of `slots` slots needs.
pub fn index_len(lockspace: &Name, geometry: Geometry, slots: u32) -> u64 {
    IndexHeader {
        lockspace: lockspace.clone(),
        geometry,
        slots,
        rebuilding: false,
    }
    .total_len()
}

/// Writes a new, empty index at `base`.
pub fn init(
    s: &mut dyn Storage,
    base: u64,
    lockspace: Name,
    geometry: Geometry,
    slots: u32,
) -> Result<IndexHeader, RuntimeError> {
    let max = nosplit_lease::format::MAX_INDEX_SLOTS;
    if slots == 0 || slots > max {
        return Err(RuntimeError::BadSlots { slots, max });
    }
    let (header, writes) = IndexTable::init(lockspace, geometry, slots);
    check_fits(s, base, &header)?;
    apply(s, base, &writes)?;
    Ok(header)
}

/// Reads and checks the header sector; returns its bytes and the header.
fn read_header(s: &mut dyn Storage, base: u64) -> Result<(Vec<u8>, IndexHeader), RuntimeError> {
    let sector = s.sector_size().bytes();
    let first = read(s, base, sector, "reading the index header")?;
    let header = IndexHeader::decode(&first).map_err(|source| RuntimeError::Format {
        path: s.describe(),
        offset: base,
        source,
    })?;
    check_fits(s, base, &header)?;
    Ok((first, header))
}

/// Reads the header and entry table.
pub fn load(s: &mut dyn Storage, base: u64) -> Result<IndexTable, RuntimeError> {
    let (first, header) = read_header(s, base)?;
    let len = usize::try_from(header.table_len()).unwrap_or(usize::MAX);
    let table = read(
        s,
        base + header.table_offset(),
        len,
        "reading the index table",
    )?;
    IndexTable::decode(&first, &table).map_err(|e| idx_err(s, e))
}

/// Adds `name`; returns its slot and the slot's byte offset.
pub fn add(s: &mut dyn Storage, base: u64, name: &Name) -> Result<(u32, u64), RuntimeError> {
    let mut t = load(s, base)?;
    let (slot, writes) = t.plan_add(name).map_err(|e| idx_err(s, e))?;
    apply(s, base, &writes)?;
    Ok((slot, base + t.header.slot_offset(slot)))
}

/// Looks `name` up; returns its slot and the slot's byte offset.
pub fn lookup(s: &mut dyn Storage, base: u64, name: &Name) -> Result<(u32, u64), RuntimeError> {
    let t = load(s, base)?;
    if t.header.rebuilding {
        let e = IndexError::NeedsRebuild("an earlier rebuild did not finish".into());
        return Err(idx_err(s, e));
    }
    let slot = t
        .find(name)
        .ok_or_else(|| idx_err(s, IndexError::NotFound(name.clone())))?;
    Ok((slot, base + t.header.slot_offset(slot)))
}

/// Removes `name`; refuses while its lease is held.
pub fn remove(s: &mut dyn Storage, base: u64, name: &Name) -> Result<u32, RuntimeError> {
    let mut t = load(s, base)?;
    let slot = t
        .find(name)
        .ok_or_else(|| idx_err(s, IndexError::NotFound(name.clone())))?;
    let info = crate::direct::read_resource(s, base + t.header.slot_offset(slot))?;
    let (slot, writes) = t
        .plan_remove(name, &info.leader, info.shared.len())
        .map_err(|e| idx_err(s, e))?;
    apply(s, base, &writes)?;
    Ok(slot)
}

/// Rebuilds the entry table from the slots' leader records.
pub fn rebuild(s: &mut dyn Storage, base: u64) -> Result<RebuildReport, RuntimeError> {
    let (_, header) = read_header(s, base)?;
    let sector = s.sector_size().bytes();
    let mut leaders = Vec::with_capacity(header.slots as usize);
    for k in 0..header.slots {
        leaders.push(read(
            s,
            base + header.slot_offset(k),
            sector,
            "reading a slot's leader",
        )?);
    }
    let (writes, report) = IndexTable::rebuild(&header, &leaders);
    apply(s, base, &writes)?;
    Ok(report)
}

/// A used slot and its leader record (or why it does not decode).
pub type SlotLeader = (u32, Result<Leader, String>);

/// The leader of every used slot, for listings.
pub fn list(s: &mut dyn Storage, base: u64) -> Result<(IndexTable, Vec<SlotLeader>), RuntimeError> {
    let t = load(s, base)?;
    let sector = s.sector_size().bytes();
    let mut out = Vec::new();
    for (_, slot) in t.used() {
        let raw = read(
            s,
            base + t.header.slot_offset(slot),
            sector,
            "reading a slot's leader",
        )?;
        out.push((slot, Leader::decode(&raw).map_err(|e| e.to_string())));
    }
    Ok((t, out))
}
