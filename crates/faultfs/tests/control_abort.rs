//! The control socket's `abort`: it frees a hung mount as
//! `MountGuard::abort` does, is refused a second time, and ends a
//! foreground server. Needs root and /dev/fuse; skips without them.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nosplit_faultfs::{control, spawn, Error};

/// How long a step that should happen at once may take before the test
/// gives up (a hang guard, not a speed check).
const LIMIT: Duration = Duration::from_secs(10);

fn can_mount() -> bool {
    use std::os::unix::fs::MetadataExt;
    let root = fs::metadata("/proc/self").map(|m| m.uid()).ok() == Some(0);
    let ok = root && Path::new("/dev/fuse").exists();
    if !ok {
        eprintln!("skipping: needs root and /dev/fuse");
    }
    ok
}

fn mounted(mp: &Path) -> bool {
    let mp = mp.to_string_lossy();
    fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(&*mp))
}

/// Lazily unmounts whatever is left at a path if a test fails.
struct DetachOnDrop(PathBuf);

impl Drop for DetachOnDrop {
    fn drop(&mut self) {
        if mounted(&self.0) {
            let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

/// `backing/`, `mnt/` (canonical) and a socket path in a fresh directory.
fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().canonicalize().expect("canonical");
    let (backing, mnt) = (root.join("backing"), root.join("mnt"));
    fs::create_dir(&backing).expect("mkdir backing");
    fs::create_dir(&mnt).expect("mkdir mnt");
    (dir, backing, mnt, root.join("ctl.sock"))
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < LIMIT, "{what}");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn control_abort_frees_a_hung_mount_once() {
    if !can_mount() {
        return;
    }
    let (_dir, backing, mnt, sock) = dirs();
    let _cleanup = DetachOnDrop(mnt.clone());
    fs::write(backing.join("img"), [7u8; 4096]).expect("backing file");
    let guard = spawn(&backing, &mnt, Some(&sock)).expect("mount");
    let conn = guard.connection().expect("connection known");
    let mut f = fs::File::open(mnt.join("img")).expect("open through the mount");
    assert!(control(&sock, "hang").expect("hang").ends_with("mode=hang"));
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let _ = tx.send(f.read(&mut buf));
    });
    wait_until("the read never parked", || {
        guard.handle().status().parked >= 1
    });
    assert!(rx.try_recv().is_err(), "the read is stuck");

    let reply = control(&sock, "abort").expect("abort");
    assert!(reply.starts_with(&format!("ok aborted={conn} ")), "{reply}");
    let r = rx.recv_timeout(LIMIT).expect("the hung read returned");
    let errno = r.as_ref().err().and_then(io::Error::raw_os_error);
    assert!(
        matches!(errno, Some(libc::ECONNABORTED | libc::ENOTCONN | libc::EIO)),
        "{r:?}"
    );
    assert!(!guard.is_running(), "the session ended");
    assert!(!mounted(&mnt), "the dead mount was taken away");

    // Once only; the socket keeps answering.
    match control(&sock, "abort") {
        Err(Error::Rejected(msg)) => assert!(msg.contains("aborted already"), "{msg}"),
        other => panic!("second abort: {other:?}"),
    }
    assert!(matches!(guard.abort(), Err(Error::Aborted(c)) if c == conn));
    assert!(control(&sock, "status")
        .expect("status")
        .ends_with("mode=hang"));
    guard.unmount().expect("unmount after abort");
    assert!(!mounted(&mnt));
}

#[test]
fn a_foreground_server_ends_after_a_control_abort() {
    if !can_mount() {
        return;
    }
    let (_dir, backing, mnt, sock) = dirs();
    let _cleanup = DetachOnDrop(mnt.clone());
    let (b, m, s) = (backing.clone(), mnt.clone(), sock.clone());
    let runner = thread::spawn(move || nosplit_faultfs::run_foreground(&b, &m, Some(&s)));
    wait_until("never mounted", || mounted(&mnt) && sock.exists());
    fs::write(mnt.join("x"), b"x").expect("write through the mount");
    let reply = control(&sock, "abort").expect("abort");
    assert!(reply.starts_with("ok aborted="), "{reply}");
    wait_until("run_foreground did not return", || runner.is_finished());
    runner
        .join()
        .expect("runner thread")
        .expect("run_foreground after abort");
    assert!(!mounted(&mnt));
    assert_eq!(fs::read(backing.join("x")).expect("backing"), b"x");
}
