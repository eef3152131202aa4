//! The one behaviour suite every [`Storage`] backend must pass.
//!
//! This module owns the executable form of the [`Storage`] contract. Each
//! `check_*` function takes a factory `make(size, sector)` that returns a
//! fresh, zero-filled store of exactly `size` bytes with that sector size,
//! runs its scenario for both 512- and 4096-byte sectors, and panics (like a
//! failed test) on the first contract violation. [`run_all`] runs them all;
//! [`storage_conformance_tests!`](crate::storage_conformance_tests) expands
//! to one `#[test]` per check for a backend, so other crates can run the
//! suite against their own backends or wrappers.
//!
//! Deadlines are generous (seconds) on the backend's own clock, so a
//! simulated backend runs the suite without real waiting.
//!
//! [`check_write_in_flight`] needs a way to make a write stick in the media,
//! so it asks for [`StallWrites`]: [`run_all_stalling`] and the macro's
//! `storage_conformance_tests!(make, stall_writes)` form add it.

use crate::{AlignedBuf, IoCompletion, IoError, IoId, IoOk, IoOp, IoRequest, SectorSize, Storage};
use std::collections::HashMap;
use std::time::Duration;

/// Sectors in every store the suite asks for.
pub const SECTORS: u64 = 64;

/// Deadline of every request, on the backend's clock.
const TIMEOUT: Duration = Duration::from_secs(10);

/// How late past `until` a real-time backend may return from `wait`.
const SLACK: Duration = Duration::from_millis(500);

const SECTOR_SIZES: [SectorSize; 2] = [SectorSize::B512, SectorSize::B4096];

/// Test support: a backend that can make its own writes stick in the media,
/// as a hung path does.
pub trait StallWrites: Storage {
    /// While on, each *write* submitted gets stuck in the media: it does not
    /// finish by its deadline (its caller gets [`IoError::TimedOut`]), and it
    /// lands by itself later, within [`STALLED_WRITE_LANDS`] after its
    /// deadline. Reads, and writes submitted while off, are served normally,
    /// also while stuck writes are outstanding.
    fn stall_writes(&mut self, on: bool);
}

impl<S: StallWrites + ?Sized> StallWrites for Box<S> {
    fn stall_writes(&mut self, on: bool) {
        (**self).stall_writes(on)
    }
}

/// How long after its deadline a write stuck by [`StallWrites`] lands at the
/// latest.
pub const STALLED_WRITE_LANDS: Duration = Duration::from_secs(2);

/// Deadline of the stuck write in [`check_write_in_flight`]: long enough
/// for a real-time backend's worker to have started it.
const STUCK_TIMEOUT: Duration = Duration::from_millis(300);

/// Runs every check except [`check_write_in_flight`].
pub fn run_all<S: Storage>(make: &mut dyn FnMut(u64, SectorSize) -> S) {
    check_geometry(make);
    check_roundtrip(make);
    check_multi_sector(make);
    check_invalid_requests(make);
    check_in_flight(make);
    check_idle_wait(make);
    check_stats(make);
    check_sync_helpers(make);
}

/// Runs every check, [`check_write_in_flight`] included.
pub fn run_all_stalling<S: StallWrites>(make: &mut dyn FnMut(u64, SectorSize) -> S) {
    run_all(make);
    check_write_in_flight(make);
}

/// Expands to one `#[test]` per conformance check, for a factory given as a
/// path to `fn(u64, SectorSize) -> impl Storage`. With `, stall_writes` the
/// backend implements [`StallWrites`] and [`check_write_in_flight`] runs too.
///
/// ```ignore
/// fn make(size: u64, sector: SectorSize) -> MyStorage { ... }
/// nosplit_storage::storage_conformance_tests!(make);
/// // or, for a backend that implements `StallWrites`:
/// nosplit_storage::storage_conformance_tests!(make, stall_writes);
/// ```
#[macro_export]
macro_rules! storage_conformance_tests {
    ($make:path, stall_writes) => {
        $crate::storage_conformance_tests!($make);
        #[test]
        fn conformance_write_in_flight() {
            $crate::conformance::check_write_in_flight(&mut $make);
        }
    };
    ($make:path) => {
        #[test]
        fn conformance_geometry() {
            $crate::conformance::check_geometry(&mut $make);
        }
        #[test]
        fn conformance_roundtrip() {
            $crate::conformance::check_roundtrip(&mut $make);
        }
        #[test]
        fn conformance_multi_sector() {
            $crate::conformance::check_multi_sector(&mut $make);
        }
        #[test]
        fn conformance_invalid_requests() {
            $crate::conformance::check_invalid_requests(&mut $make);
        }
        #[test]
        fn conformance_in_flight() {
            $crate::conformance::check_in_flight(&mut $make);
        }
        #[test]
        fn conformance_idle_wait() {
            $crate::conformance::check_idle_wait(&mut $make);
        }
        #[test]
        fn conformance_stats() {
            $crate::conformance::check_stats(&mut $make);
        }
        #[test]
        fn conformance_sync_helpers() {
            $crate::conformance::check_sync_helpers(&mut $make);
        }
    };
}

fn size_for(sector: SectorSize) -> u64 {
    SECTORS * sector.bytes() as u64
}

/// `len` bytes of a pattern unique to `tag`, different in every sector.
fn pattern(tag: u64, len: usize) -> AlignedBuf {
    let mut b = AlignedBuf::zeroed(len);
    for (i, x) in b.iter_mut().enumerate() {
        let i = i as u64;
        // The low byte of a mix of position, sector and tag.
        *x = (i.wrapping_mul(31) ^ tag ^ (i / 512).wrapping_mul(7)).to_le_bytes()[0];
    }
    b
}

/// Submits and waits for the completion of one request.
fn run<S: Storage>(s: &mut S, id: u64, op: IoOp) -> Result<IoOk, IoError> {
    let deadline = s.now() + TIMEOUT;
    s.submit(IoRequest {
        id: IoId(id),
        op,
        deadline,
    });
    let mut got = collect(s, 1, deadline);
    let c = got.pop().expect("collect returns the asked-for count");
    assert_eq!(
        c.id,
        IoId(id),
        "{}: completion for the wrong request",
        s.describe()
    );
    c.result
}

/// Collects exactly `n` completions, failing if they do not all arrive by
/// `deadline` (plus slack).
fn collect<S: Storage>(s: &mut S, n: usize, deadline: crate::MonoTime) -> Vec<IoCompletion> {
    let until = deadline + SLACK;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match s.wait(until) {
            Some(c) => out.push(c),
            None => assert!(
                s.now() < until,
                "{}: only {} of {n} completions by the deadline",
                s.describe(),
                out.len()
            ),
        }
    }
    out
}

fn write<S: Storage>(s: &mut S, id: u64, offset: u64, data: &AlignedBuf) {
    let r = run(
        s,
        id,
        IoOp::Write {
            offset,
            data: data.clone(),
        },
    );
    assert!(
        matches!(r, Ok(IoOk::Written)),
        "{}: write at {offset} failed: {r:?}",
        s.describe()
    );
}

fn read<S: Storage>(s: &mut S, id: u64, offset: u64, len: usize) -> AlignedBuf {
    match run(s, id, IoOp::Read { offset, len }) {
        Ok(IoOk::Read(b)) => {
            assert_eq!(
                b.len(),
                len,
                "{}: read returned the wrong length",
                s.describe()
            );
            b
        }
        other => panic!(
            "{}: read at {offset} len {len} failed: {other:?}",
            s.describe()
        ),
    }
}

/// Reported sector size and size match what was asked for.
pub fn check_geometry<S: Storage>(make: &mut dyn FnMut(u64, SectorSize) -> S) {
    for sector in SECTOR_SIZES {
        let s = make(size_for(sector), sector);
        assert_eq!(s.sector_size(), sector, "{}: sector size", s.describe());
        assert_eq!(s.size(), size_for(sector), "{}: size", s.describe());
        assert!(!s.describe().is_empty());
    }
}

/// Single-sector writes at several aligned offsets read back intact and do
/// not disturb each other; untouched sectors read as zero.
pub fn check_roundtrip<S: Storage>(make: &mut dyn FnMut(u64, SectorSize) -> S) {
    for sector in SECTOR_SIZES {
        let size = size_for(sector);
        let mut s = make(size, sector);
        let sec = sector.bytes();
        let sec64 = sec as u64;
        let offsets = [0, sec64, 3 * sec64, 17 * sec64, size - sec64];
        for (i, &off) in offsets.iter().enumerate() {
            write(&mut s, i as u64, off, &pattern(i as u64 + 1, sec));
            assert_eq!(
                read(&mut s, 100 + i as u64, off, sec),
                pattern(i as u64 + 1, sec)
            );
        }
        for (i, &off) in offsets.iter().enumerate() {
            let got = read(&mut s, 200 + i as u64, off, sec);
            assert_eq!(
                got,
                pattern(i as u64 + 1, sec),
                "{}: sector at {off}",
                s.describe()
            );
        }
        let untouched = read(&mut s, 300, 2 * sec64, sec);
        assert!(
            untouched.iter().all(|&b| b == 0),
            "{}: untouched sector",
            s.describe()
        );
    }
}

/// A multi-sector write reads back intact, whole and sector by sector, and
/// its neighbours are untouched.
pub fn check_multi_sector<S: Storage>(make: &mut dyn FnMut(u64, SectorSize) -> S) {
    for sector in SECTOR_SIZES {
        let mut s = make(size_for(sector), sector);
        let sec = sector.bytes();
        let sec64 = sec as u64;
        let data = pattern(0x5a, 8 * sec);
        write(&mut s, 1, 4 * sec64, &data);
        assert_eq!(
            read(&mut s, 2, 4 * sec64, 8 * sec),
            data,
            "{}: whole",
            s.describe()
        );
        for i in 0..8 {
            let got = read(&mut s, 10 + i as u64, (4 + i as u64) * sec64, sec);
            assert_eq!(
                &got[..],
                &data[i * sec..(i + 1) * sec],
                "{}: sector {i}",
                s.describe()
            );
        }
        let around = read(&mut s, 3, 3 * sec64, 10 * sec);
        assert!(
            around[..sec].iter().all(|&b| b == 0),
            "{}: sector before",
            s.describe()
        );
        assert_eq!(&around[sec..9 * sec], &data[..]);
        assert!(
            around[9 * sec..].iter().all(|&b| b == 0),
            "{}: sector after",
            s.describe()
        );
    }
}

/// Misaligned, empty and out-of-bounds requests complete through `wait`
/// with the matching error and change nothing.
pub fn check_invalid_requests<S: Storage>(make: &mut dyn FnMut(u64, SectorSize) -> S) {
    for sector in SECTOR_SIZES {
        let size = size_for(sector);
        let mut s = make(size, sector);
        let sec = sector.bytes();
        let sec64 = sec as u64;
        let full = pattern(0x33, usize::try_from(size).expect("suite sizes are small"));
        write(&mut s, 1, 0, &full);
        let before = s.stats();

        let misaligned = |offset, len| IoError::Misaligned {
            offset,
            len,
            sector: sec,
        };
        let oob = |offset, len| IoError::OutOfBounds { offset, len, size };
        let wr = |offset, len| IoOp::Write {
            offset,
            data: pattern(0xee, len),
        };
        let far = u64::MAX - 4095; // aligned; offset + len overflows
        let cases: Vec<(IoOp, IoError)> = vec![
            (
                IoOp::Read {
                    offset: 1,
                    len: sec,
                },
                misaligned(1, sec),
            ),
            (
                IoOp::Read {
                    offset: sec64 / 2,
                    len: sec,
                },
                misaligned(sec64 / 2, sec),
            ),
            (
                IoOp::Read {
                    offset: 0,
                    len: sec + 1,
                },
                misaligned(0, sec + 1),
            ),
            (
                IoOp::Read {
                    offset: 0,
                    len: sec / 2,
                },
                misaligned(0, sec / 2),
            ),
            (IoOp::Read { offset: 0, len: 0 }, misaligned(0, 0)),
            (wr(sec64 + 1, sec), misaligned(sec64 + 1, sec)),
            (wr(0, sec - 1), misaligned(0, sec - 1)),
            (wr(sec64, 0), misaligned(sec64, 0)),
            (
                IoOp::Read {
                    offset: size,
                    len: sec,
                },
                oob(size, sec),
            ),
            (
                IoOp::Read {
                    offset: size - sec64,
                    len: 2 * sec,
                },
                oob(size - sec64, 2 * sec),
            ),
            (
                IoOp::Read {
                    offset: far,
                    len: sec,
                },
                oob(far, sec),
            ),
            (wr(size, sec), oob(size, sec)),
            (wr(size - sec64, 2 * sec), oob(size - sec64, 2 * sec)),
            (wr(far, sec), oob(far, sec)),
        ];
        let deadline = s.now() + TIMEOUT;
        let mut expected = HashMap::new();
        for (i, (op, err)) in cases.into_iter().enumerate() {
            let id = IoId(1000 + i as u64);
            expected.insert(id, err);
            s.submit(IoRequest { id, op, deadline });
        }
        let n = expected.len();
        for c in collect(&mut s, n, deadline) {
            let want = expected.remove(&c.id).expect("each id completes once");
            assert_eq!(
                c.result.err(),
                Some(want),
                "{}: request {:?}",
                s.describe(),
                c.id
            );
        }
        assert!(expected.is_empty());
        assert_eq!(
            s.stats(),
            before,
            "{}: rejected requests counted",
            s.describe()
        );
        let after = read(&mut s, 2, 0, full.len());
        assert!(
            after == full,
            "{}: invalid requests changed data",
            s.describe()
        );
    }
}

/// Many requests in flight at once each complete exactly once, with their
/// own id and result.
pub fn check_in_flight<S: Storage>(make: &mut dyn FnMut(u64, SectorSize) -> S) {
    for sector in SECTOR_SIZES {
        let mut s = make(size_for(sector), sector);
        let sec = sector.bytes();
        let sec64 = sec as u64;
        for i in 0..8u64 {
            write(&mut s, i, (16 + i) * sec64, &pattern(0x80 + i, sec));
        }
        let deadline = s.now() + TIMEOUT;
        for i in 0..8u64 {
            let data = pattern(0x40 + i, sec);
            let op = IoOp::Write {
                offset: i * sec64,
                data,
            };
            s.submit(IoRequest {
                id: IoId(500 + i),
                op,
                deadline,
            });
            let op = IoOp::Read {
                offset: (16 + i) * sec64,
                len: sec,
            };
            s.submit(IoRequest {
                id: IoId(600 + i),
                op,
                deadline,
            });
        }
        let mut seen = HashMap::new();
        for c in collect(&mut s, 16, deadline) {
            let id = c.id.0;
            assert!(
                seen.insert(id, ()).is_none(),
                "{}: id {id} twice",
                s.describe()
            );
            match (id, c.result) {
                (500..=507, Ok(IoOk::Written)) => {}
                (600..=607, Ok(IoOk::Read(b))) => {
                    assert_eq!(b, pattern(0x80 + (id - 600), sec), "{}", s.describe());
                }
                (id, r) => panic!("{}: unexpected completion {id}: {r:?}", s.describe()),
            }
        }
        let until = s.now() + Duration::from_millis(20);
        assert!(
            s.wait(until).is_none(),
            "{}: extra completion",
            s.describe()
        );
        for i in 0..8u64 {
            let got = read(&mut s, 700 + i, i * sec64, sec);
            assert_eq!(got, pattern(0x40 + i, sec), "{}: sector {i}", s.describe());
        }
    }
}

/// With nothing outstanding, `wait(until)` returns `None` by `until`, and at
/// once when `until` is not in the future.
pub fn check_idle_wait<S: Storage>(make: &mut dyn FnMut(u64, SectorSize) -> S) {
    for sector in SECTOR_SIZES {
        let mut s = make(size_for(sector), sector);
        let start = s.now();
        let until = start + Duration::from_millis(30);
        assert!(
            s.wait(until).is_none(),
            "{}: completion from nowhere",
            s.describe()
        );
        let end = s.now();
        assert!(
            end >= until,
            "{}: returned early ({end} < {until})",
            s.describe()
        );
        assert!(
            end <= until + SLACK,
            "{}: returned late ({end})",
            s.describe()
        );

        let before = s.now();
        assert!(s.wait(before).is_none());
        assert!(s.wait(crate::MonoTime::ZERO).is_none());
        let after = s.now();
        assert!(
            after <= before + SLACK,
            "{}: wait(past) blocked",
            s.describe()
        );
    }
}

/// Stats, when kept, count completed reads and writes and their bytes, and
/// not rejected requests.
pub fn check_stats<S: Storage>(make: &mut dyn FnMut(u64, SectorSize) -> S) {
    for sector in SECTOR_SIZES {
        let mut s = make(size_for(sector), sector);
        let Some(before) = s.stats() else { return };
        let sec = sector.bytes();
        let sec64 = sec as u64;
        write(&mut s, 1, sec64, &pattern(9, 2 * sec));
        let _ = read(&mut s, 2, 0, 3 * sec);
        let r = run(
            &mut s,
            3,
            IoOp::Read {
                offset: 1,
                len: sec,
            },
        );
        assert!(r.is_err(), "{}: misaligned read succeeded", s.describe());
        let after = s.stats().expect("stats do not disappear");
        let d = |a: u64, b: u64| a - b;
        assert_eq!(
            d(after.writes, before.writes),
            1,
            "{}: writes",
            s.describe()
        );
        assert_eq!(d(after.reads, before.reads), 1, "{}: reads", s.describe());
        assert_eq!(d(after.bytes_written, before.bytes_written), 2 * sec64);
        assert_eq!(d(after.bytes_read, before.bytes_read), 3 * sec64);
    }
}

/// `write_sync` / `read_sync` round-trip and report invalid requests.
pub fn check_sync_helpers<S: Storage>(make: &mut dyn FnMut(u64, SectorSize) -> S) {
    for sector in SECTOR_SIZES {
        let mut s = make(size_for(sector), sector);
        let sec = sector.bytes();
        let sec64 = sec as u64;
        let data = pattern(0x11, 2 * sec);
        let r = s.write_sync(5 * sec64, data.clone(), TIMEOUT);
        assert_eq!(r, Ok(()), "{}: write_sync", s.describe());
        let got = s.read_sync(5 * sec64, 2 * sec, TIMEOUT);
        assert_eq!(
            got.as_ref().ok(),
            Some(&data),
            "{}: read_sync",
            s.describe()
        );
        let bad = s.read_sync(1, sec, TIMEOUT);
        assert_eq!(
            bad.err(),
            Some(IoError::Misaligned {
                offset: 1,
                len: sec,
                sector: sec
            })
        );
    }
}

/// Submits several requests with one deadline and collects completions by
/// id until each of them has completed; completions of earlier requests
/// that arrive meanwhile are in the map too.
fn run_batch<S: Storage>(s: &mut S, ops: Vec<(u64, IoOp)>) -> HashMap<u64, Result<IoOk, IoError>> {
    let deadline = s.now() + TIMEOUT;
    let until = deadline + SLACK;
    let ids: Vec<u64> = ops.iter().map(|(id, _)| *id).collect();
    for (id, op) in ops {
        s.submit(IoRequest {
            id: IoId(id),
            op,
            deadline,
        });
    }
    let mut out = HashMap::new();
    while !ids.iter().all(|id| out.contains_key(id)) {
        match s.wait(until) {
            Some(c) => assert!(
                out.insert(c.id.0, c.result).is_none(),
                "{}: id {} twice",
                s.describe(),
                c.id.0
            ),
            None => assert!(
                s.now() < until,
                "{}: only {} of {} completions by the deadline",
                s.describe(),
                out.len(),
                ids.len()
            ),
        }
    }
    out
}

/// A write never overtakes an earlier unfinished write to overlapping
/// bytes: while a write is stuck in the media (also after its caller got
/// `TimedOut`), an overlapping write completes at once with
/// [`IoError::WriteInFlight`] and is not performed; reads and writes to
/// other sectors are served; once the stuck write has landed, the
/// overlapping write succeeds and is the one that stays.
pub fn check_write_in_flight<S: StallWrites>(make: &mut dyn FnMut(u64, SectorSize) -> S) {
    for sector in SECTOR_SIZES {
        let mut s = make(size_for(sector), sector);
        let sec = sector.bytes();
        let sec64 = sec as u64;
        let old = pattern(0xa1, 2 * sec);
        let stale = pattern(0xb2, 2 * sec);
        let fresh = pattern(0xc3, 2 * sec);
        write(&mut s, 1, 8 * sec64, &old);

        // The stuck write: sectors 8 and 9.
        s.stall_writes(true);
        let stuck_deadline = s.now() + STUCK_TIMEOUT;
        s.submit(IoRequest {
            id: IoId(10),
            op: IoOp::Write {
                offset: 8 * sec64,
                data: stale.clone(),
            },
            deadline: stuck_deadline,
        });
        s.stall_writes(false);

        // Overlapping writes are refused; neighbours and reads are served.
        let wr = |offset: u64, data: &AlignedBuf| IoOp::Write {
            offset,
            data: data.clone(),
        };
        let got = run_batch(
            &mut s,
            vec![
                (11, wr(9 * sec64, &pattern(0xd4, 2 * sec))), // tail overlap
                (12, wr(7 * sec64, &pattern(0xd5, 4 * sec))), // covers it
                (13, wr(8 * sec64, &pattern(0xd6, sec))),     // inside
                (14, wr(10 * sec64, &pattern(0xe1, sec))),    // just after
                (15, wr(7 * sec64, &pattern(0xe2, sec))),     // just before
                (
                    16,
                    IoOp::Read {
                        offset: 6 * sec64,
                        len: 6 * sec,
                    },
                ),
            ],
        );
        let refused = |offset: u64, len: usize| Some(IoError::WriteInFlight { offset, len });
        let err = |id: u64| got[&id].as_ref().err().cloned();
        assert_eq!(err(11), refused(9 * sec64, 2 * sec), "{}", s.describe());
        assert_eq!(err(12), refused(7 * sec64, 4 * sec), "{}", s.describe());
        assert_eq!(err(13), refused(8 * sec64, sec), "{}", s.describe());
        for id in [14, 15] {
            assert!(
                matches!(got[&id], Ok(IoOk::Written)),
                "{}: non-overlapping write {id}: {:?}",
                s.describe(),
                got[&id]
            );
        }
        match &got[&16] {
            Ok(IoOk::Read(b)) => {
                assert_eq!(b.len(), 6 * sec);
                let mid = &b[2 * sec..4 * sec];
                assert!(
                    mid == &old[..] || mid == &stale[..],
                    "{}: read of the stuck write's sectors is torn",
                    s.describe()
                );
            }
            other => panic!("{}: read beside a stuck write: {other:?}", s.describe()),
        }

        // The stuck write's caller gives up; its sectors stay taken.
        let stuck = match got.get(&10) {
            Some(r) => r.as_ref().err().cloned(),
            None => {
                let c = collect(&mut s, 1, stuck_deadline)
                    .pop()
                    .expect("collect returns the asked-for count");
                assert_eq!(
                    c.id,
                    IoId(10),
                    "{}: completion for the wrong request",
                    s.describe()
                );
                c.result.err()
            }
        };
        assert_eq!(
            stuck,
            Some(IoError::TimedOut),
            "{}: stuck write",
            s.describe()
        );
        let r = run(&mut s, 20, wr(8 * sec64, &fresh));
        assert_eq!(
            r.err(),
            Some(IoError::WriteInFlight {
                offset: 8 * sec64,
                len: 2 * sec
            }),
            "{}: overlapping write after the stuck one timed out",
            s.describe()
        );

        // Once it has landed, the overlapping write goes through and stays.
        let give_up = stuck_deadline + STALLED_WRITE_LANDS + SLACK;
        let mut id = 21;
        loop {
            let idle = s.now() + Duration::from_millis(50);
            assert!(s.wait(idle).is_none(), "{}: extra completion", s.describe());
            match run(&mut s, id, wr(8 * sec64, &fresh)) {
                Ok(IoOk::Written) => break,
                Err(IoError::WriteInFlight { .. }) => {}
                other => panic!("{}: retried write: {other:?}", s.describe()),
            }
            assert!(
                s.now() < give_up,
                "{}: the stuck write never finished",
                s.describe()
            );
            id += 1;
        }
        let idle = s.now() + Duration::from_millis(100);
        assert!(s.wait(idle).is_none(), "{}: extra completion", s.describe());
        let got = read(&mut s, 100, 6 * sec64, 6 * sec);
        assert_eq!(
            &got[sec..2 * sec],
            &pattern(0xe2, sec)[..],
            "{}",
            s.describe()
        );
        assert_eq!(
            &got[2 * sec..4 * sec],
            &fresh[..],
            "{}: the stale write rolled the sectors back",
            s.describe()
        );
        assert_eq!(
            &got[4 * sec..5 * sec],
            &pattern(0xe1, sec)[..],
            "{}",
            s.describe()
        );
        assert!(got[..sec].iter().all(|&b| b == 0), "{}", s.describe());
        if let Some(st) = s.stats() {
            // old, 14, 15, the stuck one (landed late), fresh.
            assert_eq!(st.writes, 5, "{}: refused writes counted", s.describe());
        }
    }
}
