//! Where a lab keeps its files. One root directory per lab (default
//! `/run/nosplit-lab/<lab>`):
//!
//! | path | what |
//! |---|---|
//! | `lab.json` | the lab's state (hosts, VMs, processes) |
//! | `shared/` | the shared storage: `ids` (lockspace), `xleases` (lease index and VM leases), `disks/<vm>.img` |
//! | `hosts/h<N>/mnt/` | host N's view of `shared/` through its own fault filesystem |
//! | `hosts/h<N>/run/` | host N's sockets and daemon state |
//! | `hosts/h<N>/log/` | host N's daemon logs |
//! | `vms/<vm>/<inst>/` | one VM instance's sockets, pid file and console log |
//! | `guest/` | the guest image cache |

use std::path::{Path, PathBuf};

/// The lockspace name every lab uses.
pub const LOCKSPACE: &str = "lab";

/// Paths of one lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// A lab rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }

    /// The default root of lab `name`.
    pub fn default_root(name: &str) -> PathBuf {
        PathBuf::from("/run/nosplit-lab").join(name)
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The state file.
    pub fn state(&self) -> PathBuf {
        self.root.join("lab.json")
    }

    /// The shared storage directory (backing of every host's mount).
    pub fn shared(&self) -> PathBuf {
        self.root.join("shared")
    }

    /// The lockspace file, on the backing directory.
    pub fn ids(&self) -> PathBuf {
        self.shared().join("ids")
    }

    /// The lease file, on the backing directory.
    pub fn xleases(&self) -> PathBuf {
        self.shared().join("xleases")
    }

    /// A VM's disk, on the backing directory.
    pub fn disk(&self, vm: &str) -> PathBuf {
        self.shared().join("disks").join(format!("{vm}.img"))
    }

    /// Host `n`'s directory.
    pub fn host(&self, n: u32) -> PathBuf {
        self.root.join("hosts").join(format!("h{n}"))
    }

    /// Host `n`'s mount of the shared storage.
    pub fn mnt(&self, n: u32) -> PathBuf {
        self.host(n).join("mnt")
    }

    /// `rel` (a path below `shared/`) as host `n` sees it.
    pub fn via(&self, n: u32, backing_path: &Path) -> PathBuf {
        match backing_path.strip_prefix(self.shared()) {
            Ok(rel) => self.mnt(n).join(rel),
            Err(_) => backing_path.to_path_buf(),
        }
    }

    /// Host `n`'s run directory.
    pub fn run(&self, n: u32) -> PathBuf {
        self.host(n).join("run")
    }

    /// Host `n`'s log of daemon `what`.
    pub fn log(&self, n: u32, what: &str) -> PathBuf {
        self.host(n).join("log").join(format!("{what}.log"))
    }

    /// One VM instance's run directory.
    pub fn vm_run(&self, vm: &str, inst: &str) -> PathBuf {
        self.root.join("vms").join(vm).join(inst)
    }

    /// The guest image cache.
    pub fn guest_cache(&self) -> PathBuf {
        PathBuf::from("/var/cache/nosplit/guest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_views_map_backing_paths_into_the_hosts_mount() {
        let l = Layout::new("/r");
        assert_eq!(l.via(2, &l.ids()), PathBuf::from("/r/hosts/h2/mnt/ids"));
        assert_eq!(
            l.via(3, &l.disk("g1")),
            PathBuf::from("/r/hosts/h3/mnt/disks/g1.img")
        );
        assert_eq!(
            l.via(1, Path::new("/elsewhere")),
            PathBuf::from("/elsewhere")
        );
    }
}
