//! Reconciliation with `leased`'s own view (its status: every holder with
//! pid, start time, leases and freeze state), once at start right after
//! adoption, every [`EVERY`], and as soon as the agent subscribed to
//! `leased`'s events again (events may have been missed meanwhile):
//!
//! - each VM whose process holds its lease is confirmed (and marked frozen
//!   if `leased` froze it); one whose process does not is killed. No
//!   answer from `leased` kills nothing: the VM stays as it is, reported
//!   once (`vm-lease-unconfirmed`), and the check is repeated;
//! - a VM frozen for [`policy::REVALIDATE_AFTER`] is asked about directly
//!   (`Revalidate`): thawed when `leased` revalidated it, killed when the
//!   revalidation failed or `leased` does not know it, else left frozen;
//! - a holder of leases that is none of the agent's VMs is reported once
//!   (`lease-orphan`), not touched.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nosplit_leased::api::{HolderStatus, Request, Response};
use nosplit_vmrt::driver::ProcIdentity;

use super::policy::{self, FrozenVerdict, LeaseVerdict};
use super::{lock, vms, Agent, VmEntry};
use crate::model::VmStatus;

/// How often the agent reconciles with `leased`.
pub(super) const EVERY: Duration = Duration::from_secs(2);

/// Runs until the agent stops.
pub(super) fn run(agent: &Agent) {
    let mut last = Instant::now();
    while !agent.stopping() {
        std::thread::sleep(Duration::from_millis(100));
        if agent.reconcile_now.swap(false, Ordering::SeqCst) || last.elapsed() >= EVERY {
            once(agent);
            last = Instant::now();
        }
    }
}

/// A leased VM as it was before `leased` was asked.
struct View {
    entry: Arc<Mutex<VmEntry>>,
    ident: ProcIdentity,
    lockspace: String,
    resource: String,
    epoch: u64,
}

/// One reconciliation.
pub(super) fn once(agent: &Agent) {
    if agent.stopping() {
        return;
    }
    // Taken before asking: every VM here held its lease before the answer.
    let views: Vec<View> = agent
        .entries()
        .into_iter()
        .filter_map(|entry| {
            let e = lock(&entry);
            let l = e.rec.lease.as_ref()?;
            let v = View {
                ident: e.ident?,
                lockspace: l.lockspace.clone(),
                resource: e.rec.id.clone(),
                epoch: e.epoch,
                entry: entry.clone(),
            };
            e.alive().then_some(v)
        })
        .collect();
    let mut changed = false;
    match agent.leased(&Request::Status) {
        Ok(Response::Status(st)) => {
            changed |= leases(agent, &views, &st.holders);
            orphans(agent, &st.holders);
        }
        Ok(other) => unconfirmed(agent, &views, &format!("leased answered {other:?}")),
        Err(e) => unconfirmed(agent, &views, &e.to_string()),
    }
    changed |= frozen(agent);
    if changed {
        agent.persist();
    }
}

fn leases(agent: &Agent, views: &[View], holders: &[HolderStatus]) -> bool {
    let mut changed = false;
    for v in views {
        let verdict = policy::lease_verdict(v.ident, &v.lockspace, &v.resource, holders);
        let mut e = lock(&v.entry);
        if !e.alive() || e.ident != Some(v.ident) {
            continue;
        }
        match verdict {
            LeaseVerdict::Held { frozen, lver } => {
                if !e.lease_confirmed {
                    e.lease_confirmed = true;
                    if e.unconfirmed_said {
                        agent.events.push(
                            "vm-lease-confirmed",
                            Some(&e.rec.id),
                            format!("pid {} holds its lease (lver {lver})", e.pid),
                        );
                    }
                }
                if frozen && e.status() != VmStatus::Frozen && e.epoch == v.epoch {
                    e.set_status(VmStatus::Frozen);
                    agent.events.push(
                        "vm-frozen",
                        Some(&e.rec.id),
                        format!(
                            "pid {}: leased reports it frozen (an event was missed)",
                            e.pid
                        ),
                    );
                }
                if e.rec.lver != Some(lver) {
                    e.rec.lver = Some(lver);
                    changed = true;
                }
            }
            // A process that ended meanwhile is the monitor's to report.
            LeaseVerdict::NotHeld(why) if e.process_alive() => {
                vms::kill_unleased(agent, &mut e, &why);
                changed = true;
            }
            LeaseVerdict::NotHeld(_) => {}
        }
    }
    changed
}

fn unconfirmed(agent: &Agent, views: &[View], why: &str) {
    for v in views {
        let mut e = lock(&v.entry);
        if e.alive() && !e.lease_confirmed && !e.unconfirmed_said {
            e.unconfirmed_said = true;
            agent.events.push(
                "vm-lease-unconfirmed",
                Some(&e.rec.id),
                format!(
                    "pid {}: leased did not answer ({why}); kept as it is, asking again",
                    e.pid
                ),
            );
        }
    }
}

fn orphans(agent: &Agent, holders: &[HolderStatus]) {
    // After the answer, starting pids first: a VM leaves `starting` only
    // once it is in `vms`.
    let starting = lock(&agent.starting).clone();
    let known: BTreeSet<(u32, u64)> = agent
        .entries()
        .iter()
        .filter_map(|e| lock(e).ident.map(|i| (i.pid, i.start_time)))
        .collect();
    let found = policy::orphans(holders, &known, &starting);
    let mut said = lock(&agent.orphans_said);
    said.retain(|k| holders.iter().any(|h| (h.pid, h.start_time) == *k));
    for h in found {
        if !said.insert((h.pid, h.start_time)) {
            continue;
        }
        for l in &h.leases {
            agent.events.push(
                "lease-orphan",
                Some(&l.lease.resource),
                format!(
                    "leased holds {}/{} (lver {}) for pid {} (start time {}, {}), which is no VM of this agent",
                    l.lease.lockspace, l.lease.resource, l.lver, h.pid, h.start_time, h.state
                ),
            );
        }
    }
}

/// Asks `leased` about the VMs frozen long enough.
fn frozen(agent: &Agent) -> bool {
    let mut changed = false;
    for entry in agent.entries() {
        let (pid, ident, epoch) = {
            let e = lock(&entry);
            let due = e
                .frozen_since
                .is_some_and(|t| policy::revalidate_due(t.elapsed()));
            if !e.alive() || e.status() != VmStatus::Frozen || e.rec.lease.is_none() || !due {
                continue;
            }
            (e.pid, e.ident, e.epoch)
        };
        let answer = agent.leased(&Request::Revalidate { pid: Some(pid) });
        let mut e = lock(&entry);
        if e.epoch != epoch || e.ident != ident {
            continue;
        }
        match policy::frozen_verdict(&answer) {
            FrozenVerdict::Thaw => vms::thaw(
                agent,
                &mut e,
                "leased reports the lease revalidated (the event was missed)",
            ),
            FrozenVerdict::Kill(why) if e.process_alive() => {
                vms::kill_unleased(agent, &mut e, &why);
                changed = true;
            }
            FrozenVerdict::Kill(_) | FrozenVerdict::Wait(_) | FrozenVerdict::Unknown(_) => {}
        }
    }
    changed
}
