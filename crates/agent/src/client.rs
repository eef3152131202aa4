//! A blocking client of an agent's HTTP API (the engine's and the lab's
//! side of it).

use std::net::SocketAddr;
use std::time::Duration;

use crate::model::{AgentError, AgentEvent, StartVm, VmInfo};

/// How long one request may take (a QEMU start included).
const TIMEOUT: Duration = Duration::from_secs(30);

/// An agent's address and token. `Debug` shows the address only.
#[derive(Clone)]
pub struct AgentClient {
    base: String,
    auth: String,
    agent: ureq::Agent,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient")
            .field("base", &self.base)
            .field("auth", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A failed call: the agent's error, or no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The agent answered with an error.
    #[error("agent: {0}")]
    Agent(AgentError),
    /// No usable answer (unreachable, timeout, garbage).
    #[error("agent unreachable: {0}")]
    Transport(String),
}

impl AgentClient {
    /// A client for the agent at `addr`.
    pub fn new(addr: SocketAddr, token: &str) -> AgentClient {
        AgentClient {
            base: format!("http://{addr}"),
            auth: format!("Bearer {token}"),
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_millis(500))
                .timeout(TIMEOUT)
                .build(),
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(
        r: Result<ureq::Response, ureq::Error>,
    ) -> Result<T, CallError> {
        match r {
            Ok(resp) => resp
                .into_json::<T>()
                .map_err(|e| CallError::Transport(format!("bad answer: {e}"))),
            Err(ureq::Error::Status(code, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                match serde_json::from_str::<AgentError>(&text) {
                    Ok(e) => Err(CallError::Agent(e)),
                    Err(_) => Err(CallError::Transport(format!("HTTP {code}: {text}"))),
                }
            }
            Err(e) => Err(CallError::Transport(e.to_string())),
        }
    }

    /// Is the agent answering?
    pub fn ready(&self) -> bool {
        self.agent
            .get(&format!("{}/v1/host", self.base))
            .set("Authorization", &self.auth)
            .timeout(Duration::from_millis(500))
            .call()
            .is_ok()
    }

    /// Starts a VM.
    pub fn start(&self, req: &StartVm) -> Result<VmInfo, CallError> {
        let body = serde_json::to_value(req).map_err(|e| CallError::Transport(e.to_string()))?;
        Self::decode(
            self.agent
                .post(&format!("{}/v1/vms", self.base))
                .set("Authorization", &self.auth)
                .send_json(body),
        )
    }

    /// Stops a VM (SIGKILL after the agent's default timeout).
    pub fn stop(&self, id: &str) -> Result<VmInfo, CallError> {
        Self::decode(
            self.agent
                .post(&format!("{}/v1/vms/{id}/stop", self.base))
                .set("Authorization", &self.auth)
                .send_json(serde_json::json!({})),
        )
    }

    /// A quick `GET` (2 s at most: the engine polls with these).
    fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, CallError> {
        Self::decode(
            self.agent
                .get(&format!("{}{path}", self.base))
                .set("Authorization", &self.auth)
                .timeout(Duration::from_secs(2))
                .call(),
        )
    }

    /// The agent's events after `after` (no waiting).
    pub fn events(&self, after: u64) -> Result<Vec<AgentEvent>, CallError> {
        self.get(&format!("/v1/events?after={after}"))
    }

    /// Every VM of the host.
    pub fn list(&self) -> Result<Vec<VmInfo>, CallError> {
        self.get("/v1/vms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token() {
        let c = AgentClient::new("127.0.0.1:1".parse().unwrap(), &"s".repeat(40));
        let d = format!("{c:?}");
        assert!(d.contains("127.0.0.1:1") && !d.contains("ssss"), "{d}");
    }
}
