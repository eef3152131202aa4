//! `FileStorage`-specific behaviour: opening, deadlines with stuck workers,
//! the hung cap, late results, and speed.

use nosplit_storage::conformance::StallWrites;
use nosplit_storage::file::MAX_STUCK;
use nosplit_storage::{
    AlignedBuf, FileStorage, IoError, IoId, IoOk, IoOp, IoRequest, OpenError, OpenOpts, SectorSize,
    Storage,
};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn tmpdir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir")
}

fn create(dir: &tempfile::TempDir, len: u64) -> (PathBuf, FileStorage) {
    let path = dir.path().join("lease");
    let opts = OpenOpts {
        sector_size: None,
        create_len: Some(len),
    };
    let s = FileStorage::open(&path, opts).expect("open");
    (path, s)
}

fn read_req(id: u64, deadline: nosplit_storage::MonoTime) -> IoRequest {
    IoRequest {
        id: IoId(id),
        op: IoOp::Read {
            offset: 0,
            len: 512,
        },
        deadline,
    }
}

#[test]
fn missing_path_without_create_names_the_path() {
    let dir = tmpdir();
    let path = dir.path().join("no-such-file");
    let err = FileStorage::open(&path, OpenOpts::default()).expect_err("missing");
    match &err {
        OpenError::Open { path: p, source } => {
            assert_eq!(p, &path.display().to_string());
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("no-such-file"), "{err}");
    assert!(!path.exists(), "open without create_len created the file");
}

#[test]
fn directory_and_fifo_are_not_storage() {
    let dir = tmpdir();
    let err = FileStorage::open(dir.path(), OpenOpts::default()).expect_err("dir");
    assert!(matches!(err, OpenError::NotStorage { .. }), "{err:?}");
    let opts = OpenOpts {
        create_len: Some(4096),
        ..OpenOpts::default()
    };
    let err = FileStorage::open(dir.path(), opts).expect_err("dir with create_len");
    assert!(matches!(err, OpenError::NotStorage { .. }), "{err:?}");

    let fifo = dir.path().join("fifo");
    let mode = rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR;
    rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, mode, 0)
        .expect("mkfifo");
    let err = FileStorage::open(&fifo, OpenOpts::default()).expect_err("fifo");
    assert!(matches!(err, OpenError::NotStorage { .. }), "{err:?}");
}

#[test]
fn create_len_creates_and_extends_but_never_shrinks() {
    let dir = tmpdir();
    let (path, s) = create(&dir, 1 << 20);
    assert_eq!(s.size(), 1 << 20);
    assert_eq!(
        s.sector_size(),
        SectorSize::B512,
        "regular files default to 512"
    );
    drop(s);

    let opts = OpenOpts {
        sector_size: Some(SectorSize::B4096),
        create_len: Some(4096),
    };
    let s = FileStorage::open(&path, opts).expect("reopen");
    assert_eq!(s.size(), 1 << 20, "shrunk");
    assert_eq!(s.sector_size(), SectorSize::B4096);
    drop(s);

    let opts = OpenOpts {
        sector_size: None,
        create_len: Some(2 << 20),
    };
    let s = FileStorage::open(&path, opts).expect("extend");
    assert_eq!(s.size(), 2 << 20);
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), 2 << 20);

    let s = FileStorage::open(&path, OpenOpts::default()).expect("plain reopen");
    assert_eq!(s.size(), 2 << 20);
    assert_eq!(s.describe(), path.display().to_string());
}

#[test]
fn truncated_file_gives_short_read() {
    let dir = tmpdir();
    let (path, mut s) = create(&dir, 64 * 1024);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open")
        .set_len(4096)
        .expect("truncate");
    let r = s.read_sync(8192, 512, Duration::from_secs(5));
    assert_eq!(
        r,
        Err(IoError::Short {
            op: "read",
            done: 0,
            len: 512
        })
    );
}

#[test]
fn stuck_worker_times_out_at_the_deadline() {
    let dir = tmpdir();
    let (_path, mut s) = create(&dir, 64 * 1024);
    s.set_test_stall(Duration::from_secs(2));
    let start = s.now();
    let deadline = start + Duration::from_millis(100);
    s.submit(read_req(1, deadline));
    let c = s
        .wait(start + Duration::from_secs(5))
        .expect("a completion");
    let end = s.now();
    assert_eq!(c.id, IoId(1));
    assert_eq!(c.result.err(), Some(IoError::TimedOut));
    assert!(end >= deadline, "timed out early");
    assert!(
        end - deadline < Duration::from_millis(250),
        "late by {:?}",
        end - deadline
    );

    // `wait` with an `until` before the stuck request's deadline returns by
    // `until`.
    let now = s.now();
    s.submit(read_req(2, now + Duration::from_secs(1)));
    assert!(s.wait(now + Duration::from_millis(50)).is_none());
    assert!(s.now() - now < Duration::from_millis(300));

    // Dropping never waits for stuck workers.
    let t = Instant::now();
    drop(s);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "drop blocked {:?}",
        t.elapsed()
    );
}

#[test]
fn late_results_are_discarded_but_late_writes_may_land() {
    let dir = tmpdir();
    let (_path, mut s) = create(&dir, 64 * 1024);
    s.set_test_stall(Duration::from_millis(300));
    let now = s.now();
    let data = AlignedBuf::from_slice(&[0xa5; 512]);
    let op = IoOp::Write {
        offset: 4096,
        data: data.clone(),
    };
    s.submit(IoRequest {
        id: IoId(7),
        op,
        deadline: now + Duration::from_millis(50),
    });
    let c = s.wait(now + Duration::from_secs(2)).expect("completion");
    assert_eq!((c.id, c.result.err()), (IoId(7), Some(IoError::TimedOut)));

    // The worker finishes later; its answer must not surface.
    assert!(s.wait(s.now() + Duration::from_millis(500)).is_none());
    s.set_test_stall(Duration::ZERO);
    let got = s
        .read_sync(4096, 512, Duration::from_secs(5))
        .expect("read");
    assert_eq!(
        got, data,
        "the write started before its deadline landed late"
    );
    assert_eq!(s.stats().writes, 1);
}

#[test]
fn requests_past_deadline_are_not_started() {
    let dir = tmpdir();
    let (_path, mut s) = create(&dir, 64 * 1024);
    let now = s.now();
    let data = AlignedBuf::from_slice(&[0x5a; 512]);
    let op = IoOp::Write { offset: 0, data };
    s.submit(IoRequest {
        id: IoId(1),
        op,
        deadline: now,
    });
    let c = s.wait(now + Duration::from_secs(1)).expect("completion");
    assert_eq!(c.result.err(), Some(IoError::TimedOut));
    assert_eq!(
        s.unfinished_writes(),
        0,
        "a write never started holds sectors"
    );
    std::thread::sleep(Duration::from_millis(20));
    let got = s.read_sync(0, 512, Duration::from_secs(5)).expect("read");
    assert!(got.iter().all(|&b| b == 0), "expired write was started");
}

#[test]
fn stuck_workers_grow_the_pool_up_to_the_cap_then_hung() {
    let dir = tmpdir();
    let (_path, mut s) = create(&dir, 64 * 1024);
    s.set_test_stall(Duration::from_secs(30));
    let mut timed_out = 0;
    let mut hung = None;
    for i in 0..(3 * MAX_STUCK as u64) {
        let now = s.now();
        s.submit(read_req(i, now + Duration::from_millis(20)));
        let c = s.wait(now + Duration::from_secs(2)).expect("completion");
        assert_eq!(c.id, IoId(i));
        match c.result {
            Err(IoError::TimedOut) => timed_out += 1,
            Err(IoError::Hung { stuck }) => {
                hung = Some(stuck);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(hung, Some(MAX_STUCK), "never refused");
    // Exactly MAX_STUCK unless a fresh thread was too slow to start its
    // request before the deadline.
    assert!(timed_out >= MAX_STUCK, "{timed_out}");
    assert_eq!(s.workers(), MAX_STUCK);
    assert_eq!(s.stuck_workers(), MAX_STUCK);

    // Once refused, refusals are immediate.
    let now = s.now();
    s.submit(read_req(99, now + Duration::from_secs(10)));
    let c = s.wait(now + Duration::from_secs(1)).expect("completion");
    assert_eq!(c.result.err(), Some(IoError::Hung { stuck: MAX_STUCK }));
    assert!(s.now() - now < Duration::from_millis(200));

    let t = Instant::now();
    drop(s);
    assert!(t.elapsed() < Duration::from_millis(500), "drop blocked");
}

#[test]
fn queued_request_gets_a_fresh_worker_when_all_are_stuck() {
    let dir = tmpdir();
    let (_path, mut s) = create(&dir, 64 * 1024);
    s.set_test_stall(Duration::from_secs(5));
    let now = s.now();
    s.submit(read_req(1, now + Duration::from_millis(300)));
    s.submit(read_req(2, now + Duration::from_millis(300)));
    // Let both workers pick their request up (and stall) before healing;
    // poll rather than sleep a fixed time, which a loaded machine outruns.
    let t = Instant::now();
    while s.busy_workers() < 2 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        s.busy_workers(),
        2,
        "workers never picked their requests up"
    );
    s.set_test_stall(Duration::ZERO);
    s.submit(read_req(3, now + Duration::from_secs(3)));
    let mut results = Vec::new();
    while let Some(c) = s.wait(now + Duration::from_secs(4)) {
        results.push((c.id.0, c.result.is_ok(), s.now() - now));
        if results.len() == 3 {
            break;
        }
    }
    assert_eq!(results.len(), 3, "{results:?}");
    let (id, ok, at) = results[2];
    assert!(id == 3 && ok, "{results:?}");
    assert!(at < Duration::from_secs(2), "served only at {at:?}");
    assert_eq!(s.workers(), 3);
}

#[test]
fn dropping_does_not_start_queued_requests() {
    let dir = tmpdir();
    let (path, mut s) = create(&dir, 64 * 1024);
    s.set_test_stall(Duration::from_millis(200));
    let now = s.now();
    for (i, sector) in [1u64, 2, 3].into_iter().enumerate() {
        let op = IoOp::Write {
            offset: sector * 512,
            data: AlignedBuf::from_slice(&[0xff; 512]),
        };
        let deadline = now + Duration::from_secs(10);
        s.submit(IoRequest {
            id: IoId(i as u64),
            op,
            deadline,
        });
    }
    std::thread::sleep(Duration::from_millis(20));
    drop(s);
    std::thread::sleep(Duration::from_millis(400));
    let mut s = FileStorage::open(&path, OpenOpts::default()).expect("reopen");
    let got = s
        .read_sync(512, 3 * 512, Duration::from_secs(5))
        .expect("read");
    assert!(
        got[..1024].iter().all(|&b| b == 0xff),
        "started writes land"
    );
    assert!(
        got[1024..].iter().all(|&b| b == 0),
        "queued write ran after drop"
    );
}

#[test]
fn invalid_requests_do_not_need_workers() {
    let dir = tmpdir();
    let (_path, mut s) = create(&dir, 8192);
    s.set_test_stall(Duration::from_secs(30));
    let now = s.now();
    s.submit(IoRequest {
        id: IoId(3),
        op: IoOp::Read {
            offset: 8192,
            len: 512,
        },
        deadline: now + Duration::from_secs(10),
    });
    let c = s.wait(now + Duration::from_secs(1)).expect("completion");
    assert_eq!(
        c.result.err(),
        Some(IoError::OutOfBounds {
            offset: 8192,
            len: 512,
            size: 8192
        })
    );
    assert!(s.now() - now < Duration::from_millis(200));
}

/// Time per round of 8 sequential 512-byte I/Os (4 writes, 4 reads), the
/// shape of a lease acquire + release.
fn eight_io_round(rounds: u32) -> Duration {
    let dir = tmpdir();
    let (_path, mut s) = create(&dir, 1 << 20);
    let data = AlignedBuf::from_slice(&[0x42; 512]);
    let start = Instant::now();
    for r in 0..rounds {
        for k in 0..4u64 {
            let off = (u64::from(r % 16) * 4 + k) * 512;
            s.write_sync(off, data.clone(), Duration::from_secs(5))
                .expect("write");
            let got = s.read_sync(off, 512, Duration::from_secs(5)).expect("read");
            assert_eq!(got[0], 0x42);
        }
    }
    let per_round = start.elapsed() / rounds;
    let st = s.stats();
    assert_eq!(st.writes, u64::from(rounds) * 4);
    assert_eq!(st.bytes_read, u64::from(rounds) * 4 * 512);
    eprintln!("8 sequential 512-byte O_DIRECT I/Os: {per_round:?}");
    per_round
}

/// Catches gross regressions (polling, sleeping) even on a loaded machine.
#[test]
fn sequential_sector_io_is_not_pathological() {
    let per_round = eight_io_round(100);
    assert!(
        per_round < Duration::from_millis(250),
        "{per_round:?} per 8 I/Os"
    );
}

/// The lease benchmark's budget: acquire + release (about 8 sequential sector
/// I/Os) under 1 ms on a local file. Timing-sensitive, so opt-in:
/// `cargo test --release -p nosplit-storage --test file_backend -- --ignored`
/// on a quiet machine.
#[test]
#[ignore = "timing; run with --release on a quiet machine"]
fn sequential_sector_io_meets_the_lease_budget() {
    let per_round = eight_io_round(1000);
    assert!(
        per_round < Duration::from_millis(1),
        "{per_round:?} per 8 I/Os"
    );
}

#[test]
fn debug_is_compact() {
    let dir = tmpdir();
    let (_path, s) = create(&dir, 8192);
    let d = format!("{s:?}");
    assert!(d.contains("FileStorage") && d.contains("8192"), "{d}");
    let ok = IoOk::Read(AlignedBuf::zeroed(4096));
    assert!(format!("{ok:?}").len() < 100);
}

fn write_req(id: u64, sector: u64, byte: u8, deadline: nosplit_storage::MonoTime) -> IoRequest {
    IoRequest {
        id: IoId(id),
        op: IoOp::Write {
            offset: sector * 512,
            data: AlignedBuf::from_slice(&[byte; 512]),
        },
        deadline,
    }
}

fn in_flight(sector: u64) -> Option<IoError> {
    Some(IoError::WriteInFlight {
        offset: sector * 512,
        len: 512,
    })
}

/// Waits for request `id`, skipping others.
fn wait_id(
    s: &mut FileStorage,
    id: u64,
    until: nosplit_storage::MonoTime,
) -> Result<IoOk, IoError> {
    loop {
        let c = s.wait(until).expect("completion by the deadline");
        if c.id == IoId(id) {
            return c.result;
        }
    }
}

/// The lease daemon opens several handles on one file: a write stuck in one
/// holds its sectors against all of them (and only against that file).
#[test]
fn handles_on_one_file_see_each_others_unfinished_writes() {
    let dir = tmpdir();
    let (path, mut a) = create(&dir, 64 * 1024);
    let mut b = FileStorage::open(&path, OpenOpts::default()).expect("second handle");
    let other_path = dir.path().join("other");
    let opts = OpenOpts {
        sector_size: None,
        create_len: Some(64 * 1024),
    };
    let mut other = FileStorage::open(&other_path, opts).expect("other file");
    let t = Duration::from_secs(5);

    a.stall_writes(true);
    let now = a.now();
    a.submit(write_req(1, 3, 0xaa, now + Duration::from_millis(200)));
    a.stall_writes(false);
    assert_eq!(b.unfinished_writes(), 1);
    assert_eq!(other.unfinished_writes(), 0);

    let one = |byte| AlignedBuf::from_slice(&[byte; 512]);
    assert_eq!(b.write_sync(3 * 512, one(0xbb), t).err(), in_flight(3));
    let two = AlignedBuf::from_slice(&[0xbb; 1024]);
    assert_eq!(
        b.write_sync(2 * 512, two, t).err(),
        Some(IoError::WriteInFlight {
            offset: 1024,
            len: 1024
        })
    );
    assert_eq!(b.write_sync(4 * 512, one(0xb4), t), Ok(()));
    assert!(
        b.read_sync(3 * 512, 512, t).is_ok(),
        "reads are not refused"
    );
    assert_eq!(other.write_sync(3 * 512, one(0xcc), t), Ok(()));

    // The stuck write's caller is told TimedOut; the sectors stay taken.
    let r = wait_id(&mut a, 1, now + Duration::from_secs(2));
    assert_eq!(r.err(), Some(IoError::TimedOut));
    assert_eq!(b.write_sync(3 * 512, one(0xbb), t).err(), in_flight(3));
    assert_eq!(a.write_sync(3 * 512, one(0xbb), t).err(), in_flight(3));

    // It lands (300 ms past its deadline); then b's write goes through.
    let start = Instant::now();
    loop {
        match b.write_sync(3 * 512, one(0xbb), t) {
            Ok(()) => break,
            Err(e) => assert_eq!(Some(e), in_flight(3)),
        }
        assert!(start.elapsed() < Duration::from_secs(5), "never released");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(a.unfinished_writes(), 0);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(a.read_sync(3 * 512, 512, t).expect("read")[0], 0xbb);
    assert_eq!(a.stats().writes, 1, "the stuck write landed");
}

/// A write still queued at its deadline will never start: its sectors are
/// free as soon as its caller hears TimedOut, and it is not performed.
#[test]
fn queued_write_past_its_deadline_releases_its_sectors() {
    let dir = tmpdir();
    let (_path, mut s) = create(&dir, 64 * 1024);
    s.set_test_stall(Duration::from_millis(400));
    let now = s.now();
    s.submit(read_req(1, now + Duration::from_secs(10)));
    s.submit(read_req(2, now + Duration::from_secs(10)));
    let t = Instant::now();
    while s.busy_workers() < 2 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(s.busy_workers(), 2, "workers never picked the reads up");
    s.set_test_stall(Duration::ZERO);
    let now = s.now();
    s.submit(write_req(3, 5, 0x33, now + Duration::from_millis(50)));
    assert_eq!(s.unfinished_writes(), 1);
    assert_eq!(
        wait_id(&mut s, 3, now + Duration::from_secs(1)).err(),
        Some(IoError::TimedOut)
    );
    assert!(
        s.now() - now < Duration::from_millis(300),
        "not expired at its deadline"
    );
    assert_eq!(s.unfinished_writes(), 0);

    let now = s.now();
    s.submit(write_req(4, 5, 0x44, now + Duration::from_secs(5)));
    assert!(matches!(
        wait_id(&mut s, 4, now + Duration::from_secs(5)),
        Ok(IoOk::Written)
    ));
    std::thread::sleep(Duration::from_millis(100));
    let got = s
        .read_sync(5 * 512, 512, Duration::from_secs(5))
        .expect("read");
    assert_eq!(got[0], 0x44, "the abandoned write ran");
    assert_eq!(s.stats().writes, 1);
}

/// Dropping a storage frees the sectors of writes no worker started, at
/// once, even while its workers are busy.
#[test]
fn dropping_releases_queued_writes() {
    let dir = tmpdir();
    let (path, mut s) = create(&dir, 64 * 1024);
    let mut b = FileStorage::open(&path, OpenOpts::default()).expect("second handle");
    s.set_test_stall(Duration::from_millis(300));
    let now = s.now();
    s.submit(read_req(1, now + Duration::from_secs(10)));
    s.submit(read_req(2, now + Duration::from_secs(10)));
    let t = Instant::now();
    while s.busy_workers() < 2 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(s.busy_workers(), 2, "workers never picked the reads up");
    s.submit(write_req(3, 7, 0x77, now + Duration::from_secs(10)));
    assert_eq!(b.unfinished_writes(), 1);
    drop(s);
    assert_eq!(b.unfinished_writes(), 0);
    let t = Duration::from_secs(5);
    assert_eq!(
        b.write_sync(7 * 512, AlignedBuf::from_slice(&[0x11; 512]), t),
        Ok(())
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(b.read_sync(7 * 512, 512, t).expect("read")[0], 0x11);
}
