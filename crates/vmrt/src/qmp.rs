//! Synchronous QMP (QEMU Machine Protocol) client over a unix socket.
//!
//! Why not the `qapi` crate: its sync `Qmp` type reads with a plain `BufRead::read_line`
//! into a buffer it clears on every call, so a read timeout in the middle of a message
//! loses the partial line and corrupts the stream; and its typed commands are generated
//! from one QEMU schema version. Here the protocol needs only a few lines of serde_json:
//! we keep our own byte buffer (partial lines survive timeouts), tag each command with an
//! `id` so a late reply to a timed-out command is discarded, and queue every event
//! (SHUTDOWN, STOP, RESUME, BLOCK_IO_ERROR, ...) for [`QmpClient::take_events`].

use serde_json::{json, Map, Value};
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One asynchronous QMP event.
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    /// Event name, e.g. `STOP`.
    pub name: String,
    /// The `data` member (`null` when absent).
    pub data: Value,
    /// QEMU's timestamp in microseconds since the epoch, when present.
    pub timestamp_us: Option<u64>,
}

/// Result of `query-status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QmpStatus {
    /// QEMU run state, e.g. `prelaunch`, `running`, `paused`, `io-error`.
    pub status: String,
    /// Whether guest CPUs run.
    pub running: bool,
}

/// QMP failures.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// Could not connect to the socket.
    #[error("connecting to QMP socket {path}: {source}")]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Socket I/O failed.
    #[error("QMP I/O: {0}")]
    Io(#[from] std::io::Error),
    /// No answer in time.
    #[error("QMP timed out waiting for {0}")]
    Timeout(String),
    /// QEMU closed the connection.
    #[error("QMP connection closed by QEMU")]
    Closed,
    /// QEMU sent something that is not QMP.
    #[error("QMP protocol error: {0}")]
    Protocol(String),
    /// The command failed in QEMU.
    #[error("QMP command {cmd} failed: {class}: {desc}")]
    Command {
        /// The command.
        cmd: String,
        /// QEMU's error class.
        class: String,
        /// QEMU's description.
        desc: String,
    },
}

/// A classified incoming QMP message (pure parsing, see [`classify`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The server greeting.
    Greeting,
    /// A successful reply.
    Return { id: Option<Value>, value: Value },
    /// A failed reply.
    Error {
        id: Option<Value>,
        class: String,
        desc: String,
    },
    /// An event.
    Event(QmpEvent),
}

/// Classifies one decoded JSON object from the server.
pub fn classify(v: Value) -> Result<Message, QmpError> {
    let Value::Object(mut m) = v else {
        return Err(QmpError::Protocol("message is not a JSON object".into()));
    };
    let id = m.remove("id");
    if m.contains_key("QMP") {
        return Ok(Message::Greeting);
    }
    if let Some(value) = m.remove("return") {
        return Ok(Message::Return { id, value });
    }
    if let Some(err) = m.remove("error") {
        let s = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        return Ok(Message::Error {
            id,
            class: s("class"),
            desc: s("desc"),
        });
    }
    if let Some(Value::String(name)) = m.remove("event") {
        let ts = m.get("timestamp").and_then(|t| {
            let s = t.get("seconds")?.as_u64()?;
            let us = t.get("microseconds")?.as_u64()?;
            Some(s * 1_000_000 + us)
        });
        let data = m.remove("data").unwrap_or(Value::Null);
        return Ok(Message::Event(QmpEvent {
            name,
            data,
            timestamp_us: ts,
        }));
    }
    Err(QmpError::Protocol(format!(
        "unknown message {}",
        Value::Object(m)
    )))
}

/// A connected, negotiated QMP session.
#[derive(Debug)]
pub struct QmpClient {
    stream: UnixStream,
    buf: Vec<u8>,
    events: VecDeque<QmpEvent>,
    next_id: u64,
    timeout: Duration,
}

impl QmpClient {
    /// Connects to `path`, reads the greeting and negotiates capabilities. `timeout`
    /// bounds the handshake and is the default for [`QmpClient::execute`].
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, QmpError> {
        let stream = UnixStream::connect(path).map_err(|source| QmpError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_stream(stream, timeout)
    }

    /// Same as [`QmpClient::connect`] on an already connected stream.
    pub fn from_stream(stream: UnixStream, timeout: Duration) -> Result<Self, QmpError> {
        let mut c = Self {
            stream,
            buf: Vec::new(),
            events: VecDeque::new(),
            next_id: 1,
            timeout,
        };
        let deadline = Instant::now() + timeout;
        loop {
            match c.read_message(Some(deadline), "greeting")? {
                Message::Greeting => break,
                Message::Event(e) => c.events.push_back(e),
                other => {
                    return Err(QmpError::Protocol(format!(
                        "expected greeting, got {other:?}"
                    )))
                }
            }
        }
        c.execute("qmp_capabilities", None)?;
        Ok(c)
    }

    /// Runs `cmd` with optional `arguments`, waiting at most the default timeout.
    pub fn execute(&mut self, cmd: &str, args: Option<Value>) -> Result<Value, QmpError> {
        self.execute_timeout(cmd, args, self.timeout)
    }

    /// Runs `cmd`, waiting at most `timeout` for its reply. Events read meanwhile are queued.
    pub fn execute_timeout(
        &mut self,
        cmd: &str,
        args: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, QmpError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut req = Map::new();
        req.insert("execute".into(), json!(cmd));
        if let Some(a) = args {
            req.insert("arguments".into(), a);
        }
        req.insert("id".into(), json!(id));
        let mut line = Value::Object(req).to_string();
        line.push('\n');
        let deadline = Instant::now() + timeout;
        self.stream.set_nonblocking(false)?;
        self.stream
            .set_write_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        self.stream
            .write_all(line.as_bytes())
            .map_err(|e| match e.kind() {
                ErrorKind::BrokenPipe | ErrorKind::ConnectionReset => QmpError::Closed,
                _ => QmpError::Io(e),
            })?;
        let want = Some(json!(id));
        loop {
            match self.read_message(Some(deadline), cmd)? {
                Message::Event(e) => self.events.push_back(e),
                Message::Return { id, value } if id == want => return Ok(value),
                Message::Error { id, class, desc } if id == want => {
                    return Err(QmpError::Command {
                        cmd: cmd.into(),
                        class,
                        desc,
                    })
                }
                _ => {} // stale reply to an earlier, timed-out command
            }
        }
    }

    /// `query-status`.
    pub fn query_status(&mut self) -> Result<QmpStatus, QmpError> {
        let v = self.execute("query-status", None)?;
        let status = v.get("status").and_then(Value::as_str);
        let running = v.get("running").and_then(Value::as_bool);
        match (status, running) {
            (Some(s), Some(r)) => Ok(QmpStatus {
                status: s.to_string(),
                running: r,
            }),
            _ => Err(QmpError::Protocol(format!("bad query-status reply {v}"))),
        }
    }

    /// Reads whatever is available now without blocking and queues the events.
    pub fn poll_events(&mut self) -> Result<(), QmpError> {
        loop {
            match self.read_message(None, "events") {
                Ok(Message::Event(e)) => self.events.push_back(e),
                Ok(_) => {}
                Err(QmpError::Timeout(_)) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits up to `timeout` for an event named `name` (already queued ones count) and
    /// removes it from the queue.
    pub fn wait_event(&mut self, name: &str, timeout: Duration) -> Result<QmpEvent, QmpError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.events.iter().position(|e| e.name == name) {
                if let Some(e) = self.events.remove(i) {
                    return Ok(e);
                }
            }
            if let Message::Event(e) = self.read_message(Some(deadline), name)? {
                self.events.push_back(e);
            }
        }
    }

    /// Removes and returns all queued events, oldest first.
    pub fn take_events(&mut self) -> Vec<QmpEvent> {
        self.events.drain(..).collect()
    }

    /// Reads one message. `deadline == None` means do not block.
    fn read_message(&mut self, deadline: Option<Instant>, what: &str) -> Result<Message, QmpError> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let v: Value = serde_json::from_slice(&line)
                    .map_err(|e| QmpError::Protocol(format!("bad JSON from QEMU: {e}")))?;
                return classify(v);
            }
            match deadline {
                None => self.stream.set_nonblocking(true)?,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(QmpError::Timeout(what.into()));
                    }
                    self.stream.set_nonblocking(false)?;
                    self.stream.set_read_timeout(Some(left))?;
                }
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(QmpError::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if deadline.is_none() {
                        return Err(QmpError::Timeout(what.into()));
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return Err(QmpError::Closed),
                Err(e) => return Err(QmpError::Io(e)),
            }
        }
    }
}

#[cfg(test)]
#[path = "qmp_tests.rs"]
mod tests;
