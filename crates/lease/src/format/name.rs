//! Names stored on disk: lockspace, resource and host names.

use std::fmt;

/// The on-disk width of a name field.
pub const NAME_LEN: usize = 48;

/// A validated name: 1 to 48 bytes of `[A-Za-z0-9._:-]`, so it fits a
/// fixed 48-byte field and prints safely in tables and logs.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Name(String);

/// Why a string is not a valid [`Name`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty string.
    #[error("name is empty")]
    Empty,
    /// Longer than [`NAME_LEN`].
    #[error("name {0:?} is longer than 48 bytes")]
    TooLong(String),
    /// Has a character outside `[A-Za-z0-9._:-]`.
    #[error("name {name:?} has character {ch:?}; allowed: letters, digits, '.', '_', ':', '-'")]
    BadChar {
        /// The name.
        name: String,
        /// The first bad character.
        ch: char,
    },
}

impl Name {
    /// Validates `s`.
    pub fn new(s: &str) -> Result<Name, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > NAME_LEN {
            return Err(NameError::TooLong(s.to_string()));
        }
        if let Some(ch) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
        {
            return Err(NameError::BadChar {
                name: s.to_string(),
                ch,
            });
        }
        Ok(Name(s.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The zero-padded 48-byte field.
    pub fn to_field(&self) -> [u8; NAME_LEN] {
        let mut f = [0u8; NAME_LEN];
        f[..self.0.len()].copy_from_slice(self.0.as_bytes());
        f
    }

    /// Decodes a zero-padded field.
    pub fn from_field(field: &[u8]) -> Result<Name, NameError> {
        let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
        if field[end..].iter().any(|&b| b != 0) {
            return Err(NameError::BadChar {
                name: String::from_utf8_lossy(field).into(),
                ch: '\0',
            });
        }
        match std::str::from_utf8(&field[..end]) {
            Ok(s) => Name::new(s),
            Err(_) => Err(NameError::BadChar {
                name: String::from_utf8_lossy(&field[..end]).into(),
                ch: char::REPLACEMENT_CHARACTER,
            }),
        }
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Name::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid() {
        assert!(Name::new("vm-0f3c.disk_1:a").is_ok());
        assert_eq!(Name::new(""), Err(NameError::Empty));
        assert!(matches!(
            Name::new(&"a".repeat(49)),
            Err(NameError::TooLong(_))
        ));
        assert!(matches!(
            Name::new("a b"),
            Err(NameError::BadChar { ch: ' ', .. })
        ));
    }

    #[test]
    fn field_roundtrip_and_garbage() {
        let n = Name::new("ls1").unwrap();
        assert_eq!(Name::from_field(&n.to_field()).unwrap(), n);
        let mut f = n.to_field();
        f[10] = b'x'; // byte after the terminator
        assert!(Name::from_field(&f).is_err());
        assert!(Name::from_field(&[0xff; NAME_LEN]).is_err());
        assert_eq!(Name::from_field(&[0; NAME_LEN]), Err(NameError::Empty));
    }
}
