//! Registration with the engine: the host's facts (host id, agent address,
//! plane addresses, capacity) sent to the engine's `POST /v1/register`
//! with this host's own token, at start and every [`REFRESH`] after, so
//! the engine learns a new host, and a changed one, without an operator.
//!
//! [`facts`] reads what this machine has (`available_parallelism`,
//! `/proc/meminfo`); the `[engine]` section may offer less (or, in the
//! lab, where hosts share one machine, a nominal capacity). A refused
//! registration (wrong token, a host id that clashes) is logged with the
//! engine's reason and retried slowly; it never stops the agent, which
//! keeps serving the VMs it runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nosplit_engine_api::client::Client;
use nosplit_engine_api::types::NewHost;
use nosplit_engine_core::model::Plane as EnginePlane;

use crate::config::{AgentConfig, Plane};

/// How often a registered agent refreshes its registration.
pub const REFRESH: Duration = Duration::from_secs(60);
/// Longest wait between failed attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What this machine has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// CPUs online.
    pub cpus: u32,
    /// Memory, MiB.
    pub memory_mib: u64,
}

/// Reads this machine's CPUs and memory (1 and 0 when unknown).
pub fn facts() -> Facts {
    let cpus = std::thread::available_parallelism()
        .ok()
        .and_then(|n| u32::try_from(n.get()).ok())
        .unwrap_or(1);
    let memory_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| mem_total_mib(&t))
        .unwrap_or(0);
    Facts { cpus, memory_mib }
}

/// `MemTotal` of a `/proc/meminfo` text, in MiB.
fn mem_total_mib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// The registration this agent sends: the configured capacity where
/// given, the machine's otherwise. The agent address is where its API
/// listens; an unspecified listen address (`0.0.0.0`) is reported as the
/// management plane's address.
pub fn request(cfg: &AgentConfig, facts: Facts) -> NewHost {
    let link = cfg.engine.as_ref();
    let mut agent = cfg.listen;
    if agent.ip().is_unspecified() {
        if let Some(p) = cfg.planes.iter().find(|p| p.name == Plane::Mgmt) {
            agent.set_ip(p.address.into());
        }
    }
    NewHost {
        name: cfg.host_name.clone(),
        host_id: cfg.host_id,
        agent: agent.to_string(),
        planes: cfg
            .planes
            .iter()
            .map(|p| {
                let plane = match p.name {
                    Plane::Mgmt => EnginePlane::Mgmt,
                    Plane::Svc => EnginePlane::Svc,
                    Plane::Stor => EnginePlane::Stor,
                };
                (plane, p.address.to_string())
            })
            .collect(),
        cpus: link.and_then(|l| l.cpus).unwrap_or(facts.cpus),
        memory_mib: link.and_then(|l| l.memory_mib).unwrap_or(facts.memory_mib),
    }
}

/// The wait before attempt `failures + 1` after `failures` failures in a
/// row: 0.5 s, doubling, at most [`MAX_BACKOFF`].
pub fn backoff(failures: u32) -> Duration {
    let ms = 500u64.saturating_mul(1u64 << failures.min(16));
    Duration::from_millis(ms).min(MAX_BACKOFF)
}

/// Registers in the background until dropped.
#[derive(Debug)]
pub struct Registrar {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Registrar {
    /// Starts registering `req` with the engine at `url`, with `token`.
    /// `None` when the URL is unusable (the config check refuses those).
    pub fn start(url: &str, token: &str, req: NewHost) -> Option<Registrar> {
        let client = Client::new(url, token)
            .ok()?
            .with_timeout(Duration::from_secs(5));
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::Builder::new()
            .name("register".into())
            .spawn(move || run(&client, &req, &st))
            .ok()?;
        Some(Registrar {
            stop,
            thread: Some(thread),
        })
    }
}

fn run(client: &Client, req: &NewHost, stop: &AtomicBool) {
    let mut failures = 0u32;
    let mut registered = false;
    while !stop.load(Ordering::Relaxed) {
        let wait = match client.register_host(req) {
            Ok(h) => {
                if !registered || failures > 0 {
                    eprintln!(
                        "agent: registered with the engine as {} (host id {}, state {:?})",
                        h.host.name, h.host.host_id, h.state
                    );
                }
                registered = true;
                failures = 0;
                REFRESH
            }
            Err(e) => {
                if failures.is_multiple_of(10) {
                    eprintln!("agent: registering with the engine failed (will retry): {e}");
                }
                failures = failures.saturating_add(1);
                backoff(failures)
            }
        };
        // Sleep in small steps so a drop does not wait a whole period.
        let mut left = wait;
        while !left.is_zero() && !stop.load(Ordering::Relaxed) {
            let step = left.min(Duration::from_millis(200));
            std::thread::sleep(step);
            left -= step;
        }
    }
}

impl Drop for Registrar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_and_backoff() {
        let text = "MemTotal:       24589224 kB\nMemFree:  100 kB\n";
        assert_eq!(mem_total_mib(text), Some(24012));
        assert_eq!(mem_total_mib("MemFree: 1 kB\n"), None);
        assert_eq!(mem_total_mib("MemTotal: lots\n"), None);
        assert_eq!(backoff(1), Duration::from_millis(1000));
        assert_eq!(backoff(3), Duration::from_millis(4000));
        assert_eq!(backoff(60), MAX_BACKOFF);
        let f = facts();
        assert!(f.cpus >= 1 && f.memory_mib > 0, "{f:?}");
    }
}
