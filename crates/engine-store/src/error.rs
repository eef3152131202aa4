//! The store's typed errors: every failure names what it was about.

use std::path::PathBuf;

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record does not exist.
    #[error("{what} `{key}` not found")]
    NotFound {
        /// Kind of record: `domain`, `host`, `vm`, `task`.
        what: &'static str,
        /// Its name, id or number.
        key: String,
    },
    /// A record with this key already exists.
    #[error("{what} `{key}` already exists")]
    Exists {
        /// Kind of record.
        what: &'static str,
        /// Its name or id.
        key: String,
    },
    /// The request itself is wrong (e.g. an invalid strategy, a
    /// read-modify-write that changed the record's key).
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// What was refused.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// A stored record could not be decoded (or contradicts its key).
    #[error("corrupt record {what}: {detail}")]
    Corrupt {
        /// Which record: table and key, e.g. ``table `vms` key `vm1` ``.
        what: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The file was written with a format version this build does not know.
    #[error("{path}: store format version {found} is not supported (this build reads version {supported}); use a matching nosplit engine")]
    UnknownFormat {
        /// The store file.
        path: PathBuf,
        /// The version found in the file, as written.
        found: String,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// Another process (or another handle in this one) has the file open.
    #[error("{path}: the store is already open by another process (or another handle); stop the other engine first")]
    Locked {
        /// The store file.
        path: PathBuf,
    },
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The store file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The backend failed (e.g. a redb transaction could not commit).
    #[error("store backend failed during {op}: {detail}")]
    Backend {
        /// The operation, e.g. `commit`.
        op: &'static str,
        /// The backend's message.
        detail: String,
    },
}

impl StoreError {
    pub(crate) fn not_found(what: &'static str, key: impl ToString) -> StoreError {
        StoreError::NotFound {
            what,
            key: key.to_string(),
        }
    }

    pub(crate) fn exists(what: &'static str, key: impl ToString) -> StoreError {
        StoreError::Exists {
            what,
            key: key.to_string(),
        }
    }

    pub(crate) fn corrupt(
        table: &str,
        key: impl std::fmt::Display,
        detail: impl ToString,
    ) -> StoreError {
        StoreError::Corrupt {
            what: format!("table `{table}` key `{key}`"),
            detail: detail.to_string(),
        }
    }
}
