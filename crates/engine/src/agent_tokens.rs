//! Per-host agent tokens: one secret per host, in `<dir>/<host>.token`
//! (mode 0600 or stricter). The engine presents a host's token when it
//! calls that host's agent, and accepts it from that host only when the
//! agent registers, so one host's secret opens nothing on another host.
//!
//! Files are read when needed (not cached), so an operator adds a host by
//! dropping its token file in the directory, and rotates one by replacing
//! the file, without restarting the engine.

use std::path::{Path, PathBuf};

use nosplit_httpserve::token::{Token, TokenFileError};

/// The directory of per-host tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentTokens {
    dir: PathBuf,
}

/// Why a host's token cannot be used. Never contains a token.
#[derive(Debug, thiserror::Error)]
pub enum AgentTokenError {
    /// The host name cannot name a file (the store only holds checked
    /// names; this guards the path anyway).
    #[error("host name {0:?} cannot name a token file")]
    BadName(String),
    /// The file.
    #[error("agent token of host {host}: {source}")]
    File {
        /// The host.
        host: String,
        /// What is wrong with its file.
        source: TokenFileError,
    },
}

impl AgentTokens {
    /// Tokens kept in `dir`.
    pub fn new(dir: PathBuf) -> AgentTokens {
        AgentTokens { dir }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where host `host`'s token is kept.
    pub fn path(&self, host: &str) -> Result<PathBuf, AgentTokenError> {
        let ok = !host.is_empty()
            && host.len() <= 64
            && !host.starts_with('.')
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !ok {
            return Err(AgentTokenError::BadName(host.chars().take(80).collect()));
        }
        Ok(self.dir.join(format!("{host}.token")))
    }

    /// Host `host`'s token, read now.
    pub fn token(&self, host: &str) -> Result<Token, AgentTokenError> {
        let path = self.path(host)?;
        Token::from_file(&path).map_err(|source| AgentTokenError::File {
            host: host.to_string(),
            source,
        })
    }

    /// Whether `presented` is host `host`'s token (constant time in the
    /// secret; false when the host has no usable token file).
    pub fn verify(&self, host: &str, presented: &[u8]) -> bool {
        self.token(host).is_ok_and(|t| t.matches(presented))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn put(dir: &Path, name: &str, text: &str, mode: u32) {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn each_host_has_its_own_token() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = ("a".repeat(40), "b".repeat(40));
        put(d.path(), "h1.token", &format!("{a}\n"), 0o600);
        put(d.path(), "h2.token", &b, 0o600);
        let t = AgentTokens::new(d.path().to_path_buf());
        assert_eq!(t.token("h1").unwrap().expose(), a);
        assert!(t.verify("h1", a.as_bytes()));
        assert!(!t.verify("h1", b.as_bytes()), "h2's token is not h1's");
        assert!(!t.verify("h3", a.as_bytes()), "no file, no access");
    }

    #[test]
    fn bad_files_and_names_are_refused_with_the_reason() {
        let d = tempfile::tempdir().unwrap();
        put(d.path(), "open.token", &"c".repeat(40), 0o644);
        put(d.path(), "short.token", "tiny", 0o600);
        let t = AgentTokens::new(d.path().to_path_buf());
        let e = t.token("open").unwrap_err().to_string();
        assert!(e.contains("chmod 600") && !e.contains("cccc"), "{e}");
        let e = t.token("short").unwrap_err().to_string();
        assert!(e.contains("at least 32"), "{e}");
        for bad in ["../h1", "", ".hidden", "a/b"] {
            assert!(matches!(t.path(bad), Err(AgentTokenError::BadName(_))));
        }
    }
}
