//! Unit tests of the nft ruleset text and its parsing.

use super::*;

const SAMPLE: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
 {"table": {"family": "inet", "name": "nosplit_lab", "handle": 2}},
 {"chain": {"family": "inet", "table": "nosplit_lab", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}},
 {"rule": {"family": "inet", "table": "nosplit_lab", "chain": "input", "handle": 3, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth-stor"}}, {"drop": null}]}},
 {"rule": {"family": "inet", "table": "nosplit_lab", "chain": "input", "handle": 4, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth-mgmt"}}, {"drop": null}]}},
 {"rule": {"family": "inet", "table": "nosplit_lab", "chain": "output", "handle": 5, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "eth-stor"}}, {"drop": null}]}},
 {"rule": {"family": "inet", "table": "nosplit_lab", "chain": "output", "handle": 6, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "eth-svc"}}, {"accept": null}]}},
 {"rule": {"family": "ip", "table": "other", "chain": "output", "handle": 7, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "eth-svc"}}, {"drop": null}]}}
]}"#;

#[test]
fn parses_drops_from_nft_json() {
    let v: Value = serde_json::from_str(SAMPLE).unwrap();
    assert_eq!(
        parse_drops(&v),
        [DropMode::In, DropMode::None, DropMode::Both]
    );
    let empty: Value = serde_json::from_str(r#"{"nftables": [{"metainfo": {}}]}"#).unwrap();
    assert_eq!(parse_drops(&empty), [DropMode::None; 3]);
    assert_eq!(parse_drops(&Value::Null), [DropMode::None; 3]);
}

#[test]
fn script_replaces_table_atomically() {
    let s = nft_script(&[DropMode::In, DropMode::Out, DropMode::Both]);
    assert!(s.starts_with("table inet nosplit_lab\ndelete table inet nosplit_lab\n"));
    assert!(s.contains("iifname \"eth-mgmt\" drop"));
    assert!(!s.contains("oifname \"eth-mgmt\""));
    assert!(s.contains("oifname \"eth-svc\" drop"));
    assert!(!s.contains("iifname \"eth-svc\""));
    assert!(s.contains("iifname \"eth-stor\" drop"));
    assert!(s.contains("oifname \"eth-stor\" drop"));
    let none = nft_script(&[DropMode::None; 3]);
    assert_eq!(
        none,
        "table inet nosplit_lab\ndelete table inet nosplit_lab\n"
    );
}

#[test]
fn drop_modes_parse_and_display() {
    for d in [DropMode::None, DropMode::Both, DropMode::In, DropMode::Out] {
        assert_eq!(d.to_string().parse::<DropMode>().unwrap(), d);
    }
    assert!("all".parse::<DropMode>().is_err());
}
