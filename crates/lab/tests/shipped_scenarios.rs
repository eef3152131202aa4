//! Every scenario shipped in `scenarios/` parses and passes every check, so
//! a broken file is caught here and not at `nosplit lab run` time.

use std::path::{Path, PathBuf};

use nosplit_lab::scenario;

fn shipped() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
                .path()
        })
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_scenario_is_valid() {
    let files = shipped();
    // Not vacuous: the directory holds the scenarios docs/lab.md lists.
    assert!(
        files.len() >= 14,
        "only {} scenarios: {files:?}",
        files.len()
    );
    let mut broken = Vec::new();
    for f in &files {
        match scenario::parse_file(f) {
            Ok(sc) => {
                assert!(!sc.vms.is_empty(), "{}", f.display());
                assert!(
                    sc.expect_split_brain.is_some(),
                    "{}: every shipped scenario states its expectation",
                    f.display()
                );
            }
            Err(e) => broken.push(e.to_string()),
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn the_check_catches_a_broken_file() {
    // The same check on a copy of a shipped file with the old mistake (a
    // VM named with spaces) fails and names the field.
    let f = shipped()
        .into_iter()
        .find(|p| p.ends_with("storage-outage-hang.toml"))
        .expect("storage-outage-hang.toml is shipped");
    let text = std::fs::read_to_string(&f).expect("readable");
    let bad = text.replacen("name = \"p\"", "name = \"a name with spaces\"", 1);
    assert_ne!(bad, text);
    let e = scenario::parse(&bad, "copy").expect_err("refused");
    assert!(e.problems.iter().any(|p| p.field == "vm[0].name"), "{e}");
}
