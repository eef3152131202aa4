//! [`RedbStore`]: the [`Store`](crate::Store) in one embedded
//! [redb](https://www.redb.org) file, the engine's default.
//!
//! # On-disk layout (format version 1)
//!
//! One redb database file. Every value is UTF-8 JSON (serde_json) of the
//! `nosplit_engine_core::model` type named below, so a record can be read
//! with any redb tool and the format can evolve by version. Values are
//! stored as raw bytes (`&[u8]`), never as redb strings, so bad bytes are
//! reported as [`StoreError::Corrupt`] instead of failing inside redb.
//!
//! | table      | key                  | value                                   |
//! |------------|----------------------|-----------------------------------------|
//! | `meta`     | `&str`: `format`     | JSON number: the format version, `1`    |
//! | `domains`  | `&str`: domain name  | JSON `Domain`                           |
//! | `hosts`    | `&str`: host name    | JSON `Host`                             |
//! | `vms`      | `&str`: VM id        | JSON `Vm` with `"disks"`: `[Disk]`      |
//! | `settings` | `&str`: `strategy`   | JSON `Strategy` (absent = default table)|
//! | `settings` | `&str`: `ha`         | JSON `HaSettings` (absent = defaults)   |
//! | `tasks`    | `u64`: task id       | JSON `Task` (its `id` equals the key)   |
//! | `events`   | `u64`: event seq     | JSON `EngineEvent` (`seq` equals key)   |
//!
//! A keyed record must name itself with its key (a `vms` value under key
//! `a` must have `"id":"a"`), otherwise it is reported as corrupt. A `vms`
//! value without `"disks"` (written before VMs had a disk list) reads as
//! the one default disk those VMs got.
//! Task ids and event seqs are one past the largest key kept; the oldest
//! keys are dropped beyond the configured [`Limits`].
//!
//! Opening creates the file and its tables if needed and writes
//! `format = 1` into a new file; a file with another version is refused
//! ([`StoreError::UnknownFormat`]). Every write is one redb write
//! transaction, committed durably before the call returns. redb locks the
//! file; a second open (from any process) fails with [`StoreError::Locked`].

mod ops;

use std::fmt::Display;
use std::path::{Path, PathBuf};

use redb::{
    Database, DatabaseError, ReadTransaction, ReadableTable, StorageError, TableDefinition,
    WriteTransaction,
};

use crate::{Limits, StoreError};

/// The format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// The `meta` table.
pub(crate) const META: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("meta");
/// The `settings` table.
pub(crate) const SETTINGS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("settings");
/// The `tasks` table.
pub(crate) const TASKS: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("tasks");
/// The `events` table.
pub(crate) const EVENTS: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("events");

/// The store in a redb file.
#[derive(Debug)]
pub struct RedbStore {
    db: Database,
    path: PathBuf,
    limits: Limits,
}

/// Maps a redb error to [`StoreError::Backend`] for operation `op`.
pub(crate) fn backend<E: Display>(op: &'static str) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::Backend {
        op,
        detail: e.to_string(),
    }
}

fn open_error(path: &Path, e: DatabaseError) -> StoreError {
    match e {
        DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
            path: path.to_path_buf(),
        },
        DatabaseError::Storage(StorageError::Io(source))
            if source.kind() == std::io::ErrorKind::InvalidData =>
        {
            StoreError::Corrupt {
                what: format!("file {}", path.display()),
                detail: format!("not a nosplit store (redb rejects its header: {source})"),
            }
        }
        DatabaseError::Storage(StorageError::Io(source)) => StoreError::Io {
            path: path.to_path_buf(),
            source,
        },
        DatabaseError::Storage(StorageError::Corrupted(detail)) => StoreError::Corrupt {
            what: format!("file {}", path.display()),
            detail: format!("not a readable redb database: {detail}"),
        },
        other => StoreError::Backend {
            op: "open",
            detail: format!("{}: {other}", path.display()),
        },
    }
}

impl RedbStore {
    /// Opens (or creates) the store at `path`, keeping the default number
    /// of tasks and events.
    pub fn open(path: impl AsRef<Path>) -> Result<RedbStore, StoreError> {
        RedbStore::open_with(path, Limits::default())
    }

    /// Opens (or creates) the store at `path` with these limits (applied
    /// at the next append; nothing is dropped at open).
    pub fn open_with(path: impl AsRef<Path>, limits: Limits) -> Result<RedbStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let db = Database::create(&path).map_err(|e| open_error(&path, e))?;
        let store = RedbStore {
            db,
            path,
            limits: limits.effective(),
        };
        store.init()?;
        Ok(store)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks (or writes) the format version and creates missing tables.
    fn init(&self) -> Result<(), StoreError> {
        self.write("open", |tx| {
            let mut meta = tx.open_table(META).map_err(backend("open table meta"))?;
            let found = meta
                .get("format")
                .map_err(backend("read meta"))?
                .map(|g| g.value().to_vec());
            match found {
                None => {
                    let v = FORMAT_VERSION.to_string();
                    meta.insert("format", v.as_bytes())
                        .map_err(backend("write meta"))?;
                }
                Some(bytes)
                    if serde_json::from_slice::<u32>(&bytes).ok() == Some(FORMAT_VERSION) => {}
                Some(bytes) => {
                    return Err(StoreError::UnknownFormat {
                        path: self.path.clone(),
                        found: String::from_utf8_lossy(&bytes).into_owned(),
                        supported: FORMAT_VERSION,
                    })
                }
            }
            for name in [ops::DOMAINS, ops::HOSTS, ops::VMS, SETTINGS] {
                tx.open_table(name).map_err(backend("create table"))?;
            }
            for name in [TASKS, EVENTS] {
                tx.open_table(name).map_err(backend("create table"))?;
            }
            Ok(())
        })
    }

    /// Runs `f` in one write transaction, committed only if `f` succeeds
    /// (dropping the transaction on error aborts it).
    fn write<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self.db.begin_write().map_err(backend(op))?;
        let out = f(&tx)?;
        tx.commit().map_err(backend("commit"))?;
        Ok(out)
    }

    /// Runs `f` in one read transaction (a consistent snapshot).
    fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self.db.begin_read().map_err(backend("begin read"))?;
        f(&tx)
    }
}

/// Reads the value bytes under `key`, if any.
pub(crate) fn get_bytes<'k, K: redb::Key + 'static>(
    table: &impl ReadableTable<K, &'static [u8]>,
    key: impl std::borrow::Borrow<K::SelfType<'k>>,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(table
        .get(key)
        .map_err(backend("read"))?
        .map(|g| g.value().to_vec()))
}
