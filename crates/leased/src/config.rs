//! Configuration of `nosplit leased`, the per-host lease daemon.
//!
//! The file is TOML. [`parse`] (or [`load`]) reads it and checks every
//! field, then returns either a checked [`Config`] or [`ConfigErrors`] that
//! lists *every* problem found, each naming its field, so one run of
//! `nosplit config check` shows everything to fix.
//!
//! ```toml
//! # This host's name, as recorded in the lockspaces it joins. Required.
//! host_name = "hostA"
//! # Where the daemon keeps its socket (leased.sock) and state (state.json).
//! # Optional, default /run/nosplit. Must be absolute.
//! run_dir = "/run/nosplit"
//! # Group allowed to connect to the socket besides root: a group name that
//! # exists on this host, or a numeric gid (taken as is). Optional.
//! socket_group = "nosplit"
//! # How long a holder's freeze hook may run, in milliseconds. Optional,
//! # default 500, 1..=60000.
//! freeze_hook_timeout_ms = 500
//!
//! # The watchdog that resets this host if the daemon stops renewing.
//! # Required: there is no default backend.
//! [watchdog]
//! backend = "device"           # "device" | "lab" | "none"
//! device = "/dev/watchdog"     # backend = "device" only; default /dev/watchdog
//! # lab_socket = "/run/nosplit/wd.sock"  # backend = "lab" only; required there
//! # allow_none = true          # backend = "none" only; required there
//!
//! # Lockspaces joined at start: zero or more.
//! [[lockspace]]
//! name = "ls1"                 # required; unique
//! path = "/shared/ids"         # required; absolute; need not exist yet
//! offset = 0                   # bytes; default 0; a multiple of sector_size
//! host_id = 1                  # required; 1..=2000
//! sector_size = 512            # 512 | 4096; default 512
//! ```
//!
//! Rules beyond the per-field ones:
//! - Unknown fields are rejected, every one of them, with its path (say
//!   `watchdog.devise`) and the fields that table accepts.
//! - A watchdog field that does not apply to the chosen backend is rejected
//!   (`device` with `backend = "lab"`, ...), so a leftover cannot silently
//!   be ignored. `backend = "none"` runs without any watchdog and therefore
//!   needs the explicit `allow_none = true`.
//! - No two lockspaces share a name, nor a `(path, offset)` (paths compared
//!   component-wise, not resolved: storage may not be mounted yet). The same
//!   `host_id` in different lockspaces is fine.
//! - `socket_group` given as a name must exist now (looked up through NSS);
//!   lockspace paths are not checked for existence.
//!
//! Problems are reported in the order of the fields above (a table's
//! unknown fields after its known ones, duplicates after the lockspaces
//! themselves). Field names are paths such as `lockspace[1].host_id`
//! (0-based index, in file order); a problem with the file as a whole
//! (unreadable, TOML syntax) has an empty field. The checked [`Config`] serializes (for `config check --json`) in
//! the same shape as the file, with defaults filled in and `socket_group`
//! resolved to its gid.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nosplit_lease::format::MAX_MAX_HOSTS;
use nosplit_lease::Name;
use nosplit_storage::SectorSize;
use toml::{Table, Value};

/// Default [`Config::run_dir`].
pub const DEFAULT_RUN_DIR: &str = "/run/nosplit";
/// Default watchdog device for `backend = "device"`.
pub const DEFAULT_WATCHDOG_DEVICE: &str = "/dev/watchdog";
/// Default [`Config::freeze_hook_timeout`].
pub const DEFAULT_FREEZE_HOOK_TIMEOUT: Duration = Duration::from_millis(500);
/// Largest `freeze_hook_timeout_ms`.
pub const MAX_FREEZE_HOOK_TIMEOUT_MS: u64 = 60_000;
/// The socket's file name under the run directory.
pub const SOCKET_FILE: &str = "leased.sock";
/// The state file's name under the run directory.
pub const STATE_FILE: &str = "state.json";

/// A checked daemon configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Config {
    /// This host's name.
    pub host_name: Name,
    /// Run directory (absolute): socket and state live here.
    pub run_dir: PathBuf,
    /// Group (resolved gid) allowed to connect besides root.
    pub socket_group: Option<u32>,
    /// How long a holder's freeze hook may run.
    #[serde(rename = "freeze_hook_timeout_ms", serialize_with = "ser_millis")]
    pub freeze_hook_timeout: Duration,
    /// The watchdog backend.
    pub watchdog: WatchdogConfig,
    /// Lockspaces joined at start, in file order.
    #[serde(rename = "lockspace")]
    pub lockspaces: Vec<LockspaceConfig>,
}

impl Config {
    /// The daemon's Unix socket: `run_dir/leased.sock`.
    pub fn socket_path(&self) -> PathBuf {
        self.run_dir.join(SOCKET_FILE)
    }

    /// The daemon's state file: `run_dir/state.json`.
    pub fn state_path(&self) -> PathBuf {
        self.run_dir.join(STATE_FILE)
    }
}

/// Which watchdog backs this host's leases.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "backend", rename_all = "lowercase")]
pub enum WatchdogConfig {
    /// A kernel watchdog device.
    Device {
        /// Absolute path of the device.
        #[serde(rename = "device")]
        path: PathBuf,
    },
    /// The lab supervisor's emulated watchdog.
    Lab {
        /// Absolute path of the supervisor's socket.
        #[serde(rename = "lab_socket")]
        socket: PathBuf,
    },
    /// No watchdog (explicitly allowed with `allow_none = true`).
    None,
}

/// One lockspace joined at start.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LockspaceConfig {
    /// Its name, unique in the configuration.
    pub name: Name,
    /// Absolute path of the file or device holding it.
    pub path: PathBuf,
    /// Byte offset of the lockspace area, a multiple of `sector_size`.
    pub offset: u64,
    /// This host's id in it, `1..=2000`.
    pub host_id: u32,
    /// Sector size of the storage.
    #[serde(serialize_with = "ser_sector_size")]
    pub sector_size: SectorSize,
}

fn ser_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u128(d.as_millis())
}

fn ser_sector_size<S: serde::Serializer>(v: &SectorSize, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(v.bytes() as u64)
}

/// One problem with a configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The field, as a path (`lockspace[1].host_id`); empty for a problem
    /// with the file as a whole.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            field: field.into(),
            message: message.into(),
        }
    }
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

/// Every problem found in a configuration (at least one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", ProblemLines(&self.problems))]
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

struct ProblemLines<'a>(&'a [Problem]);

impl fmt::Display for ProblemLines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "invalid configuration ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for p in self.0 {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// Reads and checks the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text),
        Err(e) => Err(ConfigErrors {
            problems: vec![Problem::new(
                "",
                format!("cannot read configuration file {}: {e}", path.display()),
            )],
        }),
    }
}

/// Parses and checks a configuration.
pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
    let table: Table = toml::from_str(text).map_err(|e| ConfigErrors {
        problems: vec![syntax_problem(text, &e)],
    })?;
    let mut c = Checker::default();
    let config = c.config(table);
    match config {
        Some(config) if c.problems.is_empty() => Ok(config),
        _ => {
            debug_assert!(!c.problems.is_empty(), "no config and no problem");
            Err(ConfigErrors {
                problems: c.problems,
            })
        }
    }
}

/// A TOML syntax error as one problem with its line and column.
fn syntax_problem(text: &str, e: &toml::de::Error) -> Problem {
    let message = e.message().trim().replace('\n', " ");
    let message = match e.span() {
        Some(span) => {
            let pos = floor_char_boundary(text, span.start);
            let line_start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
            let line = text[..pos].matches('\n').count() + 1;
            let column = text[line_start..pos].chars().count() + 1;
            format!("TOML syntax error at line {line}, column {column}: {message}")
        }
        None => format!("TOML syntax error: {message}"),
    };
    Problem::new("", message)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The fields of one TOML table, taken out one by one; whatever is left at
/// the end is unknown.
struct Fields {
    /// Path of the table ("" for the top level).
    path: String,
    table: Table,
    known: &'static [&'static str],
}

impl Fields {
    fn new(path: impl Into<String>, table: Table, known: &'static [&'static str]) -> Fields {
        Fields {
            path: path.into(),
            table,
            known,
        }
    }

    fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn take(&mut self, key: &str) -> Option<Value> {
        debug_assert!(self.known.contains(&key), "{key} not declared");
        self.table.remove(key)
    }

    /// Reports every field not taken.
    fn finish(self, problems: &mut Vec<Problem>) {
        for key in self.table.keys() {
            problems.push(Problem::new(
                self.field(key),
                format!(
                    "unknown field `{key}`; expected one of: {}",
                    self.known.join(", ")
                ),
            ));
        }
    }
}

const TOP_FIELDS: &[&str] = &[
    "host_name",
    "run_dir",
    "socket_group",
    "freeze_hook_timeout_ms",
    "watchdog",
    "lockspace",
];
const WATCHDOG_FIELDS: &[&str] = &["backend", "device", "lab_socket", "allow_none"];
const LOCKSPACE_FIELDS: &[&str] = &["name", "path", "offset", "host_id", "sector_size"];

/// One lockspace's fields, each `None` if missing or invalid.
struct PartialLockspace {
    /// Whether it had no problem of its own.
    ok: bool,
    name: Option<Name>,
    path: Option<PathBuf>,
    offset: Option<u64>,
    host_id: Option<u32>,
    sector_size: Option<SectorSize>,
}

#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn problem(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(field, message));
    }

    fn wrong_type(&mut self, field: String, expected: &str, v: &Value) {
        self.problem(field, format!("expected {expected}, found {}", describe(v)));
    }

    /// Checks everything; `None` if anything required could not be made.
    fn config(&mut self, table: Table) -> Option<Config> {
        let mut f = Fields::new("", table, TOP_FIELDS);

        let host_name = match f.take("host_name") {
            None => {
                self.problem("host_name", "required: this host's name");
                None
            }
            Some(v) => self.name(f.field("host_name"), v),
        };

        let run_dir = match f.take("run_dir") {
            None => Some(PathBuf::from(DEFAULT_RUN_DIR)),
            Some(v) => self.abs_path(f.field("run_dir"), v),
        };

        let socket_group = match f.take("socket_group") {
            None => Some(None),
            Some(v) => self.group(f.field("socket_group"), v).map(Some),
        };

        let freeze_hook_timeout = match f.take("freeze_hook_timeout_ms") {
            None => Some(DEFAULT_FREEZE_HOOK_TIMEOUT),
            Some(v) => self
                .int_in(
                    f.field("freeze_hook_timeout_ms"),
                    v,
                    1,
                    MAX_FREEZE_HOOK_TIMEOUT_MS,
                )
                .map(Duration::from_millis),
        };

        let watchdog = match f.take("watchdog") {
            None => {
                self.problem(
                    "watchdog",
                    "required: a [watchdog] table with backend = \"device\", \"lab\" or \"none\"",
                );
                None
            }
            Some(Value::Table(t)) => self.watchdog(t),
            Some(v) => {
                self.wrong_type(f.field("watchdog"), "a table ([watchdog])", &v);
                None
            }
        };

        let lockspaces = match f.take("lockspace") {
            None => Some(Vec::new()),
            Some(Value::Array(items)) => self.lockspaces(items),
            Some(v) => {
                self.wrong_type(
                    f.field("lockspace"),
                    "an array of tables ([[lockspace]])",
                    &v,
                );
                None
            }
        };

        f.finish(&mut self.problems);

        Some(Config {
            host_name: host_name?,
            run_dir: run_dir?,
            socket_group: socket_group?,
            freeze_hook_timeout: freeze_hook_timeout?,
            watchdog: watchdog?,
            lockspaces: lockspaces?,
        })
    }

    fn watchdog(&mut self, table: Table) -> Option<WatchdogConfig> {
        let mut f = Fields::new("watchdog", table, WATCHDOG_FIELDS);

        #[derive(Clone, Copy, PartialEq)]
        enum Backend {
            Device,
            Lab,
            None,
        }
        let backend = match f.take("backend") {
            None => {
                self.problem(
                    f.field("backend"),
                    "required: \"device\", \"lab\" or \"none\"",
                );
                None
            }
            Some(Value::String(s)) => match s.as_str() {
                "device" => Some(Backend::Device),
                "lab" => Some(Backend::Lab),
                "none" => Some(Backend::None),
                _ => {
                    self.problem(
                        f.field("backend"),
                        format!("unknown backend {s:?}; expected \"device\", \"lab\" or \"none\""),
                    );
                    None
                }
            },
            Some(v) => {
                self.wrong_type(f.field("backend"), "a string", &v);
                None
            }
        };

        // Check each field's own value even when the backend is unusable,
        // so every problem shows at once.
        let device = f
            .take("device")
            .map(|v| self.abs_path(f.field("device"), v));
        let lab_socket = f
            .take("lab_socket")
            .map(|v| self.abs_path(f.field("lab_socket"), v));
        let allow_none = f.take("allow_none").map(|v| match v {
            Value::Boolean(b) => Some(b),
            v => {
                self.wrong_type(f.field("allow_none"), "a boolean", &v);
                None
            }
        });

        // Fields that belong to another backend.
        if let Some(backend) = backend {
            let only = [
                ("device", device.is_some(), Backend::Device, "device"),
                ("lab_socket", lab_socket.is_some(), Backend::Lab, "lab"),
                ("allow_none", allow_none.is_some(), Backend::None, "none"),
            ];
            for (key, given, owner, owner_name) in only {
                if given && backend != owner {
                    self.problem(
                        f.field(key),
                        format!("only applies to backend = \"{owner_name}\"; remove it"),
                    );
                }
            }
        }

        let result = match backend? {
            Backend::Device => match device {
                None => Some(WatchdogConfig::Device {
                    path: PathBuf::from(DEFAULT_WATCHDOG_DEVICE),
                }),
                Some(path) => path.map(|path| WatchdogConfig::Device { path }),
            },
            Backend::Lab => match lab_socket {
                None => {
                    self.problem(
                        f.field("lab_socket"),
                        "required with backend = \"lab\": the lab supervisor's socket",
                    );
                    None
                }
                Some(socket) => socket.map(|socket| WatchdogConfig::Lab { socket }),
            },
            Backend::None => match allow_none {
                Some(Some(true)) => Some(WatchdogConfig::None),
                Some(None) => None,
                Some(Some(false)) | None => {
                    self.problem(
                        f.field("allow_none"),
                        "backend = \"none\" runs without a watchdog, so a host that stops \
                         renewing is never reset; set allow_none = true to accept that",
                    );
                    None
                }
            },
        };
        f.finish(&mut self.problems);
        result
    }

    fn lockspaces(&mut self, items: Vec<Value>) -> Option<Vec<LockspaceConfig>> {
        let mut parts = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let path = format!("lockspace[{i}]");
            match item {
                Value::Table(t) => parts.push((i, self.lockspace(path, t))),
                v => self.wrong_type(path, "a table ([[lockspace]])", &v),
            }
        }
        let mut complete = parts.iter().all(|(_, p)| p.ok);

        // Uniqueness, among the fields that are valid on their own.
        let mut names: HashMap<&Name, usize> = HashMap::new();
        let mut areas: HashMap<(&Path, u64), usize> = HashMap::new();
        let mut dups = Vec::new();
        for (i, p) in &parts {
            if let Some(name) = &p.name {
                let first = *names.entry(name).or_insert(*i);
                if first != *i {
                    dups.push(Problem::new(
                        format!("lockspace[{i}].name"),
                        format!(
                            "duplicate lockspace name {:?} (also lockspace[{first}])",
                            name.as_str()
                        ),
                    ));
                }
            }
            if let (Some(path), Some(offset)) = (&p.path, p.offset) {
                let first = *areas.entry((path, offset)).or_insert(*i);
                if first != *i {
                    dups.push(Problem::new(
                        format!("lockspace[{i}].path"),
                        format!(
                            "{} at offset {offset} is also lockspace[{first}]'s area",
                            path.display()
                        ),
                    ));
                }
            }
        }
        complete &= dups.is_empty();
        self.problems.extend(dups);

        if !complete {
            return None;
        }
        parts
            .into_iter()
            .map(|(_, p)| {
                Some(LockspaceConfig {
                    name: p.name?,
                    path: p.path?,
                    offset: p.offset?,
                    host_id: p.host_id?,
                    sector_size: p.sector_size?,
                })
            })
            .collect()
    }

    fn lockspace(&mut self, path: String, table: Table) -> PartialLockspace {
        let before = self.problems.len();
        let mut f = Fields::new(path, table, LOCKSPACE_FIELDS);

        let name = match f.take("name") {
            None => {
                self.problem(f.field("name"), "required");
                None
            }
            Some(v) => self.name(f.field("name"), v),
        };
        let ls_path = match f.take("path") {
            None => {
                self.problem(f.field("path"), "required");
                None
            }
            Some(v) => self.abs_path(f.field("path"), v),
        };
        let offset = match f.take("offset") {
            None => Some(0),
            Some(v) => self.int_in(f.field("offset"), v, 0, u64::MAX),
        };
        let host_id = match f.take("host_id") {
            None => {
                self.problem(f.field("host_id"), format!("required: 1..={MAX_MAX_HOSTS}"));
                None
            }
            Some(v) => self
                .int_in(f.field("host_id"), v, 1, u64::from(MAX_MAX_HOSTS))
                .and_then(|n| u32::try_from(n).ok()),
        };
        let sector_size = match f.take("sector_size") {
            None => Some(SectorSize::B512),
            Some(Value::Integer(n)) => {
                let s = u64::try_from(n).ok().and_then(SectorSize::from_bytes);
                if s.is_none() {
                    self.problem(
                        f.field("sector_size"),
                        format!("{n} is not a sector size; expected 512 or 4096"),
                    );
                }
                s
            }
            Some(v) => {
                self.wrong_type(f.field("sector_size"), "512 or 4096", &v);
                None
            }
        };
        if let (Some(offset), Some(sector)) = (offset, sector_size) {
            if offset % sector.bytes() as u64 != 0 {
                self.problem(
                    f.field("offset"),
                    format!("{offset} is not a multiple of the sector size {sector}"),
                );
            }
        }
        f.finish(&mut self.problems);

        PartialLockspace {
            ok: self.problems.len() == before,
            name,
            path: ls_path,
            offset,
            host_id,
            sector_size,
        }
    }

    fn name(&mut self, field: String, v: Value) -> Option<Name> {
        match v {
            Value::String(s) => match Name::new(&s) {
                Ok(n) => Some(n),
                Err(e) => {
                    self.problem(field, e.to_string());
                    None
                }
            },
            v => {
                self.wrong_type(field, "a string", &v);
                None
            }
        }
    }

    fn abs_path(&mut self, field: String, v: Value) -> Option<PathBuf> {
        let s = match v {
            Value::String(s) => s,
            v => {
                self.wrong_type(field, "an absolute path (a string)", &v);
                return None;
            }
        };
        if s.contains('\0') {
            self.problem(field, format!("{s:?} contains a NUL byte"));
            return None;
        }
        let p = PathBuf::from(s);
        if !p.is_absolute() {
            self.problem(
                field,
                format!("{:?} is not an absolute path", p.display().to_string()),
            );
            return None;
        }
        Some(p)
    }

    fn int_in(&mut self, field: String, v: Value, min: u64, max: u64) -> Option<u64> {
        match v {
            Value::Integer(n) => match u64::try_from(n) {
                Ok(n) if (min..=max).contains(&n) => Some(n),
                _ if max == u64::MAX => {
                    self.problem(field, format!("{n} is out of range: at least {min}"));
                    None
                }
                _ => {
                    self.problem(field, format!("{n} is out of range {min}..={max}"));
                    None
                }
            },
            v => {
                self.wrong_type(field, "an integer", &v);
                None
            }
        }
    }

    fn group(&mut self, field: String, v: Value) -> Option<u32> {
        match v {
            Value::Integer(n) => match u32::try_from(n) {
                // (gid_t)-1 means "no change" to chown and is never a group.
                Ok(gid) if gid != u32::MAX => Some(gid),
                _ => {
                    self.problem(field, format!("{n} is not a valid gid"));
                    None
                }
            },
            Value::String(s) => {
                if s.is_empty() {
                    self.problem(field, "empty group name");
                    return None;
                }
                match lookup_group(&s) {
                    Ok(Some(gid)) => Some(gid),
                    // Like chown: a name first, then a numeric gid.
                    Ok(None) => match s.parse::<u32>() {
                        Ok(gid) if gid != u32::MAX && s.bytes().all(|b| b.is_ascii_digit()) => {
                            Some(gid)
                        }
                        _ => {
                            self.problem(field, format!("group {s:?} does not exist"));
                            None
                        }
                    },
                    Err(e) => {
                        self.problem(field, format!("cannot look up group {s:?}: {e}"));
                        None
                    }
                }
            }
            v => {
                self.wrong_type(field, "a group name or numeric gid", &v);
                None
            }
        }
    }
}

/// A TOML value's type, for messages.
fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("a string ({s:?})"),
        Value::Integer(n) => format!("an integer ({n})"),
        Value::Float(x) => format!("a float ({x})"),
        Value::Boolean(b) => format!("a boolean ({b})"),
        Value::Datetime(d) => format!("a datetime ({d})"),
        Value::Array(_) => "an array".to_string(),
        Value::Table(_) => "a table".to_string(),
    }
}

/// The gid of group `name` through the system's group database (NSS, so
/// not only /etc/group); `None` if there is no such group.
fn lookup_group(name: &str) -> Result<Option<u32>, String> {
    let cname = std::ffi::CString::new(name).map_err(|_| "the name contains a NUL byte")?;
    let mut buf: Vec<libc::c_char> = vec![0; 1024];
    loop {
        let mut grp = std::mem::MaybeUninit::<libc::group>::uninit();
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call: `cname` is a
        // NUL-terminated string, `grp` and `result` are writable locals, and
        // `buf` is writable for `buf.len()` bytes. getgrnam_r writes the
        // entry's strings into `buf` only and sets `result` to `grp` or null.
        let rc = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                grp.as_mut_ptr(),
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        match rc {
            0 if result.is_null() => return Ok(None),
            // SAFETY: on success `result` points to `grp`, now initialized.
            0 => return Ok(Some(unsafe { (*result).gr_gid })),
            libc::ERANGE if buf.len() < (1 << 20) => {
                let len = buf.len() * 2;
                buf.resize(len, 0);
            }
            // getgrnam_r(3): these may also mean "not found".
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            e => return Err(std::io::Error::from_raw_os_error(e).to_string()),
        }
    }
}
