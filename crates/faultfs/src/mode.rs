//! Fault modes and their one-line text form (the control protocol's words).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::Error;

/// The longest delay the text form accepts (one hour). Longer stalls are
/// what [`Mode::Hang`] is for.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);

/// How the filesystem answers requests. Read once per request, when the
/// request arrives (and again when a delayed request comes due).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Plain pass-through.
    #[default]
    Ok,
    /// Fail the selected data operations with EIO: `reads` covers `read`,
    /// `writes` covers `write`, `fsync` and truncating `setattr`; `open` and
    /// `create` fail too when both are set. Metadata operations still work.
    Eio {
        /// Fail reads.
        reads: bool,
        /// Fail writes, fsync and truncation.
        writes: bool,
    },
    /// Answer every request this much later (`release`, `releasedir`,
    /// `flush` and `forget` are never faulted).
    /// The session thread keeps taking requests meanwhile.
    Delay(Duration),
    /// Never answer (except `release`, `releasedir`, `flush`, `forget`):
    /// requests are parked until the mode leaves `Hang` (then they fail with
    /// EIO, or run on [`resume`](crate::FaultHandle::resume)) or the
    /// connection is aborted.
    Hang,
}

impl Mode {
    /// EIO on reads and writes (and open/create).
    pub const EIO: Mode = Mode::Eio {
        reads: true,
        writes: true,
    };

    /// Parse one control word, e.g. `ok`, `eio`, `eio-read`, `eio-write`,
    /// `delay 250`, `hang`. `recover` is accepted as a synonym of `ok`.
    pub fn parse(text: &str) -> Result<Mode, Error> {
        let mut words = text.split_whitespace();
        let cmd = words.next().unwrap_or("");
        let arg = words.next();
        if words.next().is_some() {
            return Err(Error::BadCommand(format!("too many words in {text:?}")));
        }
        let no_arg = |m: Mode| match arg {
            None => Ok(m),
            Some(a) => Err(Error::BadCommand(format!(
                "{cmd} takes no argument (got {a:?})"
            ))),
        };
        match cmd {
            "ok" | "recover" => no_arg(Mode::Ok),
            "eio" => no_arg(Mode::EIO),
            "eio-read" => no_arg(Mode::Eio {
                reads: true,
                writes: false,
            }),
            "eio-write" => no_arg(Mode::Eio {
                reads: false,
                writes: true,
            }),
            "hang" => no_arg(Mode::Hang),
            "delay" => {
                let Some(a) = arg else {
                    return Err(Error::BadCommand("delay needs <ms>".into()));
                };
                let ms: u64 = a
                    .parse()
                    .map_err(|_| Error::BadCommand(format!("delay: bad milliseconds {a:?}")))?;
                let d = Duration::from_millis(ms);
                if d > MAX_DELAY {
                    return Err(Error::BadCommand(format!(
                        "delay: {ms} ms is over the limit of {} ms",
                        MAX_DELAY.as_millis()
                    )));
                }
                Ok(Mode::Delay(d))
            }
            "" => Err(Error::BadCommand("empty command".into())),
            other => Err(Error::BadCommand(format!("unknown mode {other:?}"))),
        }
    }

    /// Whether an operation of this class fails with EIO in this mode.
    pub(crate) fn fails(self, class: OpClass) -> bool {
        match self {
            Mode::Eio { reads, writes } => match class {
                OpClass::Read => reads,
                OpClass::Write => writes,
                OpClass::Open => reads && writes,
                OpClass::Meta => false,
            },
            Mode::Ok | Mode::Delay(_) | Mode::Hang => false,
        }
    }
}

/// Prints the control word that sets this mode (`delay 250` for a delay,
/// rounded down to whole milliseconds), so `Mode::parse(&m.to_string())`
/// gives back `m` for millisecond delays.
impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Ok => f.write_str("ok"),
            Mode::Eio {
                reads: true,
                writes: true,
            } => f.write_str("eio"),
            Mode::Eio {
                reads: true,
                writes: false,
            } => f.write_str("eio-read"),
            Mode::Eio {
                reads: false,
                writes: true,
            } => f.write_str("eio-write"),
            // Fails nothing: behaves like ok.
            Mode::Eio {
                reads: false,
                writes: false,
            } => f.write_str("ok"),
            Mode::Delay(d) => write!(f, "delay {}", d.as_millis()),
            Mode::Hang => f.write_str("hang"),
        }
    }
}

impl FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Mode, Error> {
        Mode::parse(s)
    }
}

/// Which fault rules an operation follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpClass {
    /// read
    Read,
    /// write, fsync, truncate
    Write,
    /// open, create
    Open,
    /// lookup, getattr, readdir, mkdir, unlink, rename, statfs, ...
    Meta,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trip() {
        for m in [
            Mode::Ok,
            Mode::EIO,
            Mode::Eio {
                reads: true,
                writes: false,
            },
            Mode::Eio {
                reads: false,
                writes: true,
            },
            Mode::Delay(Duration::from_millis(250)),
            Mode::Hang,
        ] {
            assert_eq!(Mode::parse(&m.to_string()).ok(), Some(m));
        }
        assert_eq!(Mode::parse("  recover ").ok(), Some(Mode::Ok));
    }

    #[test]
    fn parse_rejects_garbage() {
        for bad in [
            "",
            "   ",
            "nope",
            "delay",
            "delay x",
            "delay -1",
            "delay 99999999999999999999999",
            "delay 3600001",
            "hang now",
            "ok ok",
            "delay 1 2",
            "\u{0}",
        ] {
            assert!(Mode::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn eio_classes() {
        let r = Mode::Eio {
            reads: true,
            writes: false,
        };
        assert!(r.fails(OpClass::Read));
        assert!(!r.fails(OpClass::Write));
        assert!(!r.fails(OpClass::Open));
        assert!(Mode::EIO.fails(OpClass::Open));
        assert!(!Mode::EIO.fails(OpClass::Meta));
        assert!(!Mode::Hang.fails(OpClass::Read));
    }
}
