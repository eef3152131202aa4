//! Host power domains: one cgroup v2 directory per lab host,
//! `<v2root>/nosplit-lab-<lab>/h<N>`. "Power off" is `cgroup.kill` plus a
//! bounded wait until `cgroup.procs` is empty.
//!
//! The v2 root is found in `/proc/self/mountinfo` (it is `/sys/fs/cgroup` on a
//! pure v2 system, `/sys/fs/cgroup/unified` on a hybrid one).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::naming::{check_host, LabName};
use crate::NetError;

const POLL: Duration = Duration::from_millis(5);

/// What [`power_off`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PowerOffReport {
    /// Processes in the cgroup when the kill was sent.
    pub killed: Vec<u32>,
    /// Processes still listed when the timeout ran out (e.g. stuck on FUSE).
    pub stragglers: Vec<u32>,
}

/// Finds the first cgroup2 mount point in mountinfo text (pure).
pub fn find_cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split(' ').next()? != "cgroup2" {
            return None;
        }
        left.split(' ').nth(4).map(|m| PathBuf::from(unescape(m)))
    })
}

/// Undoes mountinfo's octal escapes (`\040` for space and so on).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], oct) {
            (b'\\', Some(d)) => {
                let v = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup v2 mount point (looked up once).
pub fn cgroup2_root() -> Result<PathBuf, NetError> {
    static ROOT: OnceLock<Option<PathBuf>> = OnceLock::new();
    ROOT.get_or_init(|| {
        let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        find_cgroup2_mount(&text)
    })
    .clone()
    .ok_or(NetError::NoCgroup2)
}

/// The lab's cgroup directory: `<v2root>/nosplit-lab-<lab>`.
pub fn lab_cgroup_dir(lab: &LabName) -> Result<PathBuf, NetError> {
    Ok(cgroup2_root()?.join(format!("nosplit-lab-{lab}")))
}

/// The host's cgroup directory: `<v2root>/nosplit-lab-<lab>/h<N>`.
pub fn cgroup_path(lab: &LabName, host: u32) -> Result<PathBuf, NetError> {
    check_host(host)?;
    Ok(lab_cgroup_dir(lab)?.join(format!("h{host}")))
}

/// Creates the host's cgroup (and the lab's); fine if it exists.
pub fn cgroup_create(lab: &LabName, host: u32) -> Result<PathBuf, NetError> {
    let path = cgroup_path(lab, host)?;
    std::fs::create_dir_all(&path).map_err(|e| NetError::io("mkdir", &path, e))?;
    Ok(path)
}

/// Parses `cgroup.procs` text (pure).
pub fn parse_procs(text: &str) -> Result<Vec<u32>, NetError> {
    text.split_whitespace()
        .map(|t| {
            t.parse().map_err(|_| NetError::Parse {
                what: "cgroup.procs",
                detail: format!("not a pid: {t:?}"),
            })
        })
        .collect()
}

pub(crate) fn procs_in(dir: &Path) -> Result<Vec<u32>, NetError> {
    let file = dir.join("cgroup.procs");
    match std::fs::read_to_string(&file) {
        Ok(text) => parse_procs(&text),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(NetError::NoCgroup(dir.to_path_buf())),
        Err(e) => Err(NetError::io("read", &file, e)),
    }
}

/// Pids of the processes in the host's cgroup.
pub fn cgroup_procs(lab: &LabName, host: u32) -> Result<Vec<u32>, NetError> {
    procs_in(&cgroup_path(lab, host)?)
}

/// Kills every process in `dir` (and below) and waits up to `timeout` for
/// `cgroup.procs` to become empty.
pub(crate) fn kill_cgroup(dir: &Path, timeout: Duration) -> Result<PowerOffReport, NetError> {
    let killed = procs_in(dir)?;
    let kill_file = dir.join("cgroup.kill");
    let has_kill = match std::fs::write(&kill_file, "1") {
        Ok(()) => true,
        Err(e) if e.kind() == ErrorKind::NotFound => false,
        Err(e) => return Err(NetError::io("write", &kill_file, e)),
    };
    let deadline = Instant::now() + timeout;
    loop {
        let left = procs_in(dir)?;
        if !has_kill {
            // Old kernels: signal one by one, again each round to catch forks.
            for &pid in &left {
                kill_pid(pid);
            }
        }
        if left.is_empty() || Instant::now() >= deadline {
            return Ok(PowerOffReport {
                killed,
                stragglers: left,
            });
        }
        std::thread::sleep(POLL);
    }
}

pub(crate) fn kill_pid(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions; a stale pid
        // gives ESRCH, which we ignore.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// Powers off a host: kills all its processes at once (`cgroup.kill`) and
/// waits up to `timeout` until none is left. Processes that do not go away
/// in time (e.g. stuck in a FUSE request) are reported, not an error.
pub fn power_off(lab: &LabName, host: u32, timeout: Duration) -> Result<PowerOffReport, NetError> {
    kill_cgroup(&cgroup_path(lab, host)?, timeout)
}

/// Removes the host's cgroup (must be empty) and, if it was the last, the
/// lab's. A cgroup that does not exist is fine.
pub fn cgroup_remove(lab: &LabName, host: u32) -> Result<(), NetError> {
    let path = cgroup_path(lab, host)?;
    rmdir_if_present(&path)?;
    let lab_dir = lab_cgroup_dir(lab)?;
    match std::fs::remove_dir(&lab_dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        // Other hosts' cgroups remain: that is fine.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EBUSY)) => Ok(()),
        Err(e) => Err(NetError::io("rmdir", &lab_dir, e)),
    }
}

/// rmdir that treats "not there" as success; returns whether it removed.
pub(crate) fn rmdir_if_present(path: &Path) -> Result<bool, NetError> {
    match std::fs::remove_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(NetError::io("rmdir", path, e)),
    }
}

/// Host cgroup directories (`h*`) below the lab's cgroup, if any.
pub(crate) fn host_cgroups(lab: &LabName) -> Result<Vec<PathBuf>, NetError> {
    let dir = lab_cgroup_dir(lab)?;
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(NetError::io("read_dir", &dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| NetError::io("read_dir", &dir, e))?;
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_mount_in_hybrid_and_pure_layouts() {
        let hybrid = "35 31 0:30 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            find_cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let pure =
            "30 24 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            find_cgroup2_mount(pure),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let escaped = "1 2 0:1 / /mnt/my\\040cg rw - cgroup2 none rw\n";
        assert_eq!(
            find_cgroup2_mount(escaped),
            Some(PathBuf::from("/mnt/my cg"))
        );
        assert_eq!(
            find_cgroup2_mount("1 2 0:1 / /x rw - ext4 /dev/sda rw\n"),
            None
        );
        assert_eq!(find_cgroup2_mount("garbage"), None);
    }

    #[test]
    fn parses_procs() {
        assert_eq!(parse_procs("12\n345\n").unwrap(), vec![12, 345]);
        assert_eq!(parse_procs("").unwrap(), Vec::<u32>::new());
        assert!(parse_procs("12\nx\n").is_err());
    }
}
