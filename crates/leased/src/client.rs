//! The client library: connect to `leased`'s socket, send requests, read
//! responses or a stream of events.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::api::{Event, Request, Response};

/// Why a call failed (transport, not a daemon error: those are responses).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Cannot connect.
    #[error("cannot connect to leased at {path}: {source} (is the daemon running?)")]
    Connect {
        /// Socket path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The connection failed.
    #[error("leased connection: {0}")]
    Io(#[from] std::io::Error),
    /// The daemon sent something unreadable.
    #[error("leased sent an unreadable response: {0}")]
    Protocol(String),
    /// The daemon closed the connection.
    #[error("leased closed the connection")]
    Closed,
}

/// A connection to the daemon.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connects to the socket at `path`.
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let s = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.display().to_string(),
            source,
        })?;
        let writer = s.try_clone()?;
        Ok(Client {
            reader: BufReader::new(s),
            writer,
        })
    }

    /// Bounds every read of a response (default: none).
    pub fn set_timeout(&self, t: Option<Duration>) -> Result<(), ClientError> {
        self.writer.set_read_timeout(t)?;
        Ok(())
    }

    /// Sends a request and reads its response.
    pub fn call(&mut self, req: &Request) -> Result<Response, ClientError> {
        let mut line = serde_json::to_vec(req).map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push(b'\n');
        self.writer.write_all(&line)?;
        self.read()
    }

    fn read(&mut self) -> Result<Response, ClientError> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(ClientError::Closed);
        }
        serde_json::from_str(line.trim()).map_err(|e| ClientError::Protocol(format!("{e}: {line}")))
    }

    /// Turns the connection into an event stream.
    pub fn subscribe(mut self) -> Result<Events, ClientError> {
        match self.call(&Request::Subscribe)? {
            Response::Ok => Ok(Events { client: self }),
            other => Err(ClientError::Protocol(format!(
                "subscribe answered {other:?}"
            ))),
        }
    }
}

/// Events from a subscription.
#[derive(Debug)]
pub struct Events {
    client: Client,
}

impl Iterator for Events {
    type Item = Result<Event, ClientError>;
    fn next(&mut self) -> Option<Self::Item> {
        match self.client.read() {
            Ok(Response::Event(e)) => Some(Ok(e)),
            Ok(other) => Some(Err(ClientError::Protocol(format!(
                "expected an event, got {other:?}"
            )))),
            Err(ClientError::Closed) => None,
            Err(e) => Some(Err(e)),
        }
    }
}
