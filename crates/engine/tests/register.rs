//! Host registration through the real engine and its real API server:
//! a host registers only itself, with its own token (an admin any host);
//! its host id is bound to its name; the operator's maintenance switch
//! survives a refresh.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use nosplit_engine::Engine;
use nosplit_engine_api::auth::Tokens;
use nosplit_engine_api::client::{Client, ClientError};
use nosplit_engine_api::types::{EventQuery, NewHost};
use nosplit_engine_core::model::Plane;
use nosplit_engine_store::MemStore;

fn secret(path: &Path, fill: char) -> String {
    let t: String = std::iter::repeat_n(fill, 40).collect();
    std::fs::write(path, &t).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    t
}

fn status(e: &ClientError) -> u16 {
    match e {
        ClientError::Api { status, .. } => *status,
        other => panic!("not an API error: {other}"),
    }
}

fn host(name: &str, id: u32, cpus: u32) -> NewHost {
    NewHost {
        name: name.into(),
        host_id: id,
        agent: format!("10.0.0.{id}:7410"),
        planes: vec![(Plane::Mgmt, format!("10.0.0.{id}"))],
        cpus,
        memory_mib: 4096,
    }
}

#[test]
fn a_host_registers_only_itself_with_its_own_token() {
    let d = tempfile::tempdir().unwrap();
    let agents = d.path().join("agents");
    std::fs::create_dir(&agents).unwrap();
    std::fs::set_permissions(&agents, std::fs::Permissions::from_mode(0o700)).unwrap();
    let admin = secret(&d.path().join("admin.token"), 'a');
    let t1 = secret(&agents.join("h1.token"), '1');
    let t2 = secret(&agents.join("h2.token"), '2');
    let text = format!(
        "listen = \"127.0.0.1:1\"\nstore = \"{0}/unused.redb\"\nagent_token_dir = \"{1}\"\n[[token]]\nrole = \"admin\"\nfile = \"{0}/admin.token\"\n",
        d.path().display(),
        agents.display()
    );
    let cfg = nosplit_engine::config::parse(&text, "test").unwrap();
    let (engine, _beats) = Engine::start(cfg, Box::new(MemStore::new())).unwrap();
    let ops: Arc<dyn nosplit_engine_api::ops::EngineOps> = engine;
    let tokens = Tokens::parse(vec![("admin", admin.as_str())]).unwrap();
    let server =
        nosplit_engine_api::server::spawn_server("127.0.0.1:0".parse().unwrap(), tokens, ops)
            .unwrap();
    let url = format!("http://{}", server.local_addr());
    let as_ = |t: &str| Client::new(&url, t).unwrap();
    let (adm, h1, h2) = (as_(&admin), as_(&t1), as_(&t2));

    // h1 registers itself: it is in the inventory with its facts.
    let v = h1.register_host(&host("h1", 1, 4)).unwrap();
    assert_eq!(
        (v.host.name.as_str(), v.host.host_id, v.host.cpus),
        ("h1", 1, 4)
    );
    let listed = adm.list_hosts().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].host.planes,
        vec![(Plane::Mgmt, "10.0.0.1".to_string())]
    );

    // No other host may register h1; an admin may.
    assert_eq!(
        status(&h2.register_host(&host("h1", 1, 4)).unwrap_err()),
        401
    );
    adm.register_host(&host("h1", 1, 4)).unwrap();
    // A host token opens no other route.
    assert_eq!(status(&h1.list_hosts().unwrap_err()), 401);
    // A host id is bound to its name, both ways.
    assert_eq!(
        status(&h1.register_host(&host("h1", 2, 4)).unwrap_err()),
        409
    );
    assert_eq!(
        status(&h2.register_host(&host("h2", 1, 4)).unwrap_err()),
        409
    );
    // Bad input is a 400 before any token check matters.
    let mut bad = host("h2", 2, 4);
    bad.agent = "nowhere".into();
    assert_eq!(status(&h2.register_host(&bad).unwrap_err()), 400);

    // A refresh updates the facts and keeps the operator's maintenance.
    adm.set_host_maintenance("h1", true).unwrap();
    let v = h1.register_host(&host("h1", 1, 8)).unwrap();
    assert_eq!(v.host.cpus, 8);
    assert!(v.host.maintenance, "maintenance survives a registration");
    h2.register_host(&host("h2", 2, 2)).unwrap();
    assert_eq!(adm.list_hosts().unwrap().len(), 2);

    let events = adm
        .events(&EventQuery {
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    let reg: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "host-registered")
        .map(|e| e.host.clone().unwrap_or_default())
        .collect();
    assert_eq!(reg, ["h1", "h1", "h2"], "{events:?}");
}
