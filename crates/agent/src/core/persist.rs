//! What the agent must remember across its own restarts: the VMs it
//! started, enough to adopt them again, and which of them the operator
//! paused (a paused VM the operator did not pause is taken for one frozen
//! by its lease) (`<run_dir>/agent.json`, replaced atomically).

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
    /// Disk path (the first disk).
    pub disk: String,
    /// Further disks, in order (none in records written before VMs had
    /// more than one).
    #[serde(default)]
    pub extra_disks: Vec<String>,
    /// Memory.
    pub memory_mib: u32,
    /// vCPUs.
    pub vcpus: u32,
    /// Run directory.
    pub run_dir: PathBuf,
    /// Lease, if leased.
    pub lease: Option<LeaseSpec>,
    /// Lease version at acquire (or at the last revalidation seen).
    pub lver: Option<u64>,
    /// Paused on the operator's request (resumable by the operator).
    #[serde(default)]
    pub paused: bool,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_pause_and_extra_disks_are_kept_and_old_records_load_unpaused_with_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.json");
        assert!(load(&path).unwrap().is_empty());
        let rec = VmRecord {
            id: "a".into(),
            inst: "a.1".into(),
            kind: VmKind::Process,
            disk: "/d".into(),
            extra_disks: vec!["/d@b".into(), "/d@c".into()],
            memory_mib: 128,
            vcpus: 1,
            run_dir: "/r".into(),
            lease: None,
            lver: Some(2),
            paused: true,
        };
        save(&path, std::slice::from_ref(&rec)).unwrap();
        assert_eq!(load(&path).unwrap(), vec![rec]);
        // A record written before the field existed.
        std::fs::write(
            &path,
            r#"[{"id":"b","inst":"b.1","kind":"qemu","disk":"/d","memory_mib":128,
                "vcpus":1,"run_dir":"/r","lease":null,"lver":null}]"#,
        )
        .unwrap();
        let old = load(&path).unwrap();
        assert_eq!(old.len(), 1);
        assert!(!old[0].paused);
        assert!(old[0].extra_disks.is_empty());
    }
}
