//! Who may call what: bearer [`Token`]s (secrets that never print and
//! compare in constant time, from [`nosplit_httpserve::token`]), each with
//! a [`Role`], gathered in [`Tokens`].
//!
//! `admin` may call every route. `user` may manage VMs (create, list, get,
//! delete, start, stop, HA flag, priority) and read tasks, events and the
//! status; hosts, domains, the strategy and the HA settings are admin only.
//! `host` is no configured token: it is the role of a request to the one
//! route a host's agent calls (`POST /v1/hosts/{name}/register`), whose handler checks
//! the bearer against that host's own token; it opens no other route.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use nosplit_httpserve::token::{MAX_TOKEN_LEN, MIN_TOKEN_LEN};

/// A caller's role. `Admin` can do all that `User` can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// VMs, tasks, events, status.
    User,
    /// A host's agent registering itself (that route only).
    Host,
}

impl Role {
    /// Whether this role may call a route that needs `needed`.
    pub fn allows(self, needed: Role) -> bool {
        matches!(
            (self, needed),
            (Role::Admin, _) | (Role::User, Role::User) | (Role::Host, Role::Host)
        )
    }

    /// `admin` or `user`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
            Role::Host => "host",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = TokenError;
    fn from_str(s: &str) -> Result<Role, TokenError> {
        match s {
            "admin" => Ok(Role::Admin),
            "user" => Ok(Role::User),
            other => Err(TokenError::BadRole(other.chars().take(32).collect())),
        }
    }
}

/// Why tokens are not usable. Messages never contain a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Shorter than [`MIN_TOKEN_LEN`].
    #[error("a token is {0} characters long; at least {MIN_TOKEN_LEN} are required")]
    TooShort(usize),
    /// Longer than [`MAX_TOKEN_LEN`].
    #[error("a token is longer than {MAX_TOKEN_LEN} characters")]
    TooLong,
    /// Holds a character that cannot go in an HTTP header as is.
    #[error("a token holds a character other than printable ASCII (0x21..=0x7e)")]
    BadChar,
    /// A role other than `admin` or `user`.
    #[error("unknown role {0:?} (expected admin or user)")]
    BadRole(String),
    /// No token at all: nobody could call the API.
    #[error("no token configured")]
    Empty,
    /// The same secret twice (entries `.0` and `.1`, 0-based).
    #[error("tokens {0} and {1} are the same secret")]
    Duplicate(usize, usize),
}

impl From<nosplit_httpserve::TokenError> for TokenError {
    fn from(e: nosplit_httpserve::TokenError) -> TokenError {
        match e {
            nosplit_httpserve::TokenError::TooShort(n) => TokenError::TooShort(n),
            nosplit_httpserve::TokenError::TooLong => TokenError::TooLong,
            nosplit_httpserve::TokenError::BadChar => TokenError::BadChar,
        }
    }
}

/// One bearer secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(nosplit_httpserve::Token);

impl Token {
    /// Checks `secret` (printable ASCII without spaces,
    /// `MIN_TOKEN_LEN..=MAX_TOKEN_LEN` long) and keeps it.
    pub fn new(secret: &str) -> Result<Token, TokenError> {
        Ok(Token(nosplit_httpserve::Token::new(secret)?))
    }

    /// Whether `presented` is this token. The time taken depends on the
    /// lengths only, never on where the bytes differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.0.matches(presented)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// The configured tokens: a non-empty list of distinct (role, token).
#[derive(Clone)]
pub struct Tokens(Vec<(Role, Token)>);

impl Tokens {
    /// Checks the list: at least one token, no secret twice.
    pub fn new(list: Vec<(Role, Token)>) -> Result<Tokens, TokenError> {
        if list.is_empty() {
            return Err(TokenError::Empty);
        }
        for (i, (_, a)) in list.iter().enumerate() {
            if let Some(j) = list[i + 1..].iter().position(|(_, b)| a == b) {
                return Err(TokenError::Duplicate(i, i + 1 + j));
            }
        }
        Ok(Tokens(list))
    }

    /// Parses `(role, secret)` string pairs, as a config file holds them.
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Tokens, TokenError> {
        let list = pairs
            .into_iter()
            .map(|(r, s)| Ok((r.parse()?, Token::new(s)?)))
            .collect::<Result<Vec<_>, TokenError>>()?;
        Tokens::new(list)
    }

    /// The role of the token `presented`, if it is one. Compares against
    /// every token, each in constant time, with no early exit.
    pub fn role_of(&self, presented: &[u8]) -> Option<Role> {
        let mut found = None;
        for (role, token) in &self.0 {
            if token.matches(presented) {
                found = Some(*role);
            }
        }
        found
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false (a [`Tokens`] is never empty); for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let roles: Vec<&str> = self.0.iter().map(|(r, _)| r.as_str()).collect();
        write!(f, "Tokens({roles:?})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "admin-token-0123456789abcdef-0123";
    const U: &str = "user-token-0123456789abcdef-01234";

    #[test]
    fn roles_and_lookup() {
        let t = Tokens::parse([("admin", A), ("user", U)]).unwrap();
        assert_eq!(t.role_of(A.as_bytes()), Some(Role::Admin));
        assert_eq!(t.role_of(U.as_bytes()), Some(Role::User));
        assert_eq!(t.role_of(&A.as_bytes()[1..]), None);
        assert_eq!(t.role_of(b""), None);
        assert!(Role::Admin.allows(Role::Admin) && Role::Admin.allows(Role::User));
        assert!(Role::User.allows(Role::User) && !Role::User.allows(Role::Admin));
    }

    #[test]
    fn bad_lists_are_refused_without_printing_secrets() {
        assert_eq!(Tokens::new(vec![]).unwrap_err(), TokenError::Empty);
        let e = Tokens::parse([("admin", A), ("user", A)]).unwrap_err();
        assert_eq!(e, TokenError::Duplicate(0, 1));
        let e = Tokens::parse([("root", A)]).unwrap_err();
        assert!(matches!(e, TokenError::BadRole(_)));
        assert_eq!(Token::new("short").unwrap_err(), TokenError::TooShort(5));
        assert_eq!(
            Token::new(&format!("{A} x")).unwrap_err(),
            TokenError::BadChar
        );
        let t = Tokens::parse([("admin", A)]).unwrap();
        assert_eq!(format!("{t:?}"), "Tokens([\"admin\"])");
        assert_eq!(format!("{:?}", Token::new(A).unwrap()), "<redacted>");
    }
}
