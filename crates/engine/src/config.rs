//! Configuration of `nosplit engine` (TOML), checked into [`EngineConfig`];
//! every problem is reported at once, each naming its field; unknown
//! fields are refused.
//!
//! ```toml
//! listen = "127.0.0.1:7400"                 # REST API; required
//! store = "/var/lib/nosplit/engine.redb"    # embedded store; required, absolute
//! agent_token_dir = "/etc/nosplit/agents"  # per-host agent tokens, <host>.token; required
//! plane_timeout_ms = 1500                   # a plane is down after this long without a beat
//!
//! [[token]]                                  # at least one admin
//! role = "admin"                             # "admin" | "user"
//! file = "/etc/nosplit/admin.token"          # mode 0600 or stricter
//!
//! [[heartbeat]]                              # where agents' heartbeats arrive, per plane
//! plane = "mgmt"                             # "mgmt" | "svc" | "stor"
//! listen = "10.77.1.1:7411"
//! ```

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nosplit_engine_core::model::Plane;
use nosplit_tomlcheck::{Fields, Problem};

/// A token role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// VMs only.
    User,
}

/// A checked configuration. Secrets are kept out of `Debug`.
#[derive(Clone)]
pub struct EngineConfig {
    /// REST API address.
    pub listen: SocketAddr,
    /// Store file.
    pub store: PathBuf,
    /// The per-host agent tokens (read when needed).
    pub agent_tokens: crate::agent_tokens::AgentTokens,
    /// API tokens and their roles.
    pub tokens: Vec<(Role, String)>,
    /// Heartbeat listeners.
    pub heartbeats: Vec<(Plane, SocketAddr)>,
    /// Plane timeout.
    pub plane_timeout: Duration,
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("listen", &self.listen)
            .field("store", &self.store)
            .field("agent_tokens", &self.agent_tokens.dir())
            .field(
                "tokens",
                &self.tokens.iter().map(|(r, _)| r).collect::<Vec<_>>(),
            )
            .field("heartbeats", &self.heartbeats)
            .field("plane_timeout", &self.plane_timeout)
            .finish()
    }
}

/// Every problem of a configuration file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors {
    /// The file.
    pub source_name: String,
    /// The problems.
    pub problems: Vec<Problem>,
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} problem(s):",
            self.source_name,
            self.problems.len()
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// Reads a secret file: mode 0600 or stricter, at least 32 characters.
fn secret(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{}: readable by group or others (mode {:o}); use 0600",
            path.display(),
            meta.permissions().mode() & 0o777
        ));
    }
    let t = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let t = t.trim().to_string();
    if t.len() < 32 || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{}: a token is at least 32 printable characters without spaces",
            path.display()
        ));
    }
    Ok(t)
}

/// Checks the agent token directory: a directory others cannot write to
/// (or a planted token file would open a host's agent to them).
fn private_dir(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_dir() {
        return Err(format!("{}: not a directory", path.display()));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(format!(
            "{}: group or others may write to it (mode {:o}); use 0700",
            path.display(),
            meta.permissions().mode() & 0o777
        ));
    }
    Ok(())
}

/// Reads and checks a configuration file.
pub fn load(path: &Path) -> Result<EngineConfig, ConfigErrors> {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(t) => parse(&t, &name),
        Err(e) => Err(ConfigErrors {
            source_name: name,
            problems: vec![Problem {
                field: String::new(),
                message: format!("cannot read the file: {e}"),
            }],
        }),
    }
}

/// Checks a configuration's text.
pub fn parse(text: &str, source_name: &str) -> Result<EngineConfig, ConfigErrors> {
    let mut problems = Vec::new();
    let err = |problems| ConfigErrors {
        source_name: source_name.into(),
        problems,
    };
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            problems.push(Problem {
                field: String::new(),
                message: format!("not valid TOML: {}", e.message()),
            });
            return Err(err(problems));
        }
    };
    let mut f = Fields::new(&table, String::new(), &mut problems);
    let addr = |f: &mut Fields<'_, '_>, key: &'static str| -> Option<SocketAddr> {
        let s = f.str(key)?;
        match s.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                f.problem(key, format!("{s:?} is not an address:port"));
                None
            }
        }
    };
    let abs = |f: &mut Fields<'_, '_>, key: &'static str| -> Option<PathBuf> {
        let s = f.str(key)?;
        let p = PathBuf::from(&s);
        if p.is_absolute() && !s.contains('\0') {
            Some(p)
        } else {
            f.problem(key, format!("{s:?}: an absolute path"));
            None
        }
    };
    let listen = addr(&mut f, "listen");
    let store = abs(&mut f, "store");
    let agent_token_dir = abs(&mut f, "agent_token_dir");
    let plane_timeout = f.int("plane_timeout_ms", 100, 60_000).unwrap_or(1500);
    let token_tables = f.tables("token");
    let beat_tables = f.tables("heartbeat");
    for (key, v) in [
        ("listen", listen.is_some()),
        ("store", store.is_some()),
        ("agent_token_dir", agent_token_dir.is_some()),
    ] {
        if !v && !table.contains_key(key) {
            f.problem(key, "required");
        }
    }
    if f.str("agent_token_file").is_some() {
        f.problem(
            "agent_token_file",
            "replaced by agent_token_dir: one token per host, in <dir>/<host>.token",
        );
    }
    let agent_tokens = agent_token_dir.and_then(|d| match private_dir(&d) {
        Ok(()) => Some(crate::agent_tokens::AgentTokens::new(d)),
        Err(m) => {
            f.problem("agent_token_dir", m);
            None
        }
    });
    f.finish();
    let mut tokens = Vec::new();
    for (i, t) in token_tables.into_iter().enumerate() {
        let mut tf = Fields::new(t, format!("token[{i}]"), &mut problems);
        let role = match tf.str("role").as_deref() {
            Some("admin") => Some(Role::Admin),
            Some("user") => Some(Role::User),
            Some(r) => {
                tf.problem("role", format!("{r:?}: \"admin\" or \"user\""));
                None
            }
            None => {
                tf.problem("role", "required: \"admin\" or \"user\"");
                None
            }
        };
        let file = abs(&mut tf, "file");
        if file.is_none() && !t.contains_key("file") {
            tf.problem("file", "required");
        }
        let secret = file.as_ref().and_then(|p| match secret(p) {
            Ok(s) => Some(s),
            Err(m) => {
                tf.problem("file", m);
                None
            }
        });
        tf.finish();
        if let (Some(r), Some(s)) = (role, secret) {
            tokens.push((r, s));
        }
    }
    if !tokens.iter().any(|(r, _)| *r == Role::Admin) {
        problems.push(Problem {
            field: "token".into(),
            message: "at least one [[token]] with role = \"admin\" is required".into(),
        });
    }
    let mut heartbeats = Vec::new();
    for (i, t) in beat_tables.into_iter().enumerate() {
        let mut hf = Fields::new(t, format!("heartbeat[{i}]"), &mut problems);
        let plane = match hf.str("plane").as_deref() {
            Some("mgmt") => Some(Plane::Mgmt),
            Some("svc") => Some(Plane::Svc),
            Some("stor") => Some(Plane::Stor),
            other => {
                hf.problem("plane", format!("{other:?}: \"mgmt\", \"svc\" or \"stor\""));
                None
            }
        };
        let l = addr(&mut hf, "listen");
        if l.is_none() && !t.contains_key("listen") {
            hf.problem("listen", "required");
        }
        hf.finish();
        if let (Some(p), Some(l)) = (plane, l) {
            heartbeats.push((p, l));
        }
    }
    match (listen, store, agent_tokens) {
        (Some(listen), Some(store), Some(agent_tokens)) if problems.is_empty() => {
            Ok(EngineConfig {
                listen,
                store,
                agent_tokens,
                tokens,
                heartbeats,
                plane_timeout: Duration::from_millis(plane_timeout),
            })
        }
        _ => Err(err(problems)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tok(dir: &Path, name: &str, mode: u32) -> String {
        let p = dir.join(name);
        std::fs::write(&p, "x".repeat(40)).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p.display().to_string()
    }

    #[test]
    fn a_good_config_and_every_problem_at_once() {
        let d = tempfile::tempdir().unwrap();
        let (a, u, bad) = (
            tok(d.path(), "a", 0o600),
            tok(d.path(), "u", 0o600),
            tok(d.path(), "b", 0o644),
        );
        let dir = d.path().display();
        let good = format!("listen = \"127.0.0.1:7400\"\nstore = \"/tmp/e.redb\"\nagent_token_dir = \"{dir}\"\n[[token]]\nrole = \"admin\"\nfile = \"{a}\"\n[[token]]\nrole = \"user\"\nfile = \"{u}\"\n[[heartbeat]]\nplane = \"mgmt\"\nlisten = \"127.0.0.1:7411\"\n");
        let c = parse(&good, "g").unwrap();
        assert_eq!(c.agent_tokens.dir(), d.path());
        assert_eq!(c.tokens.len(), 2);
        assert!(
            !format!("{c:?}").contains("xxxx"),
            "secrets stay out of Debug"
        );
        let badcfg = format!("listen = \"nowhere\"\nstore = \"rel\"\nagent_token_dir = \"{bad}\"\nagent_token_file = \"{a}\"\ncolour = 1\n[[token]]\nrole = \"root\"\nfile = \"{a}\"\n[[heartbeat]]\nplane = \"wan\"\n");
        let e = parse(&badcfg, "b").unwrap_err();
        let fields: Vec<&str> = e.problems.iter().map(|p| p.field.as_str()).collect();
        for want in [
            "listen",
            "store",
            "agent_token_dir",
            "agent_token_file",
            "colour",
            "token[0].role",
            "heartbeat[0].plane",
            "heartbeat[0].listen",
            "token",
        ] {
            assert!(fields.contains(&want), "{want}: {e}");
        }
    }
}
