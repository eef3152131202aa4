//! Follows `leased`'s event stream: lease trouble and loss become agent
//! events naming each VM with a lease in that lockspace; a freeze hook run
//! marks the VM frozen; a revalidated lease thaws its VM (with the direct
//! check in `reconcile`, the only ways a frozen VM runs again). Reconnects
//! when `leased` restarts, and then asks for a reconciliation at once:
//! events may have been missed.

use std::sync::atomic::Ordering;
use std::time::Duration;

use nosplit_leased::client::Client;
use serde_json::Value;

use super::Agent;

/// Runs until the agent stops.
pub(super) fn run(agent: &Agent) {
    let mut said_down = false;
    while !agent.stopping() {
        let sub = Client::connect(&agent.cfg.leased_socket).and_then(Client::subscribe);
        let events = match sub {
            Ok(ev) => {
                if said_down {
                    agent.events.push("leased-up", None, "subscribed again");
                }
                said_down = false;
                agent.reconcile_now.store(true, Ordering::SeqCst);
                ev
            }
            Err(e) => {
                if !said_down {
                    agent.events.push("leased-down", None, e.to_string());
                    said_down = true;
                }
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
        };
        for ev in events {
            if agent.stopping() {
                return;
            }
            let Ok(ev) = ev else { break };
            let v = serde_json::to_value(&ev).unwrap_or(Value::Null);
            handle(agent, &v);
        }
    }
}

/// One event for each VM concerned, or one for none.
fn per_vm(agent: &Agent, kind: &str, vms: Vec<String>, detail: &str) {
    if vms.is_empty() {
        agent.events.push(kind, None, detail);
    }
    for id in vms {
        agent.events.push(kind, Some(&id), detail);
    }
}

pub(super) fn handle(agent: &Agent, v: &Value) {
    let kind = v["event"].as_str().unwrap_or("");
    let ls = v["lockspace"].as_str().unwrap_or("");
    let pid = v["pid"].as_u64().and_then(|p| u32::try_from(p).ok());
    let in_ls = || agent.vm_ids(|e| e.rec.lease.as_ref().is_some_and(|l| l.lockspace == ls));
    let of_pid = |pid: u32| agent.vm_ids(|e| e.pid == pid);
    match (kind, pid) {
        ("renewal_warning" | "renewal_failed", _) => per_vm(
            agent,
            "lease-trouble",
            in_ls(),
            &format!("lockspace {ls}: {kind}"),
        ),
        ("renewal_recovered", _) => per_vm(
            agent,
            "lease-recovered",
            in_ls(),
            &format!("lockspace {ls}"),
        ),
        ("lease_lost", _) => per_vm(
            agent,
            "lease-lost",
            in_ls(),
            &format!("lockspace {ls}: {}", v["reason"].as_str().unwrap_or("")),
        ),
        ("holder_action", Some(pid)) => {
            let action = v["action"].as_str().unwrap_or("");
            // "frozen": the hook confirmed (a hook that only started, or
            // failed, leaves the VM unfrozen and leased escalates).
            if action == "frozen" {
                agent.frozen_pid(pid, "lease renewal failing");
            }
        }
        ("revalidated", Some(pid)) => {
            per_vm(
                agent,
                "lease-revalidated",
                of_pid(pid),
                &format!("pid {pid}"),
            );
            agent.thaw_pid(pid);
        }
        ("revalidation_failed", Some(pid)) => per_vm(
            agent,
            "lease-revalidation-failed",
            of_pid(pid),
            &format!("pid {pid}: {}", v["reason"].as_str().unwrap_or("")),
        ),
        _ => {}
    }
}
