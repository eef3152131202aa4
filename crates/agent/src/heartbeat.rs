//! Heartbeats on every plane: a small UDP datagram from this host's address
//! on each plane to the engine's address on that plane, every interval, so
//! the engine can tell which of a host's networks are down (not just
//! whether the host is). The engine's receiving side is [`Listener`].

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Beat {
    /// Host id.
    pub host_id: u32,
    /// Host name.
    pub host: String,
    /// Plane it was sent on.
    pub plane: String,
    /// Sequence number (per plane, from 1).
    pub seq: u64,
    /// Agent boot id (a new one means the agent restarted).
    pub boot: String,
}

/// Largest datagram accepted.
const MAX_BEAT: usize = 512;

/// Decodes a datagram; `None` if it is not a heartbeat.
pub fn decode(buf: &[u8]) -> Option<Beat> {
    if buf.len() > MAX_BEAT {
        return None;
    }
    serde_json::from_slice(buf).ok()
}

/// Where one plane's heartbeats go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaneTarget {
    /// Plane name.
    pub plane: String,
    /// This host's address on the plane (bound, so the beat leaves on it).
    pub local: SocketAddr,
    /// The engine's address on the plane.
    pub engine: SocketAddr,
}

/// Sends heartbeats until dropped.
#[derive(Debug)]
pub struct Sender {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Sender {
    /// Starts one sender thread per plane. A plane whose address cannot be
    /// bound yet (link down at start) keeps retrying.
    pub fn start(
        host_id: u32,
        host: &str,
        boot: &str,
        planes: &[PlaneTarget],
        every: Duration,
    ) -> Sender {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = planes
            .iter()
            .filter_map(|p| {
                let (p, st) = (p.clone(), stop.clone());
                let (host, boot) = (host.to_string(), boot.to_string());
                std::thread::Builder::new()
                    .name(format!("beat-{}", p.plane))
                    .spawn(move || {
                        let mut seq = 0u64;
                        let mut sock: Option<UdpSocket> = None;
                        while !st.load(Ordering::Relaxed) {
                            if sock.is_none() {
                                sock = UdpSocket::bind(p.local).ok();
                            }
                            if let Some(s) = &sock {
                                seq += 1;
                                let b = Beat {
                                    host_id,
                                    host: host.clone(),
                                    plane: p.plane.clone(),
                                    seq,
                                    boot: boot.clone(),
                                };
                                if let Ok(bytes) = serde_json::to_vec(&b) {
                                    // A send error (unreachable) is the
                                    // engine's to notice: the beat is missing.
                                    let _ = s.send_to(&bytes, p.engine);
                                }
                            }
                            std::thread::sleep(every);
                        }
                    })
                    .ok()
            })
            .collect();
        Sender { stop, threads }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_arrive_per_plane_and_garbage_is_ignored() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let engine = rx.local_addr().unwrap();
        let planes: Vec<PlaneTarget> = ["mgmt", "stor"]
            .iter()
            .map(|p| PlaneTarget {
                plane: (*p).into(),
                local: "127.0.0.1:0".parse().unwrap(),
                engine,
            })
            .collect();
        let s = Sender::start(3, "h3", "b1", &planes, Duration::from_millis(20));
        let mut seen = std::collections::BTreeSet::new();
        let mut buf = [0u8; 1024];
        while seen.len() < 2 {
            let n = rx.recv(&mut buf).unwrap();
            let b = decode(&buf[..n]).unwrap();
            assert_eq!(
                (b.host_id, b.host.as_str(), b.boot.as_str()),
                (3, "h3", "b1")
            );
            seen.insert(b.plane);
        }
        drop(s);
        assert!(decode(b"{\"host_id\":1}").is_none());
        assert!(decode(&[0xff; 600]).is_none());
    }
}
