//! The timing model: every duration a lockspace uses, derived from the one
//! `io_timeout` stored in its header.
//!
//! With `T = io_timeout` and `rho` the clock-rate drift bound
//! ([`DRIFT_PPM`]), see `docs/timing.md` for the safety argument:
//!
//! | name | formula | T = 1 s | T = 10 s |
//! |---|---|---|---|
//! | renewal interval | T/2 | 0.5 s | 5 s |
//! | renewal warning | 2T | 2 s | 20 s |
//! | renewal fail (freeze + SIGTERM holders) | 3T | 3 s | 30 s |
//! | SIGKILL holders | 3T + T/4 | 3.25 s | 32.5 s |
//! | kill deadline (holders gone) | 3T + T/2 | 3.5 s | 35 s |
//! | watchdog fire | kill deadline + max(T/2, 1 s) | 4.5 s | 40 s |
//! | host dead (others may take over) | (fire (1+rho) + T) / (1-rho) | 5.511 s | 50.091 s |
//! | join collision wait | 2T (1+rho)/(1-rho) | 2.004 s | 20.04 s |
//!
//! The owner measures its deadlines from the *issue* time of its last
//! successful renewal write; observers measure from the *completion* time
//! of the read that first showed the new value. A write cannot be seen
//! before it is issued, so the observer's origin is never earlier than the
//! owner's, whatever the I/O latency.

use std::time::Duration;

/// Assumed bound on the rate difference between any host's monotonic clock
/// and real time: 1000 ppm (0.1%), twice the maximum NTP slew rate.
pub const DRIFT_PPM: u64 = 1_000;

/// Derived durations of one lockspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Timing {
    /// Deadline of one I/O.
    pub io_timeout: Duration,
    /// Time between renewal writes (and between liveness scans).
    pub renew_interval: Duration,
    /// No successful renewal for this long: warn holders.
    pub renew_warn: Duration,
    /// No successful renewal for this long: freeze and SIGTERM holders.
    pub renew_fail: Duration,
    /// SIGKILL holders still alive at this point.
    pub sigkill_after: Duration,
    /// Every holder must be gone by this point; otherwise the watchdog fires.
    pub kill_deadline: Duration,
    /// The watchdog resets the host by this point at the latest.
    pub watchdog_fire: Duration,
    /// Other hosts consider the host dead after seeing its lease unchanged
    /// for this long on their own clock.
    pub host_dead: Duration,
    /// After the first write of a join, wait this long and re-read to detect
    /// another host joining with the same host id.
    pub join_wait: Duration,
}

fn ceil_ms(num: u128, den: u128) -> Duration {
    let ms = num.div_ceil(den);
    Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

impl Timing {
    /// Derives all durations from `io_timeout_ms`.
    pub fn from_io_timeout_ms(io_timeout_ms: u32) -> Timing {
        let t = u128::from(io_timeout_ms);
        let ms = |v: u128| Duration::from_millis(u64::try_from(v).unwrap_or(u64::MAX));
        let renew_fail = 3 * t;
        let kill_deadline = renew_fail + t / 2;
        let watchdog_fire = kill_deadline + (t / 2).max(1000);
        let million = 1_000_000u128;
        let (up, down) = (
            million + u128::from(DRIFT_PPM),
            million - u128::from(DRIFT_PPM),
        );
        Timing {
            io_timeout: ms(t),
            renew_interval: ms(t / 2),
            renew_warn: ms(2 * t),
            renew_fail: ms(renew_fail),
            sigkill_after: ms(renew_fail + t / 4),
            kill_deadline: ms(kill_deadline),
            watchdog_fire: ms(watchdog_fire),
            host_dead: ceil_ms(watchdog_fire * up + t * million, down),
            join_wait: ceil_ms(2 * t * up, down),
        }
    }

    /// Checks the inequalities the safety argument rests on. Holds for every
    /// `io_timeout`; a test sweeps the whole accepted range.
    pub fn check(&self) -> Result<(), String> {
        let rho = DRIFT_PPM as f64 / 1e6;
        let s = |d: Duration| d.as_secs_f64();
        // S3: an observer's host_dead, measured on a clock that may run fast
        // by rho, must outlast the owner's watchdog fire time measured on a
        // clock that may run slow by rho, plus one io_timeout for I/O that
        // was in flight when the host was reset.
        let lhs = s(self.host_dead) * (1.0 - rho);
        let rhs = s(self.watchdog_fire) * (1.0 + rho) + s(self.io_timeout);
        if lhs + 1e-9 < rhs {
            return Err(format!(
                "host_dead {lhs:.4}s < watchdog fire + io {rhs:.4}s"
            ));
        }
        let ordered = [
            self.renew_interval,
            self.renew_warn,
            self.renew_fail,
            self.sigkill_after,
            self.kill_deadline,
            self.watchdog_fire,
            self.host_dead,
        ];
        if ordered.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!("durations are not increasing: {ordered:?}"));
        }
        if self.renew_fail < self.io_timeout * 2 + self.renew_interval {
            return Err("renew_fail leaves no room for a second renewal attempt".into());
        }
        if s(self.join_wait) * (1.0 - rho) < 2.0 * s(self.io_timeout) * (1.0 + rho) - 1e-9 {
            return Err("join_wait shorter than a racing joiner's read-then-write window".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_values() {
        let t = Timing::from_io_timeout_ms(1000);
        assert_eq!(t.renew_interval, Duration::from_millis(500));
        assert_eq!(t.renew_fail, Duration::from_secs(3));
        assert_eq!(t.kill_deadline, Duration::from_millis(3500));
        assert_eq!(t.watchdog_fire, Duration::from_millis(4500));
        assert_eq!(t.host_dead, Duration::from_millis(5511));
        let t10 = Timing::from_io_timeout_ms(10_000);
        assert_eq!(t10.host_dead, Duration::from_millis(50_091));
        assert_eq!(t10.join_wait, Duration::from_millis(20_041));
    }

    #[test]
    fn safety_inequalities_hold_over_the_accepted_range() {
        for ms in (50..=300_000).step_by(37) {
            let t = Timing::from_io_timeout_ms(ms);
            t.check()
                .unwrap_or_else(|e| panic!("io_timeout {ms} ms: {e}"));
        }
    }
}
