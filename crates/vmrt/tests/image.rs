#![allow(clippy::unwrap_used)]
//! Guest image builder against the real host packages.

use nosplit_vmrt::image::{build_guest, build_guest_with, ImageError, ImageSources};

#[test]
fn builds_then_returns_cached_image() {
    let cache = tempfile::tempdir().unwrap();
    let img = build_guest(cache.path()).unwrap();
    assert!(img.kernel.is_file());
    assert!(img.kernel_version.ends_with("-cloud-amd64"));
    let cpio = std::fs::read(&img.initrd).unwrap();
    assert!(cpio.starts_with(b"070701"));
    for needle in [
        &b"bin/busybox\0"[..],
        b"init\0",
        b"virtio_blk.ko\0",
        b"TRAILER!!!",
    ] {
        assert!(cpio.windows(needle.len()).any(|w| w == needle));
    }
    let mtime = std::fs::metadata(&img.initrd).unwrap().modified().unwrap();
    let again = build_guest(cache.path()).unwrap();
    assert_eq!(again, img);
    assert_eq!(
        std::fs::metadata(&again.initrd)
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );
    // Only the final directory remains: no half-built temp dirs.
    let entries: Vec<_> = std::fs::read_dir(cache.path()).unwrap().collect();
    assert_eq!(entries.len(), 1);
}

#[test]
fn missing_kernel_names_the_package() {
    let cache = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let src = ImageSources {
        boot_dir: empty.path().into(),
        ..ImageSources::default()
    };
    let err = build_guest_with(cache.path(), &src).unwrap_err();
    assert!(matches!(err, ImageError::NoKernel(_)));
    assert!(err.to_string().contains("linux-image-cloud-amd64"));
}

#[test]
fn missing_busybox_names_the_package() {
    let cache = tempfile::tempdir().unwrap();
    let src = ImageSources {
        busybox: vec!["/nonexistent/busybox".into()],
        ..ImageSources::default()
    };
    let err = build_guest_with(cache.path(), &src).unwrap_err();
    assert!(err.to_string().contains("busybox-static"), "{err}");
    let src = ImageSources {
        busybox: vec!["/bin/sh".into()],
        ..ImageSources::default()
    };
    let err = build_guest_with(cache.path(), &src).unwrap_err();
    assert!(matches!(err, ImageError::BusyboxNotStatic(_)), "{err}");
}
