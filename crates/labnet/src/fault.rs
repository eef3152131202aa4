//! Network faults per host and plane: link down/up inside the host namespace,
//! and packet drops with an nftables table `inet nosplit_lab` inside it.
//! State is always read back from the system (`ip -j link`, `nft -j list
//! ruleset`), never kept in memory. The ruleset text and its parsing are pure.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use serde_json::Value;

use crate::cmd::{ip, json, links, run_checked};
use crate::enter::netns_command;
use crate::naming::{netns_name, netns_path, LabName, Plane};
use crate::NetError;

/// Name of the nftables table (family inet) the lab owns in each host.
pub const NFT_TABLE: &str = "nosplit_lab";

/// Which packets of a plane a host drops (named `DropMode` so it does not
/// shadow the `Drop` trait; [`crate::Drop`] is an alias).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DropMode {
    /// Nothing dropped.
    #[default]
    None,
    /// Incoming and outgoing packets on the plane's interface.
    Both,
    /// Packets arriving on the plane's interface (nft input hook).
    In,
    /// Packets leaving through the plane's interface (nft output hook).
    Out,
}

impl DropMode {
    fn from_flags(input: bool, output: bool) -> Self {
        match (input, output) {
            (false, false) => DropMode::None,
            (true, true) => DropMode::Both,
            (true, false) => DropMode::In,
            (false, true) => DropMode::Out,
        }
    }

    fn drops_in(self) -> bool {
        matches!(self, DropMode::Both | DropMode::In)
    }

    fn drops_out(self) -> bool {
        matches!(self, DropMode::Both | DropMode::Out)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DropMode::None => "none",
            DropMode::Both => "both",
            DropMode::In => "in",
            DropMode::Out => "out",
        }
    }
}

impl fmt::Display for DropMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DropMode {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Self, NetError> {
        [DropMode::None, DropMode::Both, DropMode::In, DropMode::Out]
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| NetError::InvalidDrop(s.to_string()))
    }
}

/// State of one plane of one host, as read from the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaneState {
    pub plane: Plane,
    /// The namespace-side interface is administratively up.
    pub link_up: bool,
    pub drop: DropMode,
}

/// Network state of one host; `planes[p.index()]` is plane `p`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostNet {
    pub planes: [PlaneState; 3],
}

impl HostNet {
    pub fn plane(&self, plane: Plane) -> PlaneState {
        self.planes[plane.index()]
    }
}

/// The `nft -f` script that atomically replaces the table with `drops`
/// (indexed by plane); with no drops the table is removed (pure).
pub fn nft_script(drops: &[DropMode; 3]) -> String {
    let mut s = format!("table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n");
    if drops.iter().all(|d| *d == DropMode::None) {
        return s;
    }
    let rules = |hook: &str, key: &str, pick: fn(DropMode) -> bool| -> String {
        let mut c = format!(
            "\tchain {hook} {{\n\t\ttype filter hook {hook} priority filter; policy accept;\n"
        );
        for p in Plane::ALL {
            if pick(drops[p.index()]) {
                c.push_str(&format!("\t\t{key} \"{}\" drop\n", p.host_ifname()));
            }
        }
        c + "\t}\n"
    };
    s.push_str(&format!("table inet {NFT_TABLE} {{\n"));
    s.push_str(&rules("input", "iifname", DropMode::drops_in));
    s.push_str(&rules("output", "oifname", DropMode::drops_out));
    s.push_str("}\n");
    s
}

/// Reads the drop modes back from `nft -j list ruleset` output (pure). Only
/// rules of the lab table of the form `iifname/oifname "<eth-plane>" drop`
/// count.
pub fn parse_drops(ruleset: &Value) -> [DropMode; 3] {
    let mut input = [false; 3];
    let mut output = [false; 3];
    let items = ruleset.get("nftables").and_then(Value::as_array);
    for rule in items.into_iter().flatten().filter_map(|i| i.get("rule")) {
        if rule.get("family").and_then(Value::as_str) != Some("inet")
            || rule.get("table").and_then(Value::as_str) != Some(NFT_TABLE)
        {
            continue;
        }
        let Some(expr) = rule.get("expr").and_then(Value::as_array) else {
            continue;
        };
        if !expr.iter().any(|e| e.get("drop").is_some()) {
            continue;
        }
        for m in expr.iter().filter_map(|e| e.get("match")) {
            let key = m.pointer("/left/meta/key").and_then(Value::as_str);
            let dev = m.get("right").and_then(Value::as_str);
            let Some(plane) = Plane::ALL
                .into_iter()
                .find(|p| Some(p.host_ifname()) == dev)
            else {
                continue;
            };
            match (rule.get("chain").and_then(Value::as_str), key) {
                (Some("input"), Some("iifname")) => input[plane.index()] = true,
                (Some("output"), Some("oifname")) => output[plane.index()] = true,
                _ => {}
            }
        }
    }
    Plane::ALL.map(|p| DropMode::from_flags(input[p.index()], output[p.index()]))
}

fn existing_netns(lab: &LabName, host: u32) -> Result<String, NetError> {
    let name = netns_name(lab, host)?;
    if !netns_path(lab, host)?.exists() {
        return Err(NetError::NoNamespace(name));
    }
    Ok(name)
}

/// Sets the plane's interface inside the host namespace down or up.
pub fn set_link(lab: &LabName, host: u32, plane: Plane, up: bool) -> Result<(), NetError> {
    let ns = existing_netns(lab, host)?;
    let state = if up { "up" } else { "down" };
    run_checked(
        ip(Some(&ns)).args(["link", "set", plane.host_ifname(), state]),
        None,
    )
    .map(|_| ())
}

fn read_drops(lab: &LabName, host: u32) -> Result<[DropMode; 3], NetError> {
    let mut cmd = netns_command(lab, host, "nft")?;
    let v = json(cmd.args(["-j", "list", "ruleset"]), "nft -j list ruleset")?;
    Ok(parse_drops(&v))
}

/// Sets which packets of `plane` host `host` drops, keeping the other
/// planes' drops. The table is replaced in one nft transaction. Calls within
/// this process are serialised; concurrent callers in other processes on the
/// same host could lose an update.
pub fn set_drop(lab: &LabName, host: u32, plane: Plane, mode: DropMode) -> Result<(), NetError> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    existing_netns(lab, host)?;
    let mut drops = read_drops(lab, host)?;
    drops[plane.index()] = mode;
    let mut cmd = netns_command(lab, host, "nft")?;
    run_checked(cmd.args(["-f", "-"]), Some(&nft_script(&drops))).map(|_| ())
}

/// Reads the host's link and drop state from the system.
pub fn host_status(lab: &LabName, host: u32) -> Result<HostNet, NetError> {
    let ns = existing_netns(lab, host)?;
    let v = json(
        ip(Some(&ns)).args(["-j", "link", "show"]),
        "ip -j link show",
    )?;
    let links = links(&v);
    let drops = read_drops(lab, host)?;
    let planes = Plane::ALL.map(|p| PlaneState {
        plane: p,
        link_up: links.iter().any(|l| l.name == p.host_ifname() && l.up),
        drop: drops[p.index()],
    });
    Ok(HostNet { planes })
}

#[cfg(test)]
#[path = "fault_tests.rs"]
mod tests;
