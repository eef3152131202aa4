//! The crate's error type: every failure names the object or command involved.

use std::path::PathBuf;

/// Errors of the lab plumbing.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The lab name does not match `[a-z][a-z0-9]{0,4}`.
    #[error("invalid lab name {name:?}: {reason}")]
    InvalidLab { name: String, reason: &'static str },
    /// A host number outside `1..=max`.
    #[error("invalid host number {host}: must be in 1..={max}")]
    InvalidHost { host: u32, max: u32 },
    /// A plane name other than mgmt, svc, stor.
    #[error("invalid plane {0:?}: expected mgmt, svc or stor")]
    InvalidPlane(String),
    /// A drop mode name other than none, both, in, out.
    #[error("invalid drop mode {0:?}: expected none, both, in or out")]
    InvalidDrop(String),
    /// An address prefix that is not two octets of a private (RFC 1918) range.
    #[error("invalid address prefix {prefix:?}: {reason}")]
    InvalidPrefix {
        prefix: String,
        reason: &'static str,
    },
    /// A generated interface or namespace name is too long for the kernel.
    #[error("name {0:?} is longer than 15 characters")]
    NameTooLong(String),
    /// Something of this lab already exists; run `down` first.
    #[error("lab {lab} already (partly) exists: {found:?}; run down first")]
    LabExists { lab: String, found: Vec<String> },
    /// An address of the lab's range is already configured in the root namespace.
    #[error("address prefix {prefix} is in use: {addr} on {dev}")]
    PrefixInUse {
        prefix: String,
        addr: String,
        dev: String,
    },
    /// The host's network namespace does not exist.
    #[error("host namespace {0} does not exist (lab not up?)")]
    NoNamespace(String),
    /// The host's cgroup does not exist.
    #[error("host cgroup {0} does not exist (lab not up?)")]
    NoCgroup(PathBuf),
    /// No cgroup v2 hierarchy is mounted.
    #[error("no cgroup2 mount found in /proc/self/mountinfo")]
    NoCgroup2,
    /// A command could not be started.
    #[error("cannot run {cmd}: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    /// A command ran and failed.
    #[error("{cmd} failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: String,
        stderr: String,
    },
    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Output of `ip -j` or `nft -j` had an unexpected shape.
    #[error("cannot parse {what}: {detail}")]
    Parse { what: &'static str, detail: String },
}

impl NetError {
    /// Wraps an I/O error with the operation and path.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        NetError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
