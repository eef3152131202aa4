//! Heartbeat disk files: creating a zeroed raw disk safely, and reading the
//! ring of record slots from one.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{renameat_with, RenameFlags, CWD};
use thiserror::Error;

use crate::record::{decode, Slot, RECORD_SIZE, RING_BYTES};

/// Disk sizes are rounded up to this.
pub const DISK_ALIGN: u64 = 4096;

/// Errors creating or reading a heartbeat disk.
#[derive(Debug, Error)]
pub enum DiskError {
    /// The target already exists; it is never overwritten.
    #[error("disk {0} already exists; refusing to overwrite it")]
    Exists(PathBuf),
    /// An I/O step failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// The step that failed.
        what: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The disk is smaller than the 32 KiB ring.
    #[error("disk {path} is {len} bytes, smaller than the {RING_BYTES}-byte heartbeat ring")]
    TooSmall {
        /// The disk.
        path: PathBuf,
        /// Its size.
        len: u64,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> DiskError + 'a {
    move |source| DiskError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// The size `create_disk` gives for a requested size: at least the ring,
/// rounded up to 4096.
pub fn disk_size_for(size_bytes: u64) -> u64 {
    let want = size_bytes.max(RING_BYTES as u64);
    want.div_ceil(DISK_ALIGN)
        .checked_mul(DISK_ALIGN)
        .unwrap_or(want / DISK_ALIGN * DISK_ALIGN)
}

/// Removes the temporary file unless disarmed.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Creates a zeroed raw disk of at least 32 KiB (rounded up to 4096 bytes)
/// at `path`, atomically: a temporary file in the same directory is sized,
/// synced, then renamed into place without replacing anything
/// (`RENAME_NOREPLACE`, or `link` + `unlink` where the filesystem lacks it).
pub fn create_disk(path: &Path, size_bytes: u64) -> Result<(), DiskError> {
    if path.symlink_metadata().is_ok() {
        return Err(DiskError::Exists(path.to_owned()));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let name = name.unwrap_or_else(|| "disk".into());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(".{name}.tmp.{}.{nanos}", std::process::id()));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(io_err("create temporary disk", &tmp))?;
    let mut guard = TempGuard(Some(tmp.clone()));
    file.set_len(disk_size_for(size_bytes))
        .map_err(io_err("size temporary disk", &tmp))?;
    file.sync_all()
        .map_err(io_err("sync temporary disk", &tmp))?;
    drop(file);
    match renameat_with(CWD, &tmp, CWD, path, RenameFlags::NOREPLACE) {
        Ok(()) => guard.0 = None,
        Err(rustix::io::Errno::EXIST) => return Err(DiskError::Exists(path.to_owned())),
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
            // No RENAME_NOREPLACE here: link() also never replaces.
            std::fs::hard_link(&tmp, path).map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    DiskError::Exists(path.to_owned())
                } else {
                    io_err("link disk into place", path)(e)
                }
            })?;
        }
        Err(e) => return Err(io_err("rename disk into place", path)(e.into())),
    }
    drop(guard);
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Size of an open disk (works for regular files and block devices).
pub fn disk_len(file: &mut File, path: &Path) -> Result<u64, DiskError> {
    file.seek(SeekFrom::End(0))
        .map_err(io_err("find size of disk", path))
}

/// Reads and decodes the ring of slots from an open disk (plain reads).
pub fn read_ring(file: &mut File, path: &Path) -> Result<Vec<Slot>, DiskError> {
    let mut buf = vec![0u8; RING_BYTES];
    file.seek(SeekFrom::Start(0))
        .map_err(io_err("seek disk", path))?;
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => {
                return Err(DiskError::TooSmall {
                    path: path.to_owned(),
                    len: filled as u64,
                })
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err("read disk", path)(e)),
        }
    }
    Ok(buf.chunks_exact(RECORD_SIZE).map(decode).collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sizes_round_up() {
        assert_eq!(disk_size_for(0), 32768);
        assert_eq!(disk_size_for(32769), 32768 + 4096);
        assert_eq!(disk_size_for(1 << 20), 1 << 20);
        assert_eq!(disk_size_for(u64::MAX), u64::MAX / 4096 * 4096);
    }

    #[test]
    fn create_refuses_overwrite_and_reads_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.raw");
        create_disk(&p, 1000).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 32768);
        assert!(matches!(create_disk(&p, 1000), Err(DiskError::Exists(_))));
        let mut f = File::open(&p).unwrap();
        let slots = read_ring(&mut f, &p).unwrap();
        assert_eq!(slots.len(), 64);
        assert!(slots.iter().all(|s| *s == Slot::Empty));
        // No temporary files left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn short_disk_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("short.raw");
        std::fs::write(&p, [0u8; 1000]).unwrap();
        let mut f = File::open(&p).unwrap();
        assert!(matches!(
            read_ring(&mut f, &p),
            Err(DiskError::TooSmall { len: 1000, .. })
        ));
    }
}
