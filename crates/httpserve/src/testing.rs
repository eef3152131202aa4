//! Test support (feature `test-support`): a raw HTTP/1.1 client that sends
//! exactly the bytes a test gives (so tests can send broken or hostile
//! requests) and checks that no secret comes back. It panics on any
//! failure, as a test helper should.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

/// One HTTP/1.1 request: `head` (request line and any headers, each ending
/// in `\r\n`), then `Host`, `Connection: close`, a JSON `Content-Type` and
/// the `Content-Length` of `body`. Returns the status and the JSON body
/// (`Null` when empty). Panics if any of `secrets` is in the answer.
pub fn send(addr: SocketAddr, head: &str, body: &[u8], secrets: &[&str]) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).expect("connect to the test server");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("set a read timeout");
    let req = format!(
        "{head}Host: test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send the request head");
    let _ = s.write_all(body); // the server may answer (413) before reading it all
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8(raw).expect("a UTF-8 answer");
    for secret in secrets {
        assert!(!text.contains(secret), "a token leaked: {text}");
    }
    let (headers, payload) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status: u16 = headers
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let decoded = if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(payload)
    } else {
        payload.to_string()
    };
    let v = if decoded.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&decoded).expect("a JSON body")
    };
    (status, v)
}

/// Joins the chunks of a chunked body.
fn dechunk(mut payload: &str) -> String {
    let mut decoded = String::new();
    while let Some((len, rest)) = payload.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).expect("a chunk length");
        decoded.push_str(rest.get(..n).expect("a whole chunk"));
        payload = rest.get(n..).unwrap_or("").trim_start_matches("\r\n");
        if n == 0 {
            break;
        }
    }
    decoded
}

/// A request with `Authorization: Bearer <token>`; `token` counts as a
/// secret that must not come back.
pub fn call(addr: SocketAddr, token: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
    let head = format!("{method} {path} HTTP/1.1\r\nAuthorization: Bearer {token}\r\n");
    send(addr, &head, body.as_bytes(), &[token])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks() {
        assert_eq!(dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
    }
}
