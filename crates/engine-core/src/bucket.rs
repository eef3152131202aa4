//! The global restart rate limit: a token bucket with time passed in.
//! `rate` tokens per second, holding at most one second's worth (at least
//! one token); rate 0 means no limit. The rate can change at run time:
//! tokens earned at the old rate are kept, capped at the new size.

use std::time::Duration;

use nosplit_clock::MonoTime;

/// One token, in the bucket's unit (nano-tokens).
const ONE: u64 = 1_000_000_000;

/// A token bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    rate: u32,
    nano_tokens: u64,
    last: MonoTime,
}

fn capacity(rate: u32) -> u64 {
    u64::from(rate.max(1)).saturating_mul(ONE)
}

impl TokenBucket {
    /// A full bucket of `rate` per second (0 = no limit).
    pub fn new(rate: u32, now: MonoTime) -> TokenBucket {
        TokenBucket {
            rate,
            nano_tokens: capacity(rate),
            last: now,
        }
    }

    /// The rate (0 = no limit).
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Changes the rate at `now`.
    pub fn set_rate(&mut self, rate: u32, now: MonoTime) {
        self.refill(now);
        if self.rate == 0 {
            self.nano_tokens = capacity(rate);
        }
        self.rate = rate;
        self.nano_tokens = self.nano_tokens.min(capacity(rate));
    }

    fn refill(&mut self, now: MonoTime) {
        if now <= self.last {
            return;
        }
        let elapsed = u128::from(now.as_nanos() - self.last.as_nanos());
        let add = elapsed.saturating_mul(u128::from(self.rate));
        let add = u64::try_from(add).unwrap_or(u64::MAX);
        self.nano_tokens = self
            .nano_tokens
            .saturating_add(add)
            .min(capacity(self.rate));
        self.last = now;
    }

    /// Whether a token is there at `now` (always, without a limit).
    pub fn available(&mut self, now: MonoTime) -> bool {
        self.refill(now);
        self.rate == 0 || self.nano_tokens >= ONE
    }

    /// Takes one token if there is one (always, without a limit).
    pub fn try_take(&mut self, now: MonoTime) -> bool {
        if self.rate == 0 {
            return true;
        }
        self.refill(now);
        if self.nano_tokens >= ONE {
            self.nano_tokens -= ONE;
            true
        } else {
            false
        }
    }

    /// When the next token is there (`None` without a limit: always).
    pub fn next_token_at(&self) -> Option<MonoTime> {
        if self.rate == 0 {
            return None;
        }
        if self.nano_tokens >= ONE {
            return Some(self.last);
        }
        let need = ONE - self.nano_tokens;
        let ns = need.div_ceil(u64::from(self.rate));
        Some(self.last + Duration::from_nanos(ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> MonoTime {
        MonoTime::from_millis(v)
    }

    fn take_all(b: &mut TokenBucket, now: MonoTime) -> u32 {
        let mut n = 0;
        while b.try_take(now) {
            n += 1;
        }
        n
    }

    #[test]
    fn starts_full_then_refills_at_the_rate() {
        let mut b = TokenBucket::new(20, ms(0));
        assert_eq!(take_all(&mut b, ms(0)), 20);
        assert_eq!(take_all(&mut b, ms(49)), 0);
        assert_eq!(take_all(&mut b, ms(50)), 1);
        assert_eq!(take_all(&mut b, ms(550)), 10);
        // Never more than one second's worth.
        assert_eq!(take_all(&mut b, ms(60_000)), 20);
    }

    #[test]
    fn next_token_time_is_exact() {
        let mut b = TokenBucket::new(4, ms(0));
        assert_eq!(take_all(&mut b, ms(0)), 4);
        assert_eq!(b.next_token_at(), Some(ms(250)));
        assert!(!b.try_take(ms(249)));
        assert!(b.try_take(ms(250)));
    }

    #[test]
    fn zero_means_no_limit_and_rate_changes_at_run_time() {
        let mut b = TokenBucket::new(0, ms(0));
        assert_eq!(b.next_token_at(), None);
        for _ in 0..10_000 {
            assert!(b.try_take(ms(0)));
        }
        b.set_rate(2, ms(0));
        assert_eq!(take_all(&mut b, ms(0)), 2);
        b.set_rate(100, ms(500));
        // 0.5 s at the old rate earned one token; the new rate applies from now.
        assert_eq!(take_all(&mut b, ms(500)), 1);
        assert_eq!(take_all(&mut b, ms(510)), 1);
        b.set_rate(1, ms(510));
        assert_eq!(take_all(&mut b, ms(1000)), 0);
        assert_eq!(take_all(&mut b, ms(1510)), 1);
    }
}
