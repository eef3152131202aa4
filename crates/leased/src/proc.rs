//! Processes as holders: identity (pid + start time), liveness, signals.

use crate::supervise::HolderId;

/// The start time (clock ticks since boot, field 22 of `/proc/PID/stat`)
/// of `pid`, or `None` if there is no such process.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces:
    // split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); field 22 is index 19.
    fields.get(19)?.parse().ok()
}

/// The state letter of `pid` (R, S, D, Z, ...).
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// The identity of a running process.
pub fn identify(pid: u32) -> Option<HolderId> {
    start_time(pid).map(|start_time| HolderId { pid, start_time })
}

/// Is this exact process (not a reused pid) still there and not a zombie?
/// A zombie has released everything it had and can write nothing.
pub fn alive(h: &HolderId) -> bool {
    start_time(h.pid) == Some(h.start_time) && state(h.pid) != Some('Z')
}

/// Sends `sig` to the holder if it is still that process.
pub fn signal(h: &HolderId, sig: rustix::process::Signal) -> bool {
    if !alive(h) {
        return false;
    }
    match rustix::process::Pid::from_raw(i32::try_from(h.pid).unwrap_or(0)) {
        Some(pid) => rustix::process::kill_process(pid, sig).is_ok(),
        None => false,
    }
}

/// This boot's id: state from another boot is meaningless.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_reused_pid_is_not() {
        let me = identify(std::process::id()).unwrap();
        assert!(alive(&me));
        assert!(!alive(&HolderId {
            start_time: me.start_time + 1,
            ..me
        }));
        assert!(identify(u32::MAX - 1).is_none());
        assert!(!boot_id().is_empty());
    }
}
