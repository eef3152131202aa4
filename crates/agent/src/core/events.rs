//! The agent's event log: numbered events, kept in a bounded ring, with a
//! wait for the next one (the API's long poll).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::model::AgentEvent;

/// Events kept for late readers.
const KEEP: usize = 4096;

/// A bounded, numbered event log.
#[derive(Debug)]
pub struct EventLog {
    start: Instant,
    inner: Mutex<(u64, VecDeque<AgentEvent>)>,
    cond: Condvar,
}

impl EventLog {
    /// An empty log.
    pub fn new(start: Instant) -> EventLog {
        EventLog {
            start,
            inner: Mutex::new((0, VecDeque::new())),
            cond: Condvar::new(),
        }
    }

    /// Appends an event (also to stderr, the agent's log).
    pub fn push(&self, kind: &str, vm: Option<&str>, detail: impl Into<String>) {
        let detail = detail.into();
        eprintln!("agent: {kind} {} {detail}", vm.unwrap_or("-"));
        let Ok(mut g) = self.inner.lock() else { return };
        g.0 += 1;
        let ev = AgentEvent {
            seq: g.0,
            at_ms: u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX),
            kind: kind.to_string(),
            vm: vm.map(str::to_string),
            detail,
        };
        g.1.push_back(ev);
        while g.1.len() > KEEP {
            g.1.pop_front();
        }
        self.cond.notify_all();
    }

    /// Events after `after`, waiting up to `wait` for one.
    pub fn since(&self, after: u64, wait: Duration) -> Vec<AgentEvent> {
        let deadline = Instant::now() + wait;
        let Ok(mut g) = self.inner.lock() else {
            return Vec::new();
        };
        loop {
            let out: Vec<AgentEvent> = g.1.iter().filter(|e| e.seq > after).cloned().collect();
            let now = Instant::now();
            if !out.is_empty() || now >= deadline {
                return out;
            }
            match self.cond.wait_timeout(g, deadline - now) {
                Ok((ng, _)) => g = ng,
                Err(_) => return Vec::new(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_the_next_event_and_filters_by_sequence() {
        let log = std::sync::Arc::new(EventLog::new(Instant::now()));
        log.push("a", None, "1");
        assert_eq!(log.since(0, Duration::ZERO).len(), 1);
        assert!(log.since(1, Duration::from_millis(20)).is_empty());
        let l2 = log.clone();
        let t = std::thread::spawn(move || l2.since(1, Duration::from_secs(5)));
        std::thread::sleep(Duration::from_millis(50));
        log.push("b", Some("vm1"), "2");
        let got = t.join().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].kind, "b");
        assert_eq!(got[0].seq, 2);
    }
}
