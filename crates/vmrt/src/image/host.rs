//! Finds the guest's ingredients on the host: the newest `vmlinuz-*-cloud-amd64`, its
//! module tree (virtio modules via `modules.dep` / `modules.builtin`), and a statically
//! linked busybox. Pure helpers (version ordering, module lookup, ELF check) are separate
//! from the file system reads so they can be tested on their own.

use super::ImageError;
use std::cmp::Ordering;
use std::path::{Path, PathBuf};

/// Module names the guest loads, in load order.
pub const VIRTIO_MODULES: [&str; 6] = [
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "virtio_blk",
];

/// Where to look for the kernel, modules and busybox.
#[derive(Debug, Clone)]
pub struct ImageSources {
    /// Directory holding `vmlinuz-<ver>` (normally `/boot`).
    pub boot_dir: PathBuf,
    /// Directory holding `<ver>/modules.dep` (normally `/lib/modules`).
    pub modules_root: PathBuf,
    /// Candidate busybox binaries, first existing one wins.
    pub busybox: Vec<PathBuf>,
}

impl Default for ImageSources {
    fn default() -> Self {
        Self {
            boot_dir: "/boot".into(),
            modules_root: "/lib/modules".into(),
            busybox: vec!["/bin/busybox".into(), "/usr/bin/busybox".into()],
        }
    }
}

/// Compares kernel versions like `6.1.0-48-cloud-amd64` by their numeric runs.
pub fn cmp_version(a: &str, b: &str) -> Ordering {
    let nums = |s: &str| -> Vec<u64> {
        s.split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .map(|p| p.parse::<u64>().unwrap_or(u64::MAX))
            .collect()
    };
    nums(a).cmp(&nums(b)).then_with(|| a.cmp(b))
}

/// Newest `vmlinuz-*-cloud-amd64` in `boot_dir`: (path, version).
pub fn find_kernel(boot_dir: &Path) -> Result<(PathBuf, String), ImageError> {
    let rd = std::fs::read_dir(boot_dir).map_err(|_| ImageError::NoKernel(boot_dir.into()))?;
    let mut best: Option<String> = None;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(ver) = name.strip_prefix("vmlinuz-") {
            if ver.ends_with("-cloud-amd64")
                && best
                    .as_deref()
                    .is_none_or(|b| cmp_version(ver, b) == Ordering::Greater)
            {
                best = Some(ver.to_string());
            }
        }
    }
    let ver = best.ok_or_else(|| ImageError::NoKernel(boot_dir.into()))?;
    Ok((boot_dir.join(format!("vmlinuz-{ver}")), ver))
}

/// What the module tree says about one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleSource {
    /// Built into the kernel: nothing to load.
    BuiltIn,
    /// A loadable module at this path relative to the module tree.
    File(String),
    /// Neither.
    Missing,
}

/// Looks `name` up in the text of `modules.dep` and `modules.builtin`.
pub fn lookup_module(name: &str, modules_dep: &str, modules_builtin: &str) -> ModuleSource {
    let matches = |path: &str| {
        let file = path.rsplit('/').next().unwrap_or(path);
        let stem = file.split(".ko").next().unwrap_or(file);
        stem.replace('-', "_") == name && file.contains(".ko")
    };
    if modules_builtin.lines().any(|l| matches(l.trim())) {
        return ModuleSource::BuiltIn;
    }
    for line in modules_dep.lines() {
        let path = line.split(':').next().unwrap_or("").trim();
        if matches(path) {
            return ModuleSource::File(path.to_string());
        }
    }
    ModuleSource::Missing
}

/// Resolves the virtio modules to files (in load order) for kernel `ver`.
/// Built-in or missing ones are skipped; `virtio_blk` must be a file or built in.
pub fn virtio_module_files(
    modules_root: &Path,
    ver: &str,
) -> Result<Vec<(String, PathBuf)>, ImageError> {
    let tree = modules_root.join(ver);
    let read = |f: &str| std::fs::read_to_string(tree.join(f));
    let dep = read("modules.dep").map_err(|_| ImageError::NoModules(tree.clone()))?;
    let builtin = read("modules.builtin").unwrap_or_default();
    let mut out = Vec::new();
    let mut blk_ok = false;
    for name in VIRTIO_MODULES {
        match lookup_module(name, &dep, &builtin) {
            ModuleSource::BuiltIn => blk_ok |= name == "virtio_blk",
            ModuleSource::Missing => {}
            ModuleSource::File(rel) => {
                if !rel.ends_with(".ko") {
                    return Err(ImageError::CompressedModule(tree.join(rel)));
                }
                let path = tree.join(&rel);
                if !path.is_file() {
                    continue;
                }
                blk_ok |= name == "virtio_blk";
                out.push((name.to_string(), path));
            }
        }
    }
    if !blk_ok {
        return Err(ImageError::NoVirtioBlk(tree));
    }
    Ok(out)
}

/// True if `elf` is a 64-bit little-endian ELF with no `PT_INTERP` (statically linked).
pub fn is_static_elf(elf: &[u8]) -> bool {
    let rd16 = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let rd32 = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let rd64 = |o: usize| {
        elf.get(o..o + 8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_le_bytes(a)
        })
    };
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (rd64(0x20), rd16(0x36), rd16(0x38)) else {
        return false;
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return false;
    };
    (0..usize::from(phnum)).all(|i| {
        let at = phoff + i * usize::from(phentsize);
        rd32(at).is_some_and(|ty| ty != 3) // 3 = PT_INTERP
    })
}

/// First existing busybox candidate, which must be statically linked.
pub fn find_busybox(candidates: &[PathBuf]) -> Result<PathBuf, ImageError> {
    for c in candidates {
        if let Ok(bytes) = std::fs::read(c) {
            if is_static_elf(&bytes) {
                return Ok(c.clone());
            }
            return Err(ImageError::BusyboxNotStatic(c.clone()));
        }
    }
    Err(ImageError::NoBusybox)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_numerically() {
        assert_eq!(
            cmp_version("6.1.0-48-cloud-amd64", "6.1.0-9-cloud-amd64"),
            Ordering::Greater
        );
        assert_eq!(
            cmp_version("6.1.0-9-cloud-amd64", "6.10.0-1-cloud-amd64"),
            Ordering::Less
        );
    }

    #[test]
    fn module_lookup_distinguishes_builtin_file_missing() {
        let dep = "kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_ring.ko\n\
                   kernel/drivers/virtio/virtio_ring.ko:\n\
                   kernel/drivers/block/virtio_blk.ko.xz: x\n";
        let builtin = "kernel/drivers/virtio/virtio.ko\n";
        assert_eq!(lookup_module("virtio", dep, builtin), ModuleSource::BuiltIn);
        assert_eq!(
            lookup_module("virtio_ring", dep, builtin),
            ModuleSource::File("kernel/drivers/virtio/virtio_ring.ko".into())
        );
        assert_eq!(
            lookup_module("virtio_blk", dep, builtin),
            ModuleSource::File("kernel/drivers/block/virtio_blk.ko.xz".into())
        );
        assert_eq!(
            lookup_module("virtio_pci_modern_dev", dep, builtin),
            ModuleSource::Missing
        );
    }

    #[test]
    fn missing_virtio_blk_fails_loudly() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("9.9");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(
            tree.join("modules.dep"),
            "kernel/drivers/virtio/virtio.ko:\n",
        )
        .unwrap();
        let err = virtio_module_files(dir.path(), "9.9").unwrap_err();
        assert!(matches!(err, ImageError::NoVirtioBlk(_)), "{err}");
    }

    #[test]
    fn static_elf_check() {
        assert!(!is_static_elf(b"not an elf"));
        assert!(!is_static_elf(&[]));
        let sh = std::fs::read("/bin/sh").unwrap(); // dynamically linked on Debian
        assert!(!is_static_elf(&sh));
    }
}
