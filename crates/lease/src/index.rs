//! The lease index: a volume that maps lease names (VM ids, volume ids) to
//! lease slots, like oVirt's xleases volume.
//!
//! This module plans index changes as ordered lists of writes; the runtime
//! performs them in order, each only after the previous one completed.
//! The order makes every change crash safe:
//!
//! - add: entry -> `Updating(name)`; request and ballot sectors -> blank;
//!   leader -> fresh leader named `name` (free, lver 0); entry ->
//!   `Used(name)`. The ballots are cleared before the leader is written, so
//!   a new lease never sits beside a removed lease's ballots.
//! - remove: entry -> `Updating(name)`; whole lease area (leader, request,
//!   ballots) -> blank; entry -> `Free`.
//!
//! A crash leaves at most one entry `Updating`; [`IndexTable::rebuild`]
//! derives every entry from the slots' leader records (a slot whose leader
//! decodes and names a resource is used, anything else is free), setting
//! the header's `rebuilding` flag for the duration. The slot is the truth;
//! the entries are a cache that makes lookups one read.
//!
//! Changes must be serialised across hosts by the caller (the engine does
//! them under the storage domain's metadata lease). Lookups need no lock.

use crate::format::{
    FormatError, Geometry, IndexHeader, IndexRecord, Leader, Name, RecordState, INDEX_RECORD_LEN,
};

/// Why an index operation cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// Bytes do not decode.
    #[error("lease index: {0}")]
    Corrupt(#[from] FormatError),
    /// An entry is mid-update, or a rebuild did not finish.
    #[error("lease index needs a rebuild ({0}); run `nosplit lease index rebuild`")]
    NeedsRebuild(String),
    /// The name is already indexed.
    #[error("lease {0} already exists in slot {1}")]
    Exists(Name, u32),
    /// The name is not indexed.
    #[error("lease {0} is not in the index")]
    NotFound(Name),
    /// Every slot is used.
    #[error("lease index is full ({0} slots)")]
    Full(u32),
    /// The lease is held; release it before removing it.
    #[error("lease {0} is held by {1}; release it first")]
    Held(Name, String),
    /// The slot's leader does not match its entry.
    #[error("slot {slot} holds {found}, but its entry says {expected}")]
    SlotMismatch {
        /// The slot.
        slot: u32,
        /// What the slot's leader says.
        found: String,
        /// What the entry says.
        expected: Name,
    },
}

/// One write of a plan: bytes at an offset of the index volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// Byte offset in the index volume.
    pub offset: u64,
    /// Sector-aligned bytes.
    pub data: Vec<u8>,
}

/// The decoded header and entry table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexTable {
    /// The header.
    pub header: IndexHeader,
    /// One entry per slot.
    pub entries: Vec<IndexRecord>,
    table: Vec<u8>,
}

impl IndexTable {
    /// Plans the writes that initialise a new index volume: header, empty
    /// table, and a free lease in every slot. Returns the header too.
    pub fn init(lockspace: Name, geometry: Geometry, slots: u32) -> (IndexHeader, Vec<Write>) {
        let header = IndexHeader {
            lockspace: lockspace.clone(),
            geometry,
            slots,
            rebuilding: false,
        };
        let s = geometry.sector();
        let mut first = vec![0u8; s];
        header.encode(&mut first);
        let table_len = usize::try_from(header.table_len()).unwrap_or(0);
        let mut writes = vec![Write {
            offset: 0,
            data: first,
        }];
        writes.push(Write {
            offset: header.table_offset(),
            data: vec![0u8; table_len],
        });
        for k in 0..slots {
            // Slots start blank: free and never used.
            writes.push(Write {
                offset: header.slot_offset(k),
                data: vec![0u8; s],
            });
        }
        (header, writes)
    }

    /// Decodes the header sector and the entry table that follows it.
    pub fn decode(header_sector: &[u8], table: &[u8]) -> Result<IndexTable, IndexError> {
        let header = IndexHeader::decode(header_sector)?;
        // The whole sector-rounded table, checked before anything is sized
        // from the (untrusted) slot count.
        let need = usize::try_from(header.table_len()).unwrap_or(usize::MAX);
        if table.len() < need {
            let record = crate::format::Record::IndexRecord;
            return Err(FormatError::TooShort {
                record,
                len: table.len(),
                need,
            }
            .into());
        }
        let table = &table[..need];
        let mut entries = Vec::with_capacity(header.slots as usize);
        for k in 0..header.slots {
            let at = k as usize * INDEX_RECORD_LEN;
            let raw = table.get(at..at + INDEX_RECORD_LEN).unwrap_or(&[]);
            entries.push(IndexRecord::decode(raw, k)?);
        }
        Ok(IndexTable {
            header,
            entries,
            table: table.to_vec(),
        })
    }

    /// Fails if the table cannot be trusted for changes.
    pub fn check_consistent(&self) -> Result<(), IndexError> {
        if self.header.rebuilding {
            return Err(IndexError::NeedsRebuild(
                "an earlier rebuild did not finish".into(),
            ));
        }
        if let Some(e) = self
            .entries
            .iter()
            .find(|e| matches!(e.state, RecordState::Updating(_)))
        {
            return Err(IndexError::NeedsRebuild(format!(
                "slot {} was being updated",
                e.slot
            )));
        }
        Ok(())
    }

    /// The slot of `name`, if indexed. Check [`IndexTable::check_consistent`]
    /// first: during an unfinished rebuild the entries are not trustworthy.
    pub fn find(&self, name: &Name) -> Option<u32> {
        self.entries.iter().find_map(|e| match &e.state {
            RecordState::Used(n) if n == name => Some(e.slot),
            _ => None,
        })
    }

    /// Every used entry: (name, slot).
    pub fn used(&self) -> impl Iterator<Item = (&Name, u32)> {
        self.entries.iter().filter_map(|e| match &e.state {
            RecordState::Used(n) => Some((n, e.slot)),
            _ => None,
        })
    }

    fn entry_write(&mut self, slot: u32, state: RecordState) -> Write {
        let rec = IndexRecord { slot, state };
        let at = slot as usize * INDEX_RECORD_LEN;
        rec.encode(&mut self.table[at..at + INDEX_RECORD_LEN]);
        if let Some(e) = self.entries.get_mut(slot as usize) {
            *e = rec;
        }
        let (sector_off, _) = self.header.entry_location(slot);
        let s = self.header.geometry.sector();
        let start = usize::try_from(sector_off - self.header.table_offset()).unwrap_or(0);
        Write {
            offset: sector_off,
            data: self.table[start..start + s].to_vec(),
        }
    }

    /// Plans adding `name` in the first free slot. The table is updated as
    /// if the plan completed.
    pub fn plan_add(&mut self, name: &Name) -> Result<(u32, Vec<Write>), IndexError> {
        self.check_consistent()?;
        if let Some(slot) = self.find(name) {
            return Err(IndexError::Exists(name.clone(), slot));
        }
        let slot = self
            .entries
            .iter()
            .find(|e| e.state == RecordState::Free)
            .map(|e| e.slot)
            .ok_or(IndexError::Full(self.header.slots))?;
        let g = self.header.geometry;
        let leader = Leader {
            lockspace: self.header.lockspace.clone(),
            resource: name.clone(),
            geometry: g,
            lver: 0,
            owner: None,
            writer: None,
            write_time_ms: 0,
        };
        let mut first = vec![0u8; g.sector()];
        leader.encode(&mut first);
        let base = self.header.slot_offset(slot);
        let sector = g.sector();
        let w1 = self.entry_write(slot, RecordState::Updating(name.clone()));
        let w2 = Write {
            offset: base + sector as u64,
            data: vec![0u8; g.resource_used_len() - sector],
        };
        let w3 = Write {
            offset: base,
            data: first,
        };
        let w4 = self.entry_write(slot, RecordState::Used(name.clone()));
        Ok((slot, vec![w1, w2, w3, w4]))
    }

    /// Plans removing `name`, given its slot's current leader and shared
    /// holders (the caller reads them). Refuses while the lease is held.
    pub fn plan_remove(
        &mut self,
        name: &Name,
        leader: &Leader,
        shared_holders: usize,
    ) -> Result<(u32, Vec<Write>), IndexError> {
        self.check_consistent()?;
        let slot = self
            .find(name)
            .ok_or_else(|| IndexError::NotFound(name.clone()))?;
        if leader.resource != *name {
            return Err(IndexError::SlotMismatch {
                slot,
                found: leader.resource.to_string(),
                expected: name.clone(),
            });
        }
        if let Some(o) = leader.owner {
            return Err(IndexError::Held(name.clone(), o.to_string()));
        }
        if shared_holders > 0 {
            return Err(IndexError::Held(
                name.clone(),
                format!("{shared_holders} shared holder(s)"),
            ));
        }
        let used = self.header.geometry.resource_used_len();
        let w1 = self.entry_write(slot, RecordState::Updating(name.clone()));
        let w2 = Write {
            offset: self.header.slot_offset(slot),
            data: vec![0u8; used],
        };
        let w3 = self.entry_write(slot, RecordState::Free);
        Ok((slot, vec![w1, w2, w3]))
    }

    /// Plans a rebuild from the leader sector of every slot (`leaders[k]`
    /// is slot k's sector 0): header marked rebuilding, the whole table
    /// rewritten, header unmarked. Returns the writes and what was found.
    pub fn rebuild(header: &IndexHeader, leaders: &[Vec<u8>]) -> (Vec<Write>, RebuildReport) {
        let s = header.geometry.sector();
        let mut report = RebuildReport::default();
        let mut seen = std::collections::BTreeMap::new();
        let mut table = vec![0u8; usize::try_from(header.table_len()).unwrap_or(0)];
        for k in 0..header.slots {
            let raw = leaders.get(k as usize).map(Vec::as_slice).unwrap_or(&[]);
            let state = match Leader::decode(raw) {
                Ok(l) if l.lockspace == header.lockspace && l.geometry != header.geometry => {
                    report.corrupt.push((
                        k,
                        format!("lease geometry {:?} differs from the index's", l.geometry),
                    ));
                    RecordState::Free
                }
                Ok(l) if l.lockspace == header.lockspace => {
                    if let Some(first) = seen.get(&l.resource) {
                        report
                            .corrupt
                            .push((k, format!("duplicate of {} in slot {first}", l.resource)));
                        RecordState::Free
                    } else {
                        seen.insert(l.resource.clone(), k);
                        report.used += 1;
                        RecordState::Used(l.resource)
                    }
                }
                Ok(l) => {
                    report.foreign.push((k, l.lockspace.to_string()));
                    RecordState::Free
                }
                Err(FormatError::Blank { .. }) => RecordState::Free,
                Err(e) => {
                    report.corrupt.push((k, e.to_string()));
                    RecordState::Free
                }
            };
            let at = k as usize * INDEX_RECORD_LEN;
            IndexRecord { slot: k, state }.encode(&mut table[at..at + INDEX_RECORD_LEN]);
        }
        let mut marked = header.clone();
        marked.rebuilding = true;
        let mut h1 = vec![0u8; s];
        marked.encode(&mut h1);
        let mut h2 = vec![0u8; s];
        IndexHeader {
            rebuilding: false,
            ..header.clone()
        }
        .encode(&mut h2);
        let writes = vec![
            Write {
                offset: 0,
                data: h1,
            },
            Write {
                offset: header.table_offset(),
                data: table,
            },
            Write {
                offset: 0,
                data: h2,
            },
        ];
        (writes, report)
    }
}

/// What a rebuild found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RebuildReport {
    /// Slots holding a lease.
    pub used: u32,
    /// Slots whose leader does not decode, has another geometry, or
    /// duplicates an earlier slot's name (treated as free; left untouched).
    pub corrupt: Vec<(u32, String)>,
    /// Slots holding a lease of another lockspace (treated as free).
    pub foreign: Vec<(u32, String)>,
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // in-memory test volumes are small
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    /// Applies writes to an in-memory volume.
    fn apply(vol: &mut Vec<u8>, writes: &[Write]) {
        for w in writes {
            let end = w.offset as usize + w.data.len();
            if vol.len() < end {
                vol.resize(end, 0);
            }
            vol[w.offset as usize..end].copy_from_slice(&w.data);
        }
    }

    fn load(vol: &[u8]) -> Result<IndexTable, IndexError> {
        let h = IndexHeader::decode(&vol[..512])?;
        let t = &vol[h.table_offset() as usize..(h.table_offset() + h.table_len()) as usize];
        IndexTable::decode(&vol[..512], t)
    }

    fn leaders(vol: &[u8], h: &IndexHeader) -> Vec<Vec<u8>> {
        (0..h.slots)
            .map(|k| vol[h.slot_offset(k) as usize..][..512].to_vec())
            .collect()
    }

    fn fresh(slots: u32) -> Vec<u8> {
        let g = Geometry::new(512, 8, 1 << 20).unwrap();
        let (_, w) = IndexTable::init(name("ls"), g, slots);
        let mut vol = Vec::new();
        apply(&mut vol, &w);
        vol
    }

    #[test]
    fn add_find_remove() {
        let mut vol = fresh(4);
        let mut t = load(&vol).unwrap();
        let (slot, w) = t.plan_add(&name("vm-a")).unwrap();
        apply(&mut vol, &w);
        assert_eq!(slot, 0);
        let mut t = load(&vol).unwrap();
        assert_eq!(t.find(&name("vm-a")), Some(0));
        assert!(matches!(
            t.plan_add(&name("vm-a")),
            Err(IndexError::Exists(..))
        ));
        let leader = Leader::decode(&vol[t.header.slot_offset(0) as usize..][..512]).unwrap();
        let (_, w) = t.plan_remove(&name("vm-a"), &leader, 0).unwrap();
        apply(&mut vol, &w);
        assert_eq!(load(&vol).unwrap().find(&name("vm-a")), None);
    }

    #[test]
    fn full_and_held() {
        let mut vol = fresh(1);
        let mut t = load(&vol).unwrap();
        let (_, w) = t.plan_add(&name("a")).unwrap();
        apply(&mut vol, &w);
        assert_eq!(t.plan_add(&name("b")), Err(IndexError::Full(1)));
        let mut leader = Leader::decode(&vol[t.header.slot_offset(0) as usize..][..512]).unwrap();
        leader.owner = Some(crate::format::OwnerId {
            host_id: 1,
            generation: 1,
        });
        assert!(matches!(
            t.plan_remove(&name("a"), &leader, 0),
            Err(IndexError::Held(..))
        ));
    }

    /// Crash after every prefix of an add's writes: the index either needs a
    /// rebuild or is consistent, and a rebuild always yields a consistent
    /// index that agrees with the slots.
    #[test]
    fn crash_at_every_step_then_rebuild() {
        for cut in 0..=4 {
            let mut vol = fresh(3);
            let mut t = load(&vol).unwrap();
            let (_, w) = t.plan_add(&name("vm-x")).unwrap();
            apply(&mut vol, &w[..cut]);
            let t = load(&vol).unwrap();
            let needs = t.check_consistent().is_err();
            assert_eq!(needs, (1..=3).contains(&cut), "cut {cut}");
            let (rw, report) = IndexTable::rebuild(&t.header, &leaders(&vol, &t.header));
            // Crash in the middle of the rebuild: flagged.
            let mut half = vol.clone();
            apply(&mut half, &rw[..1]);
            assert!(load(&half).unwrap().check_consistent().is_err());
            apply(&mut vol, &rw);
            let t = load(&vol).unwrap();
            t.check_consistent().unwrap();
            let present = cut >= 3;
            assert_eq!(
                t.find(&name("vm-x")).is_some(),
                present,
                "cut {cut} {report:?} {:?}",
                t.entries
            );
            assert_eq!(report.used, u32::from(present));
        }
    }

    /// Found by fuzzing: a table shorter than its sector-rounded length
    /// decoded, then `plan_add` sliced past its end.
    #[test]
    fn short_table_is_rejected_not_planned_on() {
        let h = IndexHeader {
            lockspace: name("ls"),
            geometry: Geometry::default_512(),
            slots: 1,
            rebuilding: false,
        };
        let mut first = vec![0u8; 512];
        h.encode(&mut first);
        assert!(matches!(
            IndexTable::decode(&first, &[0u8; 64]),
            Err(IndexError::Corrupt(FormatError::TooShort { need: 512, .. }))
        ));
        let mut t = IndexTable::decode(&first, &[0u8; 512]).unwrap();
        t.plan_add(&name("vm-1")).unwrap();
    }

    #[test]
    fn corrupt_entry_is_an_error() {
        let mut vol = fresh(2);
        let mut t = load(&vol).unwrap();
        let (_, w) = t.plan_add(&name("a")).unwrap();
        apply(&mut vol, &w);
        vol[512 + 10] ^= 0xff;
        assert!(matches!(
            load(&vol),
            Err(IndexError::Corrupt(FormatError::BadChecksum { .. }))
        ));
    }
}
