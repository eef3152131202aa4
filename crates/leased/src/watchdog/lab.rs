//! The lab's watchdog: a supervisor process per emulated host that kills
//! the host's whole process group when `leased` does not re-arm it in time.
//!
//! Protocol: one Unix datagram per message, ASCII:
//!
//! - `arm <seq> <expiry_nanos>`: the host may run until `expiry`
//!   (`CLOCK_BOOTTIME` nanoseconds, which every process of the machine
//!   shares); the supervisor kills once `now > expiry + margin`;
//! - `disarm <seq>`: nothing to protect; no deadline;
//! - `fire <seq> <reason>`: kill at once.
//!
//! `seq` orders messages: an `arm` or `disarm` whose `seq` is not greater
//! than the last one accepted is ignored, so a stale `arm` (say, from a
//! previous daemon process of the same host) can never override a later
//! `disarm`. Clients use the current `CLOCK_BOOTTIME` in nanoseconds (or one
//! more than their previous `seq`), which keeps increasing across daemon
//! restarts. A `fire` is always obeyed.

use std::fmt;
use std::io::ErrorKind;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nosplit_clock::{Clock, MonoTime, RealClock};

use super::{Watchdog, WatchdogError};

/// What the lab supervisor kills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KillTarget {
    /// Every process of this process group (`kill(-pgid, SIGKILL)`).
    ProcessGroup(u32),
    /// Every process of this cgroup v2 directory (`cgroup.kill`), which is
    /// how the lab powers a host off; the supervisor itself may be inside.
    Cgroup(PathBuf),
}

impl fmt::Display for KillTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KillTarget::ProcessGroup(pgid) => write!(f, "process group {pgid}"),
            KillTarget::Cgroup(dir) => write!(f, "cgroup {}", dir.display()),
        }
    }
}

/// What the lab supervisor did when it fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FireReport {
    /// Why: `not re-armed: ...` or `fired: <client's reason>`.
    pub reason: String,
    /// When (`CLOCK_BOOTTIME`).
    pub at: MonoTime,
    /// What was killed.
    pub target: KillTarget,
    /// False if the target no longer existed (nothing to kill).
    pub delivered: bool,
}

/// One message to the lab supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabMessage {
    /// The host may run until `expiry`.
    Arm {
        /// Sequence number.
        seq: u64,
        /// `CLOCK_BOOTTIME` time.
        expiry: MonoTime,
    },
    /// Nothing to protect.
    Disarm {
        /// Sequence number.
        seq: u64,
    },
    /// Kill now.
    Fire {
        /// Sequence number (not checked).
        seq: u64,
        /// Why, for the log.
        reason: String,
    },
}

impl LabMessage {
    /// The wire form.
    pub fn encode(&self) -> String {
        match self {
            LabMessage::Arm { seq, expiry } => format!("arm {seq} {}", expiry.as_nanos()),
            LabMessage::Disarm { seq } => format!("disarm {seq}"),
            LabMessage::Fire { seq, reason } => {
                // One line: the reason must not smuggle in a second message.
                let reason = reason.replace(['\n', '\r'], " ");
                format!("fire {seq} {reason}")
            }
        }
    }

    /// Parses the wire form.
    pub fn parse(s: &str) -> Result<LabMessage, String> {
        let s = s.trim_end_matches(['\n', '\r']);
        let mut parts = s.splitn(3, ' ');
        let verb = parts.next().unwrap_or_default();
        let num = |p: Option<&str>, what: &str| -> Result<u64, String> {
            p.ok_or_else(|| format!("{verb}: missing {what}"))?
                .parse::<u64>()
                .map_err(|e| format!("{verb}: bad {what}: {e}"))
        };
        let seq = num(parts.next(), "sequence number")?;
        let rest = parts.next();
        match verb {
            "arm" => Ok(LabMessage::Arm {
                seq,
                expiry: MonoTime::from_nanos(num(rest, "expiry")?),
            }),
            "disarm" if rest.is_none() => Ok(LabMessage::Disarm { seq }),
            "fire" => Ok(LabMessage::Fire {
                seq,
                reason: rest.unwrap_or("no reason given").to_string(),
            }),
            _ => Err(format!("unknown message {s:?}")),
        }
    }
}

fn kill(target: &KillTarget) -> Result<bool, WatchdogError> {
    let pgid = match target {
        KillTarget::ProcessGroup(pgid) => *pgid,
        KillTarget::Cgroup(dir) => {
            let file = dir.join("cgroup.kill");
            return match std::fs::write(&file, "1") {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
                Err(e) => Err(WatchdogError::io("writing", &file, e)),
            };
        }
    };
    let pid = i32::try_from(pgid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| WatchdogError::Invalid(format!("{target}: not a process group id")))?;
    match rustix::process::kill_process_group(pid, rustix::process::Signal::KILL) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::SRCH) => Ok(false),
        Err(e) => Err(WatchdogError::Kill {
            target: target.clone(),
            source: e.into(),
        }),
    }
}

/// Runs the lab supervisor on `socket` until it fires, then returns what it
/// did (the caller exits).
///
/// It starts disarmed. It kills `target` with SIGKILL when `now >
/// expiry + margin` for the last accepted `arm`, or at once on `fire`, and
/// logs one line to stderr saying why. A stale socket file at `socket` is
/// replaced; any other file there is an error. Process groups 0 and 1 are
/// refused (they would mean "my own group" and "everything").
pub fn run_lab_supervisor(
    socket: &Path,
    target: KillTarget,
    margin: Duration,
) -> Result<FireReport, WatchdogError> {
    match &target {
        KillTarget::ProcessGroup(pgid) if *pgid <= 1 || i32::try_from(*pgid).is_err() => {
            return Err(WatchdogError::Invalid(format!(
                "lab watchdog: refusing to kill {target}"
            )));
        }
        KillTarget::Cgroup(dir) if !dir.join("cgroup.kill").is_file() => {
            return Err(WatchdogError::Invalid(format!(
                "lab watchdog: {target} has no cgroup.kill (not a cgroup v2 directory?)"
            )));
        }
        _ => {}
    }
    match std::fs::symlink_metadata(socket) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(socket)
            .map_err(|e| WatchdogError::io("removing stale socket", socket, e))?,
        Ok(_) => {
            return Err(WatchdogError::Invalid(format!(
                "lab watchdog: {} exists and is not a socket",
                socket.display()
            )))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(WatchdogError::io("inspecting", socket, e)),
    }
    let sock = UnixDatagram::bind(socket).map_err(|e| WatchdogError::io("binding", socket, e))?;
    let clock = RealClock;
    let name = socket.display();
    let mut last_seq = 0u64;
    // (expiry, deadline) of the last accepted arm.
    let mut armed: Option<(MonoTime, MonoTime)> = None;
    let mut buf = [0u8; 4096];
    loop {
        let now = clock.now();
        let reason = match armed {
            Some((expiry, deadline)) if now > deadline => Some(format!(
                "not re-armed: expiry {expiry} passed by {} ms",
                now.saturating_since(expiry).as_millis()
            )),
            _ => None,
        };
        let timeout = armed.map(|(_, deadline)| {
            // Wake just after the deadline: firing needs now > deadline.
            deadline.saturating_since(now) + Duration::from_micros(100)
        });
        let reason = match reason {
            Some(r) => Some(r),
            None => {
                sock.set_read_timeout(timeout)
                    .map_err(|e| WatchdogError::io("setting a receive timeout on", socket, e))?;
                match sock.recv(&mut buf) {
                    Ok(n) => match LabMessage::parse(&String::from_utf8_lossy(&buf[..n])) {
                        Ok(LabMessage::Fire { reason, .. }) => Some(format!("fired: {reason}")),
                        Ok(LabMessage::Arm { seq, expiry }) if seq > last_seq => {
                            last_seq = seq;
                            if armed.is_none() {
                                eprintln!("lab-watchdog {name}: armed (expiry {expiry})");
                            }
                            armed = Some((expiry, expiry + margin));
                            None
                        }
                        Ok(LabMessage::Disarm { seq }) if seq > last_seq => {
                            last_seq = seq;
                            if armed.is_some() {
                                eprintln!("lab-watchdog {name}: disarmed");
                            }
                            armed = None;
                            None
                        }
                        Ok(stale) => {
                            eprintln!(
                                "lab-watchdog {name}: ignoring stale {:?} (last sequence {last_seq})",
                                stale.encode()
                            );
                            None
                        }
                        Err(e) => {
                            eprintln!("lab-watchdog {name}: ignoring bad message: {e}");
                            None
                        }
                    },
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                        ) =>
                    {
                        None
                    }
                    Err(e) => return Err(WatchdogError::io("receiving on", socket, e)),
                }
            }
        };
        if let Some(reason) = reason {
            // Logged first: with a cgroup target the supervisor is usually
            // inside the host it kills.
            eprintln!("lab-watchdog {name}: SIGKILL {target}: {reason}");
            let delivered = kill(&target)?;
            let at = clock.now();
            if !delivered {
                eprintln!("lab-watchdog {name}: {target} was already gone");
            }
            return Ok(FireReport {
                reason,
                at,
                target,
                delivered,
            });
        }
    }
}

/// How long a send may block on a supervisor that does not read.
const SEND_TIMEOUT: Duration = Duration::from_millis(200);

/// The client side: `leased`'s handle on the lab supervisor.
#[derive(Debug)]
pub struct LabWatchdog {
    socket: PathBuf,
    sock: UnixDatagram,
    margin: Duration,
    last_seq: u64,
}

fn connect_socket(socket: &Path) -> Result<UnixDatagram, WatchdogError> {
    let err = |e| WatchdogError::io("connecting to lab watchdog", socket, e);
    let sock = UnixDatagram::unbound().map_err(err)?;
    sock.connect(socket).map_err(err)?;
    sock.set_write_timeout(Some(SEND_TIMEOUT)).map_err(err)?;
    Ok(sock)
}

impl LabWatchdog {
    /// Connects to the supervisor listening on `socket` (it must be
    /// running). `margin` must be the supervisor's margin (or larger);
    /// it is what [`Watchdog::margin`] reports. Nothing is sent yet, so
    /// whatever a previous daemon armed stays in force.
    pub fn connect(socket: &Path, margin: Duration) -> Result<LabWatchdog, WatchdogError> {
        Ok(LabWatchdog {
            socket: socket.to_path_buf(),
            sock: connect_socket(socket)?,
            margin,
            last_seq: 0,
        })
    }

    fn send(&mut self, msg: impl Fn(u64) -> LabMessage) -> Result<(), WatchdogError> {
        let seq = RealClock.now().as_nanos().max(self.last_seq + 1);
        self.last_seq = seq;
        let wire = msg(seq).encode();
        let err = |e| WatchdogError::io("sending to lab watchdog", &self.socket, e);
        match self.sock.send(wire.as_bytes()) {
            Ok(_) => Ok(()),
            // The supervisor restarted (a new socket): reconnect once.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionRefused | ErrorKind::NotConnected
                ) =>
            {
                self.sock = connect_socket(&self.socket)?;
                self.sock.send(wire.as_bytes()).map(|_| ()).map_err(err)
            }
            Err(e) => Err(err(e)),
        }
    }
}

impl Watchdog for LabWatchdog {
    fn arm(&mut self, expiry: MonoTime) -> Result<(), WatchdogError> {
        self.send(|seq| LabMessage::Arm { seq, expiry })
    }

    fn fire(&mut self, reason: &str) -> Result<(), WatchdogError> {
        eprintln!(
            "leased: FIRING lab watchdog {}: {reason}",
            self.socket.display()
        );
        self.send(|seq| LabMessage::Fire {
            seq,
            reason: reason.to_string(),
        })
    }

    fn disarm(&mut self) -> Result<(), WatchdogError> {
        self.send(|seq| LabMessage::Disarm { seq })
    }

    fn margin(&self) -> Duration {
        self.margin
    }

    fn describe(&self) -> String {
        format!(
            "lab supervisor at {} (margin {} ms)",
            self.socket.display(),
            self.margin.as_millis()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let msgs = [
            LabMessage::Arm {
                seq: 7,
                expiry: MonoTime::from_nanos(123_456_789),
            },
            LabMessage::Disarm { seq: 8 },
            LabMessage::Fire {
                seq: 9,
                reason: "holder pid 12 stuck".into(),
            },
        ];
        for m in msgs {
            assert_eq!(LabMessage::parse(&m.encode()), Ok(m));
        }
        let multi = LabMessage::Fire {
            seq: 1,
            reason: "a\ndisarm 99".into(),
        };
        assert_eq!(multi.encode(), "fire 1 a disarm 99");
        assert!(LabMessage::parse("arm 1").is_err());
        assert!(LabMessage::parse("arm x 5").is_err());
        assert!(LabMessage::parse("disarm 1 2").is_err());
        assert!(LabMessage::parse("reboot 1").is_err());
        assert!(LabMessage::parse("").is_err());
    }
}
