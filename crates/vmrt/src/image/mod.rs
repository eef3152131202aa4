//! Guest image builder: a kernel plus an initramfs whose `/init` writes heartbeat
//! records to the VM's disk (`/dev/vda`).
//!
//! [`build_guest`] finds the newest `/boot/vmlinuz-*-cloud-amd64` (package
//! `linux-image-cloud-amd64`), the virtio modules of that kernel and a static busybox
//! (package `busybox-static`), and writes an uncompressed newc cpio. Images are cached
//! under `cache_dir/<kernel version>-<hash>` where the hash covers the init script,
//! busybox and module contents (and the kernel). A build goes to a temporary directory
//! that is renamed into place, so a crash never leaves a half image and concurrent
//! builders are safe; the next call returns the cached image.

mod cpio;
mod host;
mod init;

pub use cpio::CpioWriter;
pub use host::{ImageSources, VIRTIO_MODULES};

use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A bootable guest: kernel and initramfs files (inside the cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestImage {
    /// Kernel image (copied into the cache directory).
    pub kernel: PathBuf,
    /// Uncompressed newc initramfs.
    pub initrd: PathBuf,
    /// Kernel release, e.g. `6.1.0-48-cloud-amd64`.
    pub kernel_version: String,
}

/// Why a guest image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No `vmlinuz-*-cloud-amd64` found.
    #[error("no vmlinuz-*-cloud-amd64 kernel in {0}: install the package linux-image-cloud-amd64")]
    NoKernel(PathBuf),
    /// The kernel's module tree is missing.
    #[error(
        "module tree {0} (modules.dep) is missing: reinstall the package linux-image-cloud-amd64"
    )]
    NoModules(PathBuf),
    /// A needed module is compressed; the builder only packs plain `.ko` files.
    #[error("module {0} is compressed; only uncompressed .ko modules are supported")]
    CompressedModule(PathBuf),
    /// `virtio_blk` is neither built in nor available as a module.
    #[error("virtio_blk is neither built in nor a module file under {0}; the guest could not see its disk")]
    NoVirtioBlk(PathBuf),
    /// No busybox binary found.
    #[error("no busybox binary found (/bin/busybox): install the package busybox-static")]
    NoBusybox,
    /// busybox exists but is dynamically linked.
    #[error("{0} is dynamically linked and cannot run in the initramfs: install the package busybox-static")]
    BusyboxNotStatic(PathBuf),
    /// Reading inputs or writing the cache failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.to_path_buf();
    move |source| ImageError::Io { what, path, source }
}

/// Builds (or returns the cached) guest image from the host's default locations.
pub fn build_guest(cache_dir: &Path) -> Result<GuestImage, ImageError> {
    build_guest_with(cache_dir, &ImageSources::default())
}

/// Like [`build_guest`] with explicit source locations.
pub fn build_guest_with(cache_dir: &Path, src: &ImageSources) -> Result<GuestImage, ImageError> {
    let (kernel_src, ver) = host::find_kernel(&src.boot_dir)?;
    let modules = host::virtio_module_files(&src.modules_root, &ver)?;
    let busybox_path = host::find_busybox(&src.busybox)?;
    let names: Vec<String> = modules.iter().map(|(n, _)| n.clone()).collect();
    let script = init::render(&names);

    let busybox = std::fs::read(&busybox_path).map_err(io_err("reading", &busybox_path))?;
    let kernel = std::fs::read(&kernel_src).map_err(io_err("reading", &kernel_src))?;
    let mut mod_data = Vec::new();
    let mut hasher = Sha256::new();
    hasher.update(b"nosplit-guest-v1\0");
    hasher.update(script.as_bytes());
    hasher.update(&busybox);
    hasher.update(&kernel);
    for (name, path) in &modules {
        let data = std::fs::read(path).map_err(io_err("reading", path))?;
        hasher.update(name.as_bytes());
        hasher.update(&data);
        mod_data.push((name.clone(), data));
    }
    let digest = hasher.finalize();
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let final_dir = cache_dir.join(format!("{ver}-{hex}"));
    let image = |dir: &Path| GuestImage {
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.cpio"),
        kernel_version: ver.clone(),
    };
    if final_dir.is_dir() {
        return Ok(image(&final_dir));
    }

    std::fs::create_dir_all(cache_dir).map_err(io_err("creating", cache_dir))?;
    let tmp = tempfile::Builder::new()
        .prefix(".building-")
        .tempdir_in(cache_dir)
        .map_err(io_err("creating a temp dir in", cache_dir))?;
    let staged = image(tmp.path());
    std::fs::write(&staged.kernel, &kernel).map_err(io_err("writing", &staged.kernel))?;
    write_initrd(&staged.initrd, &script, &busybox, &mod_data)?;
    let tmp_path = tmp.keep();
    match std::fs::rename(&tmp_path, &final_dir) {
        Ok(()) => Ok(image(&final_dir)),
        Err(_) if final_dir.is_dir() => {
            // Another builder won the race; its image is identical.
            let _ = std::fs::remove_dir_all(&tmp_path);
            Ok(image(&final_dir))
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp_path);
            Err(ImageError::Io {
                what: "renaming into",
                path: final_dir,
                source: e,
            })
        }
    }
}

fn write_initrd(
    path: &Path,
    script: &str,
    busybox: &[u8],
    modules: &[(String, Vec<u8>)],
) -> Result<(), ImageError> {
    let f = std::fs::File::create(path).map_err(io_err("creating", path))?;
    let build = || -> std::io::Result<()> {
        let mut w = CpioWriter::new(std::io::BufWriter::new(f));
        for d in [
            "bin", "sbin", "usr", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp",
        ] {
            w.dir(d, 0o755)?;
        }
        w.dir("lib", 0o755)?;
        w.dir("lib/modules", 0o755)?;
        w.dir(init::MODULE_DIR, 0o755)?;
        w.char_dev("dev/console", 0o600, 5, 1)?;
        w.char_dev("dev/null", 0o666, 1, 3)?;
        w.file("bin/busybox", 0o755, busybox)?;
        w.file("init", 0o755, script.as_bytes())?;
        for (name, data) in modules {
            w.file(&format!("{}/{name}.ko", init::MODULE_DIR), 0o644, data)?;
        }
        let mut out = w.finish()?;
        out.flush()?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()
    };
    build().map_err(io_err("writing", path))
}
