//! `SimDisk`-specific behaviour: latency, ordering, injected errors, hangs,
//! late writes, power loss, multi-host stepping and determinism.

use nosplit_storage::{
    AlignedBuf, Faults, IoCompletion, IoError, IoId, IoOk, IoOp, IoRequest, MonoTime, SectorSize,
    SimDisk, SimHandle, Storage,
};
use std::time::Duration;

const SEC: usize = 512;
const SIZE: u64 = 256 * 512;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn disk(seed: u64) -> SimDisk {
    SimDisk::new(seed, SIZE, SectorSize::B512)
}

fn write_op(sector: u64, byte: u8) -> IoOp {
    IoOp::Write {
        offset: sector * SEC as u64,
        data: AlignedBuf::from_slice(&[byte; SEC]),
    }
}

fn read_op(sector: u64) -> IoOp {
    IoOp::Read {
        offset: sector * SEC as u64,
        len: SEC,
    }
}

fn submit(h: &mut SimHandle, id: u64, op: IoOp, timeout: Duration) -> MonoTime {
    let deadline = h.now() + timeout;
    h.submit(IoRequest {
        id: IoId(id),
        op,
        deadline,
    });
    deadline
}

fn sector_byte(d: &SimDisk, sector: u64) -> u8 {
    d.read_raw(sector * SEC as u64, 1)[0]
}

#[test]
fn fixed_latency_completes_exactly_then() {
    let d = disk(1);
    let mut h = d.handle("a");
    h.set_faults(Faults::latency(ms(5)));
    submit(&mut h, 1, write_op(0, 9), ms(100));
    let c = h.wait(MonoTime::NEVER).expect("completion");
    assert!(matches!(c.result, Ok(IoOk::Written)));
    assert_eq!(h.now(), MonoTime::from_millis(5));
    assert_eq!(sector_byte(&d, 0), 9);
}

#[test]
fn wait_until_before_completion_returns_none_at_until() {
    let d = disk(1);
    let mut h = d.handle("a");
    h.set_faults(Faults::latency(ms(50)));
    submit(&mut h, 1, write_op(0, 9), ms(100));
    assert!(h.wait(MonoTime::from_millis(20)).is_none());
    assert_eq!(h.now(), MonoTime::from_millis(20));
    assert_eq!(
        sector_byte(&d, 0),
        0,
        "write landed before its completion time"
    );
    assert!(
        h.wait(MonoTime::from_millis(10)).is_none(),
        "until in the past"
    );
    assert_eq!(h.now(), MonoTime::from_millis(20));
    assert!(h.wait(MonoTime::NEVER).is_some());
    assert_eq!(h.now(), MonoTime::from_millis(50));
    assert!(
        h.wait(MonoTime::NEVER).is_none(),
        "nothing pending: None without moving"
    );
    assert_eq!(h.now(), MonoTime::from_millis(50));
}

#[test]
fn reads_see_the_disk_at_their_completion_time() {
    let d = disk(1);
    let mut writer = d.handle("w");
    let mut slow = d.handle("slow");
    let mut fast = d.handle("fast");
    writer.set_faults(Faults::latency(ms(10)));
    slow.set_faults(Faults::latency(ms(20)));
    fast.set_faults(Faults::latency(ms(5)));
    submit(&mut writer, 1, write_op(3, 0x77), ms(100));
    submit(&mut slow, 2, read_op(3), ms(100));
    submit(&mut fast, 3, read_op(3), ms(100));
    let byte = |c: IoCompletion| match c.result {
        Ok(IoOk::Read(b)) => b[0],
        other => panic!("{other:?}"),
    };
    assert_eq!(byte(slow.wait(MonoTime::NEVER).expect("slow")), 0x77);
    // The fast read completed at 5 ms (before the write) while we drove time.
    assert_eq!(byte(fast.wait(MonoTime::NEVER).expect("fast")), 0);
    assert!(matches!(
        writer.wait(slow.now()).expect("w").result,
        Ok(IoOk::Written)
    ));
}

fn completion_order(reorder: bool) -> Vec<u64> {
    let d = disk(5);
    let mut h = d.handle("a");
    h.set_faults(Faults {
        min_latency: ms(1),
        max_latency: ms(20),
        reorder,
        ..Faults::default()
    });
    for i in 0..20 {
        submit(&mut h, i, write_op(i, 1), ms(1000));
    }
    let order: Vec<u64> = std::iter::from_fn(|| h.wait(MonoTime::NEVER))
        .map(|c| c.id.0)
        .collect();
    assert_eq!(order.len(), 20);
    order
}

#[test]
fn reorder_flag_controls_completion_order() {
    let in_order: Vec<u64> = (0..20).collect();
    assert_eq!(completion_order(false), in_order);
    let shuffled = completion_order(true);
    assert_ne!(shuffled, in_order, "random latencies should reorder");
    let mut sorted = shuffled.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, in_order, "each request completes exactly once");
}

#[test]
fn certain_errors_fail_and_failed_writes_do_not_land() {
    let d = disk(2);
    let mut h = d.handle("a");
    h.set_faults(Faults {
        read_error_rate: 1.0,
        write_error_rate: 1.0,
        ..Faults::default()
    });
    submit(&mut h, 1, write_op(0, 5), ms(100));
    submit(&mut h, 2, read_op(0), ms(100));
    let c1 = h.wait(MonoTime::NEVER).expect("c1");
    let c2 = h.wait(MonoTime::NEVER).expect("c2");
    assert_eq!(c1.result.err(), Some(IoError::Injected("write error")));
    assert_eq!(c2.result.err(), Some(IoError::Injected("read error")));
    assert_eq!(sector_byte(&d, 0), 0);
    assert_eq!(d.stats("a"), Default::default());
}

#[test]
fn partial_error_rate_fails_some() {
    let d = disk(3);
    let mut h = d.handle("a");
    h.set_faults(Faults {
        read_error_rate: 0.3,
        ..Faults::default()
    });
    let mut failed = 0;
    for i in 0..200 {
        submit(&mut h, i, read_op(i % 8), ms(100));
        let c = h.wait(MonoTime::NEVER).expect("completion");
        if c.result.is_err() {
            assert_eq!(c.result.err(), Some(IoError::Injected("read error")));
            failed += 1;
        }
    }
    assert!(
        (30..=90).contains(&failed),
        "{failed} of 200 failed at rate 0.3"
    );
    assert_eq!(d.stats("a").reads, 200 - failed);
}

#[test]
fn hang_times_out_exactly_at_the_deadline_and_writes_do_not_land() {
    let d = disk(4);
    let mut h = d.handle("a");
    h.set_faults(Faults::hung());
    let deadline = submit(&mut h, 1, write_op(2, 8), ms(250));
    let c = h.wait(MonoTime::NEVER).expect("completion");
    assert_eq!((c.id, c.result.err()), (IoId(1), Some(IoError::TimedOut)));
    assert_eq!(h.now(), deadline);
    d.advance_to(deadline + Duration::from_secs(60));
    assert_eq!(sector_byte(&d, 2), 0);
    assert_eq!(d.next_event_time(), None);

    // Healing affects new requests.
    h.set_faults(Faults::default());
    assert_eq!(
        h.write_sync(2 * SEC as u64, AlignedBuf::from_slice(&[8; SEC]), ms(100)),
        Ok(())
    );
    assert_eq!(sector_byte(&d, 2), 8);
}

#[test]
fn hang_with_late_writes_lands_after_the_deadline() {
    let d = disk(4);
    let mut h = d.handle("a");
    h.set_faults(Faults {
        hang: true,
        late_write_rate: 1.0,
        late_write_delay: ms(500),
        ..Faults::default()
    });
    let deadline = submit(&mut h, 1, write_op(2, 8), ms(100));
    assert_eq!(
        h.wait(MonoTime::NEVER).expect("c").result.err(),
        Some(IoError::TimedOut)
    );
    assert_eq!(h.now(), deadline);
    assert_eq!(sector_byte(&d, 2), 0);
    assert_eq!(d.next_event_time(), Some(deadline + ms(500)));
    d.advance_to(deadline + ms(499));
    assert_eq!(sector_byte(&d, 2), 0);
    d.advance_to(deadline + ms(500));
    assert_eq!(sector_byte(&d, 2), 8);
    assert_eq!(d.stats("a").writes, 1);
}

#[test]
fn late_write_times_out_then_lands() {
    let d = disk(6);
    let mut h = d.handle("a");
    h.set_faults(Faults {
        late_write_rate: 1.0,
        late_write_delay: ms(300),
        ..Faults::default()
    });
    let deadline = submit(&mut h, 1, write_op(1, 0xcc), ms(50));
    let c = h.wait(MonoTime::NEVER).expect("completion");
    assert_eq!(c.result.err(), Some(IoError::TimedOut));
    assert_eq!(h.now(), deadline);
    assert_eq!(sector_byte(&d, 1), 0, "landed before the deadline + delay");
    // Reads are not affected by the late-write rate.
    submit(&mut h, 2, read_op(1), ms(50));
    assert!(matches!(
        h.wait(MonoTime::NEVER).expect("read").result,
        Ok(IoOk::Read(_))
    ));
    d.advance_to(deadline + ms(300));
    assert_eq!(sector_byte(&d, 1), 0xcc);
}

#[test]
fn slow_write_times_out_but_lands_at_its_completion() {
    let d = disk(6);
    let mut h = d.handle("a");
    h.set_faults(Faults::latency(ms(200)));
    let deadline = submit(&mut h, 1, write_op(1, 0xdd), ms(50));
    assert_eq!(
        h.wait(MonoTime::NEVER).expect("c").result.err(),
        Some(IoError::TimedOut)
    );
    assert_eq!(h.now(), deadline);
    d.advance_to(MonoTime::from_millis(200));
    assert_eq!(sector_byte(&d, 1), 0xdd);
}

#[test]
fn power_off_drops_in_flight_and_refuses_until_power_on() {
    let d = disk(8);
    let mut h = d.handle("a");
    h.set_faults(Faults::latency(ms(100)));
    for i in 0..40 {
        submit(&mut h, i, write_op(i, 0xee), ms(1000));
    }
    submit(&mut h, 100, read_op(100), ms(1000));
    d.power_off("a");
    assert_eq!(d.in_flight("a"), 0);
    let landed = (0..40).filter(|&i| sector_byte(&d, i) == 0xee).count();
    assert!(
        landed > 0 && landed < 40,
        "{landed} of 40 pending writes landed"
    );
    assert!(
        h.wait(MonoTime::from_millis(5000)).is_none(),
        "dropped requests completed"
    );

    submit(&mut h, 200, read_op(0), ms(100));
    let c = h.wait(MonoTime::NEVER).expect("refusal");
    assert_eq!(c.result.err(), Some(IoError::Injected("powered off")));

    d.power_on("a");
    submit(&mut h, 201, read_op(0), ms(1000));
    assert!(matches!(
        h.wait(MonoTime::NEVER).expect("c").result,
        Ok(IoOk::Read(_))
    ));
}

#[test]
fn one_thread_steps_several_hosts() {
    let d = disk(9);
    let mut a = d.handle("a");
    let mut b = d.handle("b");
    a.set_faults(Faults::latency(ms(3)));
    b.set_faults(Faults::latency(ms(7)));
    submit(&mut a, 1, write_op(0, 1), ms(100));
    submit(&mut b, 2, write_op(1, 2), ms(100));
    let mut trace = Vec::new();
    while let Some(t) = d.next_event_time() {
        d.advance_to(t);
        let now = d.now();
        assert_eq!(now, t);
        for h in [&mut a, &mut b] {
            while let Some(c) = h.wait(now) {
                trace.push((now, h.name().to_string(), c.id));
            }
            assert_eq!(h.now(), now, "wait(now) moved the clock");
        }
    }
    assert_eq!(
        trace,
        vec![
            (MonoTime::from_millis(3), "a".to_string(), IoId(1)),
            (MonoTime::from_millis(7), "b".to_string(), IoId(2)),
        ]
    );
    assert_eq!(d.stats("a").bytes_written, 512);
    assert_eq!(d.stats("b").writes, 1);
    assert_eq!(d.stats("nobody"), Default::default());
}

#[test]
fn raw_access_bypasses_faults_and_clamps() {
    let d = disk(1);
    d.set_faults("a", Faults::hung());
    d.write_raw(512, &[1, 2, 3]);
    assert_eq!(d.read_raw(511, 5), vec![0, 1, 2, 3, 0]);
    d.write_raw(SIZE - 2, &[9, 9, 9, 9]);
    assert_eq!(d.read_raw(SIZE - 2, 4), vec![9, 9, 0, 0]);
    assert_eq!(d.read_raw(SIZE + 100, 2), vec![0, 0]);
    assert!(d.faults("a").hang);
    assert_eq!(d.now(), MonoTime::ZERO);
}

/// Runs a busy two-host scenario with every fault kind and returns its trace
/// and the final disk.
fn scenario(seed: u64) -> (Vec<String>, Vec<u8>) {
    let d = disk(seed);
    let noisy = Faults {
        read_error_rate: 0.1,
        write_error_rate: 0.1,
        min_latency: Duration::from_micros(50),
        max_latency: ms(30),
        late_write_rate: 0.1,
        late_write_delay: ms(40),
        reorder: true,
        hang: false,
    };
    let mut hosts = [d.handle("a"), d.handle("b")];
    for h in &hosts {
        h.set_faults(noisy.clone());
    }
    let mut trace = Vec::new();
    let mut id = 0;
    for round in 0..40u64 {
        for h in hosts.iter_mut() {
            id += 1;
            let byte = u8::try_from(id % 251).expect("small");
            let op = if round % 3 == 0 {
                read_op(round % 8)
            } else {
                write_op(round % 8, byte)
            };
            submit(h, id, op, ms(20));
        }
        if round == 25 {
            d.power_off("b");
        }
        if round == 30 {
            d.power_on("b");
        }
        let step_to = d.now() + ms(5);
        while let Some(t) = d.next_event_time().filter(|&t| t <= step_to) {
            d.advance_to(t);
            for h in hosts.iter_mut() {
                while let Some(c) = h.wait(d.now()) {
                    let r = match c.result {
                        Ok(IoOk::Read(b)) => format!("read {:02x}", b[0]),
                        Ok(IoOk::Written) => "written".to_string(),
                        Err(e) => e.to_string(),
                    };
                    trace.push(format!("{} {} {:?} {r}", d.now(), h.name(), c.id));
                }
            }
        }
        d.advance_to(step_to);
    }
    d.advance_to(d.now() + Duration::from_secs(1));
    (
        trace,
        d.read_raw(0, usize::try_from(SIZE).expect("small disk")),
    )
}

#[test]
fn same_seed_same_trace_different_seed_different_trace() {
    let (t1, d1) = scenario(42);
    let (t2, d2) = scenario(42);
    assert!(t1.len() > 40, "trace too short: {}", t1.len());
    assert_eq!(t1, t2);
    assert_eq!(d1, d2);
    for kind in [
        "written",
        "read ",
        "injected fault",
        "did not complete",
        "powered off",
    ] {
        assert!(
            t1.iter().any(|l| l.contains(kind)),
            "scenario never produced {kind:?}"
        );
    }
    let (t3, _) = scenario(43);
    assert_ne!(t1, t3);
}

fn in_flight_err(sector: u64) -> Option<IoError> {
    Some(IoError::WriteInFlight {
        offset: sector * SEC as u64,
        len: SEC,
    })
}

fn run_one(h: &mut SimHandle, id: u64, op: IoOp, timeout: Duration) -> Result<IoOk, IoError> {
    submit(h, id, op, timeout);
    let c = h.wait(MonoTime::NEVER).expect("completion");
    assert_eq!(c.id, IoId(id));
    c.result
}

/// The bug this rule prevents: a ballot write times out, the host writes
/// its next ballot to the same sector, then the stale one lands on top.
#[test]
fn late_write_is_not_overtaken_by_the_same_hosts_next_write() {
    let d = disk(12);
    let mut h = d.handle("a");
    let mut other = d.handle("b");
    h.set_faults(Faults {
        late_write_rate: 1.0,
        late_write_delay: ms(300),
        ..Faults::default()
    });
    let deadline = submit(&mut h, 1, write_op(4, 0x01), ms(50));
    let c = h.wait(MonoTime::NEVER).expect("timeout");
    assert_eq!(c.result.err(), Some(IoError::TimedOut));
    assert_eq!(d.unfinished_writes("a"), 1);
    h.set_faults(Faults::default());

    // The next ballot is refused at once, without touching the clock.
    let now = h.now();
    let r = run_one(&mut h, 2, write_op(4, 0x02), ms(50));
    assert_eq!(r.err(), in_flight_err(4));
    assert_eq!(h.now(), now, "a refusal takes no time");
    // Other sectors, reads and other hosts are not held up.
    assert!(run_one(&mut h, 3, write_op(5, 0x03), ms(50)).is_ok());
    assert!(run_one(&mut h, 4, read_op(4), ms(50)).is_ok());
    assert!(run_one(&mut other, 5, write_op(4, 0x05), ms(50)).is_ok());
    assert_eq!(sector_byte(&d, 4), 0x05);

    // Until the stale write lands, the host's retries are refused.
    d.advance_to(deadline + ms(299));
    let r = run_one(&mut h, 6, write_op(4, 0x06), ms(50));
    assert_eq!(r.err(), in_flight_err(4));
    d.advance_to(deadline + ms(300));
    assert_eq!(sector_byte(&d, 4), 0x01, "the stale write landed");
    assert_eq!(d.unfinished_writes("a"), 0);
    assert!(run_one(&mut h, 7, write_op(4, 0x07), ms(50)).is_ok());
    d.advance_to(d.now() + Duration::from_secs(10));
    assert_eq!(sector_byte(&d, 4), 0x07, "rolled back");
    assert_eq!(d.stats("a").writes, 3, "refused writes are not counted");
}

#[test]
fn slow_write_holds_its_sectors_until_it_lands() {
    let d = disk(13);
    let mut h = d.handle("a");
    h.set_faults(Faults::latency(ms(200)));
    submit(&mut h, 1, write_op(1, 0x11), ms(50));
    assert_eq!(
        h.wait(MonoTime::NEVER).expect("c").result.err(),
        Some(IoError::TimedOut)
    );
    h.set_faults(Faults::default());
    let r = run_one(&mut h, 2, write_op(1, 0x22), ms(50));
    assert_eq!(r.err(), in_flight_err(1));
    d.advance_to(MonoTime::from_millis(200));
    assert_eq!(sector_byte(&d, 1), 0x11);
    assert!(run_one(&mut h, 3, write_op(1, 0x22), ms(50)).is_ok());
    assert_eq!(sector_byte(&d, 1), 0x22);
}

#[test]
fn concurrent_overlapping_writes_of_one_host_are_refused() {
    let d = disk(14);
    let mut h = d.handle("a");
    h.set_faults(Faults {
        min_latency: ms(1),
        max_latency: ms(20),
        reorder: true,
        ..Faults::default()
    });
    let two = IoOp::Write {
        offset: 2 * SEC as u64,
        data: AlignedBuf::from_slice(&[0x33; 2 * SEC]),
    };
    submit(&mut h, 1, two, ms(100));
    submit(&mut h, 2, write_op(3, 0x44), ms(100)); // overlaps the tail
    submit(&mut h, 3, write_op(4, 0x55), ms(100)); // disjoint
    let mut results: Vec<_> = std::iter::from_fn(|| h.wait(MonoTime::NEVER))
        .map(|c| (c.id.0, c.result.err()))
        .collect();
    results.sort_by_key(|r| r.0);
    assert_eq!(
        results,
        vec![(1, None), (2, in_flight_err(3)), (3, None)],
        "the refusal comes first, the others complete"
    );
    assert_eq!(sector_byte(&d, 3), 0x33);
    assert_eq!(sector_byte(&d, 4), 0x55);
}

#[test]
fn hung_write_holds_its_sectors_until_the_hang_is_lifted() {
    let d = disk(15);
    let mut h = d.handle("a");
    h.set_faults(Faults::hung());
    submit(&mut h, 1, write_op(6, 0x66), ms(50));
    assert_eq!(
        h.wait(MonoTime::NEVER).expect("c").result.err(),
        Some(IoError::TimedOut)
    );
    d.advance_to(d.now() + Duration::from_secs(60));
    assert_eq!(d.unfinished_writes("a"), 1, "parked by the hang");
    let r = run_one(&mut h, 2, write_op(6, 0x67), ms(50));
    assert_eq!(r.err(), in_flight_err(6));
    // Changing other settings keeps it parked.
    h.set_faults(Faults {
        max_latency: ms(1),
        ..Faults::hung()
    });
    assert_eq!(d.unfinished_writes("a"), 1);
    d.set_faults("a", Faults::default());
    assert_eq!(d.unfinished_writes("a"), 0);
    assert!(run_one(&mut h, 3, write_op(6, 0x68), ms(50)).is_ok());
    d.advance_to(d.now() + Duration::from_secs(60));
    assert_eq!(sector_byte(&d, 6), 0x68, "a parked write never lands");
}

#[test]
fn failed_write_that_timed_out_is_finished_at_its_deadline() {
    let d = disk(16);
    let mut h = d.handle("a");
    h.set_faults(Faults {
        write_error_rate: 1.0,
        ..Faults::latency(ms(200))
    });
    let deadline = submit(&mut h, 1, write_op(7, 0x77), ms(50));
    let c = h.wait(MonoTime::NEVER).expect("c");
    assert_eq!(c.result.err(), Some(IoError::TimedOut));
    assert_eq!(h.now(), deadline);
    assert_eq!(d.unfinished_writes("a"), 0);
    h.set_faults(Faults::default());
    // In order: it completes after the failed one's 200 ms.
    let r = run_one(&mut h, 2, write_op(7, 0x78), ms(500));
    assert!(r.is_ok(), "{r:?}");
}

#[test]
fn power_off_finishes_the_hosts_writes() {
    let d = disk(17);
    let mut h = d.handle("a");
    h.set_faults(Faults {
        late_write_rate: 1.0,
        late_write_delay: Duration::from_secs(5),
        ..Faults::default()
    });
    submit(&mut h, 1, write_op(8, 0x88), ms(50));
    h.set_faults(Faults::hung());
    submit(&mut h, 2, write_op(9, 0x99), ms(50));
    assert_eq!(d.unfinished_writes("a"), 2);
    d.power_off("a");
    assert_eq!(d.unfinished_writes("a"), 0);
    d.power_on("a");
    h.set_faults(Faults::default());
    assert!(run_one(&mut h, 3, write_op(8, 0x01), ms(50)).is_ok());
    assert!(run_one(&mut h, 4, write_op(9, 0x02), ms(50)).is_ok());
    d.advance_to(d.now() + Duration::from_secs(60));
    assert_eq!((sector_byte(&d, 8), sector_byte(&d, 9)), (0x01, 0x02));
}
