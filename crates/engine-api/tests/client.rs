#![allow(clippy::unwrap_used)]
//! The blocking client against the real server over TCP: every route
//! round-trips to the model types, errors come back typed with the
//! server's kind and message (and never hold the token), a long poll
//! returns when an event arrives, and a dead server is a transport error.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use nosplit_engine_api::client::{Client, ClientError, ErrorKind};
use nosplit_engine_api::server::routes;
use nosplit_engine_api::types::*;
use nosplit_engine_core::model::*;

fn client(addr: std::net::SocketAddr, token: &str) -> Client {
    Client::new(&format!("http://{addr}/"), token).unwrap()
}

#[test]
fn every_route_round_trips() {
    let (server, fake) = start();
    let c = client(server.local_addr(), ADMIN);

    let st = c.status().unwrap();
    assert_eq!(
        (st.queue, st.hosts.get("up"), st.self_defense),
        (3, Some(&2), true)
    );

    let d = domain("d1");
    assert_eq!(c.create_domain(&d).unwrap(), d);
    assert_eq!(c.list_domains().unwrap(), vec![domain("d1")]);
    assert_eq!(c.get_domain("d2").unwrap().name, "d2");
    c.delete_domain("d2").unwrap();

    let nh = NewHost {
        name: "h3".into(),
        host_id: 3,
        agent: "10.0.0.3:7070".into(),
        planes: vec![
            (Plane::Mgmt, "10.0.0.3".into()),
            (Plane::Stor, "fd00::3".into()),
        ],
        cpus: 4,
        memory_mib: 4096,
    };
    let hv = c.add_host(&nh).unwrap();
    assert_eq!(
        (hv.host, hv.state),
        (nh.clone().into_host(), HostState::Suspect)
    );
    assert_eq!(c.register_host(&nh).unwrap().host, nh.clone().into_host());
    assert_eq!(fake.last().as_deref(), Some("register_host h3 3"));
    assert_eq!(c.list_hosts().unwrap(), vec![host("h1", false)]);
    assert_eq!(c.get_host("h1").unwrap(), host("h1", false));
    c.delete_host("h1").unwrap();
    assert!(c.set_host_maintenance("h1", true).unwrap().host.maintenance);
    assert_eq!(fake.last().as_deref(), Some("maintenance h1 true"));

    let nv = NewVm {
        id: "v7".into(),
        kind: VmKind::Qemu,
        vcpus: 2,
        memory_mib: 512,
        domain: "d1".into(),
        ha: true,
        priority: 80,
    };
    let v = c.create_vm(&nv).unwrap();
    assert_eq!(
        (v.id.as_str(), v.kind, v.priority, v.lease_offset),
        ("v7", VmKind::Qemu, 80, 1_048_576)
    );
    assert_eq!(c.list_vms().unwrap().len(), 2);
    assert_eq!(c.get_vm("v7").unwrap().vm, vm("v7"));
    c.delete_vm("v7").unwrap();
    let patch = VmPatch {
        ha: Some(false),
        priority: None,
    };
    let v = c.patch_vm("v7", &patch).unwrap();
    assert_eq!((v.ha, v.priority), (false, 10));
    assert_eq!(fake.last().as_deref(), Some("patch_vm v7 Some(false) None"));
    let v = c.start_vm("v7", Some("h2")).unwrap();
    assert_eq!(
        (v.desired, v.host.as_deref()),
        (Desired::Running, Some("h2"))
    );
    assert_eq!(
        c.start_vm("v7", None).unwrap().host.as_deref(),
        Some("placed")
    );
    assert_eq!(c.stop_vm("v7").unwrap().desired, Desired::Stopped);

    assert_eq!(c.strategy().unwrap(), Strategy::default_table());
    assert_eq!(
        c.put_strategy(&Strategy::default_table()).unwrap(),
        Strategy::default_table()
    );
    assert_eq!(c.ha().unwrap(), HaSettings::default());
    let p = HaPatch {
        global_rate: Some(50),
        ..HaPatch::default()
    };
    assert_eq!(c.patch_ha(&p).unwrap().global_rate, 50);

    let q = TaskQuery {
        vm: Some("v7".into()),
        limit: 3,
    };
    assert_eq!(c.tasks(&q).unwrap()[0].vm, "v7");
    assert_eq!(fake.last().as_deref(), Some("tasks Some(\"v7\") 3"));
    fake.push_event(event(1, "host-down"));
    fake.push_event(event(2, "vm-restarted"));
    let q = EventQuery {
        kind: Some("vm-restarted".into()),
        host: Some("h1".into()),
        ..EventQuery::default()
    };
    let evs = c.events(&q).unwrap();
    assert_eq!(evs.iter().map(|e| e.seq).collect::<Vec<_>>(), [2]);
    let want = "events 0 Some(\"vm-restarted\") Some(\"h1\") None None 1000 0";
    assert_eq!(fake.last().as_deref(), Some(want));

    // Every route was called once through the client (start twice).
    let called: BTreeSet<String> = fake
        .calls()
        .iter()
        .map(|c| c.split(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(called.len(), routes().count(), "{called:?}");
}

#[test]
fn errors_are_typed_and_never_hold_the_token() {
    let (server, fake) = start();
    let a = server.local_addr();
    let user = client(a, USER);
    let e = user.list_hosts().unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::Forbidden));
    assert!(matches!(&e, ClientError::Api { status: 403, .. }));
    let stranger = client(a, "not-a-token-but-long-enough-0123456789");
    let e = stranger.status().unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::Unauthorized));
    let bad = NewVm {
        id: "v/1".into(),
        kind: VmKind::Process,
        vcpus: 0,
        memory_mib: 1,
        domain: "d".into(),
        ha: false,
        priority: 0,
    };
    match user.create_vm(&bad).unwrap_err() {
        ClientError::Api {
            status: 400,
            kind: ErrorKind::Invalid,
            message,
        } => assert!(
            message.contains("id:")
                && message.contains("vcpus:")
                && message.contains("memory_mib:"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(fake.calls().is_empty());
    *fake.fail.lock().unwrap() = Some(EngineError::Conflict("v1 runs".into()));
    let e = user.delete_vm("v1").unwrap_err();
    assert_eq!(
        e,
        ClientError::Api {
            status: 409,
            kind: ErrorKind::Conflict,
            message: "v1 runs".into()
        }
    );
    assert!(matches!(user.get_vm(".."), Err(ClientError::BadName(_))));
    for e in [
        e,
        user.list_hosts().unwrap_err(),
        stranger.status().unwrap_err(),
    ] {
        let text = format!("{e} {e:?} {user:?}");
        assert!(
            !text.contains(USER) && !text.contains("not-a-token"),
            "{text}"
        );
    }
}

#[test]
fn long_poll_returns_when_an_event_arrives() {
    let (server, fake) = start();
    let c = client(server.local_addr(), USER);
    fake.push_event(event(1, "host-suspect"));
    let q = EventQuery {
        after: 1,
        wait: Duration::from_secs(30),
        ..EventQuery::default()
    };
    let poller = std::thread::spawn(move || c.events(&q));
    // Wait until the poll is parked in the fake, then publish.
    let parked = "events 1 None None None None 1000 30000";
    while !fake.calls().iter().any(|c| c == parked) {
        std::thread::sleep(Duration::from_millis(10));
    }
    fake.push_event(event(2, "host-down"));
    let evs = poller.join().unwrap().unwrap();
    assert_eq!(evs.len(), 1);
    assert_eq!((evs[0].seq, evs[0].kind.as_str()), (2, "host-down"));
}

#[test]
fn a_dead_server_is_a_transport_error() {
    let (server, _fake) = start();
    let a = server.local_addr();
    server.shutdown().unwrap();
    let e = client(a, ADMIN).status().unwrap_err();
    assert!(matches!(e, ClientError::Transport(_)), "{e:?}");
    assert_eq!(e.kind(), None);
}
