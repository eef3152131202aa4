//! Naming and addressing of a lab (pure): lab names, planes, namespace, bridge
//! and veth names, and the IPv4 addresses of bridges and hosts.
//!
//! Everything a lab creates is found again by these names alone, so `down`
//! works without any state file. Names are unambiguous between labs: a lab
//! name never contains `-`, and the `h<digits>` part after it is all digits.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;

use crate::NetError;

/// Largest number of hosts in one lab.
pub const MAX_HOSTS: u32 = 64;
/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const MAX_IFNAME: usize = 15;
/// Prefix length of every plane's subnet.
pub const PLANE_PREFIX_LEN: u8 = 24;
/// Directory holding named network namespaces (as `ip netns` uses it).
pub const NETNS_DIR: &str = "/run/netns";

/// A validated lab name: `[a-z][a-z0-9]{0,4}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LabName(String);

impl LabName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self, NetError> {
        let bad = |reason| NetError::InvalidLab {
            name: name.to_string(),
            reason,
        };
        let mut chars = name.chars();
        match chars.next() {
            None => return Err(bad("empty")),
            Some(c) if !c.is_ascii_lowercase() => return Err(bad("must start with a-z")),
            Some(_) => {}
        }
        if name.len() > 5 {
            return Err(bad("longer than 5 characters"));
        }
        if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) {
            return Err(bad("only a-z and 0-9 allowed"));
        }
        Ok(LabName(name.to_string()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LabName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for LabName {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Self, NetError> {
        LabName::new(s)
    }
}

/// One of the three networks every host is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Plane {
    Management,
    Service,
    Storage,
}

impl Plane {
    /// All planes, in address order (third octet 1, 2, 3).
    pub const ALL: [Plane; 3] = [Plane::Management, Plane::Service, Plane::Storage];

    /// Short name: `mgmt`, `svc`, `stor`.
    pub fn as_str(self) -> &'static str {
        match self {
            Plane::Management => "mgmt",
            Plane::Service => "svc",
            Plane::Storage => "stor",
        }
    }

    /// Third address octet of the plane's subnet (1, 2, 3); also its index + 1.
    pub fn octet(self) -> u8 {
        match self {
            Plane::Management => 1,
            Plane::Service => 2,
            Plane::Storage => 3,
        }
    }

    /// Index into [`Plane::ALL`].
    pub fn index(self) -> usize {
        usize::from(self.octet() - 1)
    }

    /// Name of the plane's interface inside a host namespace: `eth-<plane>`.
    pub fn host_ifname(self) -> &'static str {
        match self {
            Plane::Management => "eth-mgmt",
            Plane::Service => "eth-svc",
            Plane::Storage => "eth-stor",
        }
    }
}

impl fmt::Display for Plane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Plane {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Self, NetError> {
        Plane::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| NetError::InvalidPlane(s.to_string()))
    }
}

/// The first two octets of the lab's addresses, inside a private range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix([u8; 2]);

impl Prefix {
    /// Checks that `a.b.0.0/16` lies inside 10/8, 172.16/12 or 192.168/16.
    pub fn new(a: u8, b: u8) -> Result<Self, NetError> {
        let private = a == 10 || (a == 172 && (16..=31).contains(&b)) || (a == 192 && b == 168);
        if !private {
            return Err(NetError::InvalidPrefix {
                prefix: format!("{a}.{b}"),
                reason: "not inside a private range (10/8, 172.16/12, 192.168/16)",
            });
        }
        Ok(Prefix([a, b]))
    }

    /// The address `a.b.plane.last`.
    pub fn addr(self, plane: Plane, last: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.0[0], self.0[1], plane.octet(), last)
    }

    /// Whether `addr` lies in one of the three plane subnets of this prefix.
    pub fn covers(self, addr: Ipv4Addr) -> bool {
        let o = addr.octets();
        o[0] == self.0[0] && o[1] == self.0[1] && (1..=3).contains(&o[2])
    }
}

impl Default for Prefix {
    /// 10.77
    fn default() -> Self {
        Prefix([10, 77])
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0[0], self.0[1])
    }
}

impl FromStr for Prefix {
    type Err = NetError;
    /// Parses `"10.77"`.
    fn from_str(s: &str) -> Result<Self, NetError> {
        let bad = |reason| NetError::InvalidPrefix {
            prefix: s.to_string(),
            reason,
        };
        let (a, b) = s
            .split_once('.')
            .ok_or_else(|| bad("expected two octets like 10.77"))?;
        let a = a.parse().map_err(|_| bad("first octet is not 0..=255"))?;
        let b = b.parse().map_err(|_| bad("second octet is not 0..=255"))?;
        Prefix::new(a, b)
    }
}

/// A host's address on each plane (all /24).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostAddrs {
    pub mgmt: Ipv4Addr,
    pub svc: Ipv4Addr,
    pub stor: Ipv4Addr,
}

impl HostAddrs {
    /// The address on `plane`.
    pub fn get(&self, plane: Plane) -> Ipv4Addr {
        match plane {
            Plane::Management => self.mgmt,
            Plane::Service => self.svc,
            Plane::Storage => self.stor,
        }
    }
}

/// Checks `1 <= host <= MAX_HOSTS`.
pub fn check_host(host: u32) -> Result<(), NetError> {
    if host == 0 || host > MAX_HOSTS {
        return Err(NetError::InvalidHost {
            host,
            max: MAX_HOSTS,
        });
    }
    Ok(())
}

fn checked(name: String) -> Result<String, NetError> {
    if name.len() > MAX_IFNAME {
        return Err(NetError::NameTooLong(name));
    }
    Ok(name)
}

/// Addresses of host `host`: `a.b.<plane>.(10 + host)`.
pub fn host_addrs(prefix: Prefix, host: u32) -> Result<HostAddrs, NetError> {
    check_host(host)?;
    let last = u8::try_from(10 + host).map_err(|_| NetError::InvalidHost {
        host,
        max: MAX_HOSTS,
    })?;
    Ok(HostAddrs {
        mgmt: prefix.addr(Plane::Management, last),
        svc: prefix.addr(Plane::Service, last),
        stor: prefix.addr(Plane::Storage, last),
    })
}

/// Address of the plane's bridge in the root namespace: `a.b.<plane>.1`.
pub fn bridge_addr(prefix: Prefix, plane: Plane) -> Ipv4Addr {
    prefix.addr(plane, 1)
}

/// Network namespace name: `<lab>-h<N>`.
pub fn netns_name(lab: &LabName, host: u32) -> Result<String, NetError> {
    check_host(host)?;
    checked(format!("{lab}-h{host}"))
}

/// Namespace file: `/run/netns/<lab>-h<N>`.
pub fn netns_path(lab: &LabName, host: u32) -> Result<PathBuf, NetError> {
    Ok(PathBuf::from(NETNS_DIR).join(netns_name(lab, host)?))
}

/// Bridge name in the root namespace: `<lab>-br-<plane>`.
pub fn bridge_name(lab: &LabName, plane: Plane) -> Result<String, NetError> {
    checked(format!("{lab}-br-{plane}"))
}

/// Bridge-side veth name in the root namespace: `<lab>h<N>-<plane>`.
pub fn veth_name(lab: &LabName, host: u32, plane: Plane) -> Result<String, NetError> {
    check_host(host)?;
    checked(format!("{lab}h{host}-{plane}"))
}

/// Parses a decimal host number made only of digits (no sign, no leading zero).
fn parse_host_digits(s: &str) -> Option<u32> {
    if s.is_empty() || s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// If `name` is a namespace name of `lab`, its host number (any number, for cleanup).
pub fn parse_netns_name(lab: &LabName, name: &str) -> Option<u32> {
    let rest = name.strip_prefix(lab.as_str())?.strip_prefix("-h")?;
    parse_host_digits(rest)
}

/// Whether `name` is a root-namespace link of `lab` (bridge or bridge-side veth).
pub fn is_lab_link(lab: &LabName, name: &str) -> bool {
    let Some(rest) = name.strip_prefix(lab.as_str()) else {
        return false;
    };
    let is_plane = |s: &str| s.parse::<Plane>().is_ok();
    if let Some(plane) = rest.strip_prefix("-br-") {
        return is_plane(plane);
    }
    let Some(rest) = rest.strip_prefix('h') else {
        return false;
    };
    match rest.split_once('-') {
        Some((digits, plane)) => parse_host_digits(digits).is_some() && is_plane(plane),
        None => false,
    }
}

#[cfg(test)]
#[path = "naming_tests.rs"]
mod tests;
