//! Follows `leased`'s event stream: lease trouble and loss become agent
//! events; a freeze hook run marks the VM frozen; a revalidated lease thaws
//! its VM (the only way a frozen VM runs again). Reconnects when `leased`
//! restarts.

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

fn handle(agent: &Agent, v: &Value) {
    let kind = v["event"].as_str().unwrap_or("");
    let ls = v["lockspace"].as_str().unwrap_or("");
    let pid = v["pid"].as_u64().and_then(|p| u32::try_from(p).ok());
    match (kind, pid) {
        ("renewal_warning" | "renewal_failed", _) => {
            agent
                .events
                .push("lease-trouble", None, format!("lockspace {ls}: {kind}"))
        }
        ("renewal_recovered", _) => {
            agent
                .events
                .push("lease-recovered", None, format!("lockspace {ls}"))
        }
        ("lease_lost", _) => agent.events.push(
            "lease-lost",
            None,
            format!("lockspace {ls}: {}", v["reason"].as_str().unwrap_or("")),
        ),
        ("holder_action", Some(pid)) => {
            let action = v["action"].as_str().unwrap_or("");
            // "frozen": the hook confirmed (a hook that only started, or
            // failed, leaves the VM unfrozen and leased escalates).
            if action == "frozen" {
                agent.frozen_pid(pid);
            }
        }
        ("revalidated", Some(pid)) => {
            agent
                .events
                .push("lease-revalidated", None, format!("pid {pid}"));
            agent.thaw_pid(pid);
        }
        ("revalidation_failed", Some(pid)) => agent.events.push(
            "lease-revalidation-failed",
            None,
            format!("pid {pid}: {}", v["reason"].as_str().unwrap_or("")),
        ),
        _ => {}
    }
}
