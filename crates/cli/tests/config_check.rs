//! `nosplit config check` on the agent's and the engine's files: a good
//! file is `ok` (its kind told from its keys, or given), a bad one lists
//! every problem with exit code 2, and no secret is ever printed.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_nosplit");

fn secret(path: &Path) {
    std::fs::write(path, "S".repeat(40)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn check(args: &[&str]) -> (Output, String) {
    let o = Command::new(BIN)
        .args(["config", "check"])
        .args(args)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!all.contains("SSSS"), "a secret was printed: {all}");
    (o, all)
}

#[test]
fn agent_and_engine_configs_are_checked_with_every_problem() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().display().to_string();
    secret(&d.path().join("t"));
    let agent = d.path().join("agent.toml");
    std::fs::write(
        &agent,
        format!("host_name = \"h1\"\nhost_id = 1\nlisten = \"127.0.0.1:7410\"\ntoken_file = \"{dir}/t\"\nbin = \"/bin/true\"\n[engine]\nurl = \"http://127.0.0.1:7400\"\ncpus = 4\n"),
    )
    .unwrap();
    let (o, out) = check(&[agent.to_str().unwrap()]);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("ok: agent h1") && out.contains("registers with http://127.0.0.1:7400"),
        "{out}"
    );
    let (o, out) = check(&["--json", agent.to_str().unwrap()]);
    assert!(o.status.success(), "{out}");
    let v: serde_json::Value = serde_json::from_str(&String::from_utf8_lossy(&o.stdout)).unwrap();
    assert_eq!(v["engine"]["cpus"], 4);

    let engine = d.path().join("engine.toml");
    std::fs::write(
        &engine,
        format!("listen = \"127.0.0.1:7400\"\nstore = \"{dir}/e.redb\"\nagent_token_dir = \"{dir}\"\n[[token]]\nrole = \"admin\"\nfile = \"{dir}/t\"\n"),
    )
    .unwrap();
    let (o, out) = check(&[engine.to_str().unwrap()]);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("ok: engine API on 127.0.0.1:7400"), "{out}");

    // Broken: every problem at once, exit 2, each naming its field.
    std::fs::write(
        &agent,
        "host_name = \"bad name\"\nhost_id = 0\nlisten = \"x\"\ntoken_file = \"rel\"\ncolour = 1\n[engine]\nurl = \"ftp://x\"\ncpus = 0\nspeed = 1\n",
    )
    .unwrap();
    let (o, out) = check(&[agent.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{out}");
    for want in [
        "host_name",
        "host_id",
        "listen",
        "token_file",
        "colour",
        "engine.url",
        "engine.cpus",
        "engine.speed",
    ] {
        assert!(out.contains(want), "{want} missing: {out}");
    }
    std::fs::write(&engine, "store = \"rel\"\nagent_token_file = \"/x\"\n").unwrap();
    let (o, out) = check(&["--kind", "engine", engine.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{out}");
    for want in [
        "listen",
        "store",
        "agent_token_dir",
        "agent_token_file",
        "token",
    ] {
        assert!(out.contains(want), "{want} missing: {out}");
    }
    // An unknown kind is a usage error.
    let (o, _) = check(&["--kind", "nfs", engine.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
}
