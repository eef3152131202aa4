use super::*;

const GOOD: &str = r#"
name = "power-off"
hosts = 3
duration_s = 30
[[vm]]
name = "g1"
kind = "qemu"
host = 1
[[vm]]
name = "p"
kind = "process"
count = 3
[[step]]
at_s = 5
action = "storage"
host = 2
mode = "delay:200"
[[step]]
at_s = 2
action = "power-off"
host = 1
[[step]]
at_s = 9
action = "net"
host = "all"
plane = "mgmt"
fault = "drop-in"
[[step]]
at_s = 12
action = "heal"
[expect]
split_brain = false
"#;

#[test]
fn a_good_scenario_is_checked_and_expanded() {
    let s = parse(GOOD, "good.toml").unwrap();
    assert_eq!(s.hosts, 3);
    assert_eq!(s.io_timeout_ms, 1000);
    assert!(s.protection);
    let names: Vec<_> = s.vms.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["g1", "p-1", "p-2", "p-3"]);
    assert_eq!(s.steps.len(), 4);
    assert_eq!(s.steps[0].action, Action::PowerOff, "sorted by time");
    assert_eq!(
        s.steps[1].action,
        Action::Storage {
            mode: "delay 200".into()
        }
    );
    assert_eq!(s.steps[3].hosts, Hosts::All);
    assert_eq!(s.expect_split_brain, Some(false));
}

#[test]
fn every_problem_is_reported_at_once_with_its_field() {
    let bad = r#"
name = 7
hosts = 99
duration_s = 10
colour = "red"
[[vm]]
name = "bad name!"
kind = "docker"
[[vm]]
kind = "qemu"
name = "g"
count = 2
[[step]]
at_s = 20
action = "storage"
host = 1
mode = "slow"
plane = "mgmt"
[[step]]
action = "net"
host = 5
plane = "wan"
fault = "cut"
[[step]]
at_s = 1
action = "power-off"
[expect]
split_brain = "no"
"#;
    let e = parse(bad, "bad.toml").unwrap_err();
    let text = e.to_string();
    let fields: Vec<_> = e.problems.iter().map(|p| p.field.as_str()).collect();
    for want in [
        "name",
        "hosts",
        "colour",
        "vm[0].name",
        "vm[0].kind",
        "vm[1].count",
        "step[0].at_s",
        "step[0].mode",
        "step[0].plane",
        "step[1].at_s",
        "step[1].host",
        "step[1].plane",
        "step[1].fault",
        "step[2].host",
        "expect.split_brain",
    ] {
        assert!(fields.contains(&want), "{want} missing in:\n{text}");
    }
    assert!(text.starts_with("bad.toml: "), "{text}");
}

#[test]
fn missing_essentials_and_bad_toml_are_named() {
    let e = parse("hosts = 2\n", "x").unwrap_err();
    let fields: Vec<_> = e.problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["name", "duration_s", "vm"]);
    let e = parse("name = \n", "y").unwrap_err();
    assert!(e.to_string().contains("not valid TOML"), "{e}");
    let e = parse(
        "name='a'\nduration_s=1\n[[vm]]\nname='a'\nkind='process'\n[[vm]]\nname='a'\nkind='qemu'\n",
        "z",
    )
    .unwrap_err();
    assert!(e.to_string().contains("two VMs are named \"a\""), "{e}");
}

proptest::proptest! {
    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,300}") {
        let _ = parse(&s, "fuzz");
    }
}

#[test]
fn vm_ids_leave_room_for_their_instance_ids() {
    let doc = |name: &str, count: Option<u32>| {
        format!(
            "name='a'\nduration_s=1\n[[vm]]\nname='{name}'\nkind='process'\n{}",
            count.map(|c| format!("count={c}\n")).unwrap_or_default()
        )
    };
    // At the limit: the longest instance id the lab makes still fits.
    let at_limit = "v".repeat(MAX_VM_ID - 4);
    let s = parse(&doc(&at_limit, Some(500)), "ok").unwrap();
    let longest = &s.vms.last().unwrap().name;
    assert_eq!(longest.len(), MAX_VM_ID);
    let inst = format!("{longest}.{}.h{}", 99_999_999_999u64, 64);
    assert!(nosplit_heartbeat::record::valid_id(&inst), "{inst}");
    assert!(parse(&doc(&"v".repeat(MAX_VM_ID), None), "ok").is_ok());
    // One more character, alone or through the count suffix: refused.
    for (name, count) in [
        ("v".repeat(MAX_VM_ID + 1), None),
        ("v".repeat(MAX_VM_ID - 3), Some(500)),
        ("v".repeat(40), None),
    ] {
        let e = parse(&doc(&name, count), "long").unwrap_err();
        let p = e.problems.iter().find(|p| p.field == "vm[0].name");
        assert!(p.is_some(), "{e}");
        let text = e.to_string();
        assert!(text.contains("at most 32"), "{text}");
        assert!(text.contains("fit in 48"), "{text}");
    }
}
