//! The lab's storage domain on the shared directory: the lockspace, the
//! lease file (index plus one VM lease per slot) and the VM disks. Made once
//! per lab, from the root namespace, straight on the backing files.

use std::collections::BTreeMap;
use std::path::Path;

use nosplit_lease::format::Geometry;
use nosplit_lease::Name;
use nosplit_lease_runtime::{direct, index};

use crate::layout::{Layout, LOCKSPACE};
use crate::LabError;

/// Bytes of a VM disk (the heartbeat ring needs 32 KiB).
pub const DISK_BYTES: u64 = 1 << 20;

/// Where each VM's lease lives: byte offset in `xleases`.
pub type LeaseOffsets = BTreeMap<String, u64>;

fn name(s: &str) -> Result<Name, LabError> {
    Name::new(s).map_err(|e| LabError::Invalid(format!("{s:?} is not a lease name: {e}")))
}

/// Creates the lockspace, the lease index with a lease per VM, and the VM
/// disks. Refuses to reuse an existing domain (a lab is made fresh).
pub fn create(
    layout: &Layout,
    io_timeout_ms: u32,
    vms: &[String],
) -> Result<LeaseOffsets, LabError> {
    let shared = layout.shared();
    if layout.ids().exists() {
        return Err(LabError::Invalid(format!(
            "{} already holds a lockspace: remove the lab first (nosplit lab down)",
            shared.display()
        )));
    }
    std::fs::create_dir_all(shared.join("disks"))
        .map_err(|e| LabError::io("creating", &shared, e))?;
    let g = Geometry::default_512();
    let ls = name(LOCKSPACE)?;
    let mut s = direct::open(&layout.ids(), None, Some(g.lockspace_len()))?;
    let uuid: [u8; 16] = rand::random();
    direct::init_lockspace(&mut s, 0, ls.clone(), g, io_timeout_ms, uuid)?;
    let slots =
        u32::try_from(vms.len().max(64)).map_err(|_| LabError::Invalid("too many VMs".into()))?;
    let need = index::index_len(&ls, g, slots);
    let mut x = direct::open(&layout.xleases(), None, Some(need))?;
    index::init(&mut x, 0, ls, g, slots)?;
    let mut out = LeaseOffsets::new();
    for vm in vms {
        let (_, off) = index::add(&mut x, 0, &name(vm)?)?;
        out.insert(vm.clone(), off);
        create_disk(&layout.disk(vm))?;
    }
    Ok(out)
}

/// A zeroed raw disk of [`DISK_BYTES`].
fn create_disk(path: &Path) -> Result<(), LabError> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| LabError::io("creating the disk", path, e))?;
    f.set_len(DISK_BYTES)
        .map_err(|e| LabError::io("sizing the disk", path, e))
}
