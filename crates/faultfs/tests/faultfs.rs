//! faultfs against the real kernel: needs root and /dev/fuse, and skips
//! (prints a message and passes) without them.
//!
//! Every mount lives in a `Fixture` whose guard is dropped before its
//! directories, so a failing test still unmounts (and releases hung
//! requests) while unwinding.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nosplit_faultfs::{control, spawn, Error, Mode, MountGuard};

const BLOCK: usize = 4096;

/// A buffer whose usable part is aligned for O_DIRECT (512 bytes; 4096 here).
struct Aligned {
    v: Vec<u8>,
    off: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        let v = vec![0u8; len + BLOCK];
        let off = v.as_ptr().align_offset(BLOCK);
        Aligned { v, off, len }
    }
    fn filled(len: usize, seed: u8) -> Aligned {
        let mut a = Aligned::new(len);
        for (i, b) in a.as_mut().iter_mut().enumerate() {
            *b = seed.wrapping_add(u8::try_from(i % 251).unwrap_or(0));
        }
        a
    }
    fn as_ref(&self) -> &[u8] {
        &self.v[self.off..self.off + self.len]
    }
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.v[self.off..self.off + self.len]
    }
}

struct Fixture {
    // Dropped first: unmounts before the directories go.
    guard: Option<MountGuard>,
    backing: PathBuf,
    mnt: PathBuf,
    sock: PathBuf,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn guard(&self) -> &MountGuard {
        self.guard.as_ref().expect("mounted")
    }
    fn ctl(&self, cmd: &str) -> String {
        control(&self.sock, cmd).unwrap_or_else(|e| panic!("control {cmd:?}: {e}"))
    }
}

/// Mount a fresh backing dir, or None (with a message) where FUSE mounts
/// cannot be made.
fn fixture() -> Option<Fixture> {
    if !Path::new("/dev/fuse").exists() {
        eprintln!("skipping: /dev/fuse is missing");
        return None;
    }
    if fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1) != 0 {
        eprintln!("skipping: not root");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let backing = dir.path().join("backing");
    let mnt = dir.path().join("mnt");
    let sock = dir.path().join("ctl.sock");
    fs::create_dir(&backing).expect("mkdir backing");
    fs::create_dir(&mnt).expect("mkdir mnt");
    let guard = match spawn(&backing, &mnt, Some(&sock)) {
        Ok(g) => g,
        Err(Error::Mount { source, .. }) if source.kind() == io::ErrorKind::PermissionDenied => {
            eprintln!("skipping: mounting FUSE is not permitted here: {source}");
            return None;
        }
        Err(e) => panic!("spawn: {e}"),
    };
    let mnt = guard.mountpoint().to_path_buf();
    Some(Fixture {
        guard: Some(guard),
        backing,
        mnt,
        sock,
        _dir: dir,
    })
}

fn mounted(mp: &Path) -> bool {
    let mp = mp.to_string_lossy();
    fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(&*mp))
}

/// Lazily unmounts a mount made outside a `MountGuard` if a test fails.
struct DetachOnDrop(PathBuf);

impl Drop for DetachOnDrop {
    fn drop(&mut self) {
        if mounted(&self.0) {
            let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

fn open_direct(path: &Path, create: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .custom_flags(libc::O_DIRECT)
        .open(path)
}

fn errno(r: io::Result<usize>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

/// A file of `blocks` blocks made through the mount, open with O_DIRECT.
fn direct_file(fx: &Fixture, name: &str, blocks: usize) -> File {
    let f = open_direct(&fx.mnt.join(name), true).expect("create O_DIRECT");
    let data = Aligned::filled(blocks * BLOCK, 7);
    f.write_all_at(data.as_ref(), 0).expect("initial write");
    f
}

/// Run a block read on another thread; its result comes on the channel.
fn read_in_thread(f: &File) -> mpsc::Receiver<(io::Result<usize>, Instant)> {
    let f = f.try_clone().expect("dup");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Aligned::new(BLOCK);
        let r = f.read_at(buf.as_mut(), 0);
        let _ = tx.send((r, Instant::now()));
    });
    rx
}

fn wait_parked(fx: &Fixture, n: usize) {
    let start = Instant::now();
    while fx.guard().handle().status().parked < n {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "request never parked"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn direct_io_roundtrip_and_metadata() {
    let Some(fx) = fixture() else { return };
    assert!(mounted(&fx.mnt));
    let path = fx.mnt.join("disk.img");
    let f = open_direct(&path, true).expect("create O_DIRECT");
    let data = Aligned::filled(4 * BLOCK, 42);
    f.write_all_at(data.as_ref(), 0).expect("write O_DIRECT");
    f.sync_all().expect("fsync");
    let mut back = Aligned::new(4 * BLOCK);
    f.read_exact_at(back.as_mut(), 0).expect("read O_DIRECT");
    assert_eq!(back.as_ref(), data.as_ref());
    assert_eq!(
        fs::read(fx.backing.join("disk.img")).expect("backing"),
        data.as_ref()
    );
    // A read at EOF is short.
    let mut tail = Aligned::new(2 * BLOCK);
    assert_eq!(
        f.read_at(tail.as_mut(), 3 * BLOCK as u64).expect("tail"),
        BLOCK
    );
    // Truncate, getattr.
    f.set_len(BLOCK as u64).expect("truncate");
    assert_eq!(fs::metadata(&path).expect("stat").len(), BLOCK as u64);
    drop(f);

    // Directories, rename, unlink, readdir, statfs.
    fs::create_dir(fx.mnt.join("d")).expect("mkdir");
    fs::write(fx.mnt.join("d/a"), b"hello").expect("write a");
    fs::rename(fx.mnt.join("d/a"), fx.mnt.join("d/b")).expect("rename");
    assert_eq!(fs::read(fx.mnt.join("d/b")).expect("read b"), b"hello");
    assert!(fx.backing.join("d/b").exists() && !fx.backing.join("d/a").exists());
    fs::rename(fx.mnt.join("d"), fx.mnt.join("e")).expect("rename dir");
    assert_eq!(fs::read(fx.mnt.join("e/b")).expect("read e/b"), b"hello");
    let mut names: Vec<String> = fs::read_dir(&fx.mnt)
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["disk.img", "e"]);
    fs::remove_file(fx.mnt.join("e/b")).expect("unlink");
    fs::remove_dir(fx.mnt.join("e")).expect("rmdir");
    assert!(!fx.backing.join("e").exists());
    let st = rustix::fs::statvfs(&fx.mnt).expect("statfs");
    assert!(st.f_blocks > 0);
}

#[test]
fn eio_fails_reads_and_writes_and_recover_restores() {
    let Some(fx) = fixture() else { return };
    let f = direct_file(&fx, "img", 2);
    let h = fx.guard().handle();
    let mut buf = Aligned::new(BLOCK);
    let data = Aligned::filled(BLOCK, 1);

    assert!(fx.ctl("eio").starts_with("ok "));
    assert_eq!(h.mode(), Mode::EIO);
    assert_eq!(errno(f.read_at(buf.as_mut(), 0)), Some(libc::EIO));
    assert_eq!(errno(f.write_at(data.as_ref(), 0)), Some(libc::EIO));
    assert_eq!(
        open_direct(&fx.mnt.join("img"), false)
            .err()
            .and_then(|e| e.raw_os_error()),
        Some(libc::EIO)
    );
    // Metadata still answers.
    assert!(fs::metadata(fx.mnt.join("img")).is_ok());

    fx.ctl("eio-read");
    assert_eq!(errno(f.read_at(buf.as_mut(), 0)), Some(libc::EIO));
    assert_eq!(f.write_at(data.as_ref(), 0).expect("write ok"), BLOCK);
    assert!(open_direct(&fx.mnt.join("img"), false).is_ok());

    h.set(Mode::Eio {
        reads: false,
        writes: true,
    });
    assert_eq!(f.read_at(buf.as_mut(), 0).expect("read ok"), BLOCK);
    assert_eq!(errno(f.write_at(data.as_ref(), 0)), Some(libc::EIO));
    assert_eq!(
        f.sync_all().err().and_then(|e| e.raw_os_error()),
        Some(libc::EIO)
    );

    let reply = fx.ctl("recover");
    assert!(reply.contains("mode=ok"), "{reply}");
    f.write_all_at(data.as_ref(), BLOCK as u64)
        .expect("write after recover");
    f.read_exact_at(buf.as_mut(), BLOCK as u64)
        .expect("read after recover");
    assert_eq!(buf.as_ref(), data.as_ref());
    assert!(h.status().injected >= 6);
}

#[test]
fn delay_adds_latency() {
    let Some(fx) = fixture() else { return };
    let f = direct_file(&fx, "img", 1);
    let mut buf = Aligned::new(BLOCK);
    fx.ctl("delay 300");
    let t = Instant::now();
    f.read_exact_at(buf.as_mut(), 0).expect("delayed read");
    let slow = t.elapsed();
    let data = Aligned::filled(BLOCK, 3);
    let t = Instant::now();
    f.write_all_at(data.as_ref(), 0).expect("delayed write");
    let slow_w = t.elapsed();
    fx.ctl("ok");
    let t = Instant::now();
    f.read_exact_at(buf.as_mut(), 0).expect("read");
    let fast = t.elapsed();
    eprintln!("delay 300 ms: read {slow:?}, write {slow_w:?}; ok: read {fast:?}");
    assert!(slow >= Duration::from_millis(300), "{slow:?}");
    assert!(slow_w >= Duration::from_millis(300), "{slow_w:?}");
    assert!(slow < Duration::from_secs(3), "{slow:?}");
    assert!(fast < Duration::from_millis(200), "{fast:?}");
    assert_eq!(buf.as_ref(), data.as_ref());

    // Delayed requests wait side by side: the session thread keeps taking
    // requests while earlier ones wait out their delay.
    fx.ctl("delay 300");
    let t = Instant::now();
    let rxs: Vec<_> = (0..4).map(|_| read_in_thread(&f)).collect();
    for rx in rxs {
        let (r, _) = rx.recv_timeout(Duration::from_secs(5)).expect("read");
        assert_eq!(r.expect("delayed read"), BLOCK);
    }
    let four = t.elapsed();
    eprintln!("delay 300 ms: 4 concurrent reads took {four:?}");
    assert!(four < Duration::from_millis(900), "{four:?}");
}

#[test]
fn hang_parks_requests_until_recover_then_eio() {
    let Some(fx) = fixture() else { return };
    let f = direct_file(&fx, "img", 1);
    let other = open_direct(&fx.mnt.join("img"), false).expect("second open");
    let reply = fx.ctl("hang");
    assert!(reply.ends_with("mode=hang"), "{reply}");
    let hung = read_in_thread(&f);
    assert!(
        hung.recv_timeout(Duration::from_millis(500)).is_err(),
        "a read returned during hang"
    );
    wait_parked(&fx, 1);
    // The session thread is not blocked: it takes (and parks) a second
    // request, and answers close() (flush/release are never faulted).
    let hung2 = read_in_thread(&f);
    wait_parked(&fx, 2);
    let (tx, closed) = mpsc::channel();
    thread::spawn(move || {
        drop(other);
        let _ = tx.send(());
    });
    closed
        .recv_timeout(Duration::from_secs(2))
        .expect("close() during hang returned");
    // Status over the control socket answers at once.
    let t = Instant::now();
    let status = fx.ctl("status");
    eprintln!("status during hang: {status:?} in {:?}", t.elapsed());
    assert!(status.contains("parked=2"), "{status}");
    assert!(status.ends_with("mode=hang"), "{status}");
    assert!(t.elapsed() < Duration::from_secs(1));

    let t = Instant::now();
    let reply = fx.ctl("recover");
    assert!(reply.contains("released=2"), "{reply}");
    for rx in [hung, hung2] {
        let (r, done) = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("hung read returned after recover");
        eprintln!(
            "hung read returned {:?} {:?} after recover",
            r.as_ref().map_err(|e| e.raw_os_error()),
            done.duration_since(t)
        );
        assert_eq!(errno(r), Some(libc::EIO));
    }
    // And the mount works again.
    let mut buf = Aligned::new(BLOCK);
    f.read_exact_at(buf.as_mut(), 0)
        .expect("read after recover");
}

#[test]
fn hang_then_resume_lands_the_late_write() {
    let Some(fx) = fixture() else { return };
    let f = direct_file(&fx, "img", 1);
    fx.guard().handle().set(Mode::Hang);
    let late = Aligned::filled(BLOCK, 99);
    let g = f.try_clone().expect("dup");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(g.write_at(late.as_ref(), 0).map(|_| late.as_ref().to_vec()));
    });
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
    wait_parked(&fx, 1);
    let reply = fx.ctl("resume");
    assert!(reply.contains("released=1"), "{reply}");
    let written = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("write returned")
        .expect("late write succeeded");
    assert_eq!(fs::read(fx.backing.join("img")).expect("backing"), written);
}

#[test]
fn abort_frees_a_hung_mount() {
    let Some(mut fx) = fixture() else { return };
    let f = direct_file(&fx, "img", 1);
    fx.ctl("hang");
    let hung = read_in_thread(&f);
    assert!(hung.recv_timeout(Duration::from_millis(500)).is_err());
    wait_parked(&fx, 1);
    let t = Instant::now();
    fx.guard().abort().expect("abort");
    let abort_took = t.elapsed();
    let (r, done) = hung
        .recv_timeout(Duration::from_secs(5))
        .expect("hung read returned after abort");
    let err = r.as_ref().err().and_then(io::Error::raw_os_error);
    eprintln!(
        "abort: hung read returned errno {err:?} {:?} after abort started; abort() took {abort_took:?} (connection {:?})",
        done.duration_since(t),
        fx.guard().connection()
    );
    assert!(
        matches!(err, Some(libc::ECONNABORTED | libc::ENOTCONN | libc::EIO)),
        "{r:?}"
    );
    // The session has ended and the dead mount is gone (lazily: `f` is
    // still open); the open file fails at once.
    assert!(!fx.guard().is_running(), "session survived the abort");
    assert!(!mounted(&fx.mnt), "dead mount left after abort");
    let t = Instant::now();
    let mut buf = Aligned::new(BLOCK);
    let e = f
        .read_at(buf.as_mut(), 0)
        .expect_err("read on aborted mount");
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(e.raw_os_error(), Some(libc::ENOTCONN), "{e}");
    drop(f);
    fx.guard.take().expect("guard").unmount().expect("unmount");
    assert!(!mounted(&fx.mnt), "aborted mount left behind");
}

#[test]
fn drop_unmounts_even_while_hung() {
    let Some(mut fx) = fixture() else { return };
    assert!(mounted(&fx.mnt));
    let f = direct_file(&fx, "img", 1);
    fx.ctl("hang");
    let hung = read_in_thread(&f);
    wait_parked(&fx, 1);
    let t = Instant::now();
    drop(fx.guard.take());
    eprintln!("drop while hung took {:?}", t.elapsed());
    let (r, _) = hung
        .recv_timeout(Duration::from_secs(5))
        .expect("hung read returned on drop");
    assert_eq!(errno(r), Some(libc::EIO));
    assert!(!mounted(&fx.mnt), "mount left behind");
    assert!(!fx.sock.exists(), "control socket left behind");
}

#[test]
fn plain_drop_unmounts() {
    let Some(mut fx) = fixture() else { return };
    fs::write(fx.mnt.join("x"), b"x").expect("write");
    assert!(mounted(&fx.mnt));
    drop(fx.guard.take());
    assert!(!mounted(&fx.mnt), "mount left behind");
    assert_eq!(fs::read(fx.backing.join("x")).expect("backing"), b"x");
}

#[test]
fn control_rejects_bad_input_and_keeps_serving() {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;

    let Some(fx) = fixture() else { return };
    for bad in ["bogus", "delay", "delay abc", "delay -5", "hang now", ""] {
        match control(&fx.sock, bad) {
            Err(Error::Rejected(msg)) => assert!(!msg.is_empty()),
            other => panic!("{bad:?} gave {other:?}"),
        }
    }
    assert!(matches!(
        control(&fx.sock, "ok\nhang"),
        Err(Error::BadCommand(_))
    ));
    // Raw garbage on one connection: answered line by line.
    let s = UnixStream::connect(&fx.sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut w = s.try_clone().expect("clone");
    w.write_all(b"\xff\xfe\x00\nstatus\ndelay 250\nstatus\n")
        .expect("send");
    let mut r = BufReader::new(s);
    let mut lines = Vec::new();
    for _ in 0..4 {
        let mut l = String::new();
        r.read_line(&mut l).expect("reply");
        lines.push(l.trim_end().to_string());
    }
    assert!(lines[0].starts_with("err "), "{lines:?}");
    assert!(lines[1].ends_with("mode=ok"), "{lines:?}");
    assert!(lines[2].ends_with("mode=delay 250"), "{lines:?}");
    assert!(lines[3].ends_with("mode=delay 250"), "{lines:?}");
    // An overlong line closes that connection with an error.
    let mut s = UnixStream::connect(&fx.sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(&[b'a'; 10_000]).expect("send");
    let mut l = String::new();
    BufReader::new(s).read_line(&mut l).expect("reply");
    assert!(l.starts_with("err "), "{l}");
    // Still serving.
    assert!(fx.ctl("ok").ends_with("mode=ok"));
    assert_eq!(fx.guard().handle().mode(), Mode::Ok);
}

#[test]
fn run_foreground_returns_when_unmounted_from_outside() {
    let Some(fx) = fixture() else { return };
    // A second mount of the same backing dir, run in the foreground.
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = dir.path().canonicalize().expect("canon");
    let _cleanup = DetachOnDrop(mnt.clone());
    let (backing, m2) = (fx.backing.clone(), mnt.clone());
    let runner = thread::spawn(move || nosplit_faultfs::run_foreground(&backing, &m2, None));
    let start = Instant::now();
    while !mounted(&mnt) {
        assert!(start.elapsed() < Duration::from_secs(5), "never mounted");
        assert!(!runner.is_finished(), "run_foreground ended early");
        thread::sleep(Duration::from_millis(10));
    }
    fs::write(mnt.join("fg"), b"fg").expect("write through foreground mount");
    assert_eq!(
        fs::read(fx.mnt.join("fg")).expect("read via other mount"),
        b"fg"
    );
    rustix::mount::unmount(&mnt, rustix::mount::UnmountFlags::empty()).expect("umount");
    let start = Instant::now();
    while !runner.is_finished() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "run_foreground did not return"
        );
        thread::sleep(Duration::from_millis(10));
    }
    runner
        .join()
        .expect("runner thread")
        .expect("run_foreground");
    assert!(!mounted(&mnt));
}

/// Wait up to `limit` for a child to exit; how long it took, if it did.
fn reaped_within(child: &mut std::process::Child, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if child.try_wait().expect("try_wait").is_some() {
            return Some(start.elapsed());
        }
        thread::sleep(Duration::from_millis(2));
    }
    None
}

#[test]
fn sigkilled_reader_cannot_die_until_its_request_is_answered() {
    use std::process::{Command, Stdio};

    let Some(fx) = fixture() else { return };
    let _f = direct_file(&fx, "img", 1);
    let dd = |fx: &Fixture| {
        Command::new("dd")
            .arg(format!("if={}", fx.mnt.join("img").display()))
            .args(["of=/dev/null", "bs=4096", "count=1", "iflag=direct"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dd")
    };
    let h = fx.guard().handle();

    // Released by recover.
    h.set(Mode::Hang);
    let mut child = dd(&fx);
    wait_parked(&fx, 1);
    child.kill().expect("SIGKILL");
    assert_eq!(
        reaped_within(&mut child, Duration::from_millis(500)),
        None,
        "a process blocked on a parked request died"
    );
    let t = Instant::now();
    assert_eq!(h.recover(), 1);
    let took = reaped_within(&mut child, Duration::from_secs(5)).expect("reaped after recover");
    eprintln!(
        "SIGKILLed reader reaped {took:?} after recover ({:?} in all)",
        t.elapsed()
    );

    // Released by abort.
    h.set(Mode::Hang);
    let mut child = dd(&fx);
    wait_parked(&fx, 1);
    child.kill().expect("SIGKILL");
    assert_eq!(reaped_within(&mut child, Duration::from_millis(500)), None);
    fx.guard().abort().expect("abort");
    let took = reaped_within(&mut child, Duration::from_secs(5)).expect("reaped after abort");
    eprintln!("SIGKILLed reader reaped {took:?} after abort");
}

#[test]
fn aborted_guard_leaves_a_new_mount_alone() {
    let Some(mut fx) = fixture() else { return };
    fs::write(fx.mnt.join("x"), b"x").expect("write");
    fx.guard().abort().expect("abort");
    assert!(!mounted(&fx.mnt));
    let sock2 = fx.sock.with_extension("2");
    let new = spawn(&fx.backing, &fx.mnt, Some(&sock2)).expect("spawn again");
    assert_eq!(
        fs::read(fx.mnt.join("x")).expect("read via new mount"),
        b"x"
    );
    drop(fx.guard.take());
    assert!(mounted(&fx.mnt));
    assert_eq!(fs::read(fx.mnt.join("x")).expect("still served"), b"x");
    assert!(control(&sock2, "status")
        .expect("status")
        .ends_with("mode=ok"));
    new.unmount().expect("unmount");
    assert!(!mounted(&fx.mnt));
}

#[test]
fn dead_mount_of_a_dead_server_is_replaced() {
    let Some(fx) = fixture() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = dir.path().canonicalize().expect("canon").join("m");
    fs::create_dir(&mnt).expect("mkdir");
    let _cleanup = DetachOnDrop(mnt.clone());
    // What a server that died leaves: a fuse mount whose /dev/fuse is closed.
    {
        let dev = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .expect("/dev/fuse");
        let data = format!(
            "fd={},rootmode=40000,user_id=0,group_id=0",
            std::os::fd::AsRawFd::as_raw_fd(&dev)
        );
        let data = std::ffi::CString::new(data).expect("cstring");
        rustix::mount::mount(
            nosplit_faultfs::FS_NAME,
            &mnt,
            "fuse",
            rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
            Some(data.as_c_str()),
        )
        .expect("mount a fuse fs by hand");
    }
    assert!(mounted(&mnt));
    let e = fs::metadata(&mnt).expect_err("dead mount");
    assert_eq!(e.raw_os_error(), Some(libc::ENOTCONN));
    let g = spawn(&fx.backing, &mnt, None).expect("spawn over a dead mount");
    fs::write(mnt.join("y"), b"y").expect("write via new mount");
    assert_eq!(fs::read(fx.backing.join("y")).expect("backing"), b"y");
    g.unmount().expect("unmount");
    assert!(!mounted(&mnt));
}

#[test]
fn bad_arguments_are_typed_errors() {
    let Some(fx) = fixture() else { return };
    let missing = fx.backing.join("nope");
    assert!(matches!(
        spawn(&missing, &fx.mnt, None),
        Err(Error::Backing { .. })
    ));
    let other = tempfile::tempdir().expect("tempdir");
    assert!(matches!(
        spawn(&fx.backing, &missing, None),
        Err(Error::Mountpoint { .. })
    ));
    let inside = fx.backing.join("m");
    fs::create_dir(&inside).expect("mkdir");
    assert!(matches!(
        spawn(&fx.backing, &inside, None),
        Err(Error::Overlap { .. })
    ));
    assert!(matches!(
        spawn(&fx.backing, &fx.backing, None),
        Err(Error::Overlap { .. })
    ));
    // A control socket path that is a regular file is not clobbered, and
    // the mount made before is taken down again.
    let file = other.path().join("not-a-socket");
    fs::write(&file, b"keep").expect("write");
    let mnt2 = other.path().join("m");
    fs::create_dir(&mnt2).expect("mkdir");
    assert!(matches!(
        spawn(&fx.backing, &mnt2, Some(&file)),
        Err(Error::Control { .. })
    ));
    assert_eq!(fs::read(&file).expect("kept"), b"keep");
    assert!(!mounted(&mnt2.canonicalize().expect("canon")));
}
