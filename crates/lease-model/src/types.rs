//! State, configuration and action types of the model. Everything is a small `Copy` value so
//! that hashing and cloning a state is cheap.

use std::fmt;

/// Largest number of hosts the state arrays have room for.
pub const MAX_HOSTS: usize = 3;

/// Which version of the protocol the model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// The protocol as nosplit implements it.
    Correct,
    /// Broken: after the phase-2 write the acquirer commits without reading the other ballot
    /// blocks again. Two hosts can then both commit themselves for the same lease version.
    NoPhase2Read,
    /// Broken: an owner is taken over as soon as it is FAIL in the acquirer's view (its host
    /// lease unchanged for `renew_fail` ticks) instead of DEAD (`host_dead` ticks), so its
    /// holder may still be inside its kill grace.
    NoLivenessWait,
}

impl Variant {
    /// Every variant, the correct one first.
    pub const ALL: [Variant; 3] = [
        Variant::Correct,
        Variant::NoPhase2Read,
        Variant::NoLivenessWait,
    ];
}

impl Variant {
    /// The `always` properties this variant must violate (none for [`Variant::Correct`]).
    pub fn expected_violations(self) -> &'static [&'static str] {
        match self {
            Variant::Correct => &[],
            Variant::NoPhase2Read => &["exclusive"],
            Variant::NoLivenessWait => &["exclusive", "no early takeover"],
        }
    }

    /// Whether `bounds` allow the failure this variant needs to go wrong: the timing mutant
    /// needs a host that stops renewing while its holder keeps running (a storage failure).
    pub fn can_fail_within(self, bounds: &Bounds) -> bool {
        match self {
            Variant::Correct | Variant::NoPhase2Read => true,
            Variant::NoLivenessWait => bounds.max_storage_failures > 0,
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Variant::Correct => "correct",
            Variant::NoPhase2Read => "no-phase2-read",
            Variant::NoLivenessWait => "no-liveness-wait",
        };
        f.write_str(s)
    }
}

/// Sizes, durations and failure budgets. All durations are in ticks; one tick is one renewal
/// interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Bounds {
    /// Number of hosts (2 or 3).
    pub hosts: u8,
    /// A host that has not renewed its host lease for this many ticks has FAILED: it abandons
    /// every lease operation in progress, grants nothing more, and its holders must stop.
    pub renew_fail: u8,
    /// Holders of a FAILED host are stopped at the latest `kill_grace` ticks after
    /// `renew_fail` (the watchdog resets the host at that point if they are still running).
    pub kill_grace: u8,
    /// An observer that has seen no change of a host-lease sector for this many ticks of its
    /// own clock, confirmed by a read, considers that host DEAD.
    pub host_dead: u8,
    /// A write left in flight lands or is lost within this many ticks of being issued.
    pub io_timeout: u8,
    /// Highest host generation: each host may join `max_gen - 1` more times after the first.
    pub max_gen: u8,
    /// How many host crashes (volatile state lost, holders stop at once) may happen in total.
    pub max_crashes: u8,
    /// How many hosts may lose their host-lease storage (renewals fail from then on).
    pub max_storage_failures: u8,
    /// How many resource-lease writes may be left in flight (land late or are lost) in total.
    pub max_late_writes: u8,
    /// Highest lease version (`lver`) a commit may write.
    pub max_lver: u8,
    /// Highest ballot number a host may use.
    pub max_ballot: u8,
}

impl Bounds {
    /// Base durations and sizes shared by the presets, with no failures.
    const fn base(hosts: u8) -> Self {
        Bounds {
            hosts,
            renew_fail: 2,
            kill_grace: 1,
            host_dead: 4,
            io_timeout: 1,
            max_gen: 1,
            max_crashes: 0,
            max_storage_failures: 0,
            max_late_writes: 0,
            max_lver: 3,
            max_ballot: 4,
        }
    }

    /// Two hosts; one crash, one restart (generation 2), one late write. About 0.6 M states:
    /// seconds in a release build, some ten seconds in a debug build.
    pub const fn crash_restart() -> Self {
        Bounds {
            max_gen: 2,
            max_crashes: 1,
            max_late_writes: 1,
            ..Self::base(2)
        }
    }

    /// Two hosts; one host loses its host-lease storage (renewals fail, resource-lease I/O
    /// still works), one rejoin, one late write. About 0.5 M states.
    pub const fn storage_failure() -> Self {
        Bounds {
            max_gen: 2,
            max_storage_failures: 1,
            max_late_writes: 1,
            ..Self::base(2)
        }
    }

    /// Two hosts with every failure at once: one crash, one storage failure, one restart, one
    /// late write. About 5.7 M states: for release builds (some twenty seconds).
    pub const fn two_hosts_all() -> Self {
        Bounds {
            max_gen: 2,
            max_crashes: 1,
            max_storage_failures: 1,
            max_late_writes: 1,
            ..Self::base(2)
        }
    }

    /// Three hosts contending, one crash (no restart), one late write, two lease versions,
    /// ballots up to 5 (two per host for hosts 0 and 1, one for host 2). About 5.6 M states:
    /// for release builds.
    pub const fn three_hosts_crash() -> Self {
        Bounds {
            max_crashes: 1,
            max_late_writes: 1,
            max_lver: 2,
            max_ballot: 5,
            ..Self::base(3)
        }
    }

    /// Three hosts contending, one storage failure (no rejoin), two lease versions, ballots up
    /// to 5. About 2.9 M states: for release builds.
    pub const fn three_hosts_storage_failure() -> Self {
        Bounds {
            max_storage_failures: 1,
            max_lver: 2,
            max_ballot: 5,
            ..Self::base(3)
        }
    }

    /// Every preset with its name, smallest first.
    pub const PRESETS: [(&'static str, Bounds); 5] = [
        ("storage-failure", Bounds::storage_failure()),
        ("crash-restart", Bounds::crash_restart()),
        (
            "three-hosts-storage-failure",
            Bounds::three_hosts_storage_failure(),
        ),
        ("three-hosts-crash", Bounds::three_hosts_crash()),
        ("two-hosts-all", Bounds::two_hosts_all()),
    ];

    /// `host_dead - (renew_fail + kill_grace)`: how many ticks after the latest moment a
    /// non-renewing host's holders are stopped an observer may declare it DEAD. The model is
    /// safe exactly when this is at least 0 (checked by the tests for 0 and -1); nosplit keeps
    /// it positive to absorb clock drift and the granularity of real time.
    pub fn dead_margin(&self) -> i32 {
        i32::from(self.host_dead) - i32::from(self.renew_fail) - i32::from(self.kill_grace)
    }

    /// Checks that the bounds fit the model's arrays and encodings.
    pub fn validate(&self) -> Result<(), String> {
        if !(2..=3).contains(&self.hosts) {
            return Err(format!("hosts must be 2 or 3, not {}", self.hosts));
        }
        if self.renew_fail == 0 || self.host_dead == 0 || self.io_timeout == 0 {
            return Err("renew_fail, host_dead and io_timeout must be at least 1".into());
        }
        if self.max_gen == 0 {
            return Err("max_gen must be at least 1".into());
        }
        if self.host_dead > 100 || self.renew_fail > 100 || self.kill_grace > 100 {
            return Err("durations must stay below 100 ticks".into());
        }
        if self.max_lver > 250 || self.max_ballot > 250 || self.io_timeout > 250 {
            return Err("max_lver, max_ballot and io_timeout must stay below 250".into());
        }
        Ok(())
    }
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds::crash_restart()
    }
}

/// How a lease is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// One holder cluster-wide.
    Exclusive,
    /// Any number of shared holders, but never together with an exclusive one.
    Shared,
}

/// An owner identity: a host incarnation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OwnerId {
    /// Host id (index).
    pub host: u8,
    /// Host generation (incarnation), starting at 1.
    pub gen: u8,
}

/// The leader sector of the resource lease.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LeaderRecord {
    /// Current owner, `None` when free.
    pub owner: Option<OwnerId>,
    /// Lease version: bumped by every committed acquisition.
    pub lver: u8,
}

/// One host's ballot block (Disk Paxos block) in the resource lease; only that host writes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BallotBlock {
    /// Highest ballot this host has started.
    pub mbal: u8,
    /// Ballot in which `inp` was accepted (0: none).
    pub bal: u8,
    /// Value accepted in ballot `bal`.
    pub inp: Option<OwnerId>,
    /// The lease version this block's ballot is for.
    pub lver: u8,
    /// Shared-mode mark: `Some(gen)` while incarnation `gen` of this host holds the lease
    /// shared.
    pub shared: Option<u8>,
}

/// What the shared disk holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Disk {
    /// Resource lease leader record.
    pub leader: LeaderRecord,
    /// Resource lease ballot blocks, one per host.
    pub blocks: [BallotBlock; MAX_HOSTS],
    /// Generation part of each host-lease sector. The sequence number is not stored: every
    /// renewal changes the sector, which is recorded in each observer's `changed` bits.
    pub host_gen: [u8; MAX_HOSTS],
}

/// What an observer knows about another host's host-lease sector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct View {
    /// Generation last read from the sector.
    pub gen: u8,
    /// Ticks (of the observer's clock) since it last saw the sector change, or first read it,
    /// saturating at the dead threshold. One more than the threshold means a read has confirmed
    /// that the sector stayed unchanged for the whole threshold: the host is DEAD.
    pub age: u8,
}

/// Where an in-progress acquisition stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Attempt {
    /// Exclusive or shared request.
    pub mode: Mode,
    /// The owner named by the leader read in step 1 that was judged gone (a takeover), if any.
    pub from: Option<OwnerId>,
    /// Lease version being decided (`leader.lver + 1`).
    pub lver: u8,
    /// This attempt's ballot number.
    pub ballot: u8,
}

/// The next I/O of a host's lease operation. Each variant is one atomic sector read or write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Op {
    /// No operation in progress.
    #[default]
    Idle,
    /// Write own block `{mbal = ballot, lver}`.
    Phase1Write(Attempt),
    /// Read block `next`; `best` is the highest `(bal, inp)` seen for this lver so far.
    Phase1Read {
        /// The attempt.
        at: Attempt,
        /// Block to read.
        next: u8,
        /// Highest accepted ballot and value seen so far.
        best: Option<(u8, OwnerId)>,
    },
    /// Write own block `{mbal = bal = ballot, inp = value}`.
    Phase2Write {
        /// The attempt.
        at: Attempt,
        /// Value being proposed.
        value: OwnerId,
    },
    /// Read block `next` to check that no higher ballot started.
    Phase2Read {
        /// The attempt.
        at: Attempt,
        /// Value being proposed.
        value: OwnerId,
        /// Block to read.
        next: u8,
    },
    /// Write the leader `{owner = value, lver}`.
    Commit {
        /// The attempt.
        at: Attempt,
        /// Value decided.
        value: OwnerId,
    },
    /// Exclusive acquisition after winning: read block `next` for a live shared mark.
    SharedCheck {
        /// Takeover origin, kept for the `taken over after a crash` example.
        from: Option<OwnerId>,
        /// Block to read.
        next: u8,
    },
    /// Shared acquisition after winning: write own shared mark.
    MarkShared,
    /// Read the leader before releasing it.
    ReleaseRead {
        /// Grant a shared hold once released.
        grant_shared: bool,
    },
    /// Write the leader `{owner = None, lver}`.
    ReleaseWrite {
        /// Version to keep.
        lver: u8,
        /// Grant a shared hold once released.
        grant_shared: bool,
    },
    /// Write own block with the shared mark cleared.
    ClearMark,
}

impl Op {
    /// Whether the next I/O of this operation is a write.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Op::Phase1Write(_)
                | Op::Phase2Write { .. }
                | Op::Commit { .. }
                | Op::MarkShared
                | Op::ReleaseWrite { .. }
                | Op::ClearMark
        )
    }
}

/// A sector write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Write {
    /// The resource lease leader sector.
    Leader(LeaderRecord),
    /// The writer's own ballot block.
    Block(BallotBlock),
}

/// A write that the host gave up on (I/O timeout) and that may still land.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InFlight {
    /// The write.
    pub write: Write,
    /// Ticks since it was issued.
    pub age: u8,
}

/// One host: its process state (volatile) plus what the model tracks about it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HostState {
    /// Running and joined to the lockspace.
    pub up: bool,
    /// Current (or, while down, last) generation.
    pub gen: u8,
    /// Ticks since the last successful renewal of the current generation (saturating). Also
    /// counts while the host is down; used by the `no early takeover` check.
    pub since_renew: u8,
    /// Host-lease writes fail (until the host rejoins).
    pub storage_failed: bool,
    /// The lease holder (e.g. the VM) running on this host, if any.
    pub holder: Option<Mode>,
    /// Lease operation in progress.
    pub op: Op,
    /// Liveness view of every other host.
    pub views: [Option<View>; MAX_HOSTS],
    /// `changed[j]`: host j's sector was written since this host last read it.
    pub changed: [bool; MAX_HOSTS],
    /// A resource-lease write left in flight (at most one per host).
    pub in_flight: Option<InFlight>,
}

/// A whole model state. `Hash` is implemented on a compact byte encoding (see `encode.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct State {
    /// Every host (slots at or past `Bounds::hosts` are unused).
    pub hosts: [HostState; MAX_HOSTS],
    /// The shared disk.
    pub disk: Disk,
    /// Remaining crash budget.
    pub crashes_left: u8,
    /// Remaining host-lease storage failure budget.
    pub storage_failures_left: u8,
    /// Remaining late-write budget.
    pub late_writes_left: u8,
    /// Ghost: some host was granted an exclusive hold after taking the lease over from another
    /// owner.
    pub took_over: bool,
    /// Ghost: some takeover committed while the previous owner's holder was still running or
    /// less than `host_dead` ticks after its last successful renewal.
    pub early_takeover: bool,
}

/// A step of the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Global clock tick, with the renewal of every host lease whose storage works and then
    /// every live host's read of the host-lease area.
    Tick,
    /// The host's host-lease writes start failing.
    StorageFail(u8),
    /// The host crashes.
    Crash(u8),
    /// The host restarts and joins with its next generation.
    Restart(u8),
    /// The host starts acquiring the lease: reads the leader record and the ballot blocks.
    Acquire(u8, Mode),
    /// The holder stops and the host starts releasing the lease.
    Release(u8),
    /// The next I/O of the host's operation completes.
    Io(u8),
    /// The host issues its next write, gives up on it (I/O timeout) and abandons the
    /// operation; the write stays in flight.
    IoLate(u8),
    /// The host's in-flight write lands.
    Land(u8),
    /// The host's in-flight write is lost.
    Lose(u8),
}
