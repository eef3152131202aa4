//! Compact, injective byte encoding of a [`State`], used for hashing.
//!
//! The checker identifies states by a 64-bit hash, and hashing the derived way (one hasher call
//! per field) dominated the run time. Hashing one short byte string instead is several times
//! cheaper. The encoding must be injective (distinct states give distinct bytes), or distinct
//! states would be merged.

use std::hash::{Hash, Hasher};

use crate::types::{
    Attempt, BallotBlock, HostState, InFlight, LeaderRecord, Mode, Op, OwnerId, State, View, Write,
    MAX_HOSTS,
};

/// Room for the largest encoding (3 hosts with an in-flight block write each, plus the disk).
const CAP: usize = 192;

struct Enc {
    buf: [u8; CAP],
    len: usize,
}

impl Enc {
    fn u8(&mut self, v: u8) {
        self.buf[self.len] = v;
        self.len += 1;
    }

    fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }

    fn owner(&mut self, o: Option<OwnerId>) {
        match o {
            None => self.u8(0),
            Some(o) => {
                self.u8(1);
                self.u8(o.host);
                self.u8(o.gen);
            }
        }
    }

    fn mode(&mut self, m: Option<Mode>) {
        self.u8(match m {
            None => 0,
            Some(Mode::Exclusive) => 1,
            Some(Mode::Shared) => 2,
        });
    }

    fn leader(&mut self, l: &LeaderRecord) {
        self.owner(l.owner);
        self.u8(l.lver);
    }

    fn block(&mut self, b: &BallotBlock) {
        self.u8(b.mbal);
        self.u8(b.bal);
        self.owner(b.inp);
        self.u8(b.lver);
        match b.shared {
            None => self.u8(0),
            Some(g) => {
                self.u8(1);
                self.u8(g);
            }
        }
    }

    fn attempt(&mut self, a: &Attempt) {
        self.mode(Some(a.mode));
        self.owner(a.from);
        self.u8(a.lver);
        self.u8(a.ballot);
    }

    fn op(&mut self, op: &Op) {
        match op {
            Op::Idle => self.u8(0),
            Op::Phase1Write(at) => {
                self.u8(1);
                self.attempt(at);
            }
            Op::Phase1Read { at, next, best } => {
                self.u8(2);
                self.attempt(at);
                self.u8(*next);
                match best {
                    None => self.u8(0),
                    Some((bal, v)) => {
                        self.u8(1);
                        self.u8(*bal);
                        self.owner(Some(*v));
                    }
                }
            }
            Op::Phase2Write { at, value } => {
                self.u8(3);
                self.attempt(at);
                self.owner(Some(*value));
            }
            Op::Phase2Read { at, value, next } => {
                self.u8(4);
                self.attempt(at);
                self.owner(Some(*value));
                self.u8(*next);
            }
            Op::Commit { at, value } => {
                self.u8(5);
                self.attempt(at);
                self.owner(Some(*value));
            }
            Op::SharedCheck { from, next } => {
                self.u8(6);
                self.owner(*from);
                self.u8(*next);
            }
            Op::MarkShared => self.u8(7),
            Op::ReleaseRead { grant_shared } => {
                self.u8(8);
                self.bool(*grant_shared);
            }
            Op::ReleaseWrite { lver, grant_shared } => {
                self.u8(9);
                self.u8(*lver);
                self.bool(*grant_shared);
            }
            Op::ClearMark => self.u8(10),
        }
    }

    fn view(&mut self, v: Option<View>) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                self.u8(v.gen);
                self.u8(v.age);
            }
        }
    }

    fn in_flight(&mut self, f: Option<InFlight>) {
        match f {
            None => self.u8(0),
            Some(InFlight { write, age }) => {
                match write {
                    Write::Leader(l) => {
                        self.u8(1);
                        self.leader(&l);
                    }
                    Write::Block(b) => {
                        self.u8(2);
                        self.block(&b);
                    }
                }
                self.u8(age);
            }
        }
    }

    fn host(&mut self, h: &HostState) {
        // Slots past the configured host count are never touched and stay at generation 0.
        self.u8(h.gen);
        if h.gen == 0 {
            return;
        }
        self.bool(h.up);
        self.u8(h.since_renew);
        self.bool(h.storage_failed);
        self.mode(h.holder);
        self.op(&h.op);
        for j in 0..MAX_HOSTS {
            self.view(h.views[j]);
            self.bool(h.changed[j]);
        }
        self.in_flight(h.in_flight);
    }

    fn state(&mut self, s: &State) {
        for h in &s.hosts {
            self.host(h);
        }
        self.leader(&s.disk.leader);
        for (b, g) in s.disk.blocks.iter().zip(s.disk.host_gen) {
            self.block(b);
            self.u8(g);
        }
        self.u8(s.crashes_left);
        self.u8(s.storage_failures_left);
        self.u8(s.late_writes_left);
        self.bool(s.took_over);
        self.bool(s.early_takeover);
    }
}

impl Hash for State {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut e = Enc {
            buf: [0; CAP],
            len: 0,
        };
        e.state(self);
        state.write(&e.buf[..e.len]);
    }
}
