//! What the backends share: the keyed record kinds (domains, hosts, VMs),
//! JSON encoding, and decoding that reports a bad record by table and key.

use nosplit_engine_core::model::{Domain, Host, Strategy, Vm};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::StoreError;

/// A record kept in a table keyed by its name or id.
pub(crate) trait Record: Serialize + DeserializeOwned + Clone + Send {
    /// Table name (redb) / collection name.
    const TABLE: &'static str;
    /// Kind of record in errors.
    const WHAT: &'static str;
    /// Its key.
    fn key(&self) -> &str;
}

impl Record for Domain {
    const TABLE: &'static str = "domains";
    const WHAT: &'static str = "domain";
    fn key(&self) -> &str {
        &self.name
    }
}

impl Record for Host {
    const TABLE: &'static str = "hosts";
    const WHAT: &'static str = "host";
    fn key(&self) -> &str {
        &self.name
    }
}

impl Record for Vm {
    const TABLE: &'static str = "vms";
    const WHAT: &'static str = "vm";
    fn key(&self) -> &str {
        &self.id
    }
}

/// JSON bytes of a value.
pub(crate) fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Invalid {
        what,
        detail: format!("cannot encode: {e}"),
    })
}

/// Decodes a stored value, naming the table and key if it is bad.
pub(crate) fn decode<T: DeserializeOwned>(
    table: &str,
    key: impl std::fmt::Display,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::corrupt(table, key, format!("not a valid JSON record: {e}")))
}

/// Decodes a keyed record and checks it is stored under its own key.
pub(crate) fn decode_record<R: Record>(key: &str, bytes: &[u8]) -> Result<R, StoreError> {
    let rec: R = decode(R::TABLE, key, bytes)?;
    if rec.key() != key {
        return Err(StoreError::corrupt(
            R::TABLE,
            key,
            format!("the record names itself `{}`", rec.key()),
        ));
    }
    Ok(rec)
}

/// Refuses a strategy that does not have one row per plane state.
pub(crate) fn check_strategy(s: &Strategy) -> Result<(), StoreError> {
    s.validate().map_err(|detail| StoreError::Invalid {
        what: "strategy",
        detail,
    })
}

/// Refuses a read-modify-write that changed the VM's id.
pub(crate) fn check_same_id(before: &str, after: &Vm) -> Result<(), StoreError> {
    if after.id == before {
        Ok(())
    } else {
        Err(StoreError::Invalid {
            what: "vm",
            detail: format!(
                "modify_vm changed the id from `{before}` to `{}`; ids are fixed",
                after.id
            ),
        })
    }
}
