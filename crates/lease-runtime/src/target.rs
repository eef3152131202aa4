//! `PATH[:OFFSET]` storage targets, as operators write them.

use std::fmt;
use std::path::PathBuf;

use crate::RuntimeError;

/// A place on storage: a file or device and a byte offset in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// File or block device.
    pub path: PathBuf,
    /// Byte offset of the area.
    pub offset: u64,
}

impl Target {
    /// Parses `PATH` or `PATH:OFFSET`; the offset may end in K, M or G
    /// (binary units). A path that itself contains ':' needs an explicit
    /// offset (`a:b:0`).
    pub fn parse(s: &str) -> Result<Target, RuntimeError> {
        let bad = || RuntimeError::BadTarget(s.to_string());
        if s.is_empty() {
            return Err(bad());
        }
        let (path, offset) = match s.rsplit_once(':') {
            Some((p, o)) if !p.is_empty() => (p, parse_size(o).ok_or_else(bad)?),
            Some(_) => return Err(bad()),
            None => (s, 0),
        };
        Ok(Target {
            path: PathBuf::from(path),
            offset,
        })
    }
}

/// Parses `123`, `4K`, `1M`, `2G`.
pub fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1u64 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(mult)
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.offset)
    }
}

impl std::str::FromStr for Target {
    type Err = RuntimeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Target::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(
            Target::parse("/a/b").unwrap(),
            Target {
                path: "/a/b".into(),
                offset: 0
            }
        );
        assert_eq!(Target::parse("/a:1M").unwrap().offset, 1 << 20);
        assert_eq!(
            Target::parse("x:y:4096").unwrap().path,
            PathBuf::from("x:y")
        );
        for bad in ["", ":1", "/a:", "/a:1X", "/a:-1", "/a:99999999999999999999"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
