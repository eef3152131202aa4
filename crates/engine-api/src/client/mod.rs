//! A blocking client of the engine API (ureq), one method per route, for
//! the CLI. Answers come back as the model types; failures as a
//! [`ClientError`] carrying the server's error kind and message. The token
//! is only ever sent in the `Authorization` header: it is in no error and
//! `Client`'s `Debug` hides it.

use std::fmt;
use std::time::Duration;

use nosplit_engine_core::model::{Disk, Domain, EngineEvent, HaSettings, Strategy, Task};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::types::{
    EventQuery, HaPatch, HostView, NewHost, NewVm, Status, TaskQuery, VmPatch, VmView,
};

/// Default time allowed for one call (a long poll gets its wait on top).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The server's `error` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// 400.
    Invalid,
    /// 401.
    Unauthorized,
    /// 403.
    Forbidden,
    /// 404.
    NotFound,
    /// 405.
    MethodNotAllowed,
    /// 409.
    Conflict,
    /// 413.
    TooLarge,
    /// 500.
    Internal,
    /// 503.
    Unavailable,
    /// 502: an agent did not do what the engine asked.
    BadGateway,
    /// A kind this client does not know, or an answer that was not ours.
    #[serde(other)]
    Other,
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The base URL is not `http://host:port`.
    #[error("bad engine URL {0:?}: expected http://host:port")]
    BadUrl(String),
    /// The server answered with an error.
    #[error("the engine refused ({status} {kind:?}): {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Its `error` field.
        kind: ErrorKind,
        /// Its `message` field.
        message: String,
    },
    /// A name or id that cannot be put in a URL path (empty, `.`, `..`).
    #[error("{0:?} cannot be used as a name or id")]
    BadName(String),
    /// No answer: connection refused, reset, timed out.
    #[error("cannot reach the engine: {0}")]
    Transport(String),
    /// An answer that is not what the route promises.
    #[error("unexpected answer from the engine: {0}")]
    Decode(String),
}

impl ClientError {
    /// The server's error kind, if the server answered.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            ClientError::Api { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

/// The wire shape of an error.
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorKind,
    message: String,
}

/// A client of one engine.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    auth: String,
    timeout: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Percent-encodes one path segment (all but `A-Za-z0-9-._~`). Empty,
/// `.` and `..` cannot travel as a segment (URL parsers fold them away).
fn segment(s: &str) -> Result<String, ClientError> {
    if s.is_empty() || s == "." || s == ".." {
        return Err(ClientError::BadName(s.to_string()));
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

/// Checks an engine URL (`http://host:port`, no path, query or fragment;
/// trailing slashes dropped) and returns it as the client uses it.
pub fn check_base_url(base_url: &str) -> Result<&str, ClientError> {
    let base = base_url.trim_end_matches('/');
    let rest = base.strip_prefix("http://").unwrap_or("");
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
        return Err(ClientError::BadUrl(base_url.chars().take(200).collect()));
    }
    Ok(base)
}

impl Client {
    /// A client of the engine at `base_url` (`http://host:port`, a trailing
    /// `/` allowed) calling with `token`.
    pub fn new(base_url: &str, token: &str) -> Result<Client, ClientError> {
        let base = check_base_url(base_url)?;
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .build();
        Ok(Client {
            agent,
            base: base.to_string(),
            auth: format!("Bearer {token}"),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Sets the time allowed for one call.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<serde_json::Value>,
        extra: Duration,
    ) -> Result<ureq::Response, ClientError> {
        let mut req = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("Authorization", &self.auth)
            .timeout(self.timeout + extra);
        for (k, v) in query {
            req = req.query(k, v);
        }
        let r = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        match r {
            Ok(resp) => Ok(resp),
            Err(ureq::Error::Status(status, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                Err(match serde_json::from_str::<ErrorBody>(&text) {
                    Ok(e) => ClientError::Api {
                        status,
                        kind: e.error,
                        message: e.message,
                    },
                    Err(_) => ClientError::Api {
                        status,
                        kind: ErrorKind::Other,
                        message: text.chars().take(500).collect(),
                    },
                })
            }
            Err(ureq::Error::Transport(t)) => Err(ClientError::Transport(t.to_string())),
        }
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, ClientError> {
        let resp = self.send(method, path, &[], body, Duration::ZERO)?;
        decode(resp)
    }

    fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.send("DELETE", path, &[], None, Duration::ZERO)
            .map(drop)
    }

    /// `GET /v1/status`.
    pub fn status(&self) -> Result<Status, ClientError> {
        self.call("GET", "/v1/status", None)
    }

    /// `GET /v1/domains`.
    pub fn list_domains(&self) -> Result<Vec<Domain>, ClientError> {
        self.call("GET", "/v1/domains", None)
    }

    /// `POST /v1/domains`.
    pub fn create_domain(&self, d: &Domain) -> Result<Domain, ClientError> {
        self.call("POST", "/v1/domains", Some(json(d)?))
    }

    /// `GET /v1/domains/{name}`.
    pub fn get_domain(&self, name: &str) -> Result<Domain, ClientError> {
        self.call("GET", &format!("/v1/domains/{}", segment(name)?), None)
    }

    /// `DELETE /v1/domains/{name}`.
    pub fn delete_domain(&self, name: &str) -> Result<(), ClientError> {
        self.delete(&format!("/v1/domains/{}", segment(name)?))
    }

    /// `GET /v1/hosts`.
    pub fn list_hosts(&self) -> Result<Vec<HostView>, ClientError> {
        self.call("GET", "/v1/hosts", None)
    }

    /// `POST /v1/hosts`.
    pub fn add_host(&self, h: &NewHost) -> Result<HostView, ClientError> {
        self.call("POST", "/v1/hosts", Some(json(h)?))
    }

    /// `POST /v1/hosts/{name}/register`: registers (or refreshes) host
    /// `h` (with a host's own agent token, or an admin's).
    pub fn register_host(&self, h: &NewHost) -> Result<HostView, ClientError> {
        let path = format!("/v1/hosts/{}/register", segment(&h.name)?);
        self.call("POST", &path, Some(json(h)?))
    }

    /// `GET /v1/hosts/{name}`.
    pub fn get_host(&self, name: &str) -> Result<HostView, ClientError> {
        self.call("GET", &format!("/v1/hosts/{}", segment(name)?), None)
    }

    /// `DELETE /v1/hosts/{name}`.
    pub fn delete_host(&self, name: &str) -> Result<(), ClientError> {
        self.delete(&format!("/v1/hosts/{}", segment(name)?))
    }

    /// `PUT /v1/hosts/{name}/maintenance`.
    pub fn set_host_maintenance(&self, name: &str, on: bool) -> Result<HostView, ClientError> {
        let path = format!("/v1/hosts/{}/maintenance", segment(name)?);
        self.call("PUT", &path, Some(serde_json::json!({ "maintenance": on })))
    }

    /// `GET /v1/vms`.
    pub fn list_vms(&self) -> Result<Vec<VmView>, ClientError> {
        self.call("GET", "/v1/vms", None)
    }

    /// `POST /v1/vms` (the engine gives it the default disk).
    pub fn create_vm(&self, vm: &NewVm) -> Result<VmView, ClientError> {
        self.call("POST", "/v1/vms", Some(json(vm)?))
    }

    /// `POST /v1/vms` with these disks.
    pub fn create_vm_with_disks(&self, vm: &NewVm, disks: &[Disk]) -> Result<VmView, ClientError> {
        let mut body = json(vm)?;
        if let Some(m) = body.as_object_mut() {
            m.insert("disks".into(), json(&disks)?);
        }
        self.call("POST", "/v1/vms", Some(body))
    }

    /// `GET /v1/vms/{id}`.
    pub fn get_vm(&self, id: &str) -> Result<VmView, ClientError> {
        self.call("GET", &format!("/v1/vms/{}", segment(id)?), None)
    }

    /// `DELETE /v1/vms/{id}`.
    pub fn delete_vm(&self, id: &str) -> Result<(), ClientError> {
        self.delete(&format!("/v1/vms/{}", segment(id)?))
    }

    /// `PATCH /v1/vms/{id}`.
    pub fn patch_vm(&self, id: &str, patch: &VmPatch) -> Result<VmView, ClientError> {
        let path = format!("/v1/vms/{}", segment(id)?);
        self.call("PATCH", &path, Some(json(patch)?))
    }

    /// `POST /v1/vms/{id}/start`, on `host` if given.
    pub fn start_vm(&self, id: &str, host: Option<&str>) -> Result<VmView, ClientError> {
        let path = format!("/v1/vms/{}/start", segment(id)?);
        let body = host.map(|h| serde_json::json!({ "host": h }));
        self.call("POST", &path, body)
    }

    /// `POST /v1/vms/{id}/stop`.
    pub fn stop_vm(&self, id: &str) -> Result<VmView, ClientError> {
        self.call("POST", &format!("/v1/vms/{}/stop", segment(id)?), None)
    }

    /// `GET /v1/strategy`.
    pub fn strategy(&self) -> Result<Strategy, ClientError> {
        self.call("GET", "/v1/strategy", None)
    }

    /// `PUT /v1/strategy`.
    pub fn put_strategy(&self, s: &Strategy) -> Result<Strategy, ClientError> {
        self.call("PUT", "/v1/strategy", Some(json(s)?))
    }

    /// `GET /v1/ha`.
    pub fn ha(&self) -> Result<HaSettings, ClientError> {
        self.call("GET", "/v1/ha", None)
    }

    /// `PATCH /v1/ha`.
    pub fn patch_ha(&self, patch: &HaPatch) -> Result<HaSettings, ClientError> {
        self.call("PATCH", "/v1/ha", Some(json(patch)?))
    }

    /// `GET /v1/tasks`.
    pub fn tasks(&self, q: &TaskQuery) -> Result<Vec<Task>, ClientError> {
        let mut query = vec![("limit", q.limit.to_string())];
        if let Some(vm) = &q.vm {
            query.push(("vm", vm.clone()));
        }
        decode(self.send("GET", "/v1/tasks", &query, None, Duration::ZERO)?)
    }

    /// `GET /v1/events`; a long poll when `q.wait` is set (the call's
    /// timeout grows by it).
    pub fn events(&self, q: &EventQuery) -> Result<Vec<EngineEvent>, ClientError> {
        let wait_ms = u64::try_from(q.wait.as_millis()).unwrap_or(u64::MAX);
        let mut query = vec![
            ("after", q.after.to_string()),
            ("limit", q.limit.to_string()),
            ("wait_ms", wait_ms.to_string()),
        ];
        let filters = [
            ("kind", &q.kind),
            ("host", &q.host),
            ("vm", &q.vm),
            ("severity", &q.severity),
        ];
        for (k, v) in filters {
            if let Some(v) = v {
                query.push((k, v.clone()));
            }
        }
        decode(self.send("GET", "/v1/events", &query, None, q.wait)?)
    }
}

fn json(v: &impl Serialize) -> Result<serde_json::Value, ClientError> {
    serde_json::to_value(v)
        .map_err(|e| ClientError::Decode(format!("cannot encode the request: {e}")))
}

fn decode<T: DeserializeOwned>(resp: ureq::Response) -> Result<T, ClientError> {
    resp.into_json::<T>()
        .map_err(|e| ClientError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_segments() {
        assert!(Client::new("http://127.0.0.1:1/", "t").is_ok());
        for bad in ["127.0.0.1:1", "https://x:1", "http://", "http://x/y"] {
            assert!(
                matches!(Client::new(bad, "t"), Err(ClientError::BadUrl(_))),
                "{bad}"
            );
        }
        assert_eq!(segment("a-b.c_d~").unwrap(), "a-b.c_d~");
        assert_eq!(segment("a/b c").unwrap(), "a%2Fb%20c");
        for bad in ["", ".", ".."] {
            assert_eq!(segment(bad), Err(ClientError::BadName(bad.into())));
        }
        let c = Client::new("http://127.0.0.1:1", "secret-token").unwrap();
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn unknown_kinds_are_other() {
        let e: ErrorBody = serde_json::from_str(r#"{"error":"teapot","message":"m"}"#).unwrap();
        assert_eq!(e.error, ErrorKind::Other);
        let e: ErrorBody = serde_json::from_str(r#"{"error":"not-found","message":"m"}"#).unwrap();
        assert_eq!(e.error, ErrorKind::NotFound);
    }
}
