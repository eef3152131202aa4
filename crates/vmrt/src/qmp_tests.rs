use super::*;
use std::io::{BufRead, BufReader};

/// A scripted fake QEMU on the other end of a socket pair.
fn fake_server(
    script: impl FnOnce(&mut BufReader<UnixStream>, &mut UnixStream) + Send + 'static,
) -> UnixStream {
    let (a, b) = UnixStream::pair().unwrap();
    std::thread::spawn(move || {
        let mut w = b.try_clone().unwrap();
        let mut r = BufReader::new(b);
        w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n")
            .unwrap();
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["execute"], "qmp_capabilities");
        let reply = json!({"return": {}, "id": v["id"]}).to_string() + "\r\n";
        w.write_all(reply.as_bytes()).unwrap();
        script(&mut r, &mut w);
    });
    a
}

fn read_req(r: &mut BufReader<UnixStream>) -> Value {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap()
}

#[test]
fn classify_messages() {
    let m =
        classify(json!({"event": "STOP", "timestamp": {"seconds": 2, "microseconds": 5}})).unwrap();
    assert_eq!(
        m,
        Message::Event(QmpEvent {
            name: "STOP".into(),
            data: Value::Null,
            timestamp_us: Some(2_000_005)
        })
    );
    let m = classify(json!({"error": {"class": "GenericError", "desc": "no"}, "id": 3})).unwrap();
    assert_eq!(
        m,
        Message::Error {
            id: Some(json!(3)),
            class: "GenericError".into(),
            desc: "no".into()
        }
    );
    assert!(classify(json!([1])).is_err());
    assert!(classify(json!({"what": 1})).is_err());
}

#[test]
fn execute_collects_events_and_skips_stale_replies() {
    let s = fake_server(|r, w| {
        let v = read_req(r);
        assert_eq!(v["execute"], "query-status");
        // a stale reply, an event split across writes, then the real reply
        w.write_all(b"{\"return\": {}, \"id\": 999}\r\n{\"event\": \"RES")
            .unwrap();
        w.flush().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        w.write_all(b"UME\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 0}}\r\n")
            .unwrap();
        let reply = json!({"return": {"status": "running", "running": true}, "id": v["id"]});
        w.write_all((reply.to_string() + "\r\n").as_bytes())
            .unwrap();
        let v = read_req(r);
        let err = json!({"error": {"class": "GenericError", "desc": "bad"}, "id": v["id"]});
        w.write_all((err.to_string() + "\r\n").as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(200));
    });
    let mut c = QmpClient::from_stream(s, Duration::from_secs(5)).unwrap();
    let st = c.query_status().unwrap();
    assert_eq!(
        st,
        QmpStatus {
            status: "running".into(),
            running: true
        }
    );
    let ev = c.take_events();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].name, "RESUME");
    let e = c.execute("stop", None).unwrap_err();
    assert!(
        matches!(e, QmpError::Command { ref class, .. } if class == "GenericError"),
        "{e}"
    );
}

#[test]
fn timeout_then_closed() {
    let s = fake_server(|r, _w| {
        let _ = read_req(r); // never answer, then hang up
        std::thread::sleep(Duration::from_millis(300));
    });
    let mut c = QmpClient::from_stream(s, Duration::from_secs(5)).unwrap();
    let e = c
        .execute_timeout("cont", None, Duration::from_millis(100))
        .unwrap_err();
    assert!(matches!(e, QmpError::Timeout(_)), "{e}");
    std::thread::sleep(Duration::from_millis(400));
    let e = c.poll_events().unwrap_err();
    assert!(matches!(e, QmpError::Closed), "{e}");
}
