//! Shared helpers of the lab integration tests: unique labs with a Drop guard,
//! ping and one-way UDP probes between hosts.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use nosplit_labnet::naming::netns_path;
use nosplit_labnet::{down, run_in_host, up, LabName, NetPlan, Plane, Prefix};

/// A lab that is torn down when dropped (also when a test panics).
pub struct TestLab {
    pub plan: NetPlan,
}

impl TestLab {
    pub fn lab(&self) -> &LabName {
        self.plan.lab()
    }

    pub fn addr(&self, host: u32, plane: Plane) -> Ipv4Addr {
        self.plan.host_addrs(host).unwrap().get(plane)
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if let Err(e) = down(self.plan.lab()) {
            eprintln!("cleanup of {} failed: {e}", self.plan.lab());
        }
    }
}

/// A lab name unique per test (`tag`) and per process: `t<tag><pid base 36>`.
pub fn unique_name(tag: char) -> LabName {
    let mut pid = std::process::id() % (36 * 36 * 36);
    let mut s = String::new();
    for _ in 0..3 {
        s.push(char::from_digit(pid % 36, 36).unwrap());
        pid /= 36;
    }
    LabName::new(&format!("t{tag}{s}")).unwrap()
}

/// Plan for a unique lab; `octet` makes the prefix 10.<octet> unique per test.
pub fn plan(tag: char, octet: u8, hosts: u32) -> NetPlan {
    let lab = unique_name(tag);
    // Leftovers of an earlier crashed run of this test.
    down(&lab).unwrap();
    NetPlan::new(lab, hosts)
        .unwrap()
        .with_prefix(Prefix::new(10, octet).unwrap())
}

/// Brings up a lab for a test.
pub fn start(tag: char, octet: u8, hosts: u32) -> TestLab {
    let plan = plan(tag, octet, hosts);
    up(&plan).unwrap();
    TestLab { plan }
}

/// Whether `host` gets an answer to one ping to `addr`.
pub fn ping(lab: &LabName, host: u32, addr: Ipv4Addr) -> bool {
    let out = run_in_host(lab, host, &["ping", "-n", "-c1", "-W1", &addr.to_string()]).unwrap();
    out.status.success()
}

/// A UDP socket bound in the namespace of `host` (made on a thread that
/// joined the namespace; the socket stays in it).
pub fn udp_in(lab: &LabName, host: u32, bind: SocketAddr) -> UdpSocket {
    let ns = std::fs::File::open(netns_path(lab, host).unwrap()).unwrap();
    std::thread::spawn(move || {
        // SAFETY: setns on a valid open namespace fd; it only changes this
        // short-lived thread's network namespace.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        UdpSocket::bind(bind).unwrap()
    })
    .join()
    .unwrap()
}

/// Whether a datagram sent from `from` to `to` (address `to_addr`) arrives.
pub fn udp_reaches(
    lab: &LabName,
    from: u32,
    from_addr: Ipv4Addr,
    to: u32,
    to_addr: Ipv4Addr,
) -> bool {
    let rx = udp_in(lab, to, SocketAddr::from((to_addr, 0)));
    let dest = rx.local_addr().unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let tx = udp_in(lab, from, SocketAddr::from((from_addr, 0)));
    for _ in 0..3 {
        let _ = tx.send_to(b"probe", dest);
        let mut buf = [0u8; 16];
        if let Ok((n, _)) = rx.recv_from(&mut buf) {
            return &buf[..n] == b"probe";
        }
    }
    false
}
