//! Exhaustive [stateright] model of nosplit's lease protocol: host (delta) leases plus one
//! resource lease decided by Disk Paxos, at the level of single sector reads and writes.
//!
//! [`LeaseModel`] implements [`stateright::Model`]; [`check`] runs the breadth-first checker
//! and summarises the result; `cargo run -p nosplit-lease-model --release --example check`
//! checks every [`Variant`] against every preset in [`Bounds::PRESETS`].
//!
//! # What is modelled
//!
//! **Disk.** One sector per host for its host lease, holding `(generation, seq)`; one leader
//! sector `{owner: Option<(host, gen)>, lver}` and one ballot block per host
//! `{mbal, bal, inp: Option<(host, gen)>, lver, shared: Option<gen>}` for the resource lease.
//! Only host `h` writes its host-lease sector and its ballot block. Every read and every write
//! of one sector is one atomic step; steps of different hosts interleave arbitrarily, which
//! models delayed and reordered I/O across hosts.
//!
//! **Time.** Discrete ticks; one tick is one renewal interval. A [`Action::Tick`] advances
//! every clock by one. All clocks are relative ("ticks since ..."), saturating at the largest
//! threshold they are compared with, so the state space is finite without a time horizon and
//! every run length is covered.
//!
//! **Host lease.** At each tick, every joined host whose host-lease storage works rewrites its
//! sector (`seq + 1`); then every such host reads the whole host-lease area (one read, as the
//! renewal thread does) and updates its view of every other host. Writes come before reads in
//! a tick, so an observer sees a renewal as early as possible: the adversarial order for
//! declaring a host dead too early. An observer's view of host `j` is the generation it read
//! and the ticks of its own clock since it last saw the sector change (or first read it); the
//! host is DEAD in that view once a read finds the sector unchanged for `host_dead` ticks. The
//! sequence number itself is not stored: each renewal sets a "changed since your last read" bit
//! in every observer, which is exact because a renewal always changes the sector.
//!
//! The owner side: a host that has not renewed for `renew_fail` ticks has FAILED (its lockspace
//! is lost). It abandons every lease operation in progress and grants nothing more; a FAILED
//! host without a running holder leaves the lockspace at once (volatile state dropped, as after
//! a crash), and one with a holder is reset at `renew_fail + kill_grace` ticks after its last
//! renewal (the watchdog; holders stop "by time `renew_fail + kill_grace`"). A host whose
//! lockspace is valid issues lease I/O; one that has failed issues none.
//!
//! **Resource lease (Disk Paxos).** Acquisition by host `h` as owner id `me = (h, g)`:
//! 1. Read the leader record and the ballot blocks. If the leader names `o != me`, `o` must be
//!    *gone* in `h`'s view: either `h` has read a newer generation in `o`'s host-lease sector,
//!    or `o`'s generation and the view says DEAD; otherwise the attempt fails (busy). Note the
//!    generation test is "newer", not "different": a view older than `o` (the owner rejoined
//!    and acquired before `h` read its new generation) must count as alive. Then
//!    `L = leader.lver + 1` and the ballot `b` is the smallest number `> every mbal read` with
//!    `b ≡ h + 1 (mod n)`, so ballots are distinct per host.
//! 2. Phase 1: write own block `{mbal: b, lver: L}` (keeping `bal`/`inp` if the block was
//!    already for `L`, else clearing them); read every other block, one read each; abort if any
//!    has `lver > L`, or `lver == L` and `mbal > b`. Take `v` = the `inp` with the highest
//!    `bal > 0` among blocks for `L` (own included), else `me`.
//! 3. Phase 2: write own block `{mbal: b, bal: b, inp: v, lver: L}`; read every other block
//!    with the same abort rule.
//! 4. Commit: write the leader `{owner: v, lver: L}`. If `v != me`, fail (someone else won).
//!    Exclusive: read every other block; a shared mark of an incarnation that is not gone makes
//!    the host release the leader and fail (busy); otherwise the holder starts. Shared: write
//!    own block with `shared: Some(g)`, release the leader, and the holder starts.
//!
//! Release: the holder stops first; exclusive reads the leader and, if it still names `me`,
//! writes `{owner: None, lver}`; shared clears its own mark.
//!
//! **Failures.** A host may crash (holder stops at once, volatile state lost; a write it left in
//! flight may still land) and rejoin with the next generation, writing its host-lease sector.
//! A host's host-lease storage may fail: renewals (and its liveness reads) stop while its
//! resource-lease I/O keeps working, which is the adversarial combination; its holder runs on
//! until the kill deadline. Any resource-lease write may be *left in flight*: the host gives up
//! on it (I/O timeout) and abandons the operation, and the write lands, or is lost, at any
//! later step within `io_timeout` ticks. All failures are budgeted by [`Bounds`].
//!
//! # Properties
//!
//! * always `exclusive`: no state has an exclusive holder on one host together with any holder
//!   (exclusive or shared) on another host. Shared holders may coexist.
//! * always `no early takeover`: checked at every *takeover commit*, that is the leader write
//!   by which host `h` makes itself owner after its step-1 read named another owner
//!   `o = (oh, og)` that it judged gone. At that step: no holder of incarnation `og` of host
//!   `oh` is running, and, if host `oh` is still in generation `og` (it has not rejoined; it
//!   may be running or down), at least `host_dead` ticks have passed since its last successful
//!   renewal, i.e. `now >= last_renew(o) + host_dead`. (If `oh` has rejoined, the old
//!   incarnation's holders were necessarily stopped; that is the "newer generation" rule.)
//! * sometimes `acquired`: some host holds the lease exclusively.
//! * sometimes `taken over after a crash`: some host holds the lease exclusively after taking
//!   it over from an owner that crashed or lost its storage.
//! * sometimes `shared acquired by two hosts`.
//!
//! # Broken variants
//!
//! [`Variant::NoPhase2Read`] commits right after the phase-2 write: two hosts both commit
//! themselves for the same `lver` and `exclusive` fails (12 steps). [`Variant::NoLivenessWait`]
//! takes an owner over once its host lease is unchanged for `renew_fail` ticks (FAIL) instead
//! of `host_dead` (DEAD): the old holder is still inside its kill grace, and both `exclusive`
//! and `no early takeover` fail. It needs a storage failure in the bounds (a crashed owner's
//! holder stops at once).
//!
//! # Bounds and results
//!
//! Durations in the presets: renewal interval 1, `renew_fail` 2, `kill_grace` 1,
//! `host_dead` 4, `io_timeout` 1. The model is safe exactly when
//! `host_dead >= renew_fail + kill_grace` ([`Bounds::dead_margin`] `>= 0`): the tests check
//! that margin 0 passes and margin -1 breaks both always-properties. The presets keep margin 1.
//!
//! Clock-rate drift is not modelled; it is absorbed in the margin. An observer whose clock
//! runs fast by at most one tick per `host_dead` window reaches DEAD at most one real tick
//! earlier, which is the same as checking `host_dead - 1` with exact clocks; the same holds for
//! an owner whose slow clock delays its kill deadline by one tick. With the presets' margin
//! of 1, one tick of drift per window (in total) is therefore covered by the margin-0 check.
//! nosplit's real configuration needs `host_dead > renew_fail + kill_grace + watchdog margin`
//! for the same reason.
//!
//! The I/O timeout turned out not to matter for safety: with `io_timeout` raised to
//! `host_dead` (a late write may land after its writer is DEAD to others) the checks still pass,
//! because Disk Paxos tolerates a dead incarnation's late writes: they only touch its own block
//! and the leader, and a later acquisition re-decides from the ballot blocks. What does matter
//! is the rule that a host issues no more resource-lease I/O, and does not rejoin, while one of
//! its writes may still land. In an experiment without that rule (not part of the test suite:
//! the counterexample needs about 30 M states) the checker found a late phase-1 write rolling
//! the host's own block back under a newer ballot, after which two hosts commit themselves for
//! the same `lver`. Likewise, treating an owner whose slot shows a *different* (rather than a
//! newer) generation as gone breaks `exclusive` (an 18-step counterexample: the owner
//! rejoins and reacquires before the observer has read its new generation).
//!
//! Budgets and sizes (see [`Bounds::PRESETS`]): 2 or 3 hosts, at most 1 crash, 1 storage
//! failure, 1 late write, generation up to 2 (one rejoin), `lver` up to 3 (2 with three hosts),
//! ballot numbers up to 4 (two attempts per host with two hosts; up to 5 with three hosts).
//!
//! # Abstractions and simplifications
//!
//! * One resource lease. Hosts acquire in either mode at any time when idle and release at any
//!   time; a host holding the lease shared does not upgrade.
//! * The first read of an acquisition (leader record plus all ballot blocks) is one atomic
//!   read; it feeds only the busy check and the choice of ballot, and safety does not depend
//!   on the ballot being high enough. Phase reads and shared-mark reads are one step per block,
//!   in ascending host order. A host does not re-read its own block: it is the only writer and
//!   has no write in flight when it acts.
//! * Renewals and liveness reads happen at tick boundaries; within a tick the order is fixed
//!   (all renewals, then all reads), see above.
//! * A host with a resource-lease write in flight is blocked (it may still crash and its
//!   renewals go on) until the write lands or is lost, and a crashed host rejoins only after
//!   that; the write lands at most `io_timeout` ticks after it was issued.
//! * A storage failure lasts until the host rejoins. Holders are not stopped voluntarily
//!   between `renew_fail` and the kill deadline (stopping earlier is only safer); a crash
//!   stops them at once.
//! * When the leader release of a shared acquisition finds the leader no longer names the
//!   host, the shared hold is still granted (its mark is already on disk).
//!
//! States and running time of the correct variant (release build, 2 cores; the spread is
//! between runs on a busy and an idle machine):
//!
//! | preset                        | hosts | states    | time       |
//! |-------------------------------|-------|-----------|------------|
//! | `storage-failure`             | 2     | 515 250   | 0.9-1.5 s  |
//! | `crash-restart`               | 2     | 599 895   | 1.0-1.5 s  |
//! | `two-hosts-all`               | 2     | 5 705 142 | 10-16 s    |
//! | `three-hosts-storage-failure` | 3     | 2 868 536 | 6-9 s      |
//! | `three-hosts-crash`           | 3     | 5 577 883 | 13-19 s    |
//!
//! The broken variants are caught after 30 000 to 900 000 states, in well under two seconds.
//! Debug builds are about ten times slower: the tests that run by default use the two-host
//! presets with one kind of failure (about 35 s in all on 2 cores); the larger presets are
//! `#[ignore]`d tests for `cargo test -p nosplit-lease-model --release -- --ignored`.

mod check;
mod encode;
mod explain;
mod model;
mod types;

pub use check::{check, format_trace, CheckReport, PropertyOutcome, PropertyResult};
pub use model::LeaseModel;
pub use types::*;
