//! A small checked walk over a TOML table that collects every problem (bad
//! type, bad value, missing field, unknown field), each named by its path
//! (`step[2].at_s`), instead of stopping at the first as serde does.

use std::collections::BTreeSet;
use std::fmt;

use toml::{Table, Value};

/// One problem in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path of the field (`""` for the file as a whole).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Walks one table; [`Fields::finish`] reports the fields nobody took.
#[derive(Debug)]
pub struct Fields<'a, 'p> {
    table: &'a Table,
    prefix: String,
    taken: BTreeSet<&'static str>,
    problems: &'p mut Vec<Problem>,
}

impl<'a, 'p> Fields<'a, 'p> {
    pub fn new(table: &'a Table, prefix: String, problems: &'p mut Vec<Problem>) -> Self {
        Fields {
            table,
            prefix,
            taken: BTreeSet::new(),
            problems,
        }
    }

    /// The path of `key` in this table.
    pub fn path(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    /// Records a problem with `key`.
    pub fn problem(&mut self, key: &str, message: impl Into<String>) {
        let field = self.path(key);
        self.problems.push(Problem {
            field,
            message: message.into(),
        });
    }

    fn take(&mut self, key: &'static str) -> Option<&'a Value> {
        self.taken.insert(key);
        self.table.get(key)
    }

    fn typed<T>(
        &mut self,
        key: &'static str,
        what: &str,
        conv: impl Fn(&Value) -> Option<T>,
    ) -> Option<T> {
        let v = self.take(key)?;
        match conv(v) {
            Some(x) => Some(x),
            None => {
                self.problem(key, format!("expected {what}, found {}", v.type_str()));
                None
            }
        }
    }

    /// An optional string.
    pub fn str(&mut self, key: &'static str) -> Option<String> {
        self.typed(key, "a string", |v| v.as_str().map(str::to_string))
    }

    /// An optional boolean.
    pub fn bool(&mut self, key: &'static str) -> Option<bool> {
        self.typed(key, "true or false", Value::as_bool)
    }

    /// An optional non-negative integer within `lo..=hi`.
    pub fn int(&mut self, key: &'static str, lo: u64, hi: u64) -> Option<u64> {
        let n = self.typed(key, "an integer", Value::as_integer)?;
        match u64::try_from(n) {
            Ok(n) if (lo..=hi).contains(&n) => Some(n),
            _ => {
                self.problem(key, format!("{n} is out of range {lo}..={hi}"));
                None
            }
        }
    }

    /// An optional integer within `lo..=hi` that fits a `u32`.
    pub fn int32(&mut self, key: &'static str, lo: u32, hi: u32) -> Option<u32> {
        self.int(key, u64::from(lo), u64::from(hi))
            .and_then(|n| u32::try_from(n).ok())
    }

    /// An optional number (integer or float) within `lo..=hi`.
    pub fn num(&mut self, key: &'static str, lo: f64, hi: f64) -> Option<f64> {
        let n = self.typed(key, "a number", |v| {
            v.as_float().or_else(|| v.as_integer().map(|i| i as f64))
        })?;
        if n.is_finite() && (lo..=hi).contains(&n) {
            Some(n)
        } else {
            self.problem(key, format!("{n} is out of range {lo}..={hi}"));
            None
        }
    }

    /// An optional array of tables.
    pub fn tables(&mut self, key: &'static str) -> Vec<&'a Table> {
        let Some(v) = self.take(key) else {
            return Vec::new();
        };
        let Some(items) = v.as_array() else {
            self.problem(
                key,
                format!(
                    "expected an array of tables ([[{key}]]), found {}",
                    v.type_str()
                ),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.as_table() {
                Some(t) => out.push(t),
                None => self.problem(
                    &format!("{key}[{i}]"),
                    format!("expected a table, found {}", item.type_str()),
                ),
            }
        }
        out
    }

    /// An optional table.
    pub fn take_table(&mut self, key: &'static str) -> Option<&'a Table> {
        let v = self.take(key)?;
        if v.as_table().is_none() {
            self.problem(key, format!("expected a table, found {}", v.type_str()));
        }
        v.as_table()
    }

    /// Marks `key` as known (the caller checks it itself).
    pub fn mark(&mut self, key: &'static str) {
        self.taken.insert(key);
    }

    /// A required field was absent.
    pub fn missing(&mut self, key: &'static str, hint: &str) {
        self.problem(key, format!("required: {hint}"));
    }

    /// Reports every field not taken.
    pub fn finish(self) {
        let known: Vec<&str> = self.taken.iter().copied().collect();
        for key in self.table.keys() {
            if !self.taken.contains(key.as_str()) {
                let field = if self.prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{}.{key}", self.prefix)
                };
                self.problems.push(Problem {
                    field,
                    message: format!("unknown field; known fields: {}", known.join(", ")),
                });
            }
        }
    }
}
