//! What the backends share: the keyed record kinds (domains, hosts, VMs
//! with their disks), JSON encoding, and decoding that reports a bad
//! record by table and key.

use nosplit_engine_core::model::{Disk, Domain, Host, Strategy, Vm};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

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

/// A VM as stored: the [`Vm`]'s fields and, beside them, `"disks"`. A
/// record written before VMs had a disk list has no `"disks"` and reads
/// as [`Disk::default_list`] (the one disk such a VM got).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VmRecord {
    pub(crate) vm: Vm,
    pub(crate) disks: Vec<Disk>,
}

impl Serialize for VmRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let mut v = serde_json::to_value(&self.vm).map_err(S::Error::custom)?;
        let disks = serde_json::to_value(&self.disks).map_err(S::Error::custom)?;
        match v.as_object_mut() {
            Some(m) => m.insert("disks".into(), disks),
            None => return Err(S::Error::custom("a VM is a JSON object")),
        };
        v.serialize(s)
    }
}

impl<'de> Deserialize<'de> for VmRecord {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut m = serde_json::Map::deserialize(d)?;
        let disks = match m.remove("disks") {
            None => Disk::default_list(),
            Some(v) => serde_json::from_value(v).map_err(D::Error::custom)?,
        };
        let vm = serde_json::from_value(serde_json::Value::Object(m)).map_err(D::Error::custom)?;
        Ok(VmRecord { vm, disks })
    }
}

impl Record for VmRecord {
    const TABLE: &'static str = "vms";
    const WHAT: &'static str = "vm";
    fn key(&self) -> &str {
        &self.vm.id
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
