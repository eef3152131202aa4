//! Helpers for checking raw request input at the edge: [`Problems`]
//! collects every problem of a request (`"field: message"`), reported
//! together as one [`Invalid`] (a 400 `invalid`); [`object`], [`string`]
//! and [`int`] check JSON bodies field by field. Pure functions, no I/O.

use serde_json::{Map, Value};

/// Input that does not pass; the message lists every problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// Problems found so far in one request.
#[derive(Debug, Default)]
pub struct Problems(Vec<String>);

impl Problems {
    /// Notes that `field` is wrong.
    pub fn add(&mut self, field: &str, message: impl std::fmt::Display) {
        self.0.push(format!("{field}: {message}"));
    }

    /// `value()` if nothing was wrong, else every problem in one error.
    pub fn finish<T, E: From<Invalid>>(self, value: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        if self.0.is_empty() {
            value()
        } else {
            Err(Invalid(self.0.join("; ")).into())
        }
    }
}

/// Parses a JSON body as an object; an empty body is `None`.
pub fn object(body: &[u8]) -> Result<Option<Map<String, Value>>, Invalid> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        Ok(_) => Err(Invalid("body: expected a JSON object".into())),
        Err(e) => Err(Invalid(format!("body: invalid JSON: {e}"))),
    }
}

/// A required string.
pub fn string<'a>(p: &mut Problems, field: &str, v: Option<&'a Value>) -> Option<&'a str> {
    match v {
        None | Some(Value::Null) => {
            p.add(field, "required");
            None
        }
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            p.add(field, "expected a string");
            None
        }
    }
}

/// An integer in `min..=max`, required or not (absent or null is then
/// fine and gives `None`).
pub fn int(
    p: &mut Problems,
    field: &str,
    v: Option<&Value>,
    (min, max): (u64, u64),
    required: bool,
) -> Option<u64> {
    match v {
        None | Some(Value::Null) => {
            if required {
                p.add(field, "required");
            }
            None
        }
        Some(Value::Number(n)) => match n.as_u64() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                p.add(field, format!("{n} is out of range {min}..={max}"));
                None
            }
        },
        Some(_) => {
            p.add(field, "expected an integer");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_problem_in_one_error() {
        let v = json!({"a": 5, "b": "x", "c": -1});
        let mut p = Problems::default();
        assert_eq!(int(&mut p, "a", v.get("a"), (1, 10), true), Some(5));
        assert_eq!(int(&mut p, "z", v.get("z"), (1, 10), false), None);
        assert_eq!(string(&mut p, "b", v.get("b")), Some("x"));
        assert_eq!(int(&mut p, "c", v.get("c"), (0, 10), false), None);
        assert_eq!(string(&mut p, "a", v.get("a")), None);
        assert_eq!(int(&mut p, "y", None, (0, 1), true), None);
        let e = p.finish(|| Ok::<(), Invalid>(())).unwrap_err();
        assert_eq!(
            e.0,
            "c: -1 is out of range 0..=10; a: expected a string; y: required"
        );
        assert_eq!(Problems::default().finish(|| Ok::<u8, Invalid>(3)), Ok(3));
    }

    #[test]
    fn objects() {
        assert_eq!(object(b"  "), Ok(None));
        assert!(object(b"{}").unwrap().unwrap().is_empty());
        assert!(object(b"[1]").is_err());
        assert!(object(b"{")
            .unwrap_err()
            .0
            .starts_with("body: invalid JSON"));
    }
}
