//! Frozen holders on the daemon side: recording the policy's freeze
//! decisions in the shared state (so other threads and a restarted daemon
//! see them), and revalidating a frozen holder's leases by fresh Disk
//! Paxos ballots on a thread of its own.
//!
//! A lease is revalidated by an exclusive (or shared) acquire for this
//! host's *current* incarnation with `expect_lver` = the version the holder
//! had and `revalidate` set, so a ballot runs even if the leader still
//! names us. It succeeds only if the version won is exactly the next one
//! (or, for a shared mark still ours, the same one): a later version means
//! someone else held the lease in between (its leader write may have been
//! lost while its ballot was decided), and resuming the holder then would
//! let two instances of it have run (S2). Each version won is recorded at
//! once, so a revalidation interrupted by new trouble expects it next time.

use std::time::Duration;

use crossbeam_channel::Sender;
use nosplit_lease::paxos::{OpKind, OpResult};

use super::{conn, lock, ops, Freeze, Shared};
use crate::api::{Event, HeldLease, Response};
use crate::supervise::{HolderId, Revalidation};

/// How often an I/O error of a ballot is retried before the holder is
/// given up (storage that keeps failing).
const IO_ATTEMPTS: u32 = 3;

/// A revalidation's report: holder, ticket, outcome.
pub(crate) type Report = (HolderId, u64, Revalidation);

/// Sets the shared state's view of `id`; returns false if it is not
/// registered (any more).
pub(crate) fn set(shared: &Shared, id: HolderId, freeze: Freeze) -> bool {
    let mut g = lock(shared);
    let Some(h) = g.holders.get_mut(&id.pid).filter(|h| h.id == id) else {
        return false;
    };
    let changed = h.freeze != freeze;
    h.freeze = freeze;
    if changed {
        g.save();
    }
    true
}

/// The policy confirmed a freeze.
pub(crate) fn frozen(shared: &Shared, id: HolderId) {
    set(shared, id, Freeze::Frozen);
    eprintln!("leased: holder {}: frozen; leases suspended", id.pid);
    lock(shared).broadcast(Event::HolderAction {
        pid: id.pid,
        action: "frozen".into(),
    });
}

/// The policy thawed `id`: it runs again (once its agent resumes it). The
/// watchdog is armed for its lockspaces before anyone is told; if that
/// fails the holder is killed instead.
pub(crate) fn thaw(shared: &Shared, id: HolderId) {
    if !set(shared, id, Freeze::Running) {
        return;
    }
    if let Err(e) = super::supervisor::arm(shared, None) {
        let reason = format!("cannot arm the watchdog: {e}");
        crate::proc::signal(&id, rustix::process::Signal::KILL);
        failed(shared, id, reason);
        return;
    }
    let leases = lock(shared)
        .holders
        .get(&id.pid)
        .map(|h| h.leases.clone())
        .unwrap_or_default();
    eprintln!("leased: holder {}: revalidated; may resume", id.pid);
    lock(shared).broadcast(Event::Revalidated {
        pid: id.pid,
        leases,
    });
}

/// Revalidation failed; the holder was sent SIGKILL.
pub(crate) fn failed(shared: &Shared, id: HolderId, reason: String) {
    set(shared, id, Freeze::Running);
    eprintln!(
        "leased: holder {}: revalidation failed, killed: {reason}",
        id.pid
    );
    let mut g = lock(shared);
    g.note_failed(id, reason.clone());
    g.broadcast(Event::RevalidationFailed {
        pid: id.pid,
        reason,
    });
}

/// Starts revalidating `id`'s leases; the outcome is sent to `done`.
pub(crate) fn start(shared: &Shared, id: HolderId, ticket: u64, done: Sender<Report>) {
    set(shared, id, Freeze::Revalidating);
    let s = shared.clone();
    let d = done.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("revalidate-{}", id.pid))
        .spawn(move || {
            let outcome = revalidate(&s, id);
            let _ = d.send((id, ticket, outcome));
        });
    if let Err(e) = spawned {
        let _ = done.send((id, ticket, Revalidation::Retry(e.to_string())));
    }
}

fn revalidate(shared: &Shared, id: HolderId) -> Revalidation {
    let leases = {
        let g = lock(shared);
        match g.holders.get(&id.pid) {
            Some(h) if h.id == id && !h.gone => h.leases.clone(),
            // Gone: HolderGone follows; nothing to revalidate.
            _ => return Revalidation::Retry("holder is gone".into()),
        }
    };
    for held in &leases {
        match one(shared, held) {
            Ok(lver) => record(shared, id, held, lver),
            Err(r) => return r,
        }
    }
    Revalidation::Ok
}

/// One lease: the version won, or why not.
fn one(shared: &Shared, held: &HeldLease) -> Result<u64, Revalidation> {
    let name = format!("{}/{}", held.lease.lockspace, held.lease.resource);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut ctx = match conn::context(shared, &held.lease.lockspace, true) {
            Ok(c) => c,
            Err(Response::Error { kind, message }) if kind == "failing" => {
                return Err(Revalidation::Retry(message))
            }
            Err(r) => return Err(Revalidation::Failed(format!("{name}: {}", text(&r)))),
        };
        let io = Duration::from_millis(u64::from(ctx.header.io_timeout_ms));
        let kind = OpKind::Acquire {
            mode: held.mode,
            expect_lver: Some(held.lver),
            revalidate: true,
        };
        match ops::run(&mut ctx, &held.lease, kind) {
            Ok(OpResult::Acquired { lver, already, .. }) => {
                let next = if already { held.lver } else { held.lver + 1 };
                if lver == next {
                    return Ok(lver);
                }
                return Err(Revalidation::Failed(format!(
                    "{name}: won version {lver}, but the holder had version {}: another holder may have run in between",
                    held.lver
                )));
            }
            Ok(other) => {
                return Err(Revalidation::Failed(format!(
                    "{name}: unexpected {other:?}"
                )))
            }
            Err(Response::Error { kind, message }) if kind == "io" && attempt < IO_ATTEMPTS => {
                eprintln!("leased: revalidating {name}: {message}; retrying");
                std::thread::sleep(io);
            }
            Err(r) => return Err(Revalidation::Failed(format!("{name}: {}", text(&r)))),
        }
    }
}

fn text(r: &Response) -> String {
    match r {
        Response::Error { message, .. } => message.clone(),
        other => format!("{other:?}"),
    }
}

fn record(shared: &Shared, id: HolderId, held: &HeldLease, lver: u64) {
    let mut g = lock(shared);
    let Some(h) = g.holders.get_mut(&id.pid).filter(|h| h.id == id) else {
        return;
    };
    for l in &mut h.leases {
        if l.lease.lockspace == held.lease.lockspace && l.lease.resource == held.lease.resource {
            l.lver = lver;
        }
    }
    g.save();
}
