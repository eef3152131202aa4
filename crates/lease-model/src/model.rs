//! The [`LeaseModel`]: transition relation and properties.

use stateright::{Model, Property};

use crate::types::{
    Action, Attempt, BallotBlock, Bounds, Disk, HostState, InFlight, LeaderRecord, Mode, Op,
    OwnerId, State, Variant, View, Write, MAX_HOSTS,
};

/// Exhaustive model of nosplit's host leases and one resource lease on a shared disk.
///
/// See the crate documentation for what is modelled and how.
#[derive(Clone, Debug)]
pub struct LeaseModel {
    /// Protocol variant.
    pub variant: Variant,
    /// Sizes, durations and budgets.
    pub bounds: Bounds,
}

/// Host index as a `usize`.
fn ix(h: u8) -> usize {
    usize::from(h)
}

/// Host index as a `u8`; indices are always below [`MAX_HOSTS`].
fn id(h: usize) -> u8 {
    u8::try_from(h).expect("host index fits in u8")
}

impl LeaseModel {
    /// A model of `variant` within `bounds`.
    ///
    /// # Panics
    /// If the bounds are invalid (see [`Bounds::validate`]).
    pub fn new(variant: Variant, bounds: Bounds) -> Self {
        if let Err(e) = bounds.validate() {
            panic!("invalid bounds: {e}");
        }
        LeaseModel { variant, bounds }
    }

    fn n(&self) -> usize {
        usize::from(self.bounds.hosts)
    }

    /// Ticks without a seen change after which an observer takes a host for gone.
    pub(crate) fn dead_after(&self) -> u8 {
        match self.variant {
            Variant::NoLivenessWait => self.bounds.renew_fail,
            Variant::Correct | Variant::NoPhase2Read => self.bounds.host_dead,
        }
    }

    /// Where `since_renew` saturates: every comparison made on it is below this value.
    fn renew_cap(&self) -> u8 {
        let b = &self.bounds;
        b.host_dead.max(b.renew_fail.saturating_add(b.kill_grace))
    }

    /// Holders must be stopped once `since_renew` reaches this.
    fn kill_deadline(&self) -> u8 {
        self.bounds
            .renew_fail
            .saturating_add(self.bounds.kill_grace)
    }

    /// The host is joined and its host lease is still valid.
    fn valid(&self, h: &HostState) -> bool {
        h.up && h.since_renew < self.bounds.renew_fail
    }

    /// The smallest index `>= start` of a host other than `me`.
    fn next_other(&self, me: usize, start: usize) -> Option<u8> {
        (start..self.n()).find(|&j| j != me).map(id)
    }

    /// Whether the incarnation `gen` of the host seen through `view` is gone: the host has
    /// since joined with a newer generation, or the view confirms it DEAD.
    fn gone(&self, view: Option<View>, gen: u8) -> bool {
        match view {
            None => false,
            Some(v) => v.gen > gen || (v.gen == gen && v.age > self.dead_after()),
        }
    }

    /// Whether host `h` may take the lease over from `owner`.
    fn owner_gone(&self, s: &State, h: usize, owner: OwnerId) -> bool {
        if ix(owner.host) == h {
            // Our own earlier incarnation.
            owner.gen < s.hosts[h].gen
        } else {
            self.gone(s.hosts[h].views[ix(owner.host)], owner.gen)
        }
    }

    /// Smallest ballot of host `h` above `above` (ballots of host h are `h + 1 (mod n)`).
    fn next_ballot(&self, h: usize, above: u8) -> u16 {
        let n = u16::from(self.bounds.hosts);
        let mut b = u16::from(id(h)) + 1;
        while b <= u16::from(above) {
            b += n;
        }
        b
    }

    /// Observer `i` reads host `j`'s host-lease sector.
    fn observe(&self, s: &mut State, i: usize, j: usize) {
        let gen = s.disk.host_gen[j];
        let changed = s.hosts[i].changed[j];
        let dead_after = self.dead_after();
        let view = match s.hosts[i].views[j] {
            Some(old) if !changed && old.gen == gen => View {
                gen,
                age: if old.age >= dead_after {
                    dead_after + 1
                } else {
                    old.age
                },
            },
            _ => View { gen, age: 0 },
        };
        s.hosts[i].views[j] = Some(view);
        s.hosts[i].changed[j] = false;
    }

    /// Host `h` wrote its host-lease sector: every observer that has read it before sees a
    /// change at its next read.
    fn host_sector_written(&self, s: &mut State, h: usize) {
        for i in 0..self.n() {
            if i != h && s.hosts[i].views[h].is_some() {
                s.hosts[i].changed[h] = true;
            }
        }
    }

    /// The host stops: holder stopped, all volatile state lost. In-flight writes stay.
    fn go_down(h: &mut HostState) {
        *h = HostState {
            up: false,
            gen: h.gen,
            since_renew: h.since_renew,
            in_flight: h.in_flight,
            ..HostState::default()
        };
    }

    fn tick_enabled(&self, s: &State) -> bool {
        s.hosts[..self.n()]
            .iter()
            .all(|h| h.in_flight.is_none_or(|f| f.age < self.bounds.io_timeout))
    }

    /// One tick: clocks advance, every host whose host-lease storage works renews (writes its
    /// sector), hosts whose lease lapsed fail, and then every live host reads the host-lease
    /// area and updates its liveness views.
    fn tick(&self, s: &mut State) {
        let cap = self.renew_cap();
        let dead_after = self.dead_after();
        let n = self.n();
        for h in &mut s.hosts[..n] {
            h.since_renew = h.since_renew.saturating_add(1).min(cap);
            for v in h.views.iter_mut().flatten() {
                if v.age < dead_after {
                    v.age += 1;
                }
            }
            if let Some(f) = &mut h.in_flight {
                f.age = f.age.saturating_add(1);
            }
        }
        for h in 0..n {
            let hs = &mut s.hosts[h];
            if !hs.up {
                continue;
            }
            if !hs.storage_failed && hs.since_renew < self.bounds.renew_fail {
                hs.since_renew = 0;
                self.host_sector_written(s, h);
            } else if hs.since_renew >= self.bounds.renew_fail {
                // The lockspace has failed: every lease operation is abandoned. Without a
                // holder the host leaves the lockspace at once; with one, the watchdog resets
                // it at the kill deadline unless it stopped earlier.
                hs.op = Op::Idle;
                if hs.holder.is_none() || hs.since_renew >= self.kill_deadline() {
                    Self::go_down(hs);
                }
            }
        }
        for i in 0..n {
            let hs = &s.hosts[i];
            if hs.up && !hs.storage_failed {
                for j in 0..n {
                    if j != i {
                        self.observe(s, i, j);
                    }
                }
            }
        }
    }

    /// Applies a write of host `h` to the disk.
    fn apply(s: &mut State, h: usize, w: Write) {
        match w {
            Write::Leader(l) => s.disk.leader = l,
            Write::Block(b) => s.disk.blocks[h] = b,
        }
    }

    /// The write the host's current operation issues next, if it is a write.
    fn pending_write(&self, s: &State, h: usize) -> Option<Write> {
        let hs = &s.hosts[h];
        let own = s.disk.blocks[h];
        let me = OwnerId {
            host: id(h),
            gen: hs.gen,
        };
        match hs.op {
            Op::Phase1Write(at) => Some(Write::Block(if own.lver == at.lver {
                BallotBlock {
                    mbal: at.ballot,
                    ..own
                }
            } else {
                BallotBlock {
                    mbal: at.ballot,
                    bal: 0,
                    inp: None,
                    lver: at.lver,
                    shared: own.shared,
                }
            })),
            Op::Phase2Write { at, value } => Some(Write::Block(BallotBlock {
                mbal: at.ballot,
                bal: at.ballot,
                inp: Some(value),
                lver: at.lver,
                shared: own.shared,
            })),
            Op::Commit { at, value } => Some(Write::Leader(LeaderRecord {
                owner: Some(value),
                lver: at.lver,
            })),
            Op::MarkShared => Some(Write::Block(BallotBlock {
                shared: Some(me.gen),
                ..own
            })),
            Op::ReleaseWrite { lver, .. } => {
                Some(Write::Leader(LeaderRecord { owner: None, lver }))
            }
            Op::ClearMark => Some(Write::Block(BallotBlock {
                shared: None,
                ..own
            })),
            Op::Idle
            | Op::Phase1Read { .. }
            | Op::Phase2Read { .. }
            | Op::SharedCheck { .. }
            | Op::ReleaseRead { .. } => None,
        }
    }

    /// A ballot read of block `blk` aborts an attempt.
    fn aborts(at: &Attempt, blk: &BallotBlock) -> bool {
        blk.lver > at.lver || (blk.lver == at.lver && blk.mbal > at.ballot)
    }

    /// Host `h` completes the next I/O of its operation.
    fn io(&self, s: &mut State, h: usize) {
        let me = OwnerId {
            host: id(h),
            gen: s.hosts[h].gen,
        };
        let op = s.hosts[h].op;
        if let Some(w) = self.pending_write(s, h) {
            Self::apply(s, h, w);
        }
        let next = match op {
            Op::Idle => Op::Idle,
            Op::Phase1Write(at) => {
                let own = s.disk.blocks[h];
                let best = if own.lver == at.lver && own.bal > 0 {
                    own.inp.map(|v| (own.bal, v))
                } else {
                    None
                };
                match self.next_other(h, 0) {
                    Some(next) => Op::Phase1Read { at, next, best },
                    None => Op::Phase2Write {
                        at,
                        value: best.map_or(me, |b| b.1),
                    },
                }
            }
            Op::Phase1Read { at, next, best } => {
                let blk = s.disk.blocks[ix(next)];
                if Self::aborts(&at, &blk) {
                    Op::Idle
                } else {
                    let mut best = best;
                    if blk.lver == at.lver && blk.bal > 0 && best.is_none_or(|b| blk.bal > b.0) {
                        best = blk.inp.map(|v| (blk.bal, v));
                    }
                    match self.next_other(h, ix(next) + 1) {
                        Some(next) => Op::Phase1Read { at, next, best },
                        None => Op::Phase2Write {
                            at,
                            value: best.map_or(me, |b| b.1),
                        },
                    }
                }
            }
            Op::Phase2Write { at, value } => match self.variant {
                Variant::NoPhase2Read => Op::Commit { at, value },
                Variant::Correct | Variant::NoLivenessWait => match self.next_other(h, 0) {
                    Some(next) => Op::Phase2Read { at, value, next },
                    None => Op::Commit { at, value },
                },
            },
            Op::Phase2Read { at, value, next } => {
                let blk = s.disk.blocks[ix(next)];
                if Self::aborts(&at, &blk) {
                    Op::Idle
                } else {
                    match self.next_other(h, ix(next) + 1) {
                        Some(next) => Op::Phase2Read { at, value, next },
                        None => Op::Commit { at, value },
                    }
                }
            }
            Op::Commit { at, value } => {
                if value != me {
                    // Someone else's value was decided: we committed it for them and fail.
                    Op::Idle
                } else {
                    if let Some(o) = at.from {
                        self.check_takeover(s, o);
                    }
                    match at.mode {
                        Mode::Shared => Op::MarkShared,
                        Mode::Exclusive => match self.next_other(h, 0) {
                            Some(next) => Op::SharedCheck {
                                from: at.from,
                                next,
                            },
                            None => self.grant_exclusive(s, h, at.from),
                        },
                    }
                }
            }
            Op::SharedCheck { from, next } => {
                let j = ix(next);
                let blk = s.disk.blocks[j];
                let busy = blk
                    .shared
                    .is_some_and(|g| !self.gone(s.hosts[h].views[j], g));
                if busy {
                    Op::ReleaseRead {
                        grant_shared: false,
                    }
                } else {
                    match self.next_other(h, j + 1) {
                        Some(next) => Op::SharedCheck { from, next },
                        None => self.grant_exclusive(s, h, from),
                    }
                }
            }
            Op::MarkShared => Op::ReleaseRead { grant_shared: true },
            Op::ReleaseRead { grant_shared } => {
                let l = s.disk.leader;
                if l.owner == Some(me) {
                    Op::ReleaseWrite {
                        lver: l.lver,
                        grant_shared,
                    }
                } else {
                    Self::finish_release(s, h, grant_shared)
                }
            }
            Op::ReleaseWrite { grant_shared, .. } => Self::finish_release(s, h, grant_shared),
            Op::ClearMark => Op::Idle,
        };
        s.hosts[h].op = next;
    }

    fn grant_exclusive(&self, s: &mut State, h: usize, from: Option<OwnerId>) -> Op {
        s.hosts[h].holder = Some(Mode::Exclusive);
        if from.is_some() {
            s.took_over = true;
        }
        Op::Idle
    }

    fn finish_release(s: &mut State, h: usize, grant_shared: bool) -> Op {
        if grant_shared {
            s.hosts[h].holder = Some(Mode::Shared);
        }
        Op::Idle
    }

    /// Ghost check at a takeover commit from `o`: the incarnation `o` must have no running
    /// holder and, unless it has been replaced by a newer generation, must not have renewed
    /// for `host_dead` ticks.
    fn check_takeover(&self, s: &mut State, o: OwnerId) {
        let oh = &s.hosts[ix(o.host)];
        if oh.gen == o.gen && (oh.holder.is_some() || oh.since_renew < self.bounds.host_dead) {
            s.early_takeover = true;
        }
    }

    /// Host `h` starts an acquisition: one read of the leader record and the ballot blocks.
    fn acquire(&self, s: &mut State, h: usize, mode: Mode) -> bool {
        let me = OwnerId {
            host: id(h),
            gen: s.hosts[h].gen,
        };
        let leader = s.disk.leader;
        let from = match leader.owner {
            Some(o) if o != me => {
                if !self.owner_gone(s, h, o) {
                    return false; // busy: fails without changing anything
                }
                Some(o)
            }
            _ => None,
        };
        let lver = leader.lver + 1;
        if lver > self.bounds.max_lver {
            return false;
        }
        let max_mbal = s.disk.blocks[..self.n()]
            .iter()
            .map(|b| b.mbal)
            .max()
            .unwrap_or(0);
        let ballot = self.next_ballot(h, max_mbal);
        if ballot > u16::from(self.bounds.max_ballot) {
            return false;
        }
        let ballot = u8::try_from(ballot).expect("ballot below max_ballot");
        s.hosts[h].op = Op::Phase1Write(Attempt {
            mode,
            from,
            lver,
            ballot,
        });
        true
    }

    /// Whether a state has two conflicting holders.
    pub fn exclusive_holds(&self, s: &State) -> bool {
        let hs = &s.hosts[..self.n()];
        hs.iter().enumerate().all(|(i, a)| {
            a.holder != Some(Mode::Exclusive)
                || hs
                    .iter()
                    .enumerate()
                    .all(|(j, b)| i == j || b.holder.is_none())
        })
    }
}

impl Model for LeaseModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let mut hosts = [HostState::default(); MAX_HOSTS];
        let mut disk = Disk::default();
        for (h, hs) in hosts.iter_mut().enumerate().take(self.n()) {
            hs.up = true;
            hs.gen = 1;
            disk.host_gen[h] = 1;
            for j in 0..self.n() {
                if j != h {
                    // Every host has read every host-lease sector once, just now.
                    hs.views[j] = Some(View { gen: 1, age: 0 });
                }
            }
        }
        vec![State {
            hosts,
            disk,
            crashes_left: self.bounds.max_crashes,
            storage_failures_left: self.bounds.max_storage_failures,
            late_writes_left: self.bounds.max_late_writes,
            took_over: false,
            early_takeover: false,
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        if self.tick_enabled(s) {
            actions.push(Action::Tick);
        }
        for h in 0..self.n() {
            let hs = &s.hosts[h];
            let hid = id(h);
            if hs.up {
                let valid = self.valid(hs);
                if valid && !hs.storage_failed && s.storage_failures_left > 0 {
                    actions.push(Action::StorageFail(hid));
                }
                if s.crashes_left > 0 {
                    actions.push(Action::Crash(hid));
                }
                if valid && hs.in_flight.is_none() {
                    match (hs.op, hs.holder) {
                        (Op::Idle, None) => {
                            actions.push(Action::Acquire(hid, Mode::Exclusive));
                            actions.push(Action::Acquire(hid, Mode::Shared));
                        }
                        (Op::Idle, Some(_)) => actions.push(Action::Release(hid)),
                        (op, _) => {
                            actions.push(Action::Io(hid));
                            if op.is_write() && s.late_writes_left > 0 {
                                actions.push(Action::IoLate(hid));
                            }
                        }
                    }
                }
            } else if hs.in_flight.is_none() && hs.gen < self.bounds.max_gen {
                actions.push(Action::Restart(hid));
            }
            if hs.in_flight.is_some() {
                actions.push(Action::Land(hid));
                actions.push(Action::Lose(hid));
            }
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = *last;
        match action {
            Action::Tick => self.tick(&mut s),
            Action::StorageFail(h) => {
                s.hosts[ix(h)].storage_failed = true;
                s.storage_failures_left -= 1;
            }
            Action::Crash(h) => {
                Self::go_down(&mut s.hosts[ix(h)]);
                s.crashes_left -= 1;
            }
            Action::Restart(h) => {
                let h = ix(h);
                let gen = s.hosts[h].gen + 1;
                s.hosts[h] = HostState {
                    up: true,
                    gen,
                    since_renew: 0,
                    ..HostState::default()
                };
                s.disk.host_gen[h] = gen;
                self.host_sector_written(&mut s, h);
            }
            Action::Acquire(h, mode) => {
                if !self.acquire(&mut s, ix(h), mode) {
                    return None;
                }
            }
            Action::Release(h) => {
                let hs = &mut s.hosts[ix(h)];
                hs.op = match hs.holder {
                    Some(Mode::Exclusive) => Op::ReleaseRead {
                        grant_shared: false,
                    },
                    Some(Mode::Shared) => Op::ClearMark,
                    None => return None,
                };
                hs.holder = None;
            }
            Action::Io(h) => self.io(&mut s, ix(h)),
            Action::IoLate(h) => {
                let h = ix(h);
                let w = self.pending_write(&s, h)?;
                s.hosts[h].in_flight = Some(InFlight { write: w, age: 0 });
                s.hosts[h].op = Op::Idle;
                s.late_writes_left -= 1;
            }
            Action::Land(h) => {
                let h = ix(h);
                let f = s.hosts[h].in_flight.take()?;
                Self::apply(&mut s, h, f.write);
            }
            Action::Lose(h) => {
                s.hosts[ix(h)].in_flight.take()?;
            }
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("exclusive", |m: &LeaseModel, s: &State| {
                m.exclusive_holds(s)
            }),
            Property::always("no early takeover", |_, s: &State| !s.early_takeover),
            Property::sometimes("acquired", |_, s: &State| {
                s.hosts.iter().any(|h| h.holder == Some(Mode::Exclusive))
            }),
            Property::sometimes("taken over after a crash", |_, s: &State| {
                s.took_over && s.hosts.iter().any(|h| h.holder == Some(Mode::Exclusive))
            }),
            Property::sometimes("shared acquired by two hosts", |_, s: &State| {
                s.hosts
                    .iter()
                    .filter(|h| h.holder == Some(Mode::Shared))
                    .count()
                    >= 2
            }),
        ]
    }
}
