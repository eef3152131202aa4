//! The guest's `/init` shell script (run by busybox `sh`), generated as text.
//!
//! It installs the busybox applets, mounts proc/sys/devtmpfs, loads the virtio modules
//! that the image carries, reads `nosplit.vm`, `nosplit.inst` and `nosplit.interval_ms`
//! from `/proc/cmdline`, waits for `/dev/vda`, prints the virtio disks it sees
//! (`nosplit-guest: disks vda vdb ...`) and `nosplit-guest: heartbeat vm=... inst=...`,
//! and then
//! writes heartbeat records (see the shared heartbeat format) to `/dev/vda` forever:
//! record `seq` goes to slot `seq % 64` as one 512-byte `dd ... oflag=direct` write.
//! A failed write is reported on the console and the loop keeps going.

/// Directory inside the initramfs holding the `.ko` files.
pub const MODULE_DIR: &str = "lib/modules/nosplit";

/// Renders the script; `modules` are module names in load order (each is
/// `/lib/modules/nosplit/<name>.ko` in the image).
pub fn render(modules: &[String]) -> String {
    let list = modules.join(" ");
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in {list}; do
  insmod /{MODULE_DIR}/$m.ko || echo "nosplit-guest: insmod $m failed"
done
vm=unknown
inst=unknown
interval_ms=200
for w in $(cat /proc/cmdline); do
  case "$w" in
    nosplit.vm=*) vm="${{w#nosplit.vm=}}" ;;
    nosplit.inst=*) inst="${{w#nosplit.inst=}}" ;;
    nosplit.interval_ms=*) interval_ms="${{w#nosplit.interval_ms=}}" ;;
  esac
done
case "$interval_ms" in ''|*[!0-9]*) interval_ms=200 ;; esac
pause=$(printf '%d.%03d' $((interval_ms / 1000)) $((interval_ms % 1000)))
i=0
while [ ! -b /dev/vda ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
[ -b /dev/vda ] || echo "nosplit-guest: /dev/vda missing"
disks=
for b in /sys/block/vd*; do [ -e "$b" ] && disks="$disks ${{b#/sys/block/}}"; done
echo "nosplit-guest: disks$disks"
echo "nosplit-guest: heartbeat vm=$vm inst=$inst"
seq=1
while true; do
  now=$(($(date +%s) * 1000))
  printf '%-511s\n' "NSHB1 $vm $inst $seq $now END" |
    dd of=/dev/vda bs=512 count=1 seek=$((seq % 64)) iflag=fullblock oflag=direct conv=notrunc 2>/dev/null ||
    echo "nosplit-guest: write seq=$seq failed"
  seq=$((seq + 1))
  sleep $pause
done
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_loads_modules_in_order_and_writes_full_records() {
        let s = render(&["virtio_ring".into(), "virtio_blk".into()]);
        assert!(s.starts_with("#!/bin/busybox sh\n"));
        assert!(s.contains("for m in virtio_ring virtio_blk; do"));
        assert!(s.contains("printf '%-511s\\n' \"NSHB1 $vm $inst $seq $now END\""));
        assert!(s.contains("oflag=direct conv=notrunc"));
        assert!(s.contains("seek=$((seq % 64))"));
        assert!(s.contains("nosplit.interval_ms=*)"));
        assert!(s.contains("echo \"nosplit-guest: heartbeat vm=$vm inst=$inst\""));
        assert!(s.contains("for b in /sys/block/vd*; do"));
        assert!(s.contains("echo \"nosplit-guest: disks$disks\""));
    }

    #[test]
    fn script_runs_under_host_busybox_syntax_check() {
        let s = render(&["virtio_blk".into()]);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("init");
        std::fs::write(&p, s).unwrap();
        let out = std::process::Command::new("busybox")
            .args(["sh", "-n"])
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
