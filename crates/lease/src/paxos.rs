//! Resource leases by Disk Paxos: exclusive and shared acquire, release and
//! inquire, as one-shot pure state machines ([`ResourceOp`]).
//!
//! An acquire reads the whole lease (leader, request, ballots) in one I/O.
//! If the leader names a live owner it fails at once; if the owner is dead
//! (judged from a fresh read of its host slot against this host's
//! [`HostView`]) or the lease is free, it runs a Disk Paxos ballot for
//! version `lver + 1`: write own block, read all blocks, write own block
//! with the chosen value, read all blocks, then write the leader. Only the
//! ballot winner writes the leader, for its own version (no "repair"
//! writes), so a late leader write can only roll the leader back to an
//! older version, which the next ballot corrects.
//!
//! Shared mode: win the ballot, set this host's shared mark in its own
//! block, write the leader as free at the won version. An exclusive winner
//! that finds a live shared mark gives the lease back and fails.

use std::time::Duration;

use nosplit_clock::MonoTime;

use crate::format::{
    is_blank, Ballot, FormatError, Geometry, HostSlot, Leader, Name, OwnerId, Request,
};
use crate::io::{Area, IdGen, Input, IoCmd, IoKind, IoOutcome};
use crate::timing::Timing;
use crate::view::{HostView, Liveness};

/// Exclusive or shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseMode {
    /// One holder.
    Exclusive,
    /// Any number of shared holders, no exclusive one.
    Shared,
}

/// Which resource, in which lockspace, with which geometry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceSpec {
    /// Lockspace name.
    pub lockspace: Name,
    /// Resource name.
    pub resource: Name,
    /// Geometry (the lockspace's).
    pub geometry: Geometry,
}

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// Acquire.
    Acquire {
        /// Mode.
        mode: LeaseMode,
        /// Fail unless the lease version is this one.
        expect_lver: Option<u64>,
        /// If we already own it, run a fresh ballot anyway to prove it (used
        /// to revalidate after a storage outage before resuming a holder).
        revalidate: bool,
    },
    /// Release.
    Release {
        /// Mode.
        mode: LeaseMode,
    },
    /// Read and report.
    Inquire,
}

/// Everything read from a lease.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaseInfo {
    /// The leader record.
    pub leader: Leader,
    /// The request record, if any.
    pub request: Option<Request>,
    /// Every non-blank ballot block.
    pub ballots: Vec<Ballot>,
    /// Shared marks: (host id, generation).
    pub shared: Vec<OwnerId>,
}

/// Success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// Held, at this lease version.
    Acquired {
        /// Lease version.
        lver: u64,
        /// Mode.
        mode: LeaseMode,
        /// We already held it; nothing was written.
        already: bool,
    },
    /// Released.
    Released,
    /// Inquired.
    Info(Box<LeaseInfo>),
}

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// A sector does not decode.
    #[error("corrupted lease: {0}")]
    Corrupt(FormatError),
    /// The leader names another resource or lockspace, or another geometry.
    #[error("not the expected lease: {0}")]
    Mismatch(String),
    /// Owned by a host that may still be alive.
    #[error("lease is held by {owner} ({state}){}", retry_hint(*.dead_in))]
    Busy {
        /// The owner.
        owner: OwnerId,
        /// Its liveness as seen from here.
        state: Liveness,
        /// How long until it is DEAD if its host lease stays unchanged.
        dead_in: Option<Duration>,
    },
    /// Live shared holders prevent an exclusive acquire.
    #[error("lease is held shared by {0:?}")]
    BusyShared(Vec<OwnerId>),
    /// The lease version is not the expected one.
    #[error("lease version is {found}, expected {expected}")]
    VersionMismatch {
        /// Asked for.
        expected: u64,
        /// On disk.
        found: u64,
    },
    /// Release of a lease we do not own.
    #[error("lease is not held by us (owner: {0:?})")]
    NotOwner(Option<OwnerId>),
    /// We hold it in the other mode.
    #[error("lease is already held by us in {0:?} mode")]
    OtherMode(LeaseMode),
    /// Lost the ballot too many times to other acquirers.
    #[error("gave up after {0} contended ballots")]
    Contended(u32),
    /// I/O failed.
    #[error("I/O failed: {0}")]
    Io(String),
}

fn retry_hint(dead_in: Option<Duration>) -> String {
    dead_in
        .map(|d| {
            format!(
                "; if its host lease stays unchanged it is dead in {:.1} s",
                d.as_secs_f64()
            )
        })
        .unwrap_or_default()
}

/// Output of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpOutput {
    /// Perform this I/O.
    Io(IoCmd),
    /// The operation finished.
    Done(Result<OpResult, LeaseError>),
}

#[derive(Debug, Clone)]
struct Snapshot {
    leader: Leader,
    ballots: Vec<Ballot>,
}

#[derive(Debug, Clone)]
enum Phase {
    Start,
    ReadAll,
    OwnerSlot {
        snap: Snapshot,
        owner: OwnerId,
        issued: MonoTime,
    },
    Phase1 {
        lver: u64,
        mbal: u64,
        written: bool,
    },
    Phase2 {
        lver: u64,
        mbal: u64,
        value: OwnerId,
        written: bool,
    },
    SharedCheck {
        lver: u64,
        marks: Vec<OwnerId>,
        issued: MonoTime,
    },
    Commit {
        lver: u64,
        then: Then,
    },
    Mark {
        lver: u64,
    },
    Backoff {
        until: MonoTime,
    },
    ReleaseRead,
    ReleaseWrite,
    Finished,
}

#[derive(Debug, Clone)]
enum Then {
    Acquired,
    BusyShared(Vec<OwnerId>),
}

const MAX_ATTEMPTS: u32 = 20;

/// One acquire, release or inquire.
#[derive(Debug, Clone)]
pub struct ResourceOp {
    spec: ResourceSpec,
    me: OwnerId,
    kind: OpKind,
    timing: Timing,
    ids: IdGen,
    phase: Phase,
    pending: Option<(u64, MonoTime)>,
    own: Ballot,
    attempts: u32,
    rng: u64,
}

impl ResourceOp {
    /// A new operation by `me`. `seed` drives the contention backoff.
    pub fn new(spec: ResourceSpec, me: OwnerId, kind: OpKind, timing: Timing, seed: u64) -> Self {
        ResourceOp {
            own: Ballot::blank(me.host_id),
            spec,
            me,
            kind,
            timing,
            ids: IdGen::default(),
            phase: Phase::Start,
            pending: None,
            attempts: 0,
            rng: seed | 1,
        }
    }

    /// The earliest time the operation wants a `Tick`.
    pub fn next_wakeup(&self) -> MonoTime {
        match (&self.phase, self.pending) {
            (Phase::Start, _) => MonoTime::ZERO,
            (Phase::Backoff { until }, _) => *until,
            (_, Some((_, deadline))) => deadline,
            _ => MonoTime::NEVER,
        }
    }

    /// Finished?
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Finished)
    }

    /// Advances the operation. `view` is this host's liveness view; fresh
    /// reads of host slots made here are recorded in it.
    pub fn step(&mut self, input: Input, now: MonoTime, view: &mut HostView) -> Vec<OpOutput> {
        let mut out = Vec::new();
        match input {
            Input::Done(d) if self.pending.is_some_and(|(id, _)| id == d.id) => {
                self.pending = None;
                self.on_done(d.outcome, now, view, &mut out);
            }
            Input::Done(_) => {} // late completion of an abandoned I/O
            Input::Tick => {
                if let Some((_, deadline)) = self.pending {
                    if now >= deadline {
                        self.pending = None;
                        self.finish(&mut out, Err(LeaseError::Io("I/O deadline passed".into())));
                    }
                }
            }
        }
        match self.phase {
            Phase::Start => self.start(now, &mut out),
            Phase::Backoff { until } if now >= until => self.start(now, &mut out),
            _ => {}
        }
        out
    }

    fn s(&self) -> usize {
        self.spec.geometry.sector()
    }

    fn io(
        &mut self,
        out: &mut Vec<OpOutput>,
        now: MonoTime,
        area: Area,
        offset: u64,
        kind: IoKind,
    ) {
        let id = self.ids.next();
        let deadline = now + self.timing.io_timeout;
        self.pending = Some((id, deadline));
        out.push(OpOutput::Io(IoCmd {
            id,
            area,
            offset,
            kind,
            deadline,
        }));
    }

    fn finish(&mut self, out: &mut Vec<OpOutput>, r: Result<OpResult, LeaseError>) {
        self.phase = Phase::Finished;
        out.push(OpOutput::Done(r));
    }

    fn start(&mut self, now: MonoTime, out: &mut Vec<OpOutput>) {
        match self.kind {
            OpKind::Release {
                mode: LeaseMode::Exclusive,
            } => {
                self.phase = Phase::ReleaseRead;
                self.io(out, now, Area::Resource, 0, IoKind::Read(self.s()));
            }
            OpKind::Release {
                mode: LeaseMode::Shared,
            } => {
                self.phase = Phase::ReleaseRead;
                let off = self.spec.geometry.ballot_offset(self.me.host_id);
                self.io(out, now, Area::Resource, off, IoKind::Read(self.s()));
            }
            _ => {
                self.phase = Phase::ReadAll;
                let len = self.spec.geometry.resource_used_len();
                self.io(out, now, Area::Resource, 0, IoKind::Read(len));
            }
        }
    }

    fn write_own(&mut self, out: &mut Vec<OpOutput>, now: MonoTime) {
        let mut buf = vec![0u8; self.s()];
        self.own.encode(&mut buf);
        let off = self.spec.geometry.ballot_offset(self.me.host_id);
        self.io(out, now, Area::Resource, off, IoKind::Write(buf));
    }

    fn write_leader(
        &mut self,
        out: &mut Vec<OpOutput>,
        now: MonoTime,
        lver: u64,
        owner: Option<OwnerId>,
    ) {
        let leader = Leader {
            lver,
            owner,
            writer: Some(self.me),
            write_time_ms: now.as_millis(),
            ..self.dummy_leader()
        };
        let mut buf = vec![0u8; self.s()];
        leader.encode(&mut buf);
        self.io(out, now, Area::Resource, 0, IoKind::Write(buf));
    }

    fn read_ballots(&mut self, out: &mut Vec<OpOutput>, now: MonoTime) {
        let g = self.spec.geometry;
        let len = g.max_hosts() as usize * self.s();
        self.io(
            out,
            now,
            Area::Resource,
            g.ballot_offset(1),
            IoKind::Read(len),
        );
    }

    fn check_leader(&self, buf: &[u8]) -> Result<Leader, LeaseError> {
        let leader = Leader::decode(buf).map_err(LeaseError::Corrupt)?;
        let spec = &self.spec;
        if leader.lockspace != spec.lockspace || leader.resource != spec.resource {
            return Err(LeaseError::Mismatch(format!(
                "leader is {}/{}, expected {}/{}",
                leader.lockspace, leader.resource, spec.lockspace, spec.resource
            )));
        }
        if leader.geometry != spec.geometry {
            return Err(LeaseError::Mismatch(format!(
                "lease geometry {:?} differs from the lockspace's {:?}",
                leader.geometry, spec.geometry
            )));
        }
        Ok(leader)
    }

    fn decode_ballots(&self, buf: &[u8]) -> Result<Vec<Ballot>, LeaseError> {
        let g = &self.spec.geometry;
        buf.chunks_exact(self.s())
            .take(g.max_hosts() as usize)
            .enumerate()
            .map(|(i, s)| {
                let host = u32::try_from(i + 1).unwrap_or(u32::MAX);
                Ballot::decode(s, host, g).map_err(LeaseError::Corrupt)
            })
            .collect()
    }

    fn on_done(
        &mut self,
        o: IoOutcome,
        now: MonoTime,
        view: &mut HostView,
        out: &mut Vec<OpOutput>,
    ) {
        let data = match o {
            IoOutcome::Failed(e) => return self.finish(out, Err(LeaseError::Io(e))),
            IoOutcome::Read(b) => Some(b),
            IoOutcome::Written => None,
        };
        let r = self.advance(data, now, view, out);
        if let Err(e) = r {
            self.finish(out, Err(e));
        }
    }

    fn advance(
        &mut self,
        data: Option<Vec<u8>>,
        now: MonoTime,
        view: &mut HostView,
        out: &mut Vec<OpOutput>,
    ) -> Result<(), LeaseError> {
        let buf = data.unwrap_or_default();
        let phase = std::mem::replace(&mut self.phase, Phase::Finished);
        match phase {
            Phase::ReadAll => {
                let s = self.s();
                let leader = self.check_leader(&buf[..s.min(buf.len())])?;
                let ballots = self.decode_ballots(buf.get(2 * s..).unwrap_or(&[]))?;
                if let OpKind::Inquire = self.kind {
                    // Only inquire reports the request record; no acquire or
                    // release depends on it, so a damaged one blocks neither.
                    let request = Request::decode(buf.get(s..2 * s).unwrap_or(&[]))
                        .map_err(LeaseError::Corrupt)?;
                    let shared = shared_marks(&ballots, None);
                    let ballots = ballots
                        .into_iter()
                        .filter(|b| *b != Ballot::blank(b.host_id))
                        .collect();
                    let info = LeaseInfo {
                        leader,
                        request,
                        ballots,
                        shared,
                    };
                    self.finish(out, Ok(OpResult::Info(Box::new(info))));
                    return Ok(());
                }
                self.decide(Snapshot { leader, ballots }, now, out)
            }
            Phase::OwnerSlot {
                snap,
                owner,
                issued,
            } => {
                let slot = if is_blank(&buf) {
                    None
                } else {
                    Some(HostSlot::decode(&buf, owner.host_id).map_err(LeaseError::Corrupt)?)
                };
                view.observe(owner.host_id, slot.clone(), issued, now);
                match incarnation_state(owner, slot.as_ref(), view, &self.timing) {
                    Ok(()) => self.ballot(snap, now, out),
                    Err(state) => Err(LeaseError::Busy {
                        owner,
                        state,
                        dead_in: view.dead_at(owner.host_id, &self.timing).map(|t| t - now),
                    }),
                }
            }
            Phase::Phase1 {
                lver,
                mbal,
                written: false,
            } => {
                self.phase = Phase::Phase1 {
                    lver,
                    mbal,
                    written: true,
                };
                self.read_ballots(out, now);
                Ok(())
            }
            Phase::Phase1 {
                lver,
                mbal,
                written: true,
            } => {
                let ballots = self.decode_ballots(&buf)?;
                if self.contended(&ballots, lver, mbal, now)? {
                    return Ok(());
                }
                let value = ballots
                    .iter()
                    .filter(|b| b.lver == lver && b.bal > 0)
                    .max_by_key(|b| b.bal)
                    .and_then(|b| b.inp)
                    .unwrap_or(self.me);
                self.own = Ballot {
                    lver,
                    mbal,
                    bal: mbal,
                    inp: Some(value),
                    ..self.own
                };
                self.phase = Phase::Phase2 {
                    lver,
                    mbal,
                    value,
                    written: false,
                };
                self.write_own(out, now);
                Ok(())
            }
            Phase::Phase2 {
                lver,
                mbal,
                value,
                written: false,
            } => {
                self.phase = Phase::Phase2 {
                    lver,
                    mbal,
                    value,
                    written: true,
                };
                self.read_ballots(out, now);
                Ok(())
            }
            Phase::Phase2 {
                lver,
                mbal,
                value,
                written: true,
            } => {
                let ballots = self.decode_ballots(&buf)?;
                if self.contended(&ballots, lver, mbal, now)? {
                    return Ok(());
                }
                self.chosen(lver, value, ballots, now, out)
            }
            Phase::SharedCheck {
                lver,
                marks,
                issued,
            } => {
                let live = live_marks(&buf, &marks, self.s(), issued, now, view, &self.timing)?;
                if live.is_empty() {
                    self.commit(out, now, lver, Some(self.me), Then::Acquired);
                } else {
                    self.commit(out, now, lver, None, Then::BusyShared(live));
                }
                Ok(())
            }
            Phase::Commit { lver, then } => {
                match then {
                    Then::Acquired => {
                        let mode = self.mode();
                        self.finish(
                            out,
                            Ok(OpResult::Acquired {
                                lver,
                                mode,
                                already: false,
                            }),
                        );
                    }
                    Then::BusyShared(live) => self.finish(out, Err(LeaseError::BusyShared(live))),
                }
                Ok(())
            }
            Phase::Mark { lver } => {
                // Mark written; now hand the exclusive ballot back.
                self.commit(out, now, lver, None, Then::Acquired);
                Ok(())
            }
            Phase::ReleaseRead => self.release_read(&buf, now, out),
            Phase::ReleaseWrite => {
                self.finish(out, Ok(OpResult::Released));
                Ok(())
            }
            Phase::Start | Phase::Backoff { .. } | Phase::Finished => Ok(()),
        }
    }

    fn mode(&self) -> LeaseMode {
        match self.kind {
            OpKind::Acquire { mode, .. } | OpKind::Release { mode } => mode,
            OpKind::Inquire => LeaseMode::Exclusive,
        }
    }

    fn decide(
        &mut self,
        snap: Snapshot,
        now: MonoTime,
        out: &mut Vec<OpOutput>,
    ) -> Result<(), LeaseError> {
        let OpKind::Acquire {
            mode,
            expect_lver,
            revalidate,
        } = self.kind
        else {
            return Ok(());
        };
        let leader = &snap.leader;
        if let Some(expected) = expect_lver {
            if leader.lver != expected {
                return Err(LeaseError::VersionMismatch {
                    expected,
                    found: leader.lver,
                });
            }
        }
        let own = snap
            .ballots
            .get(self.me.host_id as usize - 1)
            .copied()
            .unwrap_or(Ballot::blank(self.me.host_id));
        self.own = own;
        let mine_shared = own.shared == Some(self.me.generation);
        match (leader.owner, mode) {
            (Some(o), LeaseMode::Exclusive) if o == self.me && !revalidate => {
                self.finish(
                    out,
                    Ok(OpResult::Acquired {
                        lver: leader.lver,
                        mode,
                        already: true,
                    }),
                );
                return Ok(());
            }
            (Some(o), LeaseMode::Shared) if o == self.me => {
                return Err(LeaseError::OtherMode(LeaseMode::Exclusive))
            }
            _ => {}
        }
        if mine_shared {
            if mode == LeaseMode::Shared {
                self.finish(
                    out,
                    Ok(OpResult::Acquired {
                        lver: leader.lver,
                        mode,
                        already: true,
                    }),
                );
                return Ok(());
            }
            return Err(LeaseError::OtherMode(LeaseMode::Shared));
        }
        match leader.owner {
            Some(o) if o != self.me => {
                let off = u64::from(o.host_id) * u64::from(self.spec.geometry.sector_size());
                self.phase = Phase::OwnerSlot {
                    snap,
                    owner: o,
                    issued: now,
                };
                self.io(out, now, Area::Lockspace, off, IoKind::Read(self.s()));
                Ok(())
            }
            _ => self.ballot(snap, now, out),
        }
    }

    fn ballot(
        &mut self,
        snap: Snapshot,
        now: MonoTime,
        out: &mut Vec<OpOutput>,
    ) -> Result<(), LeaseError> {
        let lver = snap.leader.lver + 1;
        let max_hosts = u64::from(self.spec.geometry.max_hosts());
        let seen = snap.ballots.iter().map(|b| b.mbal).max().unwrap_or(0);
        let mbal = (seen / max_hosts + 1) * max_hosts + u64::from(self.me.host_id);
        let (bal, inp) = if self.own.lver == lver {
            (self.own.bal, self.own.inp)
        } else {
            (0, None)
        };
        self.own = Ballot {
            host_id: self.me.host_id,
            lver,
            mbal,
            bal,
            inp,
            shared: self.own.shared,
        };
        self.phase = Phase::Phase1 {
            lver,
            mbal,
            written: false,
        };
        self.write_own(out, now);
        Ok(())
    }

    /// Someone else is balloting higher or already moved on: back off and
    /// start over.
    fn contended(
        &mut self,
        ballots: &[Ballot],
        lver: u64,
        mbal: u64,
        now: MonoTime,
    ) -> Result<bool, LeaseError> {
        let lost = ballots.iter().any(|b| {
            b.host_id != self.me.host_id && (b.lver > lver || (b.lver == lver && b.mbal > mbal))
        });
        if lost {
            self.attempts += 1;
            if self.attempts >= MAX_ATTEMPTS {
                return Err(LeaseError::Contended(self.attempts));
            }
            // xorshift64: deterministic jitter, up to 2^attempts ms capped
            // at a quarter of io_timeout.
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let cap = (1u64 << self.attempts.min(10)).min(
                u64::try_from((self.timing.io_timeout / 4).as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            );
            let wait = Duration::from_micros(self.rng % (cap * 1000) + 100);
            self.phase = Phase::Backoff { until: now + wait };
        }
        Ok(lost)
    }

    fn chosen(
        &mut self,
        lver: u64,
        value: OwnerId,
        ballots: Vec<Ballot>,
        now: MonoTime,
        out: &mut Vec<OpOutput>,
    ) -> Result<(), LeaseError> {
        if value != self.me {
            // Version `lver` was already chosen for `value`: treat it as the
            // owner. Its liveness is judged from a fresh read of its host
            // slot, never from what the view happens to hold.
            let leader = Leader {
                lver,
                owner: Some(value),
                ..self.dummy_leader()
            };
            let off = u64::from(value.host_id) * u64::from(self.spec.geometry.sector_size());
            self.phase = Phase::OwnerSlot {
                snap: Snapshot { leader, ballots },
                owner: value,
                issued: now,
            };
            self.io(out, now, Area::Lockspace, off, IoKind::Read(self.s()));
            return Ok(());
        }
        match self.mode() {
            LeaseMode::Shared => {
                self.own.shared = Some(self.me.generation);
                self.phase = Phase::Mark { lver };
                self.write_own(out, now);
            }
            LeaseMode::Exclusive => {
                let marks = shared_marks(&ballots, Some(self.me.host_id));
                if marks.is_empty() {
                    self.commit(out, now, lver, Some(self.me), Then::Acquired);
                } else {
                    self.phase = Phase::SharedCheck {
                        lver,
                        marks,
                        issued: now,
                    };
                    let len = self.spec.geometry.max_hosts() as usize * self.s();
                    let off = u64::from(self.spec.geometry.sector_size());
                    self.io(out, now, Area::Lockspace, off, IoKind::Read(len));
                }
            }
        }
        Ok(())
    }

    /// Writes the leader for `lver` and finishes with `then` once written.
    fn commit(
        &mut self,
        out: &mut Vec<OpOutput>,
        now: MonoTime,
        lver: u64,
        owner: Option<OwnerId>,
        then: Then,
    ) {
        self.phase = Phase::Commit { lver, then };
        self.write_leader(out, now, lver, owner);
    }

    /// A free leader of this resource at version 0, to build others from.
    fn dummy_leader(&self) -> Leader {
        Leader {
            lockspace: self.spec.lockspace.clone(),
            resource: self.spec.resource.clone(),
            geometry: self.spec.geometry,
            lver: 0,
            owner: None,
            writer: None,
            write_time_ms: 0,
        }
    }

    fn release_read(
        &mut self,
        buf: &[u8],
        now: MonoTime,
        out: &mut Vec<OpOutput>,
    ) -> Result<(), LeaseError> {
        match self.mode() {
            LeaseMode::Exclusive => {
                let leader = self.check_leader(buf)?;
                if leader.owner != Some(self.me) {
                    return Err(LeaseError::NotOwner(leader.owner));
                }
                self.phase = Phase::ReleaseWrite;
                self.write_leader(out, now, leader.lver, None);
            }
            LeaseMode::Shared => {
                let own = Ballot::decode(buf, self.me.host_id, &self.spec.geometry)
                    .map_err(LeaseError::Corrupt)?;
                if own.shared != Some(self.me.generation) {
                    return Err(LeaseError::NotOwner(None));
                }
                self.own = Ballot {
                    shared: None,
                    ..own
                };
                self.phase = Phase::ReleaseWrite;
                self.write_own(out, now);
            }
        }
        Ok(())
    }
}

/// Shared marks in `ballots`, except `skip`'s.
fn shared_marks(ballots: &[Ballot], skip: Option<u32>) -> Vec<OwnerId> {
    ballots
        .iter()
        .filter(|b| Some(b.host_id) != skip)
        .filter_map(|b| {
            b.shared.map(|g| OwnerId {
                host_id: b.host_id,
                generation: g,
            })
        })
        .collect()
}

/// `Ok` if the incarnation `o` can no longer hold anything: its slot is
/// blank, released, shows a later generation, or is DEAD in `view`.
fn incarnation_state(
    o: OwnerId,
    slot: Option<&HostSlot>,
    view: &HostView,
    timing: &Timing,
) -> Result<(), Liveness> {
    match slot {
        None => Ok(()),
        Some(s) if s.generation > o.generation => Ok(()),
        Some(s) if s.generation == o.generation && s.released => Ok(()),
        Some(_) => match view.liveness(o.host_id, timing) {
            Some(Liveness::Dead) | Some(Liveness::Free) => Ok(()),
            Some(state) => Err(state),
            None => Err(Liveness::Live),
        },
    }
}

/// Of the shared `marks`, those whose incarnation may still be alive,
/// judged from a fresh read of the lockspace's host slots.
fn live_marks(
    buf: &[u8],
    marks: &[OwnerId],
    sector: usize,
    issued: MonoTime,
    now: MonoTime,
    view: &mut HostView,
    timing: &Timing,
) -> Result<Vec<OwnerId>, LeaseError> {
    let mut live = Vec::new();
    for m in marks {
        let i = m.host_id as usize - 1;
        let raw = buf.get(i * sector..(i + 1) * sector).unwrap_or(&[]);
        let slot = if is_blank(raw) {
            None
        } else {
            Some(HostSlot::decode(raw, m.host_id).map_err(LeaseError::Corrupt)?)
        };
        view.observe(m.host_id, slot.clone(), issued, now);
        if incarnation_state(*m, slot.as_ref(), view, timing).is_err() {
            live.push(*m);
        }
    }
    Ok(live)
}
