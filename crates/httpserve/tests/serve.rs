#![allow(clippy::unwrap_used)]
//! `spawn_server` over real TCP on 127.0.0.1: a route answers, the JSON
//! 404/405 fallbacks answer, a busy port is a `Bind` error, and after
//! `shutdown` the port no longer accepts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use axum::routing::get;
use axum::Router;
use nosplit_httpserve::server::with_fallbacks;
use nosplit_httpserve::{spawn_server, ServeError};

fn get_raw(addr: SocketAddr, method: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn serves_falls_back_and_shuts_down() {
    let router = with_fallbacks(Router::new().route("/hi", get(|| async { "hello" })));
    let server = spawn_server("127.0.0.1:0".parse().unwrap(), "test-http", router).unwrap();
    let addr = server.local_addr();
    let ok = get_raw(addr, "GET", "/hi");
    assert!(
        ok.starts_with("HTTP/1.1 200") && ok.ends_with("hello"),
        "{ok}"
    );
    let missing = get_raw(addr, "GET", "/nowhere");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    assert!(missing.contains(r#""error":"not-found""#), "{missing}");
    let wrong = get_raw(addr, "POST", "/hi");
    assert!(wrong.starts_with("HTTP/1.1 405"), "{wrong}");
    assert!(wrong.contains(r#""error":"method-not-allowed""#), "{wrong}");

    let busy = spawn_server(addr, "test-http2", Router::new()).unwrap_err();
    assert!(matches!(busy, ServeError::Bind { .. }), "{busy}");

    server.shutdown().unwrap();
    assert!(TcpStream::connect(addr).is_err());
}
