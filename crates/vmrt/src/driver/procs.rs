//! Process bookkeeping shared by the backends: identity (pid + start time from
//! `/proc/<pid>/stat`, so a reused pid is never mistaken for our VM), liveness polling of
//! our own children (with exit status) and of adopted processes (without), and
//! signalling the VM's process group.

use rustix::process::{kill_process, kill_process_group, Pid, Signal};
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// File in the run dir holding `"<pid> <start_time>\n"`.
pub const IDENT_FILE: &str = "vm.ident";

/// The fields of `/proc/<pid>/stat` we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// State letter (R, S, D, T, t, Z, X, ...).
    pub state: char,
    /// Process group id.
    pub pgrp: i32,
    /// Start time in clock ticks since boot (field 22).
    pub start_time: u64,
}

/// Parses the text of `/proc/<pid>/stat` (the command name may hold spaces and parens).
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); field n is f[n - 3]
    Some(ProcStat {
        state: f.first()?.chars().next()?,
        pgrp: f.get(2)?.parse().ok()?,
        start_time: f.get(19)?.parse().ok()?,
    })
}

/// Reads and parses `/proc/<pid>/stat`; `None` if there is no such process.
pub fn read_stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The processes of process group `pgrp` (a scan of `/proc`; processes
/// that vanish during the scan are left out).
pub fn group_members(pgrp: i32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| read_stat(*pid).is_some_and(|s| s.pgrp == pgrp))
        .collect()
}

/// A process named by pid and start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcIdentity {
    /// Process id.
    pub pid: u32,
    /// Start time (clock ticks since boot).
    pub start_time: u64,
}

impl ProcIdentity {
    /// Identity of the live process `pid`.
    pub fn of(pid: u32) -> Option<Self> {
        read_stat(pid).map(|s| Self {
            pid,
            start_time: s.start_time,
        })
    }

    /// Current stat of this very process (`None` if gone or the pid was reused).
    pub fn stat(&self) -> Option<ProcStat> {
        read_stat(self.pid).filter(|s| s.start_time == self.start_time)
    }

    /// True if this process still exists and is not a zombie.
    pub fn is_alive(&self) -> bool {
        self.stat()
            .is_some_and(|s| !matches!(s.state, 'Z' | 'X' | 'x'))
    }

    /// Writes `"<pid> <start_time>\n"` atomically (temp file + rename).
    pub fn write_file(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{} {}\n", self.pid, self.start_time))?;
        std::fs::rename(&tmp, path)
    }

    /// Reads a file written by [`ProcIdentity::write_file`].
    pub fn read_file(path: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let mut it = text.split_whitespace().map(str::parse::<u64>);
        match (it.next(), it.next()) {
            (Some(Ok(pid)), Some(Ok(start_time))) => {
                let pid = u32::try_from(pid).map_err(|_| bad_ident(path))?;
                Ok(Self { pid, start_time })
            }
            _ => Err(bad_ident(path)),
        }
    }
}

fn bad_ident(path: &Path) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{} is not \"<pid> <start_time>\"", path.display()),
    )
}

/// Liveness of a tracked process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Exists; `stopped` if SIGSTOPped.
    Alive {
        /// In state T.
        stopped: bool,
    },
    /// Our child, reaped with this status.
    Exited(ExitStatus),
    /// Gone, status unknown.
    Gone,
}

impl Tracked {
    /// The end of a graceful stop: waits up to `timeout` for the process to
    /// go, SIGKILLs it if it did not, and reports how it ended. `who` names
    /// it in the error when even SIGKILL does not end it.
    pub fn finish_stop(
        &mut self,
        timeout: Duration,
        who: &str,
    ) -> Result<super::StopReport, super::DriverError> {
        let mut forced = false;
        let mut l = self.wait_dead(timeout);
        if matches!(l, Liveness::Alive { .. }) {
            forced = true;
            l = self.kill_and_reap(Duration::from_secs(10));
        }
        match l {
            Liveness::Alive { .. } => Err(super::DriverError::Timeout(format!(
                "{who} survived SIGKILL"
            ))),
            Liveness::Exited(st) => Ok(super::StopReport {
                forced,
                status: Some(st),
            }),
            Liveness::Gone => Ok(super::StopReport {
                forced,
                status: None,
            }),
        }
    }
}

/// A VM process we started (`child` set) or adopted (`child` empty).
#[derive(Debug)]
pub struct Tracked {
    pub ident: ProcIdentity,
    child: Option<Child>,
    exit: Option<Liveness>,
}

impl Tracked {
    pub fn own(child: Child, ident: ProcIdentity) -> Self {
        Self {
            ident,
            child: Some(child),
            exit: None,
        }
    }

    pub fn adopted(ident: ProcIdentity) -> Self {
        Self {
            ident,
            child: None,
            exit: None,
        }
    }

    /// Polls without blocking; reaps our child when it has exited.
    pub fn poll(&mut self) -> Liveness {
        if let Some(done) = self.exit {
            return done;
        }
        if let Some(child) = &mut self.child {
            match child.try_wait() {
                Ok(Some(st)) => return *self.exit.insert(Liveness::Exited(st)),
                Ok(None) => {}
                Err(_) => return *self.exit.insert(Liveness::Gone),
            }
        }
        match self.ident.stat() {
            None => *self.exit.insert(Liveness::Gone),
            // our own zombie is reaped by the next poll; an adopted one is gone
            Some(s) if matches!(s.state, 'Z' | 'X' | 'x') && self.child.is_none() => {
                *self.exit.insert(Liveness::Gone)
            }
            Some(s) => Liveness::Alive {
                stopped: matches!(s.state, 'T' | 't'),
            },
        }
    }

    /// Polls every 10 ms until dead or `timeout`; returns the last liveness.
    pub fn wait_dead(&mut self, timeout: Duration) -> Liveness {
        let deadline = Instant::now() + timeout;
        loop {
            let l = self.poll();
            if !matches!(l, Liveness::Alive { .. }) || Instant::now() >= deadline {
                return l;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `sig` to the process group led by the VM process (or to the process alone
    /// if it leads none). Does nothing once the process is reaped or gone.
    pub fn signal(&mut self, sig: Signal) -> std::io::Result<()> {
        if self.exit.is_some() {
            return Ok(());
        }
        let Some(stat) = self.ident.stat() else {
            return Ok(());
        };
        let raw = i32::try_from(self.ident.pid).ok().and_then(Pid::from_raw);
        let Some(pid) = raw else { return Ok(()) };
        let r = if i64::from(stat.pgrp) == i64::from(self.ident.pid) {
            kill_process_group(pid, sig)
        } else {
            kill_process(pid, sig)
        };
        match r {
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// SIGKILL then wait (bounded) so our child is reaped.
    pub fn kill_and_reap(&mut self, timeout: Duration) -> Liveness {
        let _ = self.signal(Signal::KILL);
        self.wait_dead(timeout)
    }
}

impl Liveness {
    /// The matching [`super::VmState`] for a dead process, `None` when alive.
    pub fn dead_state(self) -> Option<super::VmState> {
        match self {
            Liveness::Alive { .. } => None,
            Liveness::Exited(st) => Some(super::VmState::Exited(st)),
            Liveness::Gone => Some(super::VmState::Gone),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_stat_with_odd_comm() {
        let line =
            "1234 (a b) c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let s = parse_stat(line).unwrap();
        assert_eq!(
            s,
            ProcStat {
                state: 'S',
                pgrp: 1234,
                start_time: 987_654
            }
        );
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("1 (x) S 1").is_none());
    }

    #[test]
    fn group_members_lists_a_child_in_its_leaders_group() {
        use std::os::unix::process::CommandExt;
        let mut c = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgrp = i32::try_from(c.id()).unwrap();
        assert_eq!(group_members(pgrp), vec![c.id()]);
        let mine = read_stat(std::process::id()).unwrap().pgrp;
        assert!(group_members(mine).contains(&std::process::id()));
        assert!(!group_members(mine).contains(&c.id()));
        c.kill().unwrap();
        c.wait().unwrap();
        assert!(group_members(pgrp).is_empty());
    }

    #[test]
    fn identity_roundtrip_and_self_alive() {
        let me = ProcIdentity::of(std::process::id()).unwrap();
        assert!(me.is_alive());
        let other = ProcIdentity {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(
            !other.is_alive(),
            "a different start time is another process"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(IDENT_FILE);
        me.write_file(&p).unwrap();
        assert_eq!(ProcIdentity::read_file(&p).unwrap(), me);
        std::fs::write(&p, "12 x").unwrap();
        assert!(ProcIdentity::read_file(&p).is_err());
    }
}
