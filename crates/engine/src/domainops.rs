//! Storage domain operations the engine does itself, on its own path to
//! the shared storage: create a domain (its lockspace `ids` and lease file
//! `xleases` with an index), add a VM's lease (an index entry and a fresh
//! lease slot), create a VM's raw disk, and [`Undo`] what a VM creation
//! made when a later step of it fails.

use std::path::{Path, PathBuf};

use nosplit_lease::format::Geometry;
use nosplit_lease::Name;
use nosplit_lease_runtime::{direct, index, RuntimeError};

/// Lease slots per domain.
pub const LEASE_SLOTS: u32 = 4096;

/// Why a domain operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// Lease storage.
    #[error(transparent)]
    Lease(#[from] RuntimeError),
    /// A name that is not a valid lease name.
    #[error("{0:?} is not a valid lockspace or lease name: {1}")]
    Name(String, String),
    /// Files.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The domain already exists there.
    #[error("{} already holds a lockspace", .0.display())]
    Exists(PathBuf),
}

fn name(s: &str) -> Result<Name, DomainError> {
    Name::new(s).map_err(|e| DomainError::Name(s.into(), e.to_string()))
}

/// The lockspace file of a domain directory.
pub fn ids(dir: &Path) -> PathBuf {
    dir.join("ids")
}

/// The lease file of a domain directory.
pub fn xleases(dir: &Path) -> PathBuf {
    dir.join("xleases")
}

/// A VM's disk in a domain directory: its first disk, the one its host's
/// agent is given.
pub fn disk(dir: &Path, vm: &str) -> PathBuf {
    dir.join("disks").join(format!("{vm}.img"))
}

/// The file of a VM's disk number `index` named `name`: the first is
/// [`disk`], each further one `disks/<vm>@<name>.img` (`@` is in no VM id,
/// so no two VMs' files can meet).
pub fn vm_disk(dir: &Path, vm: &str, index: usize, name: &str) -> PathBuf {
    if index == 0 {
        disk(dir, vm)
    } else {
        dir.join("disks").join(format!("{vm}@{name}.img"))
    }
}

/// Creates the lockspace and the lease index of a new domain in `dir`.
pub fn create(dir: &Path, lockspace: &str, io_timeout_ms: u32) -> Result<(), DomainError> {
    if ids(dir).exists() {
        return Err(DomainError::Exists(dir.to_path_buf()));
    }
    let disks = dir.join("disks");
    std::fs::create_dir_all(&disks).map_err(|source| DomainError::Io {
        what: "creating",
        path: disks,
        source,
    })?;
    let g = Geometry::default_512();
    let ls = name(lockspace)?;
    let mut s = direct::open(&ids(dir), None, Some(g.lockspace_len()))?;
    let uuid: [u8; 16] = rand::random();
    direct::init_lockspace(&mut s, 0, ls.clone(), g, io_timeout_ms, uuid)?;
    let need = index::index_len(&ls, g, LEASE_SLOTS);
    let mut x = direct::open(&xleases(dir), None, Some(need))?;
    index::init(&mut x, 0, ls, g, LEASE_SLOTS)?;
    Ok(())
}

/// Adds (or finds) `vm`'s lease; returns its byte offset in `xleases` and
/// whether this call added it.
pub fn add_lease(dir: &Path, vm: &str) -> Result<(u64, bool), DomainError> {
    let n = name(vm)?;
    let mut x = direct::open(&xleases(dir), None, None)?;
    if let Ok((_, off)) = index::lookup(&mut x, 0, &n) {
        return Ok((off, false));
    }
    Ok((index::add(&mut x, 0, &n)?.1, true))
}

/// Removes `vm`'s lease (refused while it is held).
pub fn remove_lease(dir: &Path, vm: &str) -> Result<(), DomainError> {
    let mut x = direct::open(&xleases(dir), None, None)?;
    index::remove(&mut x, 0, &name(vm)?)?;
    Ok(())
}

/// Creates the zeroed (sparse) raw disk `p` of `bytes`, kept if it
/// exists; returns whether this call created it. A disk that cannot be
/// sized is removed again.
pub fn create_disk(p: &Path, bytes: u64) -> Result<bool, DomainError> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(p)
    {
        Ok(f) => match f.set_len(bytes) {
            Ok(()) => Ok(true),
            Err(source) => {
                let _ = std::fs::remove_file(p);
                Err(DomainError::Io {
                    what: "sizing",
                    path: p.to_path_buf(),
                    source,
                })
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(DomainError::Io {
            what: "creating",
            path: p.to_path_buf(),
            source,
        }),
    }
}

/// What a VM creation made in a domain so far: the lease and the disks
/// that this creation added (not ones it found). [`Undo::undo`] removes
/// them, newest first; [`Undo::keep`] when the creation succeeded.
#[derive(Debug)]
#[must_use = "undo or keep it"]
pub struct Undo {
    dir: PathBuf,
    vm: String,
    lease: bool,
    disks: Vec<PathBuf>,
}

impl Undo {
    /// Nothing made yet for `vm` in domain directory `dir`.
    pub fn new(dir: &Path, vm: &str) -> Undo {
        Undo {
            dir: dir.to_path_buf(),
            vm: vm.to_string(),
            lease: false,
            disks: Vec::new(),
        }
    }

    /// Adds (or finds) the VM's lease, remembering it if added.
    pub fn add_lease(&mut self) -> Result<u64, DomainError> {
        let (off, added) = add_lease(&self.dir, &self.vm)?;
        self.lease |= added;
        Ok(off)
    }

    /// Creates a disk, remembering it if created.
    pub fn create_disk(&mut self, p: PathBuf, bytes: u64) -> Result<(), DomainError> {
        if create_disk(&p, bytes)? {
            self.disks.push(p);
        }
        Ok(())
    }

    /// The creation succeeded: everything stays.
    pub fn keep(self) {}

    /// Removes what was made; the problems, if something stays behind.
    pub fn undo(self) -> Result<(), String> {
        let mut left = Vec::new();
        for p in self.disks.iter().rev() {
            if let Err(e) = std::fs::remove_file(p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    left.push(format!("disk {}: {e}", p.display()));
                }
            }
        }
        if self.lease {
            if let Err(e) = remove_lease(&self.dir, &self.vm) {
                left.push(format!("the lease of {}: {e}", self.vm));
            }
        }
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("left behind: {}", left.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_domain_holds_leases_and_disks() {
        let d = tempfile::tempdir().unwrap();
        create(d.path(), "dom1", 1000).unwrap();
        assert!(matches!(
            create(d.path(), "dom1", 1000),
            Err(DomainError::Exists(_))
        ));
        let (a, added) = add_lease(d.path(), "vm-a").unwrap();
        assert!(added);
        let (b, _) = add_lease(d.path(), "vm-b").unwrap();
        assert_ne!(a, b);
        assert_eq!(
            add_lease(d.path(), "vm-a").unwrap(),
            (a, false),
            "idempotent"
        );
        let p = disk(d.path(), "vm-a");
        assert!(create_disk(&p, 1 << 20).unwrap());
        assert!(!create_disk(&p, 1 << 20).unwrap(), "kept");
        assert_eq!(std::fs::metadata(p).unwrap().len(), 1 << 20);
        remove_lease(d.path(), "vm-b").unwrap();
        assert!(matches!(
            add_lease(d.path(), "bad name!"),
            Err(DomainError::Name(..))
        ));
    }

    #[test]
    fn undo_removes_only_what_it_made() {
        let d = tempfile::tempdir().unwrap();
        create(d.path(), "dom1", 1000).unwrap();
        // vm-b's lease and disk exist before; vm-a's are made by the Undo.
        let (b, _) = add_lease(d.path(), "vm-b").unwrap();
        let old = disk(d.path(), "vm-b");
        create_disk(&old, 512).unwrap();
        let mut u = Undo::new(d.path(), "vm-a");
        let a = u.add_lease().unwrap();
        u.create_disk(disk(d.path(), "vm-a"), 1 << 20).unwrap();
        u.create_disk(old.clone(), 512).unwrap();
        u.undo().unwrap();
        assert!(!disk(d.path(), "vm-a").exists());
        assert!(old.exists(), "a disk it found stays");
        let mut x = direct::open(&xleases(d.path()), None, None).unwrap();
        assert!(index::lookup(&mut x, 0, &name("vm-a").unwrap()).is_err());
        assert_eq!(
            index::lookup(&mut x, 0, &name("vm-b").unwrap()).unwrap().1,
            b
        );
        // Made again after the undo: a lease slot is free for it.
        let mut u = Undo::new(d.path(), "vm-a");
        assert!(u.add_lease().unwrap() > 0 && a > 0);
        u.keep();
        assert!(add_lease(d.path(), "vm-a").is_ok_and(|(_, added)| !added));
    }
}
