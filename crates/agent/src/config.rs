//! Configuration of `nosplit agent`: [`parse`] (or [`load`]) reads the TOML
//! file, checks every field and returns either a checked [`AgentConfig`] or
//! [`ConfigErrors`] listing *every* problem, each naming its field
//! (`plane[1].address`); unknown fields are rejected, all of them.
//!
//! ```toml
//! host_name = "hostA"              # required, [A-Za-z0-9._-]{1,64}
//! host_id = 1                      # required, 1..=2000 (the lockspace host id)
//! listen = "10.77.1.11:7410"       # required, where the HTTP API listens
//! token_file = "/etc/nosplit/agent.token"  # required, absolute; mode 0600 or stricter
//! leased_socket = "/run/nosplit/leased.sock"  # default shown
//! run_dir = "/run/nosplit/agent"   # default shown: VM run dirs, agent state
//! bin = "/usr/bin/nosplit"         # default: the running executable
//! guest_cache = "/var/cache/nosplit/guest"  # default shown
//! allow_unleased = false           # default false; lab control runs only
//! heartbeat_interval_ms = 500      # default 500, 50..=10000
//!
//! [[plane]]                        # zero to three
//! name = "mgmt"                    # "mgmt" | "svc" | "stor", unique
//! address = "10.77.1.11"           # this host's IPv4 on it (heartbeat source)
//! engine = "10.77.1.1:7400"        # where heartbeats go
//!
//! [engine]                         # optional: register with the engine
//! url = "http://10.77.1.1:7400"    # its REST API (the token is this host's own)
//! cpus = 8                         # capacity offered; default: this host's CPUs
//! memory_mib = 16384               # default: this host's memory
//! ```
//!
//! The token file is read at load: its content, trailing whitespace
//! trimmed, must be a valid [`Token`]; a file that group or others may read
//! (`mode & 0o077 != 0`) is refused. The token itself never appears in a
//! problem. A problem with the file as a whole has an empty field.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::{Table, Value};

use crate::http::Token;

/// Default [`AgentConfig::leased_socket`].
pub const DEFAULT_LEASED_SOCKET: &str = "/run/nosplit/leased.sock";
/// Default [`AgentConfig::run_dir`].
pub const DEFAULT_RUN_DIR: &str = "/run/nosplit/agent";
/// Default [`AgentConfig::guest_cache`].
pub const DEFAULT_GUEST_CACHE: &str = "/var/cache/nosplit/guest";
/// Default heartbeat interval, ms.
pub const DEFAULT_HEARTBEAT_MS: u64 = 500;
/// Largest host id.
pub const MAX_HOST_ID: u64 = 2000;

/// A checked agent configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AgentConfig {
    /// This host's name.
    pub host_name: String,
    /// This host's id in the lockspaces, 1..=2000.
    pub host_id: u32,
    /// Where the HTTP API listens.
    pub listen: SocketAddr,
    /// The file the token was read from.
    pub token_file: PathBuf,
    /// The bearer token (never serialized, never printed).
    #[serde(skip)]
    pub token: Token,
    /// `leased`'s Unix socket.
    pub leased_socket: PathBuf,
    /// VM run directories and the agent's state.
    pub run_dir: PathBuf,
    /// The nosplit binary that process VMs run.
    pub bin: PathBuf,
    /// Guest kernels and initramfs images.
    pub guest_cache: PathBuf,
    /// Whether VMs may start without a lease (lab control runs only).
    pub allow_unleased: bool,
    /// Heartbeat period on every plane.
    #[serde(rename = "heartbeat_interval_ms", serialize_with = "ser_ms")]
    pub heartbeat_interval: Duration,
    /// Network planes, in file order.
    #[serde(rename = "plane")]
    pub planes: Vec<PlaneConfig>,
    /// The engine to register with, if any.
    pub engine: Option<EngineLink>,
}

/// Where and how the agent registers (`[engine]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EngineLink {
    /// The engine's API, `http://host:port`.
    pub url: String,
    /// vCPUs offered to the engine's placement (default: detected).
    pub cpus: Option<u32>,
    /// Memory offered, MiB (default: detected).
    pub memory_mib: Option<u64>,
}

/// One network plane.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlaneConfig {
    /// Which plane.
    pub name: Plane,
    /// This host's address on it; heartbeats are sent from here.
    pub address: Ipv4Addr,
    /// Where heartbeats go.
    pub engine: SocketAddr,
}

/// The three network planes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Plane {
    /// Management.
    Mgmt,
    /// Service (guest traffic).
    Svc,
    /// Storage.
    Stor,
}

impl Plane {
    /// Its name in the config and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Plane::Mgmt => "mgmt",
            Plane::Svc => "svc",
            Plane::Stor => "stor",
        }
    }
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u128(d.as_millis())
}

/// One problem with a configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The field, as a path (`plane[1].address`); empty for the whole file.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Every problem found (at least one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", lines(&self.problems))]
pub struct ConfigErrors {
    /// The problems, in the order of the fields.
    pub problems: Vec<Problem>,
}

impl ConfigErrors {
    /// The problems about `field` exactly.
    pub fn for_field<'a>(&'a self, field: &'a str) -> impl Iterator<Item = &'a Problem> + 'a {
        self.problems.iter().filter(move |p| p.field == field)
    }
}

fn lines(problems: &[Problem]) -> String {
    let n = problems.len();
    let mut s = format!(
        "invalid agent configuration ({n} problem{}):",
        if n == 1 { "" } else { "s" }
    );
    for p in problems {
        s.push_str(&format!("\n  {p}"));
    }
    s
}

fn whole(message: String) -> ConfigErrors {
    ConfigErrors {
        problems: vec![Problem {
            field: String::new(),
            message,
        }],
    }
}

/// Reads and checks the configuration file at `path`.
pub fn load(path: &Path) -> Result<AgentConfig, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| whole(format!("cannot read {}: {e}", path.display())))?;
    parse(&text, &path.display().to_string())
}

/// Parses and checks a configuration; `source_name` names it in messages
/// about the file as a whole. Reads the token file (and, without `bin`,
/// looks up the running executable).
pub fn parse(text: &str, source_name: &str) -> Result<AgentConfig, ConfigErrors> {
    let table: Table = toml::from_str(text).map_err(|e| {
        let msg = e.message().trim().replace('\n', " ");
        match e.span() {
            Some(span) => {
                let line = text
                    .get(..span.start)
                    .map_or(0, |t| t.matches('\n').count())
                    + 1;
                whole(format!(
                    "{source_name}: TOML syntax error at line {line}: {msg}"
                ))
            }
            None => whole(format!("{source_name}: TOML syntax error: {msg}")),
        }
    })?;
    let mut c = Checker::default();
    match c.config(table) {
        Some(config) if c.problems.is_empty() => Ok(config),
        _ if c.problems.is_empty() => Err(whole("incomplete configuration".into())),
        _ => Err(ConfigErrors {
            problems: c.problems,
        }),
    }
}

const TOP: &[&str] = &[
    "host_name",
    "host_id",
    "listen",
    "token_file",
    "leased_socket",
    "run_dir",
    "bin",
    "guest_cache",
    "allow_unleased",
    "heartbeat_interval_ms",
    "plane",
    "engine",
];
const PLANE: &[&str] = &["name", "address", "engine"];
const ENGINE: &[&str] = &["url", "cpus", "memory_mib"];

/// Walks the TOML tree, collecting problems.
#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn bad(&mut self, field: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            field: field.to_string(),
            message: message.into(),
        });
    }

    /// Reports every key of `t` not in `known`.
    fn unknown(&mut self, prefix: &str, t: &Table, known: &[&str]) {
        for key in t.keys().filter(|k| !known.contains(&k.as_str())) {
            let msg = format!(
                "unknown field `{key}`; expected one of: {}",
                known.join(", ")
            );
            self.bad(&format!("{prefix}{key}"), msg);
        }
    }

    /// A string field; `None` (reported) if missing and required, or not a string.
    fn string(&mut self, t: &Table, prefix: &str, key: &str, required: bool) -> Option<String> {
        let field = format!("{prefix}{key}");
        match t.get(key) {
            None if required => {
                self.bad(&field, "required");
                None
            }
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(v) => {
                self.bad(&field, format!("expected a string, found {}", v.type_str()));
                None
            }
        }
    }

    /// A string field checked by `check`; `default` when absent (`None`:
    /// required). `None` (reported) when missing, mistyped or rejected.
    fn parsed<T>(
        &mut self,
        t: &Table,
        prefix: &str,
        key: &str,
        default: Option<T>,
        check: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let required = default.is_none();
        match self.string(t, prefix, key, required) {
            None if t.contains_key(key) || required => None,
            None => default,
            Some(s) => check(&s)
                .map_err(|m| self.bad(&format!("{prefix}{key}"), m))
                .ok(),
        }
    }

    fn int(&mut self, t: &Table, key: &str, min: u64, max: u64) -> Option<Option<u64>> {
        match t.get(key) {
            None => Some(None),
            Some(Value::Integer(n)) => match u64::try_from(*n) {
                Ok(n) if (min..=max).contains(&n) => Some(Some(n)),
                _ => {
                    self.bad(key, format!("{n} is out of range {min}..={max}"));
                    None
                }
            },
            Some(v) => {
                self.bad(key, format!("expected an integer, found {}", v.type_str()));
                None
            }
        }
    }

    fn config(&mut self, t: Table) -> Option<AgentConfig> {
        let host_name = self.parsed(&t, "", "host_name", None, check_host_name);
        let host_id = match self.int(&t, "host_id", 1, MAX_HOST_ID) {
            Some(None) => {
                self.bad("host_id", format!("required: 1..={MAX_HOST_ID}"));
                None
            }
            v => v.flatten().and_then(|n| u32::try_from(n).ok()),
        };
        let listen = self.parsed(&t, "", "listen", None, check_sockaddr);
        let token_file = self.parsed(&t, "", "token_file", None, check_abs);
        let token = token_file.as_ref().and_then(|p| {
            Token::from_file(p)
                .map_err(|e| self.bad("token_file", e.to_string()))
                .ok()
        });
        let leased_socket = self.parsed(
            &t,
            "",
            "leased_socket",
            Some(PathBuf::from(DEFAULT_LEASED_SOCKET)),
            check_abs,
        );
        let run_dir = self.parsed(&t, "", "run_dir", Some(DEFAULT_RUN_DIR.into()), check_abs);
        let bin = if t.contains_key("bin") {
            self.parsed(&t, "", "bin", None, check_abs)
        } else {
            std::env::current_exe()
                .map_err(|e| {
                    self.bad(
                        "bin",
                        format!("not given, and the running executable is unknown: {e}"),
                    )
                })
                .ok()
        };
        let guest_cache = self.parsed(
            &t,
            "",
            "guest_cache",
            Some(DEFAULT_GUEST_CACHE.into()),
            check_abs,
        );
        let allow_unleased = match t.get("allow_unleased") {
            None => Some(false),
            Some(Value::Boolean(b)) => Some(*b),
            Some(v) => {
                let msg = format!("expected a boolean, found {}", v.type_str());
                self.bad("allow_unleased", msg);
                None
            }
        };
        let heartbeat = self
            .int(&t, "heartbeat_interval_ms", 50, 10_000)
            .map(|v| Duration::from_millis(v.unwrap_or(DEFAULT_HEARTBEAT_MS)));
        let planes = match t.get("plane") {
            None => Some(Vec::new()),
            Some(Value::Array(items)) => self.planes(items),
            Some(v) => {
                let msg = format!(
                    "expected an array of tables ([[plane]]), found {}",
                    v.type_str()
                );
                self.bad("plane", msg);
                None
            }
        };
        let engine = match t.get("engine") {
            None => Some(None),
            Some(Value::Table(e)) => self.engine(e).map(Some),
            Some(v) => {
                let msg = format!("expected a table ([engine]), found {}", v.type_str());
                self.bad("engine", msg);
                None
            }
        };
        self.unknown("", &t, TOP);
        Some(AgentConfig {
            host_name: host_name?,
            host_id: host_id?,
            listen: listen?,
            token_file: token_file?,
            token: token?,
            leased_socket: leased_socket?,
            run_dir: run_dir?,
            bin: bin?,
            guest_cache: guest_cache?,
            allow_unleased: allow_unleased?,
            heartbeat_interval: heartbeat?,
            planes: planes?,
            engine: engine?,
        })
    }

    fn engine(&mut self, t: &Table) -> Option<EngineLink> {
        let url = self.parsed(t, "engine.", "url", None, |s| {
            nosplit_engine_api::client::check_base_url(s)
                .map(str::to_string)
                .map_err(|_| format!("{s:?} is not an engine URL (http://host:port)"))
        });
        let mut count = |key: &str, max: u64| match t.get(key) {
            None => Some(None),
            Some(Value::Integer(n)) if u64::try_from(*n).is_ok_and(|n| (1..=max).contains(&n)) => {
                Some(u64::try_from(*n).ok())
            }
            Some(v) => {
                let msg = format!("expected an integer in 1..={max}, found {v}");
                self.bad(&format!("engine.{key}"), msg);
                None
            }
        };
        let cpus = count("cpus", 65_536);
        let memory = count("memory_mib", 1 << 40);
        self.unknown("engine.", t, ENGINE);
        Some(EngineLink {
            url: url?,
            cpus: cpus?.and_then(|n| u32::try_from(n).ok()),
            memory_mib: memory?,
        })
    }

    fn planes(&mut self, items: &[Value]) -> Option<Vec<PlaneConfig>> {
        if items.len() > 3 {
            self.bad("plane", format!("{} planes given; at most 3", items.len()));
        }
        let before = self.problems.len();
        let mut out = Vec::new();
        let mut seen: HashMap<Plane, usize> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let prefix = format!("plane[{i}].");
            let Value::Table(t) = item else {
                let msg = format!("expected a table, found {}", item.type_str());
                self.bad(&format!("plane[{i}]"), msg);
                continue;
            };
            let name = self.parsed(t, &prefix, "name", None, check_plane);
            if let Some(name) = name {
                if let Some(first) = seen.insert(name, i) {
                    let msg = format!("duplicate plane {:?} (also plane[{first}])", name.as_str());
                    self.bad(&format!("{prefix}name"), msg);
                }
            }
            let address = self.parsed(t, &prefix, "address", None, |s| {
                s.parse::<Ipv4Addr>()
                    .map_err(|_| format!("{s:?} is not an IPv4 address"))
            });
            let engine = self.parsed(t, &prefix, "engine", None, check_sockaddr);
            self.unknown(&prefix, t, PLANE);
            if let (Some(name), Some(address), Some(engine)) = (name, address, engine) {
                out.push(PlaneConfig {
                    name,
                    address,
                    engine,
                });
            }
        }
        (self.problems.len() == before).then_some(out)
    }
}

fn check_host_name(s: &str) -> Result<String, String> {
    let ok = (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a host name: 1 to 64 of A-Z a-z 0-9 . _ -"
        ))
    }
}

fn check_sockaddr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not a socket address (ip:port)"))
}

fn check_abs(s: &str) -> Result<PathBuf, String> {
    if s.contains('\0') {
        return Err(format!("{s:?} contains a NUL byte"));
    }
    let p = PathBuf::from(s);
    if p.is_absolute() {
        Ok(p)
    } else {
        Err(format!("{s:?} is not an absolute path"))
    }
}

fn check_plane(s: &str) -> Result<Plane, String> {
    match s {
        "mgmt" => Ok(Plane::Mgmt),
        "svc" => Ok(Plane::Svc),
        "stor" => Ok(Plane::Stor),
        _ => Err(format!(
            "unknown plane {s:?}; expected \"mgmt\", \"svc\" or \"stor\""
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    /// A token file with `mode` in a fresh directory (kept alive by the guard).
    fn token_file(mode: u32, content: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        (dir, path)
    }

    fn minimal(token: &Path) -> String {
        format!(
            "host_name = \"hostA\"\nhost_id = 3\nlisten = \"127.0.0.1:7410\"\n\
             token_file = {:?}\n",
            token.display().to_string()
        )
    }

    fn fields(e: &ConfigErrors) -> Vec<&str> {
        e.problems.iter().map(|p| p.field.as_str()).collect()
    }

    #[test]
    fn minimal_gets_defaults() {
        let (_d, tf) = token_file(0o600, &format!("{TOKEN}\n"));
        let c = parse(&minimal(&tf), "t").unwrap();
        assert_eq!(c.host_name, "hostA");
        assert_eq!(c.host_id, 3);
        assert_eq!(c.token, Token::new(TOKEN).unwrap());
        assert_eq!(c.leased_socket, Path::new(DEFAULT_LEASED_SOCKET));
        assert_eq!(c.run_dir, Path::new(DEFAULT_RUN_DIR));
        assert_eq!(c.bin, std::env::current_exe().unwrap());
        assert!(!c.allow_unleased);
        assert_eq!(c.heartbeat_interval, Duration::from_millis(500));
        assert!(c.planes.is_empty());
        assert!(!format!("{c:?}").contains(TOKEN));
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains(TOKEN) && json.contains("\"heartbeat_interval_ms\":500"));
    }

    #[test]
    fn full_config_with_planes() {
        let (_d, tf) = token_file(0o400, TOKEN);
        let text = format!(
            "{}bin = \"/usr/bin/nosplit\"\nallow_unleased = true\nheartbeat_interval_ms = 50\n\
             [[plane]]\nname = \"mgmt\"\naddress = \"10.77.1.11\"\nengine = \"10.77.1.1:7400\"\n\
             [[plane]]\nname = \"stor\"\naddress = \"10.77.3.11\"\nengine = \"10.77.3.1:7400\"\n",
            minimal(&tf)
        );
        let c = parse(&text, "t").unwrap();
        assert_eq!(c.bin, Path::new("/usr/bin/nosplit"));
        assert!(c.allow_unleased);
        assert_eq!(c.planes.len(), 2);
        assert_eq!(c.planes[1].name, Plane::Stor);
        assert_eq!(c.planes[1].address, Ipv4Addr::new(10, 77, 3, 11));
    }

    #[test]
    fn every_problem_at_once() {
        let text = "host_name = \"bad name\"\nhost_id = 0\nlisten = \"nowhere\"\n\
                    token_file = \"relative\"\nrun_dir = 5\nheartbeat_interval_ms = 10\n\
                    allow_unleased = \"yes\"\nbogus = 1\nalso_bogus = 2\n\
                    [[plane]]\nname = \"mgmt\"\naddress = \"::1\"\nengine = \"x\"\ncolour = 1\n\
                    [[plane]]\nname = \"mgmt\"\naddress = \"10.0.0.1\"\nengine = \"10.0.0.2:1\"\n";
        let e = parse(text, "t").unwrap_err();
        assert_eq!(
            fields(&e),
            [
                "host_name",
                "host_id",
                "listen",
                "token_file",
                "run_dir",
                "allow_unleased",
                "heartbeat_interval_ms",
                "plane[0].address",
                "plane[0].engine",
                "plane[0].colour",
                "plane[1].name",
                "also_bogus",
                "bogus",
            ]
        );
        let shown = e.to_string();
        assert!(shown.starts_with("invalid agent configuration (13 problems):"));
        assert!(shown.contains("\n  plane[1].name: duplicate plane \"mgmt\" (also plane[0])"));
    }

    #[test]
    fn missing_required_and_bad_types() {
        let e = parse("host_id = \"one\"\nplane = 3\n", "t").unwrap_err();
        assert_eq!(
            fields(&e),
            ["host_name", "host_id", "listen", "token_file", "plane"]
        );
        assert!(e.problems[1]
            .message
            .contains("expected an integer, found string"));
        let e = parse("[[plane]]\nname = 1\n", "t").unwrap_err();
        assert!(e.for_field("plane[0].name").next().is_some());
        assert!(e.for_field("plane[0].address").next().is_some());
    }

    #[test]
    fn syntax_error_names_the_source() {
        let e = parse("host_name = \n", "/etc/agent.toml").unwrap_err();
        assert_eq!(e.problems.len(), 1);
        assert!(e.problems[0]
            .message
            .starts_with("/etc/agent.toml: TOML syntax error at line 1"));
    }

    #[test]
    fn readable_token_file_refused() {
        let (_d, tf) = token_file(0o644, TOKEN);
        let e = parse(&minimal(&tf), "t").unwrap_err();
        assert_eq!(fields(&e), ["token_file"]);
        assert!(e.problems[0].message.contains("mode 0644"));
        assert!(!e.to_string().contains(TOKEN));
    }

    #[test]
    fn short_token_refused() {
        let (_d, tf) = token_file(0o600, "tooshort\n");
        let e = parse(&minimal(&tf), "t").unwrap_err();
        assert_eq!(fields(&e), ["token_file"]);
        assert!(e.problems[0].message.contains("at least 32"));
        assert!(!e.to_string().contains("tooshort"));
    }

    #[test]
    fn load_reads_the_file() {
        let (d, tf) = token_file(0o600, TOKEN);
        let cfg = d.path().join("agent.toml");
        std::fs::write(&cfg, minimal(&tf)).unwrap();
        assert_eq!(load(&cfg).unwrap().host_id, 3);
        let e = load(&d.path().join("missing.toml")).unwrap_err();
        assert!(e.problems[0].field.is_empty());
    }
}
