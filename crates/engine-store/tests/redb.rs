#![allow(clippy::unwrap_used)]
//! What only the redb backend promises: persistence across reopen, the
//! format version, corrupt records named, and the file lock.

use std::path::Path;

use nosplit_engine_core::model::{
    Desired, Disk, Domain, EngineEvent, HaSettings, Host, Strategy, Task, Vm, VmKind,
};
use nosplit_engine_store::{EventQuery, Limits, RedbStore, Store, StoreError};
use redb::{Database, TableDefinition};

const META: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("meta");
const VMS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("vms");
const EVENTS: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("events");

fn vm(id: &str) -> Vm {
    Vm {
        id: id.to_string(),
        kind: VmKind::Qemu,
        vcpus: 2,
        memory_mib: 1024,
        domain: "d1".to_string(),
        ha: true,
        priority: 10,
        lease_offset: 0,
        desired: Desired::Running,
        host: Some("h1".to_string()),
    }
}

fn event(kind: &str) -> EngineEvent {
    EngineEvent {
        seq: 0,
        at_ms: 1,
        severity: "info".into(),
        kind: kind.into(),
        host: None,
        vm: None,
        detail: String::new(),
    }
}

fn task() -> Task {
    Task {
        id: 0,
        vm: "v1".into(),
        host: "h1".into(),
        attempt: 1,
        state: "running".into(),
        detail: String::new(),
        created_ms: 1,
        finished_ms: None,
    }
}

/// Writes raw bytes into a table, as a broken tool or disk would.
fn write_raw_str(
    path: &Path,
    table: TableDefinition<'static, &str, &[u8]>,
    key: &str,
    value: &[u8],
) {
    let db = Database::create(path).unwrap();
    let tx = db.begin_write().unwrap();
    tx.open_table(table).unwrap().insert(key, value).unwrap();
    tx.commit().unwrap();
}

#[test]
fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.redb");
    let domain = Domain {
        name: "d1".into(),
        path: "/srv/d1".into(),
        host_path: "/mnt/d1".into(),
        io_timeout_ms: 10_000,
    };
    let host = Host {
        name: "h1".into(),
        host_id: 1,
        agent: "127.0.0.1:1".into(),
        planes: vec![],
        cpus: 4,
        memory_mib: 8192,
        maintenance: true,
    };
    let mut strategy = Strategy::default_table();
    strategy.rows[0].recover = false;
    let ha = HaSettings {
        global_rate: 7,
        ..HaSettings::default()
    };
    {
        let s = RedbStore::open(&path).unwrap();
        s.create_domain(&domain).unwrap();
        s.create_host(&host).unwrap();
        s.create_vm(&vm("v1")).unwrap();
        s.set_strategy(&strategy).unwrap();
        s.set_ha_settings(&ha).unwrap();
        assert_eq!(s.append_task(&task()).unwrap(), 1);
        assert_eq!(s.append_event(&event("a")).unwrap(), 1);
        assert_eq!(s.append_event(&event("b")).unwrap(), 2);
    }
    let s = RedbStore::open(&path).unwrap();
    assert_eq!(s.list_domains().unwrap(), vec![domain]);
    assert_eq!(s.list_hosts().unwrap(), vec![host]);
    assert_eq!(s.get_vm("v1").unwrap(), vm("v1"));
    assert_eq!(s.strategy().unwrap(), strategy);
    assert_eq!(s.ha_settings().unwrap(), ha);
    assert_eq!(s.get_task(1).unwrap(), Task { id: 1, ..task() });
    let kinds: Vec<String> = s
        .list_events(&EventQuery::default())
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, vec!["a", "b"]);
    assert_eq!(
        s.append_event(&event("c")).unwrap(),
        3,
        "seqs continue after reopen"
    );
    assert_eq!(
        s.append_task(&task()).unwrap(),
        2,
        "task ids continue after reopen"
    );
}

#[test]
fn lower_limits_at_reopen_apply_at_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.redb");
    {
        let s = RedbStore::open(&path).unwrap();
        for k in ["a", "b", "c", "d"] {
            s.append_event(&event(k)).unwrap();
        }
    }
    let s = RedbStore::open_with(
        &path,
        Limits {
            max_events: 2,
            ..Limits::default()
        },
    )
    .unwrap();
    assert_eq!(
        s.list_events(&EventQuery::default()).unwrap().len(),
        4,
        "nothing is dropped at open"
    );
    assert_eq!(s.append_event(&event("e")).unwrap(), 5);
    let seqs: Vec<u64> = s
        .list_events(&EventQuery::default())
        .unwrap()
        .into_iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, vec![4, 5]);
}

#[test]
fn a_garbage_record_is_reported_as_corrupt_naming_table_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.redb");
    {
        let s = RedbStore::open(&path).unwrap();
        s.create_vm(&vm("good")).unwrap();
        s.append_event(&event("a")).unwrap();
    }
    write_raw_str(&path, VMS, "bad-vm", b"\xff\x00 not json");
    {
        let db = Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(EVENTS)
            .unwrap()
            .insert(2, b"{\"seq\":2".as_slice())
            .unwrap();
        tx.commit().unwrap();
    }
    let s = RedbStore::open(&path).unwrap();
    for err in [s.get_vm("bad-vm").unwrap_err(), s.list_vms().unwrap_err()] {
        match &err {
            StoreError::Corrupt { what, .. } => assert_eq!(what, "table `vms` key `bad-vm`"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(err.to_string().contains("vms"), "{err}");
    }
    assert_eq!(
        s.get_vm("good").unwrap(),
        vm("good"),
        "the good records stay readable"
    );
    match s.list_events(&EventQuery::default()).unwrap_err() {
        StoreError::Corrupt { what, .. } => assert_eq!(what, "table `events` key `2`"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_vm_recorded_before_disk_lists_reads_with_the_default_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.redb");
    drop(RedbStore::open(&path).unwrap());
    // A format 1 record as written before VMs had `disks`.
    let mut old = serde_json::to_value(vm("old")).unwrap();
    assert!(old.get("disks").is_none());
    old["priority"] = 7.into();
    write_raw_str(&path, VMS, "old", old.to_string().as_bytes());
    let s = RedbStore::open(&path).unwrap();
    assert_eq!(s.get_vm("old").unwrap().priority, 7);
    assert_eq!(s.vm_disks("old").unwrap(), Disk::default_list());
    s.modify_vm("old", &mut |v| v.priority = 8).unwrap();
    assert_eq!(s.vm_disks("old").unwrap(), Disk::default_list());
    // A record with junk beside the VM is still refused.
    old["colour"] = "red".into();
    drop(s);
    write_raw_str(&path, VMS, "old", old.to_string().as_bytes());
    let s = RedbStore::open(&path).unwrap();
    assert!(matches!(
        s.get_vm("old").unwrap_err(),
        StoreError::Corrupt { .. }
    ));
}

#[test]
fn a_record_under_the_wrong_key_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.redb");
    drop(RedbStore::open(&path).unwrap());
    write_raw_str(
        &path,
        VMS,
        "alias",
        &serde_json::to_vec(&vm("real")).unwrap(),
    );
    let s = RedbStore::open(&path).unwrap();
    match s.get_vm("alias").unwrap_err() {
        StoreError::Corrupt { what, detail } => {
            assert_eq!(what, "table `vms` key `alias`");
            assert!(detail.contains("real"), "{detail}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn an_unknown_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.redb");
    drop(RedbStore::open(&path).unwrap());
    write_raw_str(&path, META, "format", b"2");
    let err = RedbStore::open(&path).unwrap_err();
    match &err {
        StoreError::UnknownFormat {
            found, supported, ..
        } => {
            assert_eq!(found, "2");
            assert_eq!(*supported, 1);
        }
        other => panic!("expected UnknownFormat, got {other:?}"),
    }
    assert!(err.to_string().contains("format version 2"), "{err}");
}

#[test]
fn a_new_file_is_stamped_with_format_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.redb");
    drop(RedbStore::open(&path).unwrap());
    let db = Database::create(&path).unwrap();
    let tx = db.begin_read().unwrap();
    let meta = tx.open_table(META).unwrap();
    assert_eq!(meta.get("format").unwrap().unwrap().value(), b"1");
}

#[test]
fn a_second_open_of_the_same_file_is_refused_as_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.redb");
    let first = RedbStore::open(&path).unwrap();
    let err = RedbStore::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::Locked { path: ref p } if p == &path),
        "{err:?}"
    );
    assert!(err.to_string().contains("already open"), "{err}");
    drop(first);
    RedbStore::open(&path).unwrap();
}

/// Set in the child process of the lock test: the file the parent holds.
const LOCK_CHILD_ENV: &str = "NOSPLIT_ENGINE_STORE_LOCK_CHILD";

#[test]
fn a_second_process_gets_a_locked_error() {
    if let Ok(path) = std::env::var(LOCK_CHILD_ENV) {
        // The child: the parent holds the file open.
        let err = RedbStore::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
        println!("CHILD-SAW-LOCKED: {err}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.redb");
    let held = RedbStore::open(&path).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_second_process_gets_a_locked_error",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(LOCK_CHILD_ENV, &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("CHILD-SAW-LOCKED") && stdout.contains("already open"),
        "{stdout}"
    );
    drop(held);
}

#[test]
fn a_file_that_is_not_a_store_is_refused_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.redb");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let err = RedbStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("engine.redb") && msg.contains("not a nosplit store"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        vec![0x5a; 8192],
        "a refused file is left untouched"
    );
}
