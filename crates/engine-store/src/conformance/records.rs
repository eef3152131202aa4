//! Checks of the keyed records (domains, hosts, VMs), `modify_vm` and the
//! settings.

use std::fmt::Debug;

use nosplit_engine_core::model::{Disk, HaSettings, Strategy};

use super::{domain, expect_exists, expect_invalid, expect_not_found, host, ok, vm, Factory};
use crate::{Limits, StoreError};

/// One record kind's operations, so the CRUD rules are written once.
struct Crud<'a, R> {
    what: &'static str,
    create: &'a dyn Fn(&R) -> Result<(), StoreError>,
    get: &'a dyn Fn(&str) -> Result<R, StoreError>,
    update: &'a dyn Fn(&R) -> Result<(), StoreError>,
    delete: &'a dyn Fn(&str) -> Result<(), StoreError>,
    list: &'a dyn Fn() -> Result<Vec<R>, StoreError>,
    make: fn(&str) -> R,
    change: fn(&mut R),
}

fn check_crud<R: Clone + PartialEq + Debug>(c: &Crud<'_, R>) {
    let w = c.what;
    assert!(
        ok((c.list)(), "list empty").is_empty(),
        "{w}: a new store lists nothing"
    );
    expect_not_found((c.get)("b"), w, "b", "get absent");

    for key in ["b", "a", "c", "a-2"] {
        ok((c.create)(&(c.make)(key)), "create");
    }
    let mut changed_a = (c.make)("a");
    (c.change)(&mut changed_a);
    assert_ne!(
        changed_a,
        (c.make)("a"),
        "{w}: the change must change something"
    );
    expect_exists((c.create)(&changed_a), w, "a", "create existing");
    assert_eq!(
        ok((c.get)("a"), "get"),
        (c.make)("a"),
        "{w}: a refused create must not overwrite"
    );

    let listed = ok((c.list)(), "list");
    let want: Vec<R> = ["a", "a-2", "b", "c"].into_iter().map(c.make).collect();
    assert_eq!(listed, want, "{w}: list is sorted by key");

    ok((c.update)(&changed_a), "update");
    assert_eq!(
        ok((c.get)("a"), "get after update"),
        changed_a,
        "{w}: update replaces"
    );
    expect_not_found((c.update)(&(c.make)("zz")), w, "zz", "update absent");
    expect_not_found((c.get)("zz"), w, "zz", "a refused update must not create");

    ok((c.delete)("b"), "delete");
    expect_not_found((c.get)("b"), w, "b", "get deleted");
    expect_not_found((c.delete)("b"), w, "b", "delete twice");
    assert_eq!(
        ok((c.list)(), "list after delete").len(),
        3,
        "{w}: delete removes exactly one"
    );
    ok((c.create)(&(c.make)("b")), "create again after delete");
}

pub(super) fn domains_follow_the_crud_rules(make: Factory<'_>) {
    let s = make(Limits::default());
    check_crud(&Crud {
        what: "domain",
        create: &|r| s.create_domain(r),
        get: &|k| s.get_domain(k),
        update: &|r| s.update_domain(r),
        delete: &|k| s.delete_domain(k),
        list: &|| s.list_domains(),
        make: domain,
        change: |d| d.io_timeout_ms += 1,
    });
}

pub(super) fn hosts_follow_the_crud_rules(make: Factory<'_>) {
    let s = make(Limits::default());
    check_crud(&Crud {
        what: "host",
        create: &|r| s.create_host(r),
        get: &|k| s.get_host(k),
        update: &|r| s.update_host(r),
        delete: &|k| s.delete_host(k),
        list: &|| s.list_hosts(),
        make: host,
        change: |h| h.maintenance = !h.maintenance,
    });
}

pub(super) fn vms_follow_the_crud_rules(make: Factory<'_>) {
    let s = make(Limits::default());
    check_crud(&Crud {
        what: "vm",
        create: &|r| s.create_vm(r),
        get: &|k| s.get_vm(k),
        update: &|r| s.update_vm(r),
        delete: &|k| s.delete_vm(k),
        list: &|| s.list_vms(),
        make: vm,
        change: |v| v.host = Some("h9".to_string()),
    });
}

pub(super) fn record_kinds_do_not_share_keys(make: Factory<'_>) {
    let s = make(Limits::default());
    ok(s.create_domain(&domain("x")), "create domain x");
    ok(s.create_host(&host("x")), "create host x");
    ok(s.create_vm(&vm("x")), "create vm x");
    ok(s.delete_host("x"), "delete host x");
    assert_eq!(ok(s.get_domain("x"), "get domain"), domain("x"));
    assert_eq!(ok(s.get_vm("x"), "get vm"), vm("x"));
}

pub(super) fn vm_disks_are_written_with_the_vm_and_kept(make: Factory<'_>) {
    let s = make(Limits::default());
    let disks = vec![
        Disk {
            name: "boot".into(),
            size_mib: 1024,
        },
        Disk {
            name: "data".into(),
            size_mib: 4,
        },
    ];
    ok(
        s.create_vm_with_disks(&vm("v1"), &disks),
        "create with disks",
    );
    assert_eq!(ok(s.vm_disks("v1"), "disks"), disks, "disks as written");
    assert_eq!(ok(s.get_vm("v1"), "get"), vm("v1"), "the VM as written");
    let mut v = vm("v1");
    v.vcpus = 9;
    ok(s.update_vm(&v), "update");
    ok(s.modify_vm("v1", &mut |v| v.priority = 3), "modify");
    assert_eq!(ok(s.vm_disks("v1"), "disks"), disks, "kept by updates");
    expect_exists(
        s.create_vm_with_disks(&vm("v1"), &[]),
        "vm",
        "v1",
        "create_vm_with_disks of a taken id",
    );
    assert_eq!(
        ok(s.vm_disks("v1"), "disks"),
        disks,
        "kept by a refused create"
    );
    ok(s.create_vm(&vm("v2")), "create without disks");
    assert_eq!(
        ok(s.vm_disks("v2"), "disks"),
        Disk::default_list(),
        "create_vm gives the default list"
    );
    ok(s.delete_vm("v1"), "delete");
    expect_not_found(s.vm_disks("v1"), "vm", "v1", "disks of a deleted VM");
}

pub(super) fn modify_vm_reads_modifies_and_writes(make: Factory<'_>) {
    let s = make(Limits::default());
    ok(s.create_vm(&vm("v1")), "create");
    let mut calls = 0;
    let got = ok(
        s.modify_vm("v1", &mut |v| {
            calls += 1;
            assert_eq!(v.host, None, "f sees the stored VM");
            v.host = Some("h1".to_string());
        }),
        "modify",
    );
    assert_eq!(calls, 1, "f is called exactly once");
    assert_eq!(
        got.host.as_deref(),
        Some("h1"),
        "modify_vm returns the new VM"
    );
    assert_eq!(
        ok(s.get_vm("v1"), "get"),
        got,
        "modify_vm stores the new VM"
    );

    let mut absent_calls = 0;
    expect_not_found(
        s.modify_vm("nope", &mut |_| absent_calls += 1),
        "vm",
        "nope",
        "modify absent",
    );
    assert_eq!(absent_calls, 0, "f is not called for an absent VM");

    expect_invalid(
        s.modify_vm("v1", &mut |v| v.id = "v2".to_string()),
        "vm",
        "modify changing the id",
    );
    assert_eq!(
        ok(s.get_vm("v1"), "get after refused"),
        got,
        "a refused modify stores nothing"
    );
    expect_not_found(
        s.get_vm("v2"),
        "vm",
        "v2",
        "a refused modify creates nothing",
    );
}

pub(super) fn modify_vm_is_atomic_between_threads(make: Factory<'_>) {
    const THREADS: u32 = 4;
    const EACH: u32 = 25;
    let s = make(Limits::default());
    ok(s.create_vm(&vm("v1")), "create");
    let store = &*s;
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(move || {
                for _ in 0..EACH {
                    ok(
                        store.modify_vm("v1", &mut |v| v.vcpus += 1),
                        "modify in thread",
                    );
                }
            });
        }
    });
    assert_eq!(
        ok(s.get_vm("v1"), "get").vcpus,
        THREADS * EACH,
        "no increment is lost"
    );
}

pub(super) fn settings_read_as_defaults_until_set(make: Factory<'_>) {
    let s = make(Limits::default());
    assert_eq!(ok(s.strategy(), "strategy"), Strategy::default_table());
    assert_eq!(ok(s.ha_settings(), "ha"), HaSettings::default());

    let mut custom = Strategy::default_table();
    for row in &mut custom.rows {
        row.recover = !row.recover;
    }
    ok(s.set_strategy(&custom), "set strategy");
    assert_eq!(ok(s.strategy(), "strategy after set"), custom);

    let mut bad = custom.clone();
    bad.rows.pop();
    expect_invalid(s.set_strategy(&bad), "strategy", "set an invalid strategy");
    assert_eq!(
        ok(s.strategy(), "strategy after refused"),
        custom,
        "a refused strategy is not stored"
    );

    let ha = HaSettings {
        maintenance: true,
        global_rate: 3,
        per_host_limit: 2,
        grace_ms: 9000,
        ..HaSettings::default()
    };
    ok(s.set_ha_settings(&ha), "set ha");
    assert_eq!(ok(s.ha_settings(), "ha after set"), ha);
    assert_eq!(
        ok(s.strategy(), "strategy untouched"),
        custom,
        "settings are independent"
    );
}
