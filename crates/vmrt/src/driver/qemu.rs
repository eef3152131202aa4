//! QEMU backend: a TCG guest booted from a [`GuestImage`], each disk (the first, then
//! [`VmSpec::extra_disks`] in order: `/dev/vda`, `/dev/vdb`, ... in the guest) as
//! virtio-blk with `cache=none,werror=stop,rerror=stop`, driven over QMP (`run_dir/qmp.sock`).
//! `prepare` starts QEMU with `-S` (status `prelaunch`), `start` sends `cont`,
//! pause/resume are `stop`/`cont`, stop is `quit` then SIGKILL. The guest console goes to
//! `run_dir/console.log`, QEMU's own stderr to `run_dir/qemu.log`.

use super::gate::add_setpgid;
use super::procs::{Liveness, ProcIdentity, Tracked, IDENT_FILE};
use super::{
    adoptable_identity, io_err, prepare_run_dir, DriverError, PreparedVm, RunningVm, VmDriver,
    VmKind, VmSpec, VmState,
};
use crate::image::GuestImage;
use crate::qmp::{QmpClient, QmpError};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// QEMU backend settings.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    /// The QEMU binary (default `qemu-system-x86_64` from `PATH`).
    pub binary: PathBuf,
    /// Kernel + initramfs to boot.
    pub image: GuestImage,
    /// Per-command QMP timeout.
    pub qmp_timeout: Duration,
    /// How long `prepare` waits for the QMP socket.
    pub launch_timeout: Duration,
}

impl QemuConfig {
    /// Defaults for `image`: 10 s QMP timeout, 30 s launch timeout.
    pub fn new(image: GuestImage) -> Self {
        Self {
            binary: "qemu-system-x86_64".into(),
            image,
            qmp_timeout: Duration::from_secs(10),
            launch_timeout: Duration::from_secs(30),
        }
    }
}

/// Runs VMs as QEMU guests.
#[derive(Debug, Clone)]
pub struct QemuDriver {
    cfg: QemuConfig,
}

impl QemuDriver {
    /// A driver with [`QemuConfig::new`] defaults.
    pub fn new(image: GuestImage) -> Self {
        Self {
            cfg: QemuConfig::new(image),
        }
    }

    /// A driver with explicit settings.
    pub fn with_config(cfg: QemuConfig) -> Self {
        Self { cfg }
    }
}

/// Escapes a value for QEMU's comma-separated option syntax.
fn opt_escape(p: &Path) -> String {
    p.display().to_string().replace(',', ",,")
}

/// Maps a QMP `query-status` status to a [`VmState`].
pub fn map_status(status: &str) -> VmState {
    match status {
        "running" => VmState::Running,
        "paused" => VmState::Paused,
        "io-error" => VmState::IoErrorPaused,
        "prelaunch" => VmState::Prelaunch,
        other => VmState::Other(other.to_string()),
    }
}

/// The QEMU command line (without the spawn hook).
pub fn qemu_args(cfg: &QemuConfig, spec: &VmSpec, interval_ms: u32) -> Vec<String> {
    let d = &spec.run_dir;
    let append = format!(
        "console=ttyS0 quiet panic=-1 nosplit.vm={} nosplit.inst={} nosplit.interval_ms={}",
        spec.id, spec.inst, interval_ms
    );
    let s = |x: &str| x.to_string();
    let mut args = vec![
        s("-accel"),
        s("tcg"),
        s("-m"),
        spec.memory_mib.to_string(),
        s("-smp"),
        spec.vcpus.to_string(),
        s("-nographic"),
        s("-nodefaults"),
        s("-no-reboot"),
        s("-S"),
        s("-kernel"),
        cfg.image.kernel.display().to_string(),
        s("-initrd"),
        cfg.image.initrd.display().to_string(),
        s("-append"),
        append,
    ];
    for disk in std::iter::once(&spec.disk).chain(&spec.extra_disks) {
        args.push(s("-drive"));
        args.push(format!(
            "file={},if=virtio,format=raw,cache=none,werror=stop,rerror=stop",
            opt_escape(disk)
        ));
    }
    args.extend([
        s("-qmp"),
        format!(
            "unix:{},server=on,wait=off",
            opt_escape(&d.join("qmp.sock"))
        ),
        s("-serial"),
        format!("file:{}", d.join("console.log").display()),
        s("-pidfile"),
        d.join("qemu.pid").display().to_string(),
    ]);
    args
}

fn log_tail(run_dir: &Path) -> String {
    let text = std::fs::read_to_string(run_dir.join("qemu.log")).unwrap_or_default();
    let start = text.len().saturating_sub(800);
    text.get(start..).unwrap_or("").trim().to_string()
}

impl VmDriver for QemuDriver {
    fn kind(&self) -> &'static str {
        "qemu"
    }

    fn prepare(&self, spec: &VmSpec) -> Result<Box<dyn PreparedVm>, DriverError> {
        let VmKind::Qemu {
            interval_ms,
            extra_args,
        } = &spec.kind
        else {
            return Err(DriverError::InvalidSpec(
                "QEMU driver needs VmKind::Qemu".into(),
            ));
        };
        if spec.memory_mib == 0 || spec.vcpus == 0 {
            return Err(DriverError::InvalidSpec(
                "memory_mib and vcpus must be > 0".into(),
            ));
        }
        let sock = spec.run_dir.join("qmp.sock");
        if sock.as_os_str().len() > 100 {
            return Err(DriverError::InvalidSpec(format!(
                "QMP socket path {} is too long for a unix socket",
                sock.display()
            )));
        }
        prepare_run_dir(spec)?;
        for stale in ["qmp.sock", "qemu.pid", IDENT_FILE] {
            let _ = std::fs::remove_file(spec.run_dir.join(stale));
        }
        let log_path = spec.run_dir.join("qemu.log");
        let log = std::fs::File::create(&log_path)
            .map_err(io_err(format!("creating {}", log_path.display())))?;
        let log2 = log.try_clone().map_err(io_err("duplicating log fd"))?;
        let mut cmd = Command::new(&self.cfg.binary);
        cmd.args(qemu_args(&self.cfg, spec, *interval_ms))
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        if let Some(hook) = &spec.spawn_hook {
            hook(&mut cmd);
        }
        add_setpgid(&mut cmd);
        let program = self.cfg.binary.clone();
        let mut child = cmd
            .spawn()
            .map_err(|source| DriverError::Spawn { program, source })?;
        let Some(ident) = ProcIdentity::of(child.id()) else {
            let _ = child.wait();
            return Err(DriverError::Launch(log_tail(&spec.run_dir)));
        };
        let mut proc = Tracked::own(child, ident);
        match self.connect_new(&mut proc, spec, &sock) {
            Ok(qmp) => Ok(Box::new(QemuPrepared {
                vm: Some(QemuVm::new(proc, Some(qmp), sock, self.cfg.qmp_timeout)),
            })),
            Err(e) => {
                proc.kill_and_reap(Duration::from_secs(10));
                Err(e)
            }
        }
    }

    fn adopt(&self, spec: &VmSpec) -> Result<Box<dyn RunningVm>, DriverError> {
        let ident = adoptable_identity(spec)?;
        if let Ok(text) = std::fs::read_to_string(spec.run_dir.join("qemu.pid")) {
            if text.trim() != ident.pid.to_string() {
                return Err(DriverError::Adopt(format!(
                    "qemu.pid says {} but vm.ident says {}",
                    text.trim(),
                    ident.pid
                )));
            }
        }
        let sock = spec.run_dir.join("qmp.sock");
        let qmp = QmpClient::connect(&sock, self.cfg.qmp_timeout)?;
        Ok(Box::new(QemuVm::new(
            Tracked::adopted(ident),
            Some(qmp),
            sock,
            self.cfg.qmp_timeout,
        )))
    }
}

impl QemuDriver {
    /// Waits for the QMP socket of a fresh QEMU, checks `prelaunch`, records identity.
    fn connect_new(
        &self,
        proc: &mut Tracked,
        spec: &VmSpec,
        sock: &Path,
    ) -> Result<QmpClient, DriverError> {
        let deadline = Instant::now() + self.cfg.launch_timeout;
        let mut qmp = loop {
            if !matches!(proc.poll(), Liveness::Alive { .. }) {
                return Err(DriverError::Launch(log_tail(&spec.run_dir)));
            }
            match QmpClient::connect(sock, self.cfg.qmp_timeout) {
                Ok(c) => break c,
                Err(QmpError::Connect { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let st = qmp.query_status()?;
        if st.status != "prelaunch" {
            return Err(DriverError::Launch(format!(
                "status {} instead of prelaunch",
                st.status
            )));
        }
        proc.ident
            .write_file(&spec.run_dir.join(IDENT_FILE))
            .map_err(io_err("writing vm.ident"))?;
        Ok(qmp)
    }
}

#[derive(Debug)]
struct QemuPrepared {
    vm: Option<QemuVm>,
}

impl QemuPrepared {
    fn vm(&mut self) -> Result<&mut QemuVm, DriverError> {
        self.vm
            .as_mut()
            .ok_or(DriverError::WrongState(VmState::Gone))
    }
}

impl PreparedVm for QemuPrepared {
    fn pid(&self) -> u32 {
        self.vm.as_ref().map_or(0, |v| v.proc.ident.pid)
    }

    fn identity(&self) -> ProcIdentity {
        self.vm.as_ref().map_or(
            ProcIdentity {
                pid: 0,
                start_time: 0,
            },
            |v| v.proc.ident,
        )
    }

    fn state(&mut self) -> Result<VmState, DriverError> {
        self.vm()?.state()
    }

    fn start(mut self: Box<Self>) -> Result<Box<dyn RunningVm>, DriverError> {
        let mut vm = self
            .vm
            .take()
            .ok_or(DriverError::WrongState(VmState::Gone))?;
        match vm.exec("cont") {
            Ok(()) => Ok(Box::new(vm)),
            Err(e) => {
                vm.proc.kill_and_reap(Duration::from_secs(10));
                Err(e)
            }
        }
    }

    fn abort(self: Box<Self>) {
        drop(self);
    }
}

impl Drop for QemuPrepared {
    fn drop(&mut self) {
        if let Some(vm) = &mut self.vm {
            vm.proc.kill_and_reap(Duration::from_secs(10));
        }
    }
}

#[path = "qemu_vm.rs"]
mod vm;
use vm::QemuVm;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping() {
        assert_eq!(map_status("running"), VmState::Running);
        assert_eq!(map_status("io-error"), VmState::IoErrorPaused);
        assert_eq!(map_status("paused"), VmState::Paused);
        assert_eq!(map_status("prelaunch"), VmState::Prelaunch);
        assert_eq!(
            map_status("guest-panicked"),
            VmState::Other("guest-panicked".into())
        );
    }

    #[test]
    fn command_line_escapes_commas_and_carries_ids() {
        let img = GuestImage {
            kernel: "/k".into(),
            initrd: "/i".into(),
            kernel_version: "v".into(),
        };
        let spec = VmSpec {
            id: "vm1".into(),
            inst: "x.2".into(),
            disk: "/d,1.img".into(),
            extra_disks: vec![],
            memory_mib: 128,
            vcpus: 2,
            run_dir: "/run/v".into(),
            kind: VmKind::Qemu {
                interval_ms: 50,
                extra_args: vec![],
            },
            spawn_hook: None,
        };
        let a = qemu_args(&QemuConfig::new(img), &spec, 50);
        let has = |s: &str| a.iter().any(|x| x == s);
        assert!(has("-S") && has("-no-reboot") && has("tcg"));
        assert!(has(
            "file=/d,,1.img,if=virtio,format=raw,cache=none,werror=stop,rerror=stop"
        ));
        assert!(has("unix:/run/v/qmp.sock,server=on,wait=off"));
        assert!(a
            .iter()
            .any(|x| x.contains("nosplit.vm=vm1 nosplit.inst=x.2 nosplit.interval_ms=50")));
    }

    #[test]
    fn every_disk_is_a_drive_in_order() {
        let img = GuestImage {
            kernel: "/k".into(),
            initrd: "/i".into(),
            kernel_version: "v".into(),
        };
        let spec = VmSpec {
            id: "vm1".into(),
            inst: "i".into(),
            disk: "/d/vm1.img".into(),
            extra_disks: vec!["/d/vm1@data.img".into(), "/d/vm1@a,b.img".into()],
            memory_mib: 128,
            vcpus: 1,
            run_dir: "/run/v".into(),
            kind: VmKind::Qemu {
                interval_ms: 50,
                extra_args: vec![],
            },
            spawn_hook: None,
        };
        let a = qemu_args(&QemuConfig::new(img), &spec, 50);
        let drives: Vec<&str> = a
            .windows(2)
            .filter(|w| w[0] == "-drive")
            .map(|w| w[1].as_str())
            .collect();
        let opts = ",if=virtio,format=raw,cache=none,werror=stop,rerror=stop";
        assert_eq!(
            drives,
            [
                format!("file=/d/vm1.img{opts}"),
                format!("file=/d/vm1@data.img{opts}"),
                format!("file=/d/vm1@a,,b.img{opts}"),
            ]
        );
        // The drives come before the QMP socket, as the first one always did.
        let qmp = a.iter().position(|x| x == "-qmp").unwrap();
        assert!(a.iter().rposition(|x| x == "-drive").unwrap() < qmp);
    }

    #[test]
    fn a_missing_extra_disk_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("a.img");
        std::fs::write(&disk, b"").unwrap();
        let spec = VmSpec {
            id: "vm1".into(),
            inst: "i".into(),
            disk: disk.clone(),
            extra_disks: vec![disk, dir.path().join("missing.img")],
            memory_mib: 128,
            vcpus: 1,
            run_dir: dir.path().join("run"),
            kind: VmKind::Qemu {
                interval_ms: 50,
                extra_args: vec![],
            },
            spawn_hook: None,
        };
        let driver = QemuDriver::new(GuestImage {
            kernel: "/k".into(),
            initrd: "/i".into(),
            kernel_version: "v".into(),
        });
        let e = driver.prepare(&spec).unwrap_err();
        assert!(
            matches!(&e, DriverError::InvalidSpec(m) if m.contains("extra disk 2") && m.contains("missing.img")),
            "{e}"
        );
        assert!(
            !dir.path().join("run").exists(),
            "nothing is made for a refused spec"
        );
    }
}
