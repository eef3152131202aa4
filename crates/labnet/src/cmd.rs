//! Running the external tools (`ip`, `nft`): checked execution with the
//! command and its stderr in the error, `ip -batch` scripts, and JSON output.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::NetError;

/// Runs `cmd` with `input` on stdin; returns stdout if it exits with status 0.
pub(crate) fn run_checked(cmd: &mut Command, input: Option<&str>) -> Result<Vec<u8>, NetError> {
    let name = format!("{cmd:?}");
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| NetError::Spawn {
        cmd: name.clone(),
        source,
    })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        // A write error shows up again as a failed exit status below.
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(|source| NetError::Spawn {
        cmd: name.clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(NetError::Command {
            cmd: match input {
                Some(text) => format!("{name} <<< {text:?}"),
                None => name,
            },
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

/// `ip [-n netns] [-force] -batch -` with `script` on stdin.
pub(crate) fn ip_batch(netns: Option<&str>, force: bool, script: &str) -> Result<(), NetError> {
    if script.is_empty() {
        return Ok(());
    }
    let mut cmd = ip(netns);
    if force {
        cmd.arg("-force");
    }
    cmd.args(["-batch", "-"]);
    run_checked(&mut cmd, Some(script)).map(|_| ())
}

/// An `ip` command, inside `netns` if given.
pub(crate) fn ip(netns: Option<&str>) -> Command {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    cmd
}

/// Runs `cmd` and parses its stdout as JSON.
pub(crate) fn json(cmd: &mut Command, what: &'static str) -> Result<serde_json::Value, NetError> {
    let out = run_checked(cmd, None)?;
    if out.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Array(Vec::new()));
    }
    serde_json::from_slice(&out).map_err(|e| NetError::Parse {
        what,
        detail: e.to_string(),
    })
}

/// Interface names (and IPv4 addresses) from `ip -j [-4] addr|link show`.
pub(crate) fn links(v: &serde_json::Value) -> Vec<LinkInfo> {
    let Some(items) = v.as_array() else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|l| {
            let name = l.get("ifname")?.as_str()?.to_string();
            let flags = l.get("flags").and_then(|f| f.as_array());
            let up = flags.is_some_and(|f| f.iter().any(|x| x.as_str() == Some("UP")));
            let addrs = l
                .get("addr_info")
                .and_then(|a| a.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.get("local")?.as_str()?.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            Some(LinkInfo { name, up, addrs })
        })
        .collect()
}

/// One interface as reported by `ip -j`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LinkInfo {
    pub name: String,
    /// Administratively up (`UP` flag).
    pub up: bool,
    pub addrs: Vec<std::net::Ipv4Addr>,
}
