//! The control socket: one line per request, one line per reply.
//!
//! Requests: `ok`, `recover`, `eio`, `eio-read`, `eio-write`,
//! `delay <ms>`, `hang`, `resume`, `status`, `abort`. Replies start with
//! `ok ` or `err `. Mode changes answer
//! `ok released=N parked=N delayed=N injected=N mode=<mode>`, `status`
//! answers `ok parked=N delayed=N injected=N mode=<mode>` (the mode comes
//! last: `delay 250` has a space).
//!
//! `abort` aborts the mount's FUSE connection, as
//! [`MountGuard::abort`](crate::MountGuard::abort) does: every pending
//! request fails at once, the session ends and the dead mount is taken
//! away (a foreground server then exits). It answers
//! `ok aborted=<connection> parked=N delayed=N injected=N mode=<mode>`
//! once that is done, or `err ...` (a second `abort` is refused).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::fault::lock;
use crate::mount::Conn;
use crate::{Error, FaultHandle, Mode};

/// Longest request line accepted.
const MAX_LINE: usize = 256;

/// How long [`control`] waits for the reply.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Carry out one control request; never panics, whatever the input.
pub(crate) fn execute(handle: &FaultHandle, conn: &Conn, line: &str) -> String {
    let line = line.trim();
    match line {
        "status" => format!("ok {}", handle.status()),
        "abort" => match conn.abort() {
            Ok(id) => format!("ok aborted={id} {}", handle.status()),
            Err(e) => format!("err {e}"),
        },
        "resume" => {
            let n = handle.resume();
            format!("ok released={n} {}", handle.status())
        }
        _ => match Mode::parse(line) {
            Ok(mode) => {
                let n = handle.set(mode);
                format!("ok released={n} {}", handle.status())
            }
            Err(Error::BadCommand(msg)) => format!("err {msg}"),
            Err(e) => format!("err {e}"),
        },
    }
}

/// Send one request to a mount's control socket and return the reply line
/// (without the newline) when it starts with `ok`. An `err ...` reply is
/// [`Error::Rejected`] with the text after `err `.
pub fn control(socket: &Path, cmd: &str) -> Result<String, Error> {
    if cmd.contains(['\n', '\r']) || cmd.len() > MAX_LINE {
        return Err(Error::BadCommand(format!(
            "a command is one line of at most {MAX_LINE} bytes"
        )));
    }
    let io = |source| Error::Control {
        path: socket.to_path_buf(),
        source,
    };
    let mut s = UnixStream::connect(socket).map_err(io)?;
    s.set_read_timeout(Some(CLIENT_TIMEOUT)).map_err(io)?;
    s.set_write_timeout(Some(CLIENT_TIMEOUT)).map_err(io)?;
    s.write_all(format!("{cmd}\n").as_bytes()).map_err(io)?;
    let mut reply = Vec::new();
    BufReader::new(s)
        .take(64 * 1024)
        .read_until(b'\n', &mut reply)
        .map_err(io)?;
    let reply = String::from_utf8_lossy(&reply).trim_end().to_string();
    if reply == "ok" || reply.starts_with("ok ") {
        Ok(reply)
    } else if let Some(msg) = reply.strip_prefix("err") {
        Err(Error::Rejected(msg.trim_start().to_string()))
    } else {
        Err(Error::Rejected(format!("unexpected reply {reply:?}")))
    }
}

/// A listening control socket and its threads.
pub(crate) struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    clients: Arc<Mutex<Vec<(u64, UnixStream)>>>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// Bind `path` (replacing a stale socket there, never another kind of
    /// file) and serve `handle` on it.
    pub(crate) fn start(
        path: &Path,
        handle: FaultHandle,
        conn: Arc<Conn>,
    ) -> Result<ControlServer, Error> {
        let err = |source| Error::Control {
            path: path.to_path_buf(),
            source,
        };
        if let Ok(m) = std::fs::symlink_metadata(path) {
            if !m.file_type().is_socket() {
                return Err(err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "exists and is not a socket",
                )));
            }
            std::fs::remove_file(path).map_err(err)?;
        }
        let listener = UnixListener::bind(path).map_err(err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Arc<Mutex<Vec<(u64, UnixStream)>>> = Arc::default();
        let (stop2, clients2) = (Arc::clone(&stop), Arc::clone(&clients));
        let thread = std::thread::Builder::new()
            .name("faultfs-control".into())
            .spawn(move || accept_loop(listener, handle, conn, stop2, clients2))
            .map_err(err)?;
        Ok(ControlServer {
            path: path.to_path_buf(),
            stop,
            clients,
            thread: Some(thread),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Stop accepting, hang up on connected clients, remove the socket.
    pub(crate) fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept() call; if this fails the listener is gone anyway.
        let _ = UnixStream::connect(&self.path);
        let _ = thread.join();
        for (_, s) in lock(&self.clients).drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(
    listener: UnixListener,
    handle: FaultHandle,
    fuse: Arc<Conn>,
    stop: Arc<AtomicBool>,
    clients: Arc<Mutex<Vec<(u64, UnixStream)>>>,
) {
    let ids = AtomicU64::new(0);
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(_) => {
                // EMFILE and friends: do not spin.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let id = ids.fetch_add(1, Ordering::Relaxed);
        if let Ok(c) = stream.try_clone() {
            lock(&clients).push((id, c));
        }
        let (h, c, cl) = (handle.clone(), Arc::clone(&fuse), Arc::clone(&clients));
        let spawned = std::thread::Builder::new()
            .name("faultfs-control-conn".into())
            .spawn(move || {
                serve(stream, &h, &c);
                lock(&cl).retain(|(i, _)| *i != id);
            });
        if spawned.is_err() {
            lock(&clients).retain(|(i, _)| *i != id);
        }
    }
}

fn serve(stream: UnixStream, handle: &FaultHandle, conn: &Conn) {
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = Vec::new();
        let limit = u64::try_from(MAX_LINE).unwrap_or(u64::MAX) + 1;
        match (&mut reader).take(limit).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let complete = line.last() == Some(&b'\n');
        if !complete && line.len() > MAX_LINE {
            let _ = writeln!(out, "err line longer than {MAX_LINE} bytes");
            return;
        }
        let reply = execute(handle, conn, &String::from_utf8_lossy(&line));
        if writeln!(out, "{reply}").is_err() || !complete {
            return;
        }
    }
}
