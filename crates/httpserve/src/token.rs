//! Bearer tokens: a secret that never prints (its `Debug` shows
//! `<redacted>`, it has no `Display`) and compares in constant time; read
//! from a private file or given as a string; and [`bearer`], which finds the
//! token a request presents.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use axum::http::{header, HeaderMap};

/// Shortest accepted token, in characters.
pub const MIN_TOKEN_LEN: usize = 32;
/// Longest accepted token, in characters.
pub const MAX_TOKEN_LEN: usize = 4096;

/// One bearer secret.
#[derive(Clone)]
pub struct Token(Box<[u8]>);

/// Why a string is not a usable token. Messages never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Shorter than [`MIN_TOKEN_LEN`].
    #[error("the token is {0} characters long; at least {MIN_TOKEN_LEN} are required")]
    TooShort(usize),
    /// Longer than [`MAX_TOKEN_LEN`].
    #[error("the token is longer than {MAX_TOKEN_LEN} characters")]
    TooLong,
    /// Holds a character that cannot go in an HTTP header as is.
    #[error("the token holds a character other than printable ASCII (0x21..=0x7e)")]
    BadChar,
}

/// Why a token file cannot be used. Messages never contain the token.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// Opening, inspecting or reading it failed.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Not a regular file.
    #[error("{} is not a regular file", .0.display())]
    NotFile(PathBuf),
    /// Group or others may read it.
    #[error("{} has mode {mode:04o}: group or others may read it; chmod 600 it", path.display())]
    Readable {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Its content is not a valid token.
    #[error("{}: {source}", path.display())]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: TokenError,
    },
}

impl Token {
    /// Reads a token from `path`: the file must be a regular file that
    /// neither group nor others may access (`mode & 0o077 == 0`, checked on
    /// the open file); its content, trailing whitespace trimmed, must be a
    /// valid token.
    pub fn from_file(path: &Path) -> Result<Token, TokenFileError> {
        let io = |source| TokenFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(TokenFileError::NotFile(path.to_path_buf()));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            let path = path.to_path_buf();
            return Err(TokenFileError::Readable { path, mode });
        }
        let mut text = String::new();
        let cap = u64::try_from(MAX_TOKEN_LEN).unwrap_or(u64::MAX) + 64;
        file.take(cap).read_to_string(&mut text).map_err(io)?;
        Token::new(text.trim_end()).map_err(|source| TokenFileError::Bad {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Checks `secret` (printable ASCII without spaces,
    /// `MIN_TOKEN_LEN..=MAX_TOKEN_LEN` long) and keeps it.
    pub fn new(secret: &str) -> Result<Token, TokenError> {
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::BadChar);
        }
        if secret.len() < MIN_TOKEN_LEN {
            return Err(TokenError::TooShort(secret.len()));
        }
        if secret.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong);
        }
        Ok(Token(secret.as_bytes().into()))
    }

    /// The secret itself, for sending it (an `Authorization` header of an
    /// outgoing request). Never log or print what this returns.
    pub fn expose(&self) -> &str {
        // Checked printable ASCII in `new`, so always UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// Whether `presented` is the token. The time taken depends on the
    /// lengths only, never on where the bytes differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let mut diff = u8::from(presented.len() != self.0.len());
        for (i, &b) in presented.iter().enumerate() {
            let mine = self.0.get(i).copied().unwrap_or(0);
            diff |= mine ^ b;
        }
        // Keep the optimiser from turning the fold into an early exit.
        std::hint::black_box(diff) == 0
    }
}

/// The token in `Authorization: Bearer <token>`, if the request has one
/// (the scheme is matched exactly, as the APIs document it).
pub fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
}

impl PartialEq for Token {
    fn eq(&self, other: &Token) -> bool {
        self.matches(&other.0)
    }
}

impl Eq for Token {}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn checks_shape() {
        assert!(Token::new(GOOD).is_ok());
        assert_eq!(Token::new("short").unwrap_err(), TokenError::TooShort(5));
        let spaced = format!("{GOOD} x");
        assert_eq!(Token::new(&spaced).unwrap_err(), TokenError::BadChar);
        assert_eq!(
            Token::new(&"a".repeat(MAX_TOKEN_LEN + 1)).unwrap_err(),
            TokenError::TooLong
        );
    }

    #[test]
    fn matches_exactly() {
        let t = Token::new(GOOD).unwrap();
        assert!(t.matches(GOOD.as_bytes()));
        assert!(!t.matches(&GOOD.as_bytes()[..31]));
        assert!(!t.matches(format!("{GOOD}0").as_bytes()));
        assert!(!t.matches(b""));
        let mut other = GOOD.as_bytes().to_vec();
        other[31] ^= 1;
        assert!(!t.matches(&other));
    }

    #[test]
    fn bearer_needs_the_exact_scheme() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some(&b"abc"[..]));
        h.insert(header::AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn never_prints() {
        let t = Token::new(GOOD).unwrap();
        assert_eq!(format!("{t:?}"), "<redacted>");
    }
}
