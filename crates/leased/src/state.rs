//! What the daemon keeps under its run directory so that a restart (even
//! after `kill -9`) re-adopts live holders instead of releasing their
//! leases or letting other hosts take them.
//!
//! The file is rewritten atomically (temporary file, fsync, rename) after
//! every change to lockspaces or holders. It is only trusted on the same
//! boot (boot id) and only for processes whose start time still matches.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::api::HeldLease;

/// A joined lockspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedLockspace {
    /// Name.
    pub name: String,
    /// Storage.
    pub path: String,
    /// Offset.
    pub offset: u64,
    /// Our host id.
    pub host_id: u32,
    /// Sector size.
    pub sector_size: u32,
    /// The incarnation we renew.
    pub generation: u64,
}

/// A registered holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedHolder {
    /// Pid.
    pub pid: u32,
    /// Start time.
    pub start_time: u64,
    /// Freeze hook.
    pub freeze_hook: Option<Vec<String>>,
    /// Leases held.
    pub leases: Vec<HeldLease>,
    /// Frozen by its hook (leases suspended until revalidated). A restart
    /// re-adopts it frozen: it is not killed, and not trusted to run.
    #[serde(default)]
    pub frozen: bool,
}

/// The whole saved state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedState {
    /// Boot the state belongs to.
    pub boot_id: String,
    /// Lockspaces.
    pub lockspaces: Vec<SavedLockspace>,
    /// Holders.
    pub holders: Vec<SavedHolder>,
}

/// Why the state could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Not valid JSON for this version.
    #[error("{path}: unreadable saved state: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The error.
        source: serde_json::Error,
    },
}

impl SavedState {
    /// Loads the state; a missing file is an empty state.
    pub fn load(path: &Path) -> Result<SavedState, StateError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SavedState::default()),
            Err(source) => {
                return Err(StateError::Io {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        serde_json::from_str(&text).map_err(|source| StateError::Parse {
            path: path.display().to_string(),
            source,
        })
    }

    /// Saves atomically: a crash leaves the old or the new file, never half.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let io = |source| StateError::Io {
            path: path.display().to_string(),
            source,
        };
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_vec_pretty(self).map_err(|source| StateError::Parse {
            path: path.display().to_string(),
            source,
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&text).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_missing_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        assert_eq!(SavedState::load(&p).unwrap(), SavedState::default());
        let s = SavedState {
            boot_id: "b".into(),
            lockspaces: vec![SavedLockspace {
                name: "ls".into(),
                path: "/x".into(),
                offset: 0,
                host_id: 1,
                sector_size: 512,
                generation: 3,
            }],
            holders: vec![],
        };
        s.save(&p).unwrap();
        assert_eq!(SavedState::load(&p).unwrap(), s);
        // A holder saved before `frozen` existed loads as not frozen.
        std::fs::write(
            &p,
            br#"{"boot_id":"b","lockspaces":[],"holders":[{"pid":5,"start_time":9,"freeze_hook":null,"leases":[]}]}"#,
        )
        .unwrap();
        assert!(!SavedState::load(&p).unwrap().holders[0].frozen);
        std::fs::write(&p, b"{ nope").unwrap();
        assert!(matches!(
            SavedState::load(&p),
            Err(StateError::Parse { .. })
        ));
    }
}
