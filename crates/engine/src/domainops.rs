//! Storage domain operations the engine does itself, on its own path to
//! the shared storage: create a domain (its lockspace `ids` and lease file
//! `xleases` with an index), add a VM's lease (an index entry and a fresh
//! lease slot), create a VM's raw disk.

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

/// A VM's disk in a domain directory.
pub fn disk(dir: &Path, vm: &str) -> PathBuf {
    dir.join("disks").join(format!("{vm}.img"))
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

/// Adds (or finds) `vm`'s lease; returns its byte offset in `xleases`.
pub fn add_lease(dir: &Path, vm: &str) -> Result<u64, DomainError> {
    let n = name(vm)?;
    let mut x = direct::open(&xleases(dir), None, None)?;
    if let Ok((_, off)) = index::lookup(&mut x, 0, &n) {
        return Ok(off);
    }
    Ok(index::add(&mut x, 0, &n)?.1)
}

/// Removes `vm`'s lease (refused while it is held).
pub fn remove_lease(dir: &Path, vm: &str) -> Result<(), DomainError> {
    let mut x = direct::open(&xleases(dir), None, None)?;
    index::remove(&mut x, 0, &name(vm)?)?;
    Ok(())
}

/// Creates `vm`'s zeroed raw disk of `bytes` (kept if it exists).
pub fn create_disk(dir: &Path, vm: &str, bytes: u64) -> Result<PathBuf, DomainError> {
    let p = disk(dir, vm);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&p)
    {
        Ok(f) => f.set_len(bytes).map_err(|source| DomainError::Io {
            what: "sizing",
            path: p.clone(),
            source,
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(DomainError::Io {
                what: "creating",
                path: p,
                source,
            })
        }
    }
    Ok(p)
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
        let a = add_lease(d.path(), "vm-a").unwrap();
        let b = add_lease(d.path(), "vm-b").unwrap();
        assert_ne!(a, b);
        assert_eq!(add_lease(d.path(), "vm-a").unwrap(), a, "idempotent");
        let p = create_disk(d.path(), "vm-a", 1 << 20).unwrap();
        assert_eq!(std::fs::metadata(p).unwrap().len(), 1 << 20);
        remove_lease(d.path(), "vm-b").unwrap();
        assert!(matches!(
            add_lease(d.path(), "bad name!"),
            Err(DomainError::Name(..))
        ));
    }
}
