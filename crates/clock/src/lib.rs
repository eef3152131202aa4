//! Monotonic time for nosplit.
//!
//! This crate owns the one time type every layer uses: [`MonoTime`], a point
//! on a host-local clock that never jumps (`CLOCK_BOOTTIME`, which also keeps
//! counting while the machine is suspended: a suspended host must see its
//! leases as expired when it wakes). Protocol cores never read a clock; they
//! are handed a `MonoTime`. Runtimes read one through [`Clock`]: the
//! [`RealClock`] in production, a [`SimClock`] in deterministic simulations.
//!
//! `MonoTime` values are only comparable on the host that produced them; they
//! are never written to shared storage as a basis for another host's decision.

use std::fmt;
use std::ops::{Add, Sub};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A point on the host's monotonic clock, in nanoseconds since an arbitrary
/// origin (boot, for the real clock; zero, for a simulated one).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MonoTime(u64);

impl MonoTime {
    /// The origin of the clock.
    pub const ZERO: MonoTime = MonoTime(0);
    /// A time later than any real reading; used as "never".
    pub const NEVER: MonoTime = MonoTime(u64::MAX);

    /// Builds a time from nanoseconds since the origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        MonoTime(nanos)
    }

    /// Builds a time from milliseconds since the origin (saturating).
    pub const fn from_millis(ms: u64) -> Self {
        MonoTime(ms.saturating_mul(1_000_000))
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Milliseconds since the origin (rounded down).
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000_000
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: MonoTime) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at [`MonoTime::NEVER`].
    pub fn saturating_add(self, d: Duration) -> MonoTime {
        let add = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        MonoTime(self.0.saturating_add(add))
    }

    /// `self - d`, saturating at [`MonoTime::ZERO`].
    pub fn saturating_sub(self, d: Duration) -> MonoTime {
        let sub = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        MonoTime(self.0.saturating_sub(sub))
    }
}

impl Add<Duration> for MonoTime {
    type Output = MonoTime;
    fn add(self, d: Duration) -> MonoTime {
        self.saturating_add(d)
    }
}

impl Sub<MonoTime> for MonoTime {
    type Output = Duration;
    fn sub(self, earlier: MonoTime) -> Duration {
        self.saturating_since(earlier)
    }
}

impl Sub<Duration> for MonoTime {
    type Output = MonoTime;
    fn sub(self, d: Duration) -> MonoTime {
        self.saturating_sub(d)
    }
}

impl fmt::Debug for MonoTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == MonoTime::NEVER {
            return write!(f, "never");
        }
        write!(
            f,
            "{}.{:06}s",
            self.0 / 1_000_000_000,
            (self.0 / 1_000) % 1_000_000
        )
    }
}

impl fmt::Display for MonoTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A source of [`MonoTime`].
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> MonoTime;
}

/// The host's `CLOCK_BOOTTIME`: monotonic, counts suspend, shared by every
/// process on the host (so a restarted daemon can compare times it saved).
#[derive(Debug, Clone, Copy, Default)]
pub struct RealClock;

impl Clock for RealClock {
    fn now(&self) -> MonoTime {
        let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
        let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
        let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
        MonoTime(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
    }
}

/// A clock that moves only when told to; clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct SimClock {
    nanos: Arc<AtomicU64>,
}

impl SimClock {
    /// A simulated clock at [`MonoTime::ZERO`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward to `t`; never moves it back.
    pub fn advance_to(&self, t: MonoTime) {
        self.nanos.fetch_max(t.0, Ordering::SeqCst);
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let t = self.now().saturating_add(d);
        self.advance_to(t);
    }
}

impl Clock for SimClock {
    fn now(&self) -> MonoTime {
        MonoTime(self.nanos.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_clock_is_monotonic() {
        let c = RealClock;
        let a = c.now();
        let b = c.now();
        assert!(b >= a);
        assert!(a > MonoTime::ZERO);
    }

    #[test]
    fn sim_clock_never_goes_back() {
        let c = SimClock::new();
        c.advance_to(MonoTime::from_millis(10));
        c.advance_to(MonoTime::from_millis(5));
        assert_eq!(c.now(), MonoTime::from_millis(10));
        c.advance(Duration::from_millis(1));
        assert_eq!(c.now().as_millis(), 11);
    }

    #[test]
    fn arithmetic_saturates() {
        let t = MonoTime::from_millis(3);
        assert_eq!(MonoTime::ZERO - t, Duration::ZERO);
        assert_eq!(MonoTime::NEVER + Duration::from_secs(1), MonoTime::NEVER);
        assert_eq!((t + Duration::from_millis(2)).as_millis(), 5);
    }
}
