#![allow(clippy::unwrap_used)]
//! Input checks and error mapping over real TCP: every problem of a
//! request in one JSON 400, unknown fields and parameters refused, bad
//! names in paths, a body over 64 KiB is 413, unknown routes 404, wrong
//! methods 405; none of it reaches the engine. Engine errors map to their
//! statuses, with the same JSON shape.

mod common;

use common::*;
use nosplit_engine_api::types::EngineError;

/// (method, path, body, status, substrings the message must hold).
type Case<'a> = (&'a str, String, String, u16, &'a [&'a str]);

fn s(x: &str) -> String {
    x.to_string()
}

#[test]
fn bad_input_is_one_json_error_and_reaches_nothing() {
    let (server, fake) = start();
    let a = server.local_addr();
    let huge = format!(r#"{{"id":"v1","pad":"{}"}}"#, "x".repeat(70 * 1024));
    let cases: Vec<Case<'_>> = vec![
        ("POST", s("/v1/vms"), s("{\"id\":"), 400, &["invalid JSON"]),
        ("POST", s("/v1/vms"), s("[]"), 400, &["expected a JSON object"]),
        ("POST", s("/v1/vms"), s(""), 400, &["body: required"]),
        (
            "POST",
            s("/v1/vms"),
            s(r#"{"id":"v1","kind":"qemu","vcpus":1,"memory_mib":64,"domain":"d","colour":1}"#),
            400,
            &["colour: unknown field (expected: id, kind,"],
        ),
        (
            "POST",
            s("/v1/vms"),
            s(r#"{"id":"a/b","kind":"xen","vcpus":0,"memory_mib":8,"domain":"D","priority":101,"ha":1}"#),
            400,
            &["id:", "kind:", "vcpus:", "memory_mib:", "domain:", "ha:", "priority:"],
        ),
        ("POST", s("/v1/vms"), huge, 413, &["body"]),
        (
            "POST",
            s("/v1/hosts"),
            s(r#"{"name":"h 1","host_id":2001,"agent":"x","planes":[["mgmt","1.2.3.4"],["mgmt","nope"]],"cpus":0,"memory_mib":1}"#),
            400,
            &["name:", "host_id:", "agent:", "planes[1]: plane mgmt given twice", "planes[1]: \"nope\" is not an IP", "cpus:", "memory_mib:"],
        ),
        (
            "POST",
            s("/v1/domains"),
            s(r#"{"name":"9d","path":"rel","host_path":"/x\u0000y","io_timeout_ms":0,"extra":true}"#),
            400,
            &["name:", "path:", "host_path: contains a NUL", "io_timeout_ms:", "extra: unknown field"],
        ),
        (
            "PATCH",
            s("/v1/ha"),
            s(r#"{"global_rate":100001,"per_host_limit":-1,"defense_pct":60,"recover_pct":60,"grace_ms":"x"}"#),
            400,
            &["global_rate:", "per_host_limit:", "recover_pct: 60 must be above", "grace_ms:"],
        ),
        ("PATCH", s("/v1/ha"), s("{}"), 400, &["nothing to change"]),
        ("PUT", s("/v1/strategy"), s(r#"{"rows":[]}"#), 400, &["missing [0, 1, 2, 3, 4, 5, 6, 7]"]),
        ("PATCH", s("/v1/vms/v1"), s(r#"{"ha":true,"priority":200}"#), 400, &["priority:"]),
        ("PATCH", s("/v1/vms/v1"), s(r#"{"desired":"running"}"#), 400, &["desired: unknown field", "nothing to change"]),
        ("PUT", s("/v1/hosts/h1/maintenance"), s(r#"{"maintenance":"on"}"#), 400, &["maintenance: expected true or false"]),
        ("POST", s("/v1/vms/v1/start"), s(r#"{"host":"a/b","when":1}"#), 400, &["host:", "when: unknown field"]),
        ("POST", s("/v1/vms/v1/stop"), s(r#"{"force":true}"#), 400, &["force: unknown field"]),
        ("DELETE", s("/v1/vms/v1"), s(r#"{"force":true}"#), 400, &["force: unknown field"]),
        ("GET", s("/v1/vms/bad%20id"), s(""), 400, &["id:"]),
        ("GET", format!("/v1/vms/{}", "a".repeat(49)), s(""), 400, &["id:"]),
        ("GET", s("/v1/vms/%2E%2E"), s(""), 400, &["id:"]),
        ("GET", s("/v1/hosts/a%2Fb"), s(""), 400, &["name:"]),
        ("GET", format!("/v1/hosts/{}", "h".repeat(65)), s(""), 400, &["name:"]),
        ("DELETE", s("/v1/domains/Upper"), s(""), 400, &["name:"]),
        ("GET", s("/v1/tasks?vm=a%2Fb&limit=0&x=1"), s(""), 400, &["vm:", "limit:", "x: unknown query parameter"]),
        (
            "GET",
            s("/v1/events?after=x&kind=Bad&severity=fatal&limit=10001&wait_ms=30001&vm=a%20b&after=2"),
            s(""),
            400,
            &["after: \"x\"", "kind:", "severity:", "limit:", "wait_ms:", "vm:", "after: given twice"],
        ),
        ("GET", s("/v1/nothing"), s(""), 404, &["no route"]),
        ("DELETE", s("/v1/status"), s(""), 405, &["DELETE"]),
        ("PUT", s("/v1/vms/v1"), s("{}"), 405, &["PUT"]),
    ];
    for (method, path, body, want, needles) in &cases {
        let (status, v) = call(a, ADMIN, method, path, body);
        assert_eq!(status, *want, "{method} {path}: {v}");
        assert!(v["error"].is_string(), "{v}");
        let msg = v["message"].as_str().unwrap();
        for n in *needles {
            assert!(msg.contains(n), "{method} {path}: {msg:?} lacks {n:?}");
        }
        if *want == 400 {
            assert_eq!(v["error"], "invalid");
            // One problem per needle: all reported at once.
            assert!(msg.matches("; ").count() + 1 >= needles.len(), "{msg}");
        }
    }
    assert!(fake.calls().is_empty(), "calls: {:?}", fake.calls());
}

#[test]
fn engine_errors_map_to_statuses() {
    let (server, fake) = start();
    let a = server.local_addr();
    let cases = [
        (EngineError::Invalid("i".into()), 400, "invalid"),
        (EngineError::Forbidden("f".into()), 403, "forbidden"),
        (EngineError::NotFound("n".into()), 404, "not-found"),
        (EngineError::Conflict("c".into()), 409, "conflict"),
        (EngineError::Unavailable("u".into()), 503, "unavailable"),
        (EngineError::Internal("x".into()), 500, "internal"),
    ];
    for (err, want, kind) in cases {
        *fake.fail.lock().unwrap() = Some(err.clone());
        for (method, path) in [
            ("GET", "/v1/vms/v1"),
            ("DELETE", "/v1/hosts/h1"),
            ("POST", "/v1/vms/v1/stop"),
            ("GET", "/v1/events"),
            ("GET", "/v1/status"),
        ] {
            let (status, v) = call(a, ADMIN, method, path, "");
            assert_eq!(status, want, "{method} {path}");
            assert_eq!(v, serde_json::to_value(&err).unwrap());
            assert_eq!(v["error"], kind);
        }
    }
}

#[test]
fn a_body_at_the_limit_is_read_and_one_byte_more_is_413() {
    let (server, fake) = start();
    let a = server.local_addr();
    let base = r#"{"global_rate":20}"#;
    let at_limit = format!("{base}{}", " ".repeat(64 * 1024 - base.len()));
    let (status, v) = call(a, ADMIN, "PATCH", "/v1/ha", &at_limit);
    assert_eq!(status, 200, "{v}");
    let over = format!("{at_limit} ");
    let (status, v) = call(a, ADMIN, "PATCH", "/v1/ha", &over);
    assert_eq!((status, v["error"].as_str()), (413, Some("too-large")));
    assert_eq!(fake.calls().len(), 1);
}

#[test]
fn shutdown_stops_listening() {
    let (server, _fake) = start();
    let a = server.local_addr();
    assert_eq!(call(a, USER, "GET", "/v1/status", "").0, 200);
    server.shutdown().unwrap();
    assert!(std::net::TcpStream::connect(a).is_err());
}
