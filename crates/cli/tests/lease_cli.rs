//! `nosplit lease ...` end to end on real files: the happy path, and bad
//! input that must produce a clear error and the documented exit code
//! without changing anything on disk.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::Path;
use std::process::{Command, Output};

fn nosplit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nosplit"))
        .args(args)
        .output()
        .expect("run nosplit")
}

fn ok(args: &[&str]) -> String {
    let o = nosplit(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs a failing command; returns (exit code, stderr).
fn fails(args: &[&str]) -> (i32, String) {
    let o = nosplit(args);
    assert!(!o.status.success(), "{args:?} unexpectedly succeeded");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A directory on a real disk (O_DIRECT is refused by some tmpfs setups).
fn dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("nosplit-cli")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

fn p(d: &Path, name: &str) -> String {
    d.join(name).display().to_string()
}

fn init_ls(path: &str) {
    ok(&[
        "lease",
        "init",
        "lockspace",
        path,
        "--name",
        "ls1",
        "--io-timeout-ms",
        "100",
        "--max-hosts",
        "8",
        "--create",
    ]);
}

#[test]
fn lockspace_resource_join_acquire_release() {
    let d = dir();
    let (ls, res) = (p(d.path(), "ls"), p(d.path(), "res"));
    init_ls(&ls);
    ok(&[
        "lease",
        "init",
        "resource",
        &res,
        "--lockspace",
        "ls1",
        "--name",
        "vm1",
        "--max-hosts",
        "8",
        "--create",
    ]);
    let out = ok(&[
        "lease",
        "join",
        &ls,
        "--lockspace",
        "ls1",
        "--host-id",
        "1",
        "--host-name",
        "a",
        "--no-leave",
    ]);
    assert!(out.contains("generation 1"), "{out}");
    let acq = [
        "lease",
        "acquire",
        "--lockspace-path",
        &ls,
        "--resource-path",
        &res,
        "--resource",
        "vm1",
        "--host-id",
        "1",
        "--generation",
        "1",
        "--json",
    ];
    let v: serde_json::Value = serde_json::from_str(&ok(&acq)).unwrap();
    assert_eq!(v["lver"], 1);
    let dump: serde_json::Value =
        serde_json::from_str(&ok(&["lease", "dump", "resource", &res, "--json"])).unwrap();
    assert_eq!(dump["leader"]["owner"]["host_id"], 1);
    let table = ok(&["lease", "dump", "lockspace", &ls]);
    assert!(
        table.contains("HOST") && table.contains("in use"),
        "{table}"
    );
    // Host 2 joins and finds the lease busy: exit code 3.
    ok(&[
        "lease",
        "join",
        &ls,
        "--lockspace",
        "ls1",
        "--host-id",
        "2",
        "--host-name",
        "b",
        "--no-leave",
    ]);
    let acq2 = [
        "lease",
        "acquire",
        "--lockspace-path",
        &ls,
        "--resource-path",
        &res,
        "--resource",
        "vm1",
        "--host-id",
        "2",
        "--generation",
        "1",
    ];
    let (code, err) = fails(&acq2);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("held by host 1 gen 1"), "{err}");
    // Release by the owner; then host 2 gets it.
    ok(&[
        "lease",
        "release",
        "--lockspace-path",
        &ls,
        "--resource-path",
        &res,
        "--resource",
        "vm1",
        "--host-id",
        "1",
        "--generation",
        "1",
    ]);
    assert!(ok(&acq2).contains("lver 2"));
    // Acting as an incarnation that never joined is refused.
    let (code, err) = fails(&[
        "lease",
        "acquire",
        "--lockspace-path",
        &ls,
        "--resource-path",
        &res,
        "--resource",
        "vm1",
        "--host-id",
        "3",
        "--generation",
        "1",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("has not joined"), "{err}");
}

#[test]
fn bad_paths_sizes_and_arguments_are_named() {
    let d = dir();
    let missing = p(d.path(), "missing");
    let (code, err) = fails(&["lease", "init", "lockspace", &missing, "--name", "ls1"]);
    assert_eq!(code, 5);
    assert!(err.contains(&missing), "{err}");
    let dirpath = d.path().display().to_string();
    let (_, err) = fails(&["lease", "dump", "lockspace", &dirpath]);
    assert!(err.contains("not a regular file or block device"), "{err}");
    // Too small a file is refused before anything is written.
    let small = p(d.path(), "small");
    std::fs::write(&small, vec![0u8; 4096]).unwrap();
    let (_, err) = fails(&["lease", "init", "lockspace", &small, "--name", "ls1"]);
    assert!(
        err.contains("needs bytes 0..1048576") && err.contains("4096 bytes"),
        "{err}"
    );
    assert_eq!(std::fs::read(&small).unwrap(), vec![0u8; 4096]);
    // Usage errors: exit 2, with the problem named.
    let (code, err) = fails(&["lease", "init", "lockspace", &small, "--name", "bad name"]);
    assert_eq!(code, 2);
    assert!(err.contains("' '"), "{err}");
    let (code, err) = fails(&["lease", "dump", "lockspace", &format!("{small}:12x")]);
    assert_eq!(code, 2);
    assert!(err.contains("PATH:OFFSET"), "{err}");
    let (_, err) = fails(&[
        "lease",
        "init",
        "lockspace",
        &small,
        "--name",
        "x",
        "--max-hosts",
        "5000",
    ]);
    assert!(err.contains("max hosts 5000"), "{err}");
    let (_, err) = fails(&[
        "lease",
        "init",
        "lockspace",
        &small,
        "--name",
        "x",
        "--io-timeout-ms",
        "5",
    ]);
    assert!(err.contains("io_timeout"), "{err}");
    let (_, err) = fails(&[
        "lease",
        "init",
        "lockspace",
        &format!("{small}:100"),
        "--name",
        "x",
        "--create",
    ]);
    assert!(
        err.contains("not a multiple of the 512-byte sector size"),
        "{err}"
    );
}

#[test]
fn sector_mismatch_and_corruption_are_reported() {
    let d = dir();
    let ls = p(d.path(), "ls4k");
    ok(&[
        "lease",
        "init",
        "lockspace",
        &ls,
        "--name",
        "ls1",
        "--sector-size",
        "4096",
        "--max-hosts",
        "8",
        "--create",
    ]);
    let (code, err) = fails(&["lease", "dump", "lockspace", &ls]);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("4096-byte sectors") && err.contains("512-byte"),
        "{err}"
    );
    ok(&["lease", "dump", "lockspace", &ls, "--sector-size", "4096"]);
    // Flip a bit in the header: checksum error, exit 4.
    let mut bytes = std::fs::read(&ls).unwrap();
    bytes[50] ^= 1;
    std::fs::write(&ls, &bytes).unwrap();
    let (code, err) = fails(&["lease", "dump", "lockspace", &ls, "--sector-size", "4096"]);
    assert_eq!(code, 4);
    assert!(err.contains("checksum mismatch"), "{err}");
    // A lockspace is not a resource.
    let ls2 = p(d.path(), "ls2");
    init_ls(&ls2);
    let (code, err) = fails(&["lease", "dump", "resource", &ls2]);
    assert_eq!(code, 4);
    assert!(err.contains("bad magic"), "{err}");
}

#[test]
fn index_add_lookup_remove_rebuild() {
    let d = dir();
    let idx = p(d.path(), "xleases");
    ok(&[
        "lease",
        "init",
        "index",
        &idx,
        "--lockspace",
        "ls1",
        "--slots",
        "4",
        "--max-hosts",
        "8",
        "--create",
    ]);
    assert!(ok(&["lease", "index", "add", &idx, "vm-a"]).contains("slot 0"));
    assert!(ok(&["lease", "index", "add", &idx, "vm-b"]).contains("slot 1"));
    let (_, err) = fails(&["lease", "index", "add", &idx, "vm-a"]);
    assert!(err.contains("already exists in slot 0"), "{err}");
    let out = ok(&["lease", "index", "lookup", &idx, "vm-b"]);
    assert!(out.contains("offset"), "{out}");
    let list: serde_json::Value =
        serde_json::from_str(&ok(&["lease", "index", "list", &idx, "--json"])).unwrap();
    assert_eq!(list["leases"].as_array().unwrap().len(), 2);
    ok(&["lease", "index", "remove", &idx, "vm-a"]);
    let (_, err) = fails(&["lease", "index", "lookup", &idx, "vm-a"]);
    assert!(err.contains("not in the index"), "{err}");
    // Simulate a crash mid-add: entry 2 marked updating by hand is refused
    // until a rebuild, which restores a consistent table from the slots.
    let mut bytes = std::fs::read(&idx).unwrap();
    let entry = 512 + 64; // entry 1 (vm-b)
    bytes[entry] = 2; // state: updating
    let crc = crc32(&bytes[entry..entry + 60]);
    bytes[entry + 60..entry + 64].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&idx, &bytes).unwrap();
    let (code, err) = fails(&["lease", "index", "add", &idx, "vm-c"]);
    assert_eq!(code, 4);
    assert!(err.contains("needs a rebuild"), "{err}");
    assert!(ok(&["lease", "index", "rebuild", &idx]).contains("1 leases"));
    ok(&["lease", "index", "lookup", &idx, "vm-b"]);
    ok(&["lease", "index", "add", &idx, "vm-c"]);
    // 4096-byte sectors: every index command takes --sector-size.
    let idx4 = p(d.path(), "xleases4k");
    ok(&[
        "lease",
        "init",
        "index",
        &idx4,
        "--lockspace",
        "ls1",
        "--slots",
        "2",
        "--max-hosts",
        "8",
        "--sector-size",
        "4096",
        "--create",
    ]);
    ok(&[
        "lease",
        "index",
        "add",
        &idx4,
        "vm-a",
        "--sector-size",
        "4096",
    ]);
    ok(&[
        "lease",
        "index",
        "lookup",
        &idx4,
        "vm-a",
        "--sector-size",
        "4096",
    ]);
    let (code, err) = fails(&["lease", "index", "lookup", &idx4, "vm-a"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("4096-byte sectors"), "{err}");
}

fn crc32(b: &[u8]) -> u32 {
    // crc32c (Castagnoli), bitwise: test-only, independent of the crate.
    let mut crc = !0u32;
    for &x in b {
        crc ^= u32::from(x);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn observe_reports_live_and_dead_hosts() {
    let d = dir();
    let ls = p(d.path(), "ls");
    init_ls(&ls); // io_timeout 100 ms: host dead after 1.454 s
    ok(&[
        "lease",
        "join",
        &ls,
        "--lockspace",
        "ls1",
        "--host-id",
        "1",
        "--host-name",
        "a",
        "--no-leave",
    ]);
    let mut holder = Command::new(env!("CARGO_BIN_EXE_nosplit"))
        .args([
            "lease",
            "join",
            &ls,
            "--lockspace",
            "ls1",
            "--host-id",
            "2",
            "--host-name",
            "b",
            "--hold",
            "4",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500)); // host 2 joins (2 x 100 ms wait)
    let out = ok(&[
        "lease",
        "dump",
        "lockspace",
        &ls,
        "--observe",
        "2",
        "--json",
    ]);
    holder.wait().unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let state = |h: u64| {
        v["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["host_id"] == h)
            .map(|x| x["state"].clone())
    };
    assert_eq!(state(1), Some("DEAD".into()), "{out}");
    assert_eq!(state(2), Some("LIVE".into()), "{out}");
}
