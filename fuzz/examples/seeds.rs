//! Writes a few valid records, in each target's input layout, into
//! `corpus/<target>/seed-*` so the fuzzer starts from inputs that decode
//! (random bytes rarely get past the checksum, the magic and the geometry
//! checks within a short run).
//!
//! `cargo run --example seeds` from `fuzz/` (or `fuzz/run-all.sh`, which
//! runs it). Idempotent: rewrites the same files.

use std::path::Path;

use nosplit_lease::format::{
    Ballot, Geometry, HostSlot, IndexHeader, IndexRecord, Leader, LockspaceHeader, Name, OwnerId,
    RecordState, Request, INDEX_RECORD_LEN,
};

fn name(s: &str) -> Name {
    Name::new(s).expect("seed names are valid")
}

fn sector(f: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut s = vec![0u8; 512];
    f(&mut s);
    s
}

/// `mode | args | record`.
fn input(mode: u8, args: &[u8], record: &[u8]) -> Vec<u8> {
    let mut v = vec![mode];
    v.extend_from_slice(args);
    v.extend_from_slice(record);
    v
}

fn write(dir: &Path, target: &str, seeds: Vec<Vec<u8>>) -> std::io::Result<()> {
    let d = dir.join(target);
    std::fs::create_dir_all(&d)?;
    for (i, s) in seeds.iter().enumerate() {
        std::fs::write(d.join(format!("seed-{i}")), s)?;
    }
    Ok(())
}

fn main() -> std::io::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let g8 = Geometry::new(512, 8, 1 << 20).expect("valid");
    // The geometry bytes `Input::geometry` turns into 512-byte sectors, 8
    // hosts, smallest alignment.
    let g8_args = [0u8, 7, 0, 0];

    let hdr = LockspaceHeader {
        name: name("ls1"),
        geometry: g8,
        io_timeout_ms: 1000,
        uuid: [7; 16],
    };
    write(
        &dir,
        "lockspace_header",
        vec![input(0, &[], &sector(|s| hdr.encode(s)))],
    )?;

    let slot = HostSlot {
        host_id: 3,
        generation: 2,
        seq: 99,
        owner_time_ms: 123,
        io_timeout_ms: 1000,
        released: false,
        ls_uuid: [7; 16],
        host_name: name("host-a"),
    };
    let released = HostSlot {
        released: true,
        ..slot.clone()
    };
    write(
        &dir,
        "host_slot",
        vec![
            input(0, &3u32.to_le_bytes(), &sector(|s| slot.encode(s))),
            input(0, &3u32.to_le_bytes(), &sector(|s| released.encode(s))),
        ],
    )?;

    let owner = OwnerId {
        host_id: 2,
        generation: 5,
    };
    let leader = Leader {
        lockspace: name("ls1"),
        resource: name("vm-1"),
        geometry: g8,
        lver: 4,
        owner: Some(owner),
        writer: Some(owner),
        write_time_ms: 77,
    };
    let free = Leader {
        owner: None,
        ..leader.clone()
    };
    write(
        &dir,
        "leader",
        vec![
            input(0, &[], &sector(|s| leader.encode(s))),
            input(0, &[], &sector(|s| free.encode(s))),
        ],
    )?;

    let req = Request {
        lver: 4,
        force_mode: 1,
        requester: 3,
    };
    write(
        &dir,
        "request",
        vec![
            input(0, &[], &sector(|s| req.encode(s))),
            input(0, &[], &[0; 512]),
        ],
    )?;

    let ballot = Ballot {
        host_id: 2,
        lver: 4,
        mbal: 12,
        bal: 11,
        inp: Some(owner),
        shared: Some(5),
    };
    let started = Ballot {
        bal: 0,
        inp: None,
        shared: None,
        ..ballot
    };
    let args = |h: u32| [&h.to_le_bytes()[..], &g8_args[..]].concat();
    write(
        &dir,
        "ballot",
        vec![
            input(0, &args(2), &sector(|s| ballot.encode(s))),
            input(0, &args(2), &sector(|s| started.encode(s))),
            input(0, &args(2), &[0; 512]),
        ],
    )?;

    let ihdr = IndexHeader {
        lockspace: name("ls1"),
        geometry: g8,
        slots: 3,
        rebuilding: false,
    };
    write(
        &dir,
        "index_header",
        vec![input(0, &[], &sector(|s| ihdr.encode(s)))],
    )?;

    let entries = [
        IndexRecord {
            slot: 0,
            state: RecordState::Used(name("vm-1")),
        },
        IndexRecord {
            slot: 1,
            state: RecordState::Free,
        },
        IndexRecord {
            slot: 2,
            state: RecordState::Updating(name("vm-2")),
        },
    ];
    let entry = |e: &IndexRecord| {
        let mut b = [0u8; INDEX_RECORD_LEN];
        e.encode(&mut b);
        b
    };
    write(
        &dir,
        "index_record",
        entries
            .iter()
            .map(|e| input(0, &e.slot.to_le_bytes(), &entry(e)))
            .collect(),
    )?;

    let mut table = vec![0u8; 512];
    for (e, chunk) in entries.iter().zip(table.chunks_mut(INDEX_RECORD_LEN)) {
        e.encode(chunk);
    }
    let header_len = 512u16.to_le_bytes();
    let mut index = input(0, &header_len, &sector(|s| ihdr.encode(s)));
    index.extend_from_slice(&table);
    write(&dir, "index_table", vec![index])?;

    write(
        &dir,
        "name",
        vec![
            name("vm-0f3c.disk_1:a").to_field().to_vec(),
            b"ls1".to_vec(),
        ],
    )?;

    println!("seeds written under {}", dir.display());
    Ok(())
}
