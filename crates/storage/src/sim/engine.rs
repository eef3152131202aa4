//! The simulated disk's engine: the event timeline, fault sampling at
//! submit, and applying completions, landings and crashes in time order.
//! The public face is in the parent module.

use super::Faults;
use crate::{
    AlignedBuf, IoCompletion, IoError, IoId, IoOk, IoOp, IoRequest, IoStats, MonoTime, SectorSize,
};
use nosplit_clock::SimClock;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};

/// Something scheduled on the simulated timeline.
#[derive(Debug)]
pub(super) enum Event {
    /// The media finishes a request; its caller gets the result. `write` is
    /// a write's token: the write is finished.
    Complete {
        handle: usize,
        id: IoId,
        op: IoOp,
        fail: Option<&'static str>,
        write: Option<u64>,
    },
    /// The caller's deadline passes first; it gets `TimedOut`. `finishes`
    /// is the token of a write that is certain never to land.
    Timeout {
        handle: usize,
        id: IoId,
        finishes: Option<u64>,
    },
    /// A write reaches the media with no caller waiting; it is finished.
    Land {
        handle: usize,
        offset: u64,
        data: AlignedBuf,
        write: u64,
    },
}

impl Event {
    pub(super) fn handle(&self) -> usize {
        match self {
            Event::Complete { handle, .. }
            | Event::Timeout { handle, .. }
            | Event::Land { handle, .. } => *handle,
        }
    }

    /// Whether this event hands the caller a completion.
    pub(super) fn completes(&self) -> bool {
        !matches!(self, Event::Land { .. })
    }
}

/// A write of one handle not yet finished: bytes `[start, end)`.
#[derive(Debug)]
pub(super) struct Unfinished {
    start: u64,
    end: u64,
    token: u64,
    /// Parked by `hang` with no landing scheduled: finished (never landing)
    /// when the hang is lifted or the host powers off.
    parked: bool,
}

#[derive(Debug)]
pub(super) struct HandleState {
    pub(super) name: String,
    pub(super) faults: Faults,
    pub(super) powered: bool,
    pub(super) ready: VecDeque<IoCompletion>,
    pub(super) stats: IoStats,
    /// Latest completion time scheduled, for in-order completion.
    pub(super) last_completion: MonoTime,
    /// Writes not yet finished, which overlapping writes may not overtake.
    pub(super) unfinished: Vec<Unfinished>,
    /// The late-write settings [`StallWrites`](crate::conformance::StallWrites)
    /// replaced, while it is on.
    pub(super) unstalled: Option<(f64, std::time::Duration)>,
}

pub(super) struct Inner {
    pub(super) data: Vec<u8>,
    pub(super) rng: ChaCha8Rng,
    pub(super) handles: Vec<HandleState>,
    pub(super) events: BTreeMap<(MonoTime, u64), Event>,
    pub(super) next_seq: u64,
    /// Token of the next write.
    pub(super) next_write: u64,
}

/// Byte range `[offset, offset + len)` clamped to a buffer of `size` bytes.
fn clamp_range(offset: u64, len: usize, size: usize) -> std::ops::Range<usize> {
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(size);
    let end = start.saturating_add(len).min(size);
    start..end
}

/// A uniform draw in `[0, 1)` compared with `p` (NaN and negatives never,
/// 1 and above always). Always draws, so the stream does not depend on `p`.
fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    let r: f64 = rng.gen();
    r < p
}

impl Inner {
    pub(super) fn handle_index(&mut self, name: &str) -> usize {
        if let Some(i) = self.handles.iter().position(|h| h.name == name) {
            return i;
        }
        self.handles.push(HandleState {
            name: name.to_string(),
            faults: Faults::default(),
            powered: true,
            ready: VecDeque::new(),
            stats: IoStats::default(),
            last_completion: MonoTime::ZERO,
            unfinished: Vec::new(),
            unstalled: None,
        });
        self.handles.len() - 1
    }

    /// Sets a host's faults. Lifting a hang finishes the writes it parked
    /// without a landing: they never land.
    pub(super) fn set_faults(&mut self, handle: usize, faults: Faults) {
        let h = &mut self.handles[handle];
        if h.faults.hang && !faults.hang {
            h.unfinished.retain(|w| !w.parked);
        }
        h.faults = faults;
    }

    /// The write with `token` of `handle` is finished.
    fn finish_write(&mut self, handle: usize, token: u64) {
        let w = &mut self.handles[handle].unfinished;
        if let Some(i) = w.iter().position(|w| w.token == token) {
            w.swap_remove(i);
        }
    }

    pub(super) fn schedule(&mut self, at: MonoTime, ev: Event) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.events.insert((at, seq), ev);
    }

    pub(super) fn store(&mut self, offset: u64, data: &[u8]) {
        let r = clamp_range(offset, data.len(), self.data.len());
        let n = r.len();
        self.data[r].copy_from_slice(&data[..n]);
    }

    pub(super) fn load(&self, offset: u64, len: usize) -> AlignedBuf {
        let mut buf = AlignedBuf::zeroed(len);
        let r = clamp_range(offset, len, self.data.len());
        let n = r.len();
        buf[..n].copy_from_slice(&self.data[r]);
        buf
    }

    pub(super) fn apply(&mut self, ev: Event) {
        match ev {
            Event::Complete {
                handle,
                id,
                op,
                fail,
                write,
            } => {
                if let Some(token) = write {
                    self.finish_write(handle, token);
                }
                let result = match (fail, op) {
                    (Some(why), _) => Err(IoError::Injected(why)),
                    (None, IoOp::Read { offset, len }) => {
                        let buf = self.load(offset, len);
                        self.handles[handle].stats.count(false, len);
                        Ok(IoOk::Read(buf))
                    }
                    (None, IoOp::Write { offset, data }) => {
                        self.store(offset, &data);
                        self.handles[handle].stats.count(true, data.len());
                        Ok(IoOk::Written)
                    }
                };
                self.handles[handle]
                    .ready
                    .push_back(IoCompletion { id, result });
            }
            Event::Timeout {
                handle,
                id,
                finishes,
            } => {
                if let Some(token) = finishes {
                    self.finish_write(handle, token);
                }
                self.handles[handle].ready.push_back(IoCompletion {
                    id,
                    result: Err(IoError::TimedOut),
                });
            }
            Event::Land {
                handle,
                offset,
                data,
                write,
            } => {
                self.finish_write(handle, write);
                self.store(offset, &data);
                self.handles[handle].stats.count(true, data.len());
            }
        }
    }

    /// Applies, in time order, every event due by `t`, moving the clock
    /// along; then moves the clock to `t`.
    pub(super) fn advance_to(&mut self, clock: &SimClock, t: MonoTime) {
        while let Some(entry) = self.events.first_entry() {
            let at = entry.key().0;
            if at > t {
                break;
            }
            let ev = entry.remove();
            clock.advance_to(at);
            self.apply(ev);
        }
        clock.advance_to(t);
    }

    pub(super) fn submit(
        &mut self,
        handle: usize,
        now: MonoTime,
        sector: SectorSize,
        req: IoRequest,
    ) {
        let IoRequest { id, op, deadline } = req;
        let size = self.data.len() as u64;
        let h = &self.handles[handle];
        if !h.powered {
            let result = Err(IoError::Injected("powered off"));
            self.handles[handle]
                .ready
                .push_back(IoCompletion { id, result });
            return;
        }
        if let Err(e) = op.validate(sector, size) {
            self.handles[handle]
                .ready
                .push_back(IoCompletion { id, result: Err(e) });
            return;
        }
        let write = op.is_write();
        // A write never overtakes an unfinished overlapping one of this
        // host; checked before any draw, so a refusal consumes no
        // randomness.
        let token = if write {
            let (offset, len) = (op.offset(), op.len());
            // Validated: in bounds, so no overflow.
            let (start, end) = (offset, offset + len as u64);
            if h.unfinished.iter().any(|w| w.start < end && start < w.end) {
                let result = Err(IoError::WriteInFlight { offset, len });
                self.handles[handle]
                    .ready
                    .push_back(IoCompletion { id, result });
                return;
            }
            let token = self.next_write;
            self.next_write += 1;
            self.handles[handle].unfinished.push(Unfinished {
                start,
                end,
                token,
                parked: false,
            });
            Some(token)
        } else {
            None
        };
        let h = &self.handles[handle];
        let f = h.faults.clone();

        // Fixed draw order, whatever the outcome.
        let (lo, hi) = (
            f.min_latency.min(f.max_latency),
            f.max_latency.max(f.min_latency),
        );
        let latency = if lo == hi {
            lo
        } else {
            self.rng.gen_range(lo..=hi)
        };
        let fail = chance(
            &mut self.rng,
            if write {
                f.write_error_rate
            } else {
                f.read_error_rate
            },
        );
        let late = chance(&mut self.rng, f.late_write_rate) && write;

        let timeout_at = deadline.max(now);
        let late_land_at = deadline + f.late_write_delay;
        if f.hang {
            self.schedule(
                timeout_at,
                Event::Timeout {
                    handle,
                    id,
                    finishes: None,
                },
            );
            if let Some(write) = token {
                if late {
                    let (offset, data) = write_parts(op);
                    self.schedule(
                        late_land_at,
                        Event::Land {
                            handle,
                            offset,
                            data,
                            write,
                        },
                    );
                } else if let Some(w) = self.handles[handle]
                    .unfinished
                    .iter_mut()
                    .find(|w| w.token == write)
                {
                    w.parked = true;
                }
            }
            return;
        }

        let mut done_at = now + latency;
        if !f.reorder {
            let h = &mut self.handles[handle];
            done_at = done_at.max(h.last_completion);
            h.last_completion = done_at;
        }
        if fail {
            let why = if write { "write error" } else { "read error" };
            if done_at <= deadline {
                self.schedule(
                    done_at,
                    Event::Complete {
                        handle,
                        id,
                        op,
                        fail: Some(why),
                        write: token,
                    },
                );
            } else {
                // A failing write never lands: finished for ordering's
                // sake when its caller gives up.
                self.schedule(
                    timeout_at,
                    Event::Timeout {
                        handle,
                        id,
                        finishes: token,
                    },
                );
            }
        } else if let (true, Some(write)) = (late, token) {
            self.schedule(
                timeout_at,
                Event::Timeout {
                    handle,
                    id,
                    finishes: None,
                },
            );
            let (offset, data) = write_parts(op);
            self.schedule(
                late_land_at,
                Event::Land {
                    handle,
                    offset,
                    data,
                    write,
                },
            );
        } else if done_at > deadline {
            self.schedule(
                timeout_at,
                Event::Timeout {
                    handle,
                    id,
                    finishes: None,
                },
            );
            if let Some(write) = token {
                let (offset, data) = write_parts(op);
                self.schedule(
                    done_at,
                    Event::Land {
                        handle,
                        offset,
                        data,
                        write,
                    },
                );
            }
        } else {
            self.schedule(
                done_at,
                Event::Complete {
                    handle,
                    id,
                    op,
                    fail: None,
                    write: token,
                },
            );
        }
    }

    pub(super) fn power_off(&mut self, handle: usize) {
        self.handles[handle].powered = false;
        self.handles[handle].ready.clear();
        // Every write of the host lands or is lost right here.
        self.handles[handle].unfinished.clear();
        let keys: Vec<_> = self
            .events
            .iter()
            .filter(|(_, e)| e.handle() == handle)
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            let Some(ev) = self.events.remove(&k) else {
                continue;
            };
            let (offset, data) = match ev {
                Event::Complete {
                    op: IoOp::Write { offset, data },
                    fail: None,
                    ..
                } => (offset, data),
                Event::Land { offset, data, .. } => (offset, data),
                _ => continue,
            };
            // The crash happened before or after this write reached the
            // platter; either is possible.
            if self.rng.gen_bool(0.5) {
                self.store(offset, &data);
                self.handles[handle].stats.count(true, data.len());
            }
        }
    }
}

fn write_parts(op: IoOp) -> (u64, AlignedBuf) {
    match op {
        IoOp::Write { offset, data } => (offset, data),
        IoOp::Read { offset, .. } => (offset, AlignedBuf::zeroed(0)),
    }
}
