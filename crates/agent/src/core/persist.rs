//! What the agent must remember across its own restarts: the VMs it
//! started, enough to adopt them again (`<run_dir>/agent.json`, replaced
//! atomically).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{LeaseSpec, VmKind};

/// One VM, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmRecord {
    /// VM id.
    pub id: String,
    /// Instance id.
    pub inst: String,
    /// Kind.
    pub kind: VmKind,
    /// Disk path.
    pub disk: String,
    /// Memory.
    pub memory_mib: u32,
    /// vCPUs.
    pub vcpus: u32,
    /// Run directory.
    pub run_dir: PathBuf,
    /// Lease, if leased.
    pub lease: Option<LeaseSpec>,
    /// Lease version at acquire.
    pub lver: Option<u64>,
}

/// Loads the records (none when the file is absent).
pub fn load(path: &Path) -> Result<Vec<VmRecord>, String> {
    match std::fs::read_to_string(path) {
        Ok(t) => serde_json::from_str(&t).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Saves the records atomically.
pub fn save(path: &Path, recs: &[VmRecord]) -> Result<(), String> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(recs).map_err(|e| e.to_string())?;
    std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}
