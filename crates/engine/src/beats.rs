//! Heartbeat listeners: one UDP socket per plane address; each datagram
//! that decodes as an agent heartbeat is passed on with the plane it
//! arrived on and the time it arrived (the sender's claims are not
//! trusted for the plane: a beat counts for the plane whose socket got it),
//! and [`from_host`], which checks a beat came from its host's address.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nosplit_clock::{Clock, MonoTime, RealClock};
use nosplit_engine_core::model::{Host, Plane};

/// One heartbeat as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The sender's host id.
    pub host_id: u32,
    /// The plane whose socket received it.
    pub plane: Plane,
    /// Agent boot id.
    pub boot: String,
    /// When (`CLOCK_BOOTTIME`).
    pub at: MonoTime,
    /// From where.
    pub from: SocketAddr,
}

/// Listeners; stop when dropped.
#[derive(Debug)]
pub struct Listeners {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// Why a listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("heartbeat listener on {addr} ({plane:?}): {source}")]
pub struct ListenError {
    /// Address.
    pub addr: SocketAddr,
    /// Plane.
    pub plane: Plane,
    /// Cause.
    #[source]
    pub source: std::io::Error,
}

impl Listeners {
    /// Binds every `(plane, address)` and forwards beats to `out`.
    pub fn start(
        binds: &[(Plane, SocketAddr)],
        out: Sender<Received>,
    ) -> Result<Listeners, ListenError> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for &(plane, addr) in binds {
            let err = |source| ListenError {
                addr,
                plane,
                source,
            };
            let sock = UdpSocket::bind(addr).map_err(err)?;
            sock.set_read_timeout(Some(Duration::from_millis(200)))
                .map_err(err)?;
            let (st, out) = (stop.clone(), out.clone());
            let t = std::thread::Builder::new()
                .name(format!("beats-{plane:?}"))
                .spawn(move || {
                    let mut buf = [0u8; 1024];
                    while !st.load(Ordering::Relaxed) {
                        let Ok((n, from)) = sock.recv_from(&mut buf) else {
                            continue;
                        };
                        let Some(b) = nosplit_agent::heartbeat::decode(&buf[..n]) else {
                            continue;
                        };
                        let r = Received {
                            host_id: b.host_id,
                            plane,
                            boot: b.boot,
                            at: RealClock.now(),
                            from,
                        };
                        if out.send(r).is_err() {
                            return;
                        }
                    }
                })
                .map_err(err)?;
            threads.push(t);
        }
        Ok(Listeners { stop, threads })
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Whether beat `r` comes from where host `h` said its plane is: a
/// datagram from any other address (another host, a stray sender) is not
/// that host's heartbeat. A host that gave no address for the plane is
/// taken at its word.
pub fn from_host(h: &Host, r: &Received) -> bool {
    h.planes
        .iter()
        .find(|(p, _)| *p == r.plane)
        .is_none_or(|(_, ip)| ip.parse::<std::net::IpAddr>().ok() == Some(r.from.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nosplit_agent::heartbeat::{PlaneTarget, Sender as BeatSender};

    #[test]
    fn beats_are_received_per_plane() {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let (tx, rx) = std::sync::mpsc::channel();
        let _l = Listeners::start(&[(Plane::Stor, addr)], tx).unwrap();
        let _s = BeatSender::start(
            7,
            "h7",
            "boot",
            &[PlaneTarget {
                plane: "stor".into(),
                local: "127.0.0.1:0".parse().unwrap(),
                engine: addr,
            }],
            Duration::from_millis(20),
        );
        let r = rx.recv_timeout(Duration::from_secs(2)).unwrap();
        assert_eq!(
            (r.host_id, r.plane, r.boot.as_str()),
            (7, Plane::Stor, "boot")
        );
    }

    #[test]
    fn a_beat_counts_only_from_the_hosts_address_on_that_plane() {
        let h = Host {
            name: "h1".into(),
            host_id: 1,
            agent: "10.77.1.11:7410".into(),
            planes: vec![
                (Plane::Mgmt, "10.77.1.11".into()),
                (Plane::Stor, "10.77.3.11".into()),
            ],
            cpus: 4,
            memory_mib: 4096,
            maintenance: false,
        };
        let beat = |plane, from: &str| Received {
            host_id: 1,
            plane,
            boot: "b".into(),
            at: RealClock.now(),
            from: from.parse().unwrap(),
        };
        assert!(from_host(&h, &beat(Plane::Mgmt, "10.77.1.11:4000")));
        assert!(
            !from_host(&h, &beat(Plane::Mgmt, "10.77.1.12:4000")),
            "another host"
        );
        assert!(
            !from_host(&h, &beat(Plane::Stor, "10.77.1.11:4000")),
            "wrong plane's address"
        );
        assert!(
            from_host(&h, &beat(Plane::Svc, "10.77.2.99:4000")),
            "no address given for svc"
        );
    }
}
