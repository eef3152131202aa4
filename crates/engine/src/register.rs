//! Host registration: a host's agent announces itself (name, host id,
//! agent address, plane addresses, capacity) with its own token, at start
//! and again now and then, so the engine's inventory follows the hosts
//! without an operator typing their facts in.
//!
//! The API checks the token first: the host's own
//! (`agent_token_dir/<name>.token`, so a host can register or refresh only
//! itself) or an admin's. A host id is bound to its
//! name at first registration (it is the host's slot in every lockspace):
//! a later registration under the same name with another id, or another
//! name with a taken id, is refused (409), never silently moved. The
//! operator's maintenance switch is kept across registrations.

use nosplit_engine_api::ops::EngineOps;
use nosplit_engine_api::types::{EngineError, HostView, NewHost};
use nosplit_engine_core::engine::Input;
use nosplit_engine_core::model::Host;
use nosplit_engine_core::Command;
use nosplit_engine_store::StoreError;

use crate::ops::{core_err, store_err};
use crate::runtime::Engine;

impl Engine {
    /// `POST /v1/hosts/{name}/register`, the caller checked.
    pub(crate) fn register(&self, h: NewHost) -> Result<HostView, EngineError> {
        let new = h.into_host();
        let old = match self.store.get_host(&new.name) {
            Ok(old) => old,
            Err(StoreError::NotFound { .. }) => {
                let v = self.add_host(NewHost {
                    name: new.name.clone(),
                    host_id: new.host_id,
                    agent: new.agent.clone(),
                    planes: new.planes.clone(),
                    cpus: new.cpus,
                    memory_mib: new.memory_mib,
                })?;
                self.note(&new, "registered".into());
                return Ok(v);
            }
            Err(e) => return Err(store_err(e)),
        };
        if old.host_id != new.host_id {
            return Err(EngineError::Conflict(format!(
                "host {} is registered with host id {}, not {}; remove it first to change its id",
                old.name, old.host_id, new.host_id
            )));
        }
        let host = Host {
            maintenance: old.maintenance,
            ..new
        };
        if host != old {
            self.store.update_host(&host).map_err(store_err)?;
            self.input(Input::UpsertHost(host.clone()))
                .map_err(core_err)?;
            self.note(
                &host,
                format!(
                    "facts updated: agent {}, {} cpus, {} MiB",
                    host.agent, host.cpus, host.memory_mib
                ),
            );
        }
        Ok(self.view(host))
    }

    fn note(&self, h: &Host, detail: String) {
        let e = self.event("info", "host-registered", Some(&h.name), detail);
        self.publish(vec![Command::Event(e)]);
    }
}
