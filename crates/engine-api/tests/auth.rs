#![allow(clippy::unwrap_used)]
//! Auth over real TCP: no or bad token is 401 on every route; a `user`
//! token is 403 on every admin route (before any input check, and without
//! reaching the engine) and allowed on the user routes; `admin` may call
//! everything; each route makes its call.

mod common;

use common::*;
use nosplit_engine_api::auth::Role;
use nosplit_engine_api::server::routes;

#[test]
fn no_or_wrong_token_is_401_and_reaches_nothing() {
    let (server, fake) = start();
    let addr = server.local_addr();
    let auths = [
        String::new(),
        format!("Authorization: Bearer {ADMIN}x\r\n"),
        format!("Authorization: Bearer {}\r\n", &ADMIN[..ADMIN.len() - 1]),
        format!("Authorization: Bearer {}\r\n", &USER[1..]),
        format!("Authorization: Basic {ADMIN}\r\n"),
        format!("Authorization: bearer {USER}\r\n"),
        format!("Authorization: Bearer{ADMIN}\r\n"),
        "Authorization: Bearer \r\n".to_string(),
    ];
    for (method, path, _) in routes() {
        for auth in &auths {
            let head = format!("{method} {} HTTP/1.1\r\n{auth}", concrete(path));
            let (status, v) = send(addr, &head, b"{}");
            assert_eq!(status, 401, "{method} {path} with {auth:?}");
            assert_eq!(v["error"], "unauthorized");
        }
    }
    let (status, _) = send(addr, "GET /nowhere HTTP/1.1\r\n", b"");
    assert_eq!(status, 401);
    assert!(fake.calls().is_empty(), "calls: {:?}", fake.calls());
}

#[test]
fn user_gets_403_on_every_admin_route() {
    let (server, fake) = start();
    let addr = server.local_addr();
    let admin_routes: Vec<_> = routes().filter(|r| r.2 == Role::Admin).collect();
    assert!(admin_routes.len() >= 11, "{admin_routes:?}");
    for (method, path, _) in admin_routes {
        // A valid body and an invalid one: the role check comes first.
        let (p, body, _, _) = valid_request(method, path);
        for b in [body, r#"{"bogus":1}"#] {
            let (status, v) = call(addr, USER, method, &p, b);
            assert_eq!(status, 403, "{method} {path}: {v}");
            assert_eq!(v["error"], "forbidden");
            let msg = v["message"].as_str().unwrap();
            assert!(msg.contains("needs the admin role"), "{msg}");
        }
    }
    assert!(fake.calls().is_empty(), "calls: {:?}", fake.calls());
}

#[test]
fn user_may_call_the_user_routes() {
    let (server, fake) = start();
    let addr = server.local_addr();
    let mut n = 0;
    for (method, path, _) in routes().filter(|r| r.2 == Role::User) {
        let (p, body, want, what) = valid_request(method, path);
        let (status, v) = call(addr, USER, method, &p, body);
        assert_eq!(status, want, "{method} {path}: {v}");
        assert_eq!(fake.last().as_deref(), Some(what));
        n += 1;
    }
    // VMs (7), tasks, events, status.
    assert_eq!(n, 10);
}

#[test]
fn admin_may_call_every_route_and_each_makes_its_call() {
    let (server, fake) = start();
    let addr = server.local_addr();
    for (method, path, _) in routes() {
        let (p, body, want, what) = valid_request(method, path);
        let (status, v) = call(addr, ADMIN, method, &p, body);
        assert_eq!(status, want, "{method} {path}: {v}");
        assert_eq!(fake.last().as_deref(), Some(what), "{method} {path}");
        match want {
            204 => assert!(v.is_null()),
            _ => assert!(v.is_object() || v.is_array(), "{method} {path}: {v}"),
        }
    }
    assert_eq!(fake.calls().len(), routes().count());
}

#[test]
fn answers_carry_the_records() {
    let (server, _fake) = start();
    let a = server.local_addr();
    let (_, v) = call(a, USER, "POST", "/v1/vms/v1/start", "");
    assert_eq!(
        (v["desired"].as_str(), v["host"].as_str()),
        (Some("running"), Some("placed"))
    );
    let (_, v) = call(a, ADMIN, "GET", "/v1/hosts/h9", "");
    assert_eq!(
        (v["host"]["name"].as_str(), v["state"].as_str()),
        (Some("h9"), Some("up"))
    );
    let (_, v) = call(a, USER, "GET", "/v1/status", "");
    assert_eq!(
        (v["hosts"]["up"].as_u64(), v["self_defense"].as_bool()),
        (Some(2), Some(true))
    );
    let (_, v) = call(
        a,
        ADMIN,
        "PATCH",
        "/v1/ha",
        r#"{"defense_pct":10,"recover_pct":20}"#,
    );
    assert_eq!(
        (v["defense_pct"].as_u64(), v["recover_pct"].as_u64()),
        (Some(10), Some(20))
    );
}
