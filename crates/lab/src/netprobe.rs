//! Naive network-based failure detection, as many HA stacks do it: probe
//! each host's management address from outside; a host that has not
//! answered for a while is presumed lost. The probe is a TCP connect to a
//! closed port: a reset (connection refused) proves the host's network
//! stack answered; a timeout or an unreachable error does not.
//!
//! The lab uses it to show what leases add: on its own this detector
//! restarts VMs of a host that is only cut off (a split brain without
//! leases); with leases the restart is refused while the host still renews.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Probe period.
const PERIOD: Duration = Duration::from_millis(250);
/// One probe's timeout.
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);
/// The port probed (discard; nothing listens there in the lab).
const PORT: u16 = 9;

/// Did a connect attempt reach the host's network stack?
pub fn answered(r: &std::io::Result<TcpStream>) -> bool {
    match r {
        Ok(_) => true,
        Err(e) => e.kind() == ErrorKind::ConnectionRefused,
    }
}

/// Probes hosts in the background; stops when dropped.
#[derive(Debug)]
pub struct NetProbe {
    last_ok: Arc<Mutex<BTreeMap<u32, Instant>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl NetProbe {
    /// Starts one prober thread per host (`(host, management address)`).
    pub fn start(hosts: &[(u32, Ipv4Addr)]) -> NetProbe {
        let last_ok: Arc<Mutex<BTreeMap<u32, Instant>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let threads = hosts
            .iter()
            .filter_map(|&(h, addr)| {
                let (lo, st) = (last_ok.clone(), stop.clone());
                std::thread::Builder::new()
                    .name(format!("lab-probe-h{h}"))
                    .spawn(move || {
                        let sa = SocketAddr::from((addr, PORT));
                        while !st.load(Ordering::Relaxed) {
                            let t = Instant::now();
                            if answered(&TcpStream::connect_timeout(&sa, PROBE_TIMEOUT)) {
                                if let Ok(mut m) = lo.lock() {
                                    m.insert(h, t);
                                }
                            }
                            std::thread::sleep(PERIOD.saturating_sub(t.elapsed()));
                        }
                    })
                    .ok()
            })
            .collect();
        NetProbe {
            last_ok,
            stop,
            threads,
        }
    }

    /// When `host` last answered (`None`: never).
    pub fn last_answer(&self, host: u32) -> Option<Instant> {
        self.last_ok.lock().ok().and_then(|m| m.get(&host).copied())
    }

    /// Has `host` been silent for longer than `timeout` (since `since`
    /// when it never answered)?
    pub fn lost(&self, host: u32, timeout: Duration, since: Instant) -> bool {
        let last = self.last_answer(host).unwrap_or(since).max(since);
        last.elapsed() > timeout
    }
}

impl Drop for NetProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
