#![allow(clippy::unwrap_used)]
//! `openapi.yaml` documents exactly the routes the server serves, each
//! with the role (`x-nosplit-role`) the server requires.

use nosplit_engine_api::server::routes;

#[test]
fn openapi_lists_exactly_the_served_routes_and_roles() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();
    let mut documented: Vec<(String, String, String)> = Vec::new();
    let mut in_paths = false;
    let mut path = String::new();
    for line in text.lines() {
        if !line.starts_with(' ') {
            in_paths = line == "paths:";
        } else if in_paths && line.starts_with("  /") {
            path = line.trim().trim_end_matches(':').to_string();
        } else if in_paths && line.starts_with("    ") && !line.starts_with("     ") {
            let key = line.trim().trim_end_matches(':');
            assert!(
                ["get", "post", "put", "delete", "patch"].contains(&key),
                "unexpected key {key:?} under {path}"
            );
            documented.push((key.to_uppercase(), path.clone(), String::new()));
        } else if in_paths && line.starts_with("      x-nosplit-role:") {
            let role = line.split(':').nth(1).unwrap().trim().to_string();
            let last = documented.last_mut().unwrap();
            assert!(last.2.is_empty(), "two roles for {last:?}");
            last.2 = role;
        }
    }
    let mut served: Vec<(String, String, String)> = routes()
        .map(|(m, p, r)| (m.to_string(), p.to_string(), r.to_string()))
        .collect();
    documented.sort();
    served.sort();
    assert_eq!(documented, served);
}
