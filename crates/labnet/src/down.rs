//! Tearing a lab down by its naming convention alone (no state file needed):
//! kill the lab's processes (its cgroups, and anything else found in its
//! namespaces), then delete root links, namespaces and cgroups. Safe to run
//! on a half-made or already removed lab, and twice.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cgroup::{host_cgroups, kill_pid, lab_cgroup_dir, procs_in, rmdir_if_present};
use crate::cmd::ip_batch;
use crate::naming::{LabName, NETNS_DIR};
use crate::up::{lab_links, lab_netns};
use crate::NetError;

/// How long [`down`] waits for killed processes to go away.
pub const DOWN_KILL_TIMEOUT: Duration = Duration::from_secs(3);

/// What [`down`] removed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DownReport {
    /// Processes killed (in the lab's cgroups or namespaces).
    pub killed: Vec<u32>,
    /// Processes still present after the timeout (e.g. stuck on FUSE).
    pub stragglers: Vec<u32>,
    /// Root-namespace links deleted (bridges, bridge-side veths).
    pub links: Vec<String>,
    /// Namespaces deleted (names under /run/netns).
    pub namespaces: Vec<String>,
    /// Cgroup directories removed.
    pub cgroups: Vec<PathBuf>,
    /// Cgroup directories that could not be removed (still busy).
    pub cgroups_left: Vec<PathBuf>,
}

impl DownReport {
    /// True if nothing of the lab was found.
    pub fn removed_nothing(&self) -> bool {
        self.killed.is_empty()
            && self.links.is_empty()
            && self.namespaces.is_empty()
            && self.cgroups.is_empty()
            && self.cgroups_left.is_empty()
    }
}

/// [`down_with_timeout`] with [`DOWN_KILL_TIMEOUT`].
pub fn down(lab: &LabName) -> Result<DownReport, NetError> {
    down_with_timeout(lab, DOWN_KILL_TIMEOUT)
}

/// Removes everything of `lab`: kills its processes and waits up to
/// `timeout` for them, then deletes links, namespaces and cgroups.
/// Stragglers and busy cgroups are reported; a later call retries them.
pub fn down_with_timeout(lab: &LabName, timeout: Duration) -> Result<DownReport, NetError> {
    let mut report = DownReport::default();
    let netns = lab_netns(lab)?;
    let ns_ids: Vec<(u64, u64)> = netns
        .iter()
        .filter_map(|(name, _)| ns_id(&Path::new(NETNS_DIR).join(name)))
        .collect();
    let cgroups = host_cgroups(lab)?;
    kill_all(&cgroups, &ns_ids, timeout, &mut report)?;

    // Links first: deleting a bridge-side veth removes its peer at once.
    let links = lab_links(lab)?;
    let (veths, bridges): (Vec<_>, Vec<_>) = links.iter().partition(|n| !n.contains("-br-"));
    let script: String = veths
        .iter()
        .chain(bridges.iter())
        .map(|n| format!("link del {n}\n"))
        .collect();
    let res = ip_batch(None, true, &script);
    let left: Vec<String> = lab_links(lab)?;
    if !left.is_empty() {
        return Err(res.err().unwrap_or(NetError::Parse {
            what: "link deletion",
            detail: format!("links still present: {left:?}"),
        }));
    }
    report.links = links;

    let script: String = netns
        .iter()
        .map(|(n, _)| format!("netns del {n}\n"))
        .collect();
    let res = ip_batch(None, true, &script);
    let left = lab_netns(lab)?;
    if !left.is_empty() {
        return Err(res.err().unwrap_or(NetError::Parse {
            what: "namespace deletion",
            detail: format!("namespaces still present: {left:?}"),
        }));
    }
    report.namespaces = netns.into_iter().map(|(n, _)| n).collect();

    for dir in cgroups.iter().chain(std::iter::once(&lab_cgroup_dir(lab)?)) {
        match rmdir_if_present(dir) {
            Ok(true) => report.cgroups.push(dir.clone()),
            Ok(false) => {}
            Err(NetError::Io { source, .. })
                if matches!(source.raw_os_error(), Some(libc::EBUSY | libc::ENOTEMPTY)) =>
            {
                report.cgroups_left.push(dir.clone());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}

/// Kills every process of the lab and waits for them (bounded).
fn kill_all(
    cgroups: &[PathBuf],
    ns_ids: &[(u64, u64)],
    timeout: Duration,
    report: &mut DownReport,
) -> Result<(), NetError> {
    for dir in cgroups {
        let procs = procs_in(dir)?;
        if procs.is_empty() {
            continue;
        }
        report.killed.extend(&procs);
        if std::fs::write(dir.join("cgroup.kill"), "1").is_err() {
            procs.iter().for_each(|&p| kill_pid(p));
        }
    }
    let deadline = Instant::now() + timeout;
    loop {
        let mut left: Vec<u32> = Vec::new();
        for dir in cgroups {
            left.extend(procs_in(dir)?);
        }
        for pid in procs_in_netns(ns_ids) {
            if !report.killed.contains(&pid) {
                report.killed.push(pid);
            }
            kill_pid(pid);
            left.push(pid);
        }
        left.sort_unstable();
        left.dedup();
        if left.is_empty() || Instant::now() >= deadline {
            report.stragglers = left;
            report.killed.sort_unstable();
            report.killed.dedup();
            return Ok(());
        }
        // Re-signal: cgroup.kill is one-shot, a racing fork may have escaped it.
        left.iter().for_each(|&p| kill_pid(p));
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// (device, inode) of a namespace file.
fn ns_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Live processes whose network namespace is one of `ns_ids`.
fn procs_in_netns(ns_ids: &[(u64, u64)]) -> Vec<u32> {
    if ns_ids.is_empty() {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            ns_id(Path::new(&format!("/proc/{pid}/ns/net"))).is_some_and(|id| ns_ids.contains(&id))
        })
        .collect()
}
