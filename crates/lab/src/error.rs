//! The lab's errors.

use std::path::PathBuf;

/// What can go wrong in the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A file or process operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: String,
        /// On what.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Lease storage (init, index, reads) failed.
    #[error("lease storage: {0}")]
    Lease(#[from] nosplit_lease_runtime::RuntimeError),
    /// Namespaces, links, cgroups.
    #[error("lab network/power: {0}")]
    Net(#[from] nosplit_labnet::NetError),
    /// A host's daemon did not come up or misbehaved.
    #[error("host {host}: {what}")]
    Host {
        /// Host number.
        host: u32,
        /// What happened.
        what: String,
    },
    /// A lab of that name is up already (or left over from a crash).
    #[error(
        "lab {lab} exists already ({}): use it (nosplit lab status --lab {lab}), remove it (nosplit lab down --lab {lab}) or replace it (--replace)",
        found.join(", ")
    )]
    Exists {
        /// Lab name.
        lab: String,
        /// What of it was found.
        found: Vec<String>,
    },
    /// A bad request (unknown host or VM, a host that is off...).
    #[error("{0}")]
    Invalid(String),
    /// The scenario file.
    #[error(transparent)]
    Scenario(#[from] crate::scenario::ScenarioErrors),
    /// A run's expectation was not met.
    #[error("expectation not met: {0}")]
    Expectation(String),
}

impl LabError {
    /// An [`LabError::Io`].
    pub fn io(what: impl Into<String>, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LabError::Io {
            what: what.into(),
            path: path.into(),
            source,
        }
    }
}
