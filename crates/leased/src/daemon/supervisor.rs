//! The supervisor thread: feeds renewal events, holder exits, hook results
//! and revalidation results to the pure escalation policy
//! ([`crate::supervise::Supervisor`]), carries out its actions (hooks,
//! signals, freezes and revalidations through [`super::freeze`],
//! watchdog), releases the leases of holders that exit, arms the watchdog,
//! and rejoins lockspaces whose incarnation was lost once no running
//! holder uses them (frozen ones do not count).

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use nosplit_clock::{Clock, MonoTime, RealClock};
use nosplit_lease::format::Name;
use nosplit_lease::host::{HostEvent, JoinMode};

use super::freeze::{self, Report};
use super::{conn, lock, start_lockspace, Freeze, LsState, Shared};
use crate::api::Event;
use crate::supervise::{Action, FreezeHook, HolderId, Input, Sig, Supervisor};

/// Longest sleep between checks of holders and timers.
const POLL: Duration = Duration::from_millis(50);

struct State {
    sup: Supervisor,
    /// Holder -> lockspaces it was reported present in.
    present: BTreeMap<HolderId, BTreeSet<String>>,
    hooks: Vec<(HolderId, Child, MonoTime)>,
    /// Lost lockspaces whose rejoin failed: not before then.
    rejoin_after: BTreeMap<String, MonoTime>,
    /// Revalidation threads report here.
    reval_tx: Sender<Report>,
    reval_rx: Receiver<Report>,
}

pub(crate) fn run(shared: Shared, events: Receiver<(String, MonoTime, HostEvent)>) {
    let grace = lock(&shared).cfg.freeze_hook_timeout;
    let (reval_tx, reval_rx) = crossbeam_channel::unbounded();
    let mut st = State {
        sup: Supervisor::new(grace),
        present: BTreeMap::new(),
        hooks: Vec::new(),
        rejoin_after: BTreeMap::new(),
        reval_tx,
        reval_rx,
    };
    let mut pending = Vec::new();
    loop {
        let now = RealClock.now();
        let mut actions = Vec::new();
        sync_holders(&shared, &mut st, now, &mut actions);
        pending.extend(events.try_iter());
        for (ls, _, e) in pending.drain(..) {
            if matches!(e, HostEvent::KillDeadline) {
                // A holder that died at SIGKILL must not look stuck.
                sync_holders(&shared, &mut st, now, &mut actions);
            }
            on_event(&shared, &ls, &e);
            if let Ok(name) = Name::new(&ls) {
                if matches!(e, HostEvent::Joined { .. }) {
                    // After a loss, stragglers get half an io_timeout.
                    let io = lock(&shared)
                        .lockspaces
                        .get(&ls)
                        .map(|l| l.header.io_timeout_ms);
                    if let Some(io) = io {
                        let io = Duration::from_millis(u64::from(io));
                        st.sup.set_grace(&name, io / 2);
                        st.sup.set_retry(io);
                    }
                }
                if let Some(input) = Input::from_host_event(&name, &e) {
                    actions.extend(st.sup.step(input, now));
                }
            }
        }
        finished_hooks(&mut st, now, &mut actions);
        let reports: Vec<Report> = st.reval_rx.try_iter().collect();
        for (holder, ticket, outcome) in reports {
            let input = Input::RevalidationDone {
                holder,
                ticket,
                outcome,
            };
            actions.extend(st.sup.step(input, now));
        }
        actions.extend(st.sup.step(Input::Tick, now));
        for a in actions {
            act(&shared, &mut st, a, now);
        }
        if let Err(e) = arm(&shared, None) {
            eprintln!("leased: watchdog arm failed: {e}");
        }
        rejoin_lost(&shared, &mut st, now);
        let wake = st.sup.next_wakeup().min(now + POLL);
        let wait = wake
            .saturating_since(RealClock.now())
            .max(Duration::from_millis(1));
        if let Ok(ev) = events.recv_timeout(wait) {
            pending.push(ev);
        }
    }
}

/// Reports holders that appeared, changed lockspaces or exited. An exited
/// holder is marked gone at once (it stops counting for escalation and
/// the watchdog) and its leases are released on a thread of their own:
/// on hung storage even `open()` can block, and this thread must not.
fn sync_holders(shared: &Shared, st: &mut State, now: MonoTime, actions: &mut Vec<Action>) {
    let (current, timeout, gone) = {
        let mut g = lock(shared);
        let timeout = g.cfg.freeze_hook_timeout;
        let mut current = BTreeMap::new();
        let mut gone = Vec::new();
        for h in g.holders.values_mut() {
            if h.gone {
                continue;
            }
            if !crate::proc::alive(&h.id) {
                h.gone = true;
                gone.push((h.id, h.leases.clone()));
                continue;
            }
            let lss: BTreeSet<String> =
                h.leases.iter().map(|l| l.lease.lockspace.clone()).collect();
            current.insert(h.id, (lss, h.freeze_hook.clone(), h.freeze));
        }
        (current, timeout, gone)
    };
    for (id, (lss, hook, frz)) in &current {
        let first = !st.present.contains_key(id);
        let before = st.present.get(id).cloned().unwrap_or_default();
        for ls in lss.difference(&before) {
            if let Ok(lockspace) = Name::new(ls) {
                let freeze_hook = hook.clone().map(|argv| FreezeHook { argv, timeout });
                actions.extend(st.sup.step(
                    Input::HolderAdded {
                        holder: *id,
                        lockspace,
                        freeze_hook,
                    },
                    now,
                ));
            }
        }
        for ls in before.difference(lss) {
            if let Ok(lockspace) = Name::new(ls) {
                actions.extend(st.sup.step(
                    Input::HolderRemoved {
                        holder: *id,
                        lockspace,
                    },
                    now,
                ));
            }
        }
        if first && *frz != Freeze::Running && !lss.is_empty() {
            // Re-adopted frozen after a restart.
            actions.extend(st.sup.step(Input::AdoptFrozen(*id), now));
        }
        st.present.insert(*id, lss.clone());
    }
    for (id, leases) in gone {
        actions.extend(st.sup.step(Input::HolderGone(id), now));
        st.present.remove(&id);
        let shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("release-{}", id.pid))
            .spawn(move || {
                for l in &leases {
                    // Best effort: a lost incarnation's leases are void anyway.
                    let _ = conn::release(&shared, id.pid, &l.lease.lockspace, &l.lease.resource);
                }
                let mut g = lock(&shared);
                if g.holders.get(&id.pid).is_some_and(|h| h.id == id) {
                    g.holders.remove(&id.pid);
                    g.save();
                }
                g.broadcast(Event::HolderGone { pid: id.pid });
            });
        if spawned.is_err() {
            eprintln!("leased: cannot start a thread to release the leases of {id}");
        }
    }
    // Holders unregistered by request (gone from the map while alive).
    let known: Vec<HolderId> = st.present.keys().copied().collect();
    for id in known {
        if !current.contains_key(&id) {
            actions.extend(st.sup.step(Input::HolderGone(id), now));
            st.present.remove(&id);
        }
    }
}

fn on_event(shared: &Shared, ls: &str, e: &HostEvent) {
    let mut g = lock(shared);
    let lockspace = ls.to_string();
    let (state, event) = match e {
        HostEvent::Joined { generation } => {
            if let Some(l) = g.lockspaces.get_mut(ls) {
                l.saved.generation = *generation;
            }
            (Some(LsState::Joined), None)
        }
        HostEvent::RenewalWarning => (
            Some(LsState::Failing),
            Some(Event::RenewalWarning { lockspace }),
        ),
        HostEvent::RenewalFailed => (
            Some(LsState::Failing),
            Some(Event::RenewalFailed { lockspace }),
        ),
        HostEvent::RenewalRecovered => (
            Some(LsState::Joined),
            Some(Event::RenewalRecovered { lockspace }),
        ),
        HostEvent::Lost(r) => (
            Some(LsState::Lost),
            Some(Event::LeaseLost {
                lockspace,
                reason: r.to_string(),
            }),
        ),
        HostEvent::JoinFailed(r) => {
            eprintln!("leased: {ls}: join failed: {r}");
            (
                Some(LsState::Lost),
                Some(Event::LeaseLost {
                    lockspace,
                    reason: r.to_string(),
                }),
            )
        }
        HostEvent::HostChanged { host_id, to, .. } => (
            None,
            Some(Event::HostState {
                lockspace,
                host_id: *host_id,
                state: to.to_string(),
            }),
        ),
        _ => (None, None),
    };
    if let Some(s) = state {
        if let Some(l) = g.lockspaces.get_mut(ls) {
            // Joining stays joining until Joined; lost stays lost.
            let keep = l.state == LsState::Lost
                || (l.state == LsState::Joining && s != LsState::Joined && s != LsState::Lost);
            if !keep {
                l.state = s;
            }
        }
        if s == LsState::Joined {
            g.save();
        }
    }
    if let Some(ev) = event {
        g.broadcast(ev);
    }
}

fn finished_hooks(st: &mut State, now: MonoTime, actions: &mut Vec<Action>) {
    let mut done = Vec::new();
    st.hooks
        .retain_mut(|(h, child, deadline)| match child.try_wait() {
            Ok(Some(status)) => {
                done.push((*h, status.success()));
                false
            }
            Ok(None) if now >= *deadline => {
                let _ = child.kill();
                let _ = child.wait();
                done.push((*h, false));
                false
            }
            Ok(None) => true,
            Err(_) => {
                done.push((*h, false));
                false
            }
        });
    for (holder, ok) in done {
        actions.extend(st.sup.step(Input::HookDone { holder, ok }, now));
    }
}

fn act(shared: &Shared, st: &mut State, a: Action, now: MonoTime) {
    let (pid, what) = match a {
        Action::RunHook {
            holder,
            argv,
            deadline,
        } => {
            let mut cmd = Command::new(&argv[0]);
            cmd.args(&argv[1..])
                .arg(holder.pid.to_string())
                .stdin(Stdio::null());
            match cmd.spawn() {
                Ok(child) => st.hooks.push((holder, child, deadline)),
                Err(e) => {
                    eprintln!("leased: freeze hook for {holder} failed to start: {e}");
                    let acts = st.sup.step(Input::HookDone { holder, ok: false }, now);
                    for a in acts {
                        act(shared, st, a, now);
                    }
                }
            }
            (holder.pid, format!("freeze hook {}", argv.join(" ")))
        }
        Action::Signal { holder, signal } => {
            let (sig, name) = match signal {
                Sig::Term => (rustix::process::Signal::TERM, "SIGTERM"),
                Sig::Kill => (rustix::process::Signal::KILL, "SIGKILL"),
            };
            crate::proc::signal(&holder, sig);
            (holder.pid, name.to_string())
        }
        Action::Frozen { holder } => return freeze::frozen(shared, holder),
        Action::Revalidate { holder, ticket } => {
            eprintln!("leased: holder {}: revalidating its leases", holder.pid);
            return freeze::start(shared, holder, ticket, st.reval_tx.clone());
        }
        Action::Thaw { holder } => return freeze::thaw(shared, holder),
        Action::RevalidationFailed { holder, reason } => {
            return freeze::failed(shared, holder, reason)
        }
        Action::FireWatchdog { reason } => {
            eprintln!("leased: FIRING WATCHDOG: {reason}");
            let wd = lock(shared).watchdog.clone();
            let r = super::lock_wd(&wd).fire(&reason);
            if let Err(e) = r {
                eprintln!("leased: watchdog fire failed: {e}");
            }
            return;
        }
    };
    eprintln!("leased: holder {pid}: {what}");
    lock(shared).broadcast(Event::HolderAction { pid, action: what });
}

/// Arms the watchdog until the earliest expiry of a lockspace that has
/// holders (or is `about_to_be_used`: an acquire in it is starting); with
/// none, disarms it (nothing to protect, and a daemon that exits then must
/// not reset the host). Called by the acquire path before it hands out a
/// lease, so a crash right after an acquire still leaves the holder
/// covered.
///
/// Every caller holds the watchdog's lock from reading the state to the
/// arm or disarm, so a periodic re-arm that saw no holder cannot disarm
/// after an acquire armed (the acquire counts in `acquiring` first).
pub(crate) fn arm(shared: &Shared, about_to_be_used: Option<&str>) -> Result<(), String> {
    let wd = lock(shared).watchdog.clone();
    let mut wd = super::lock_wd(&wd);
    let now = RealClock.now();
    let expiry = {
        let mut g = lock(shared);
        if let Some(ls) = about_to_be_used {
            *g.acquiring.entry(ls.to_string()).or_default() += 1;
        }
        let mut e: Option<MonoTime> = None;
        for (name, l) in &g.lockspaces {
            let used = g.acquiring.get(name).is_some_and(|n| *n > 0)
                || g.holders.values().any(|h| h.uses(name));
            if used {
                // No expiry (not joined, or lost): nothing may run on it.
                let x = l.runner.state().expiry.unwrap_or(now);
                e = Some(e.map_or(x, |e| e.min(x)));
            }
        }
        e
    };
    let r = match expiry {
        Some(e) => wd.arm(e),
        None => wd.disarm(),
    };
    r.map_err(|e| e.to_string())
}

/// Restarts lost lockspaces (new generation) once no running holder uses
/// them, on a thread of their own (opening hung storage can block).
fn rejoin_lost(shared: &Shared, st: &mut State, now: MonoTime) {
    let todo: Vec<String> = {
        let g = lock(shared);
        g.lockspaces
            .iter()
            .filter(|(name, l)| {
                l.state == LsState::Lost
                    && st.rejoin_after.get(*name).is_none_or(|t| now >= *t)
                    && !g.holders.values().any(|h| h.uses(name))
            })
            .map(|(n, _)| n.clone())
            .collect()
    };
    for name in todo {
        // Not again before this attempt can have finished.
        st.rejoin_after
            .insert(name.clone(), now + Duration::from_secs(5));
        let shared = shared.clone();
        let _ = std::thread::Builder::new()
            .name(format!("rejoin-{name}"))
            .spawn(move || rejoin(&shared, &name));
    }
}

fn rejoin(shared: &Shared, name: &str) {
    let (cfg, saved, events) = {
        let g = lock(shared);
        let Some(l) = g.lockspaces.get(name) else {
            return;
        };
        (g.cfg.clone(), l.saved.clone(), g.events.clone())
    };
    match start_lockspace(&cfg, &saved, JoinMode::New { prior_gone: true }, events) {
        Ok((header, runner)) => {
            eprintln!("leased: {name}: rejoining with a new generation");
            let old = lock(shared).lockspaces.insert(
                name.to_string(),
                super::Ls {
                    saved,
                    header,
                    runner,
                    state: LsState::Joining,
                },
            );
            if let Some(old) = old {
                old.runner.stop(false);
            }
        }
        Err(e) => eprintln!("leased: {name}: cannot rejoin: {e}; retrying in 5 s"),
    }
}
