//! Building a lab's network: the plan (lab, host count, address prefix) and
//! `up`, which creates bridges, namespaces, veths, addresses and cgroups with
//! one `ip -batch` for the root namespace and one per host.

use std::fmt::Write as _;

use crate::cgroup::{cgroup_create, lab_cgroup_dir};
use crate::cmd::{ip, ip_batch, json, links};
use crate::naming::{
    bridge_addr, bridge_name, check_host, host_addrs, is_lab_link, netns_name, parse_netns_name,
    veth_name, HostAddrs, LabName, Plane, Prefix, NETNS_DIR, PLANE_PREFIX_LEN,
};
use crate::NetError;

/// A checked plan for a lab's network: name, hosts `1..=hosts`, prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetPlan {
    lab: LabName,
    hosts: u32,
    prefix: Prefix,
}

impl NetPlan {
    /// A plan with the default prefix (10.77); `hosts` must be in 1..=64.
    pub fn new(lab: LabName, hosts: u32) -> Result<Self, NetError> {
        check_host(hosts)?;
        Ok(NetPlan {
            lab,
            hosts,
            prefix: Prefix::default(),
        })
    }

    /// The same plan with another address prefix.
    pub fn with_prefix(mut self, prefix: Prefix) -> Self {
        self.prefix = prefix;
        self
    }

    pub fn lab(&self) -> &LabName {
        &self.lab
    }

    pub fn hosts(&self) -> u32 {
        self.hosts
    }

    pub fn prefix(&self) -> Prefix {
        self.prefix
    }

    /// Addresses of host `host` under this plan.
    pub fn host_addrs(&self, host: u32) -> Result<HostAddrs, NetError> {
        self.check(host)?;
        host_addrs(self.prefix, host)
    }

    /// Checks that `host` is one of this plan's hosts.
    pub fn check(&self, host: u32) -> Result<(), NetError> {
        if host == 0 || host > self.hosts {
            return Err(NetError::InvalidHost {
                host,
                max: self.hosts,
            });
        }
        Ok(())
    }

    /// The root-namespace `ip -batch` script (pure).
    pub fn root_script(&self) -> Result<String, NetError> {
        let mut s = String::new();
        for h in 1..=self.hosts {
            let _ = writeln!(s, "netns add {}", netns_name(&self.lab, h)?);
        }
        for p in Plane::ALL {
            let br = bridge_name(&self.lab, p)?;
            let addr = bridge_addr(self.prefix, p);
            let _ = writeln!(s, "link add {br} type bridge");
            let _ = writeln!(s, "addr add {addr}/{PLANE_PREFIX_LEN} dev {br}");
            let _ = writeln!(s, "link set {br} up");
            for h in 1..=self.hosts {
                let veth = veth_name(&self.lab, h, p)?;
                let ns = netns_name(&self.lab, h)?;
                let inner = p.host_ifname();
                let _ = writeln!(s, "link add {veth} type veth peer name {inner} netns {ns}");
                let _ = writeln!(s, "link set {veth} master {br}");
                let _ = writeln!(s, "link set {veth} up");
            }
        }
        Ok(s)
    }

    /// The `ip -n <ns> -batch` script of host `host` (pure).
    pub fn host_script(&self, host: u32) -> Result<String, NetError> {
        let addrs = self.host_addrs(host)?;
        let mut s = String::from("link set lo up\n");
        for p in Plane::ALL {
            let dev = p.host_ifname();
            let _ = writeln!(s, "addr add {}/{PLANE_PREFIX_LEN} dev {dev}", addrs.get(p));
            let _ = writeln!(s, "link set {dev} up");
        }
        Ok(s)
    }
}

/// Names of everything of `lab` that exists now: namespaces, root links and
/// the lab cgroup directory.
pub fn lab_objects(lab: &LabName) -> Result<Vec<String>, NetError> {
    let mut found: Vec<String> = lab_netns(lab)?
        .into_iter()
        .map(|(name, _)| format!("{NETNS_DIR}/{name}"))
        .collect();
    found.extend(lab_links(lab)?);
    let cg = lab_cgroup_dir(lab)?;
    if cg.exists() {
        found.push(cg.display().to_string());
    }
    Ok(found)
}

/// Namespaces of `lab` under /run/netns, with their host numbers.
pub(crate) fn lab_netns(lab: &LabName) -> Result<Vec<(String, u32)>, NetError> {
    let entries = match std::fs::read_dir(NETNS_DIR) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(NetError::io("read_dir", NETNS_DIR, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| NetError::io("read_dir", NETNS_DIR, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(h) = parse_netns_name(lab, &name) {
            out.push((name, h));
        }
    }
    out.sort();
    Ok(out)
}

/// Root-namespace links of `lab` (bridges and bridge-side veths).
pub(crate) fn lab_links(lab: &LabName) -> Result<Vec<String>, NetError> {
    let v = json(ip(None).args(["-j", "link", "show"]), "ip -j link show")?;
    Ok(links(&v)
        .into_iter()
        .map(|l| l.name)
        .filter(|n| is_lab_link(lab, n))
        .collect())
}

fn check_prefix_free(prefix: Prefix) -> Result<(), NetError> {
    let v = json(
        ip(None).args(["-j", "-4", "addr", "show"]),
        "ip -j addr show",
    )?;
    for l in links(&v) {
        if let Some(a) = l.addrs.iter().find(|a| prefix.covers(**a)) {
            return Err(NetError::PrefixInUse {
                prefix: prefix.to_string(),
                addr: a.to_string(),
                dev: l.name,
            });
        }
    }
    Ok(())
}

/// Creates the lab's network and host cgroups. Fails with
/// [`NetError::LabExists`] if anything of the lab exists already (run
/// [`crate::down`] first) and with [`NetError::PrefixInUse`] if the root
/// namespace already has an address in the plan's subnets. If a step fails,
/// what was made is torn down again (best effort) before the error returns.
pub fn up(plan: &NetPlan) -> Result<(), NetError> {
    let found = lab_objects(&plan.lab)?;
    if !found.is_empty() {
        return Err(NetError::LabExists {
            lab: plan.lab.to_string(),
            found,
        });
    }
    check_prefix_free(plan.prefix)?;
    let result = build(plan);
    if result.is_err() {
        let _ = crate::down(&plan.lab);
    }
    result
}

fn build(plan: &NetPlan) -> Result<(), NetError> {
    ip_batch(None, false, &plan.root_script()?)?;
    let hosts: Vec<u32> = (1..=plan.hosts).collect();
    // Hosts are independent: configure them in parallel.
    let results: Vec<Result<(), NetError>> = std::thread::scope(|s| {
        let handles: Vec<_> = hosts
            .iter()
            .map(|&h| {
                s.spawn(move || {
                    let ns = netns_name(&plan.lab, h)?;
                    ip_batch(Some(&ns), false, &plan.host_script(h)?)?;
                    cgroup_create(&plan.lab, h).map(|_| ())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(NetError::Parse {
                        what: "host setup thread",
                        detail: "panicked".into(),
                    })
                })
            })
            .collect()
    });
    results.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_name_everything() {
        let plan = NetPlan::new(LabName::new("t").unwrap(), 2).unwrap();
        let root = plan.root_script().unwrap();
        assert!(root.contains("netns add t-h2\n"));
        assert!(root.contains("addr add 10.77.3.1/24 dev t-br-stor\n"));
        assert!(root.contains("link add th2-svc type veth peer name eth-svc netns t-h2\n"));
        assert!(root.contains("link set th1-mgmt master t-br-mgmt\n"));
        assert!(!root.contains("t-h3"));
        let h2 = plan.host_script(2).unwrap();
        assert!(h2.contains("addr add 10.77.2.12/24 dev eth-svc\n"));
        assert!(h2.contains("link set lo up\n"));
        assert!(plan.host_script(3).is_err());
        assert!(NetPlan::new(LabName::new("t").unwrap(), 0).is_err());
        assert!(NetPlan::new(LabName::new("t").unwrap(), 65).is_err());
    }
}
