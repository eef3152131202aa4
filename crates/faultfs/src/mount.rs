//! Mounting, unmounting and aborting; the foreground runner.

use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fuser::{Config, MountOption, Session, SessionACL, SessionUnmounter};

use crate::control::ControlServer;
use crate::fault::{FaultHandle, Faults};
use crate::fs::{FaultFs, Ops};
use crate::Error;

/// The mount source shown in `/proc/mounts` (file system type `fuse`).
pub const FS_NAME: &str = "nosplit-faultfs";

/// Where the kernel's fusectl file system lives.
const FUSECTL: &str = "/sys/fs/fuse/connections";

/// How long teardown waits for the session thread after unmounting.
const JOIN_WAIT: Duration = Duration::from_secs(5);

/// Mount a pass-through of `backing` at `mountpoint`, served by a background
/// thread, with faults controlled through the returned guard's
/// [`handle`](MountGuard::handle) and, if given, a control socket at
/// `control_socket`. Needs root (the mount is made with mount(2); there is
/// no fusermount fallback without a setuid helper).
pub fn spawn(
    backing: &Path,
    mountpoint: &Path,
    control_socket: Option<&Path>,
) -> Result<MountGuard, Error> {
    let backing = canonical_dir(backing).map_err(|source| Error::Backing {
        path: backing.to_path_buf(),
        source,
    })?;
    let mp = mountpoint_dir(mountpoint).map_err(|source| Error::Mountpoint {
        path: mountpoint.to_path_buf(),
        source,
    })?;
    if mp.starts_with(&backing) || backing.starts_with(&mp) {
        // The backing store is reached by path: through the mount itself it
        // would deadlock the session thread on its own requests.
        return Err(Error::Overlap {
            backing,
            mountpoint: mp,
        });
    }
    std::fs::metadata("/dev/fuse").map_err(Error::NoFuse)?;

    let faults = Faults::start().map_err(Error::Thread)?;
    let fs = FaultFs {
        ops: Arc::new(Ops::new(backing.clone())),
        faults: Arc::clone(&faults),
    };
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(FS_NAME.into()),
        MountOption::DefaultPermissions,
    ];
    config.acl = SessionACL::All;
    let mut session = match Session::new(fs, &mp, &config) {
        Ok(s) => s,
        Err(source) => {
            faults.shutdown();
            return Err(Error::Mount { path: mp, source });
        }
    };
    // Read before the session runs: mountinfo needs no FUSE request, so
    // this works whatever the mode later is.
    let dev = find_mount(&mp).map(|m| m.dev);
    let unmounter = session.unmount_callable();
    let handle = FaultHandle { faults };
    let core = Arc::new(Conn {
        mountpoint: mp,
        dev,
        handle: handle.clone(),
        ended: AtomicBool::new(false),
        gone: AtomicBool::new(false),
    });
    let ended = Arc::clone(&core);
    let thread = std::thread::Builder::new()
        .name("faultfs-session".into())
        .spawn(move || {
            let r = session.run();
            ended.ended.store(true, Ordering::SeqCst);
            r
        });
    let mut guard = MountGuard {
        backing,
        handle,
        core,
        unmounter: Some(unmounter),
        session: None,
        control: None,
    };
    match thread {
        Ok(t) => guard.session = Some(t),
        // Dropping the guard unmounts; the session (moved into the closure
        // that never ran) unmounted on drop already.
        Err(e) => return Err(Error::Thread(e)),
    }
    if let Some(path) = control_socket {
        guard.control = Some(ControlServer::start(
            path,
            guard.handle.clone(),
            Arc::clone(&guard.core),
        )?);
    }
    Ok(guard)
}

/// Mount like [`spawn`] and serve until SIGINT, SIGTERM or SIGHUP arrives,
/// or until the file system is unmounted from outside; then unmount.
///
/// Blocks those signals in the calling thread (threads started afterwards
/// inherit the mask) and waits for them with `sigtimedwait`, so call it from
/// the main thread before other threads are started.
pub fn run_foreground(
    backing: &Path,
    mountpoint: &Path,
    control_socket: Option<&Path>,
) -> Result<(), Error> {
    let signals = sig::Blocked::new().map_err(Error::Signals)?;
    let guard = spawn(backing, mountpoint, control_socket)?;
    while guard.is_running() {
        if signals.wait(Duration::from_millis(200)).is_some() {
            break;
        }
    }
    guard.unmount()
}

/// The canonical mount point; a dead faultfs mount left there by a server
/// that died (every access fails with ENOTCONN) is detached first.
fn mountpoint_dir(p: &Path) -> io::Result<PathBuf> {
    match canonical_dir(p) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            let parent = p.parent().filter(|d| !d.as_os_str().is_empty());
            let parent = parent.unwrap_or(Path::new(".")).canonicalize()?;
            let name = p.file_name().ok_or(e)?;
            let abs = parent.join(name);
            let stale = mounts()
                .iter()
                .any(|m| m.mountpoint == abs && m.fstype == "fuse" && m.source == FS_NAME);
            if stale {
                use rustix::mount::{unmount, UnmountFlags};
                unmount(&abs, UnmountFlags::DETACH)?;
            }
            canonical_dir(p)
        }
        r => r,
    }
}

fn canonical_dir(p: &Path) -> io::Result<PathBuf> {
    let c = p.canonicalize()?;
    if !std::fs::metadata(&c)?.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            "not a directory",
        ));
    }
    Ok(c)
}

/// A running faultfs mount. Dropping it answers parked requests with EIO,
/// stops the control socket and unmounts (lazily if something still holds
/// files open on it); see [`unmount`](MountGuard::unmount) to see errors.
#[derive(Debug)]
pub struct MountGuard {
    backing: PathBuf,
    handle: FaultHandle,
    core: Arc<Conn>,
    unmounter: Option<SessionUnmounter>,
    session: Option<JoinHandle<io::Result<()>>>,
    control: Option<ControlServer>,
}

/// A mount's FUSE connection, shared by its guard and its control socket
/// (both can abort it).
#[derive(Debug)]
pub(crate) struct Conn {
    /// Canonical mount point.
    mountpoint: PathBuf,
    /// The mount's device number, read when mounting.
    dev: Option<(u32, u32)>,
    handle: FaultHandle,
    /// The session thread has returned.
    ended: AtomicBool,
    /// Our abort has taken the mount away.
    gone: AtomicBool,
}

impl Conn {
    fn id(&self) -> Option<u64> {
        self.dev.map(|(major, minor)| conn_id(major, minor))
    }

    /// Aborts the connection (see [`MountGuard::abort`]); its number.
    pub(crate) fn abort(&self) -> Result<u64, Error> {
        let conn = self.id().ok_or(Error::NoConnection)?;
        if self.gone.load(Ordering::SeqCst) {
            return Err(Error::Aborted(conn));
        }
        let file = Path::new(FUSECTL).join(conn.to_string()).join("abort");
        if !file.exists() {
            mount_fusectl()?;
        }
        std::fs::write(&file, b"1").map_err(|source| Error::Abort { conn, source })?;
        // Their answers would go nowhere now; free the reply objects.
        self.handle.faults.drop_parked();
        // The session thread sees ENODEV and ends; fuser then unmounts the
        // dead mount itself unless it is busy. Wait for that, then finish.
        let start = Instant::now();
        while !self.ended.load(Ordering::SeqCst) && start.elapsed() < JOIN_WAIT {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.detach()?;
        self.gone.store(true, Ordering::SeqCst);
        Ok(conn)
    }

    /// Unmount our mount if it is still there: plainly, or lazily when busy.
    /// Returns whether it had to be lazy.
    fn detach(&self) -> Result<bool, Error> {
        use rustix::mount::{unmount, UnmountFlags};
        if !self.still_mounted() {
            return Ok(false);
        }
        let mut lazy = false;
        let r = match unmount(&self.mountpoint, UnmountFlags::empty()) {
            Err(rustix::io::Errno::BUSY) => {
                lazy = true;
                unmount(&self.mountpoint, UnmountFlags::DETACH)
            }
            r => r,
        };
        match r {
            // EINVAL: unmounted meanwhile (by fuser at session end).
            Ok(()) | Err(rustix::io::Errno::INVAL) => Ok(lazy),
            Err(e) => Err(Error::Unmount {
                path: self.mountpoint.clone(),
                source: io::Error::from(e),
            }),
        }
    }

    fn still_mounted(&self) -> bool {
        match self.dev {
            Some(dev) => mounts()
                .iter()
                .any(|m| m.dev == dev && m.mountpoint == self.mountpoint),
            None => false,
        }
    }
}

impl MountGuard {
    /// The in-process fault control of this mount.
    pub fn handle(&self) -> FaultHandle {
        self.handle.clone()
    }

    /// Where the file system is mounted (canonical path).
    pub fn mountpoint(&self) -> &Path {
        &self.core.mountpoint
    }

    /// The directory served (canonical path).
    pub fn backing(&self) -> &Path {
        &self.backing
    }

    /// The control socket, if one was asked for.
    pub fn control_socket(&self) -> Option<&Path> {
        self.control.as_ref().map(ControlServer::path)
    }

    /// The FUSE connection number: the directory name under
    /// `/sys/fs/fuse/connections` (the minor device number of the mount).
    pub fn connection(&self) -> Option<u64> {
        self.core.id()
    }

    /// Whether the session thread still serves requests (false after an
    /// abort or an unmount from outside).
    pub fn is_running(&self) -> bool {
        self.session.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Abort the FUSE connection (`echo 1 > /sys/fs/fuse/connections/N/abort`,
    /// mounting fusectl there first if needed), the way out of a hung
    /// mount: every pending request, parked ones included, fails at once
    /// (ECONNABORTED) in the process that waits for it. Then waits (up to
    /// 5 s) for the session thread to end and takes the dead mount away
    /// (lazily if files are still open on it), so the mount point is free
    /// when this returns; open files fail with ENOTCONN from then on.
    /// The control socket's `abort` does the same.
    pub fn abort(&self) -> Result<(), Error> {
        self.core.abort().map(|_| ())
    }

    /// Unmount now and report how it went. Parked requests fail with EIO
    /// first; if the mount is busy (files open on it) it is detached lazily
    /// (`umount -l`), which still succeeds.
    pub fn unmount(mut self) -> Result<(), Error> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), Error> {
        self.handle.faults.shutdown();
        if let Some(mut c) = self.control.take() {
            c.stop();
        }
        let Some(mut unmounter) = self.unmounter.take() else {
            return Ok(());
        };
        // While the session runs, fuser unmounts (it checks the connection
        // first, so the path is still ours); when that fails (busy) we
        // detach lazily. Once the session has ended (abort, or an unmount
        // from outside), fuser has already tried at session end and a dead
        // mount may be left: look for it by device and path, unless our
        // own abort already took it away (its device number may belong to
        // a newer mount by now).
        let was_running = self.is_running();
        let first = unmounter.unmount();
        let mut lazy = false;
        let mut result = Ok(());
        if !self.core.gone.load(Ordering::SeqCst) && (first.is_err() || !was_running) {
            match self.core.detach() {
                Ok(l) => lazy = l,
                Err(e) => result = Err(e),
            }
        }
        if let (Err(e), None) = (first, self.core.dev) {
            // Without a known device there was no fallback.
            result = Err(Error::Unmount {
                path: self.core.mountpoint.clone(),
                source: e,
            });
        }
        if let Some(t) = self.session.take() {
            // After a real unmount the kernel ends the connection and the
            // session thread returns at once. A lazily detached mount is
            // still in use: its thread keeps serving those files (failing
            // them with EIO) and ends when they are closed.
            let start = Instant::now();
            while !lazy && !t.is_finished() && start.elapsed() < JOIN_WAIT {
                std::thread::sleep(Duration::from_millis(2));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
        result
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

fn conn_id(major: u32, minor: u32) -> u64 {
    // The kernel's internal dev_t: MKDEV(major, minor) = major << 20 | minor.
    (u64::from(major) << 20) | u64::from(minor)
}

fn mount_fusectl() -> Result<(), Error> {
    use rustix::mount::{mount, MountFlags};
    if mounts().iter().any(|m| m.fstype == "fusectl") {
        return Ok(());
    }
    match mount("fusectl", FUSECTL, "fusectl", MountFlags::empty(), None) {
        Ok(()) | Err(rustix::io::Errno::BUSY) => Ok(()),
        Err(e) => Err(Error::Fusectl(io::Error::from(e))),
    }
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountInfo {
    pub(crate) dev: (u32, u32),
    pub(crate) mountpoint: PathBuf,
    pub(crate) fstype: String,
    pub(crate) source: String,
}

pub(crate) fn mounts() -> Vec<MountInfo> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|s| s.lines().filter_map(parse_mountinfo).collect())
        .unwrap_or_default()
}

/// Our mount at `mp`: the last (topmost) one there.
fn find_mount(mp: &Path) -> Option<MountInfo> {
    mounts()
        .into_iter()
        .rev()
        .find(|m| m.mountpoint == mp && m.fstype == "fuse" && m.source == FS_NAME)
}

pub(crate) fn parse_mountinfo(line: &str) -> Option<MountInfo> {
    let mut f = line.split(' ');
    let _id = f.next()?;
    let _parent = f.next()?;
    let (major, minor) = f.next()?.split_once(':')?;
    let dev = (major.parse().ok()?, minor.parse().ok()?);
    let _root = f.next()?;
    let mountpoint = PathBuf::from(std::ffi::OsString::from_vec(unescape(f.next()?)));
    // Skip options and optional fields up to the "-" separator.
    for x in f.by_ref() {
        if x == "-" {
            break;
        }
    }
    let fstype = String::from_utf8_lossy(&unescape(f.next()?)).into_owned();
    let source = String::from_utf8_lossy(&unescape(f.next()?)).into_owned();
    Some(MountInfo {
        dev,
        mountpoint,
        fstype,
        source,
    })
}

/// Undo mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let digits = &b[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

mod sig {
    //! Blocking and waiting for the termination signals.

    use std::io;
    use std::time::Duration;

    /// SIGINT, SIGTERM and SIGHUP blocked in this thread; the old mask is
    /// restored on drop.
    pub(super) struct Blocked {
        set: libc::sigset_t,
        old: libc::sigset_t,
    }

    impl Blocked {
        pub(super) fn new() -> io::Result<Blocked> {
            // SAFETY: sigset_t is plain data; all-zero is a valid value that
            // sigemptyset then initialises properly.
            let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
            // SAFETY: `set` is a valid, exclusively borrowed sigset_t; the
            // signal numbers are valid.
            unsafe {
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGINT);
                libc::sigaddset(&mut set, libc::SIGTERM);
                libc::sigaddset(&mut set, libc::SIGHUP);
            }
            // SAFETY: both pointers refer to valid sigset_t values that live
            // across the call.
            let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) };
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            Ok(Blocked { set, old })
        }

        /// Wait up to `timeout` for one of the signals; its number if one
        /// came.
        pub(super) fn wait(&self, timeout: Duration) -> Option<i32> {
            let ts = libc::timespec {
                tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: timeout.subsec_nanos().into(),
            };
            // SAFETY: `self.set` is an initialised sigset_t, `ts` a valid
            // timespec; a null siginfo pointer is allowed.
            let sig = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) };
            (sig > 0).then_some(sig)
        }
    }

    impl Drop for Blocked {
        fn drop(&mut self) {
            // SAFETY: `self.old` is the mask saved by pthread_sigmask.
            unsafe {
                libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_line() {
        let l = "812 28 0:77 / /tmp/a\\040b rw,nosuid,nodev,relatime shared:1 - fuse nosplit-faultfs rw,user_id=0,group_id=0,default_permissions,allow_other";
        let m = parse_mountinfo(l).expect("parses");
        assert_eq!(m.dev, (0, 77));
        assert_eq!(m.mountpoint, PathBuf::from("/tmp/a b"));
        assert_eq!(m.fstype, "fuse");
        assert_eq!(m.source, FS_NAME);
        assert_eq!(conn_id(0, 77), 77);
        assert!(parse_mountinfo("garbage").is_none());
        assert_eq!(unescape("a\\134b\\"), b"a\\b\\");
    }
}
