//! `openapi.yaml` as a checker: parsed as YAML, each operation found by
//! method and path template, and each answer checked against it: its
//! status must be documented for the operation (a success status
//! explicitly, an error one at least through `default`), and its JSON body
//! must validate (JSON Schema 2020-12, as OpenAPI 3.1 uses) against the
//! documented schema, with every `$ref` resolved inside the document.
//! Shared by the agent's and the engine's API tests (feature
//! `test-support`); errors are strings, for test assertions.

use serde_json::{Map, Value};

/// The parsed document.
#[derive(Debug)]
pub struct Spec {
    doc: Value,
}

/// One documented operation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Operation {
    /// Upper case: `GET`, `POST`, ...
    pub method: String,
    /// The path template, e.g. `/v1/vms/{id}`.
    pub path: String,
    /// Its `x-nosplit-role`, if any.
    pub role: Option<String>,
}

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

impl Spec {
    /// Reads and parses a YAML OpenAPI 3.1 document.
    pub fn load(path: &str) -> Result<Spec, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let doc: Value =
            serde_yaml_ng::from_str(&text).map_err(|e| format!("{path}: not YAML: {e}"))?;
        if !doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1"))
        {
            return Err(format!("{path}: not an OpenAPI 3.1 document"));
        }
        Ok(Spec { doc })
    }

    /// Every operation, sorted; an error for an unknown key under a path.
    pub fn operations(&self) -> Result<Vec<Operation>, String> {
        let mut out = Vec::new();
        let paths = self.doc["paths"]
            .as_object()
            .ok_or("the document has no paths")?;
        for (path, item) in paths {
            let item = item
                .as_object()
                .ok_or_else(|| format!("{path}: not a path item"))?;
            for (key, op) in item {
                if !(METHODS.contains(&key.as_str()) || key == "parameters") {
                    return Err(format!("unexpected key {key:?} under {path}"));
                }
                if key == "parameters" {
                    continue;
                }
                out.push(Operation {
                    method: key.to_uppercase(),
                    path: path.clone(),
                    role: op["x-nosplit-role"].as_str().map(str::to_string),
                });
            }
        }
        out.sort();
        Ok(out)
    }

    fn op(&self, method: &str, path: &str) -> Result<&Value, String> {
        let op = &self.doc["paths"][path][method.to_lowercase()];
        if op.is_object() {
            Ok(op)
        } else {
            Err(format!("{method} {path} is not documented"))
        }
    }

    /// Follows a `$ref` (`#/a/b/c`) inside the document, if `v` is one.
    fn deref<'a>(&'a self, v: &'a Value) -> Result<&'a Value, String> {
        match v.get("$ref").and_then(Value::as_str) {
            None => Ok(v),
            Some(r) => {
                let ptr = r
                    .strip_prefix('#')
                    .ok_or_else(|| format!("external $ref {r}"))?;
                self.doc
                    .pointer(ptr)
                    .ok_or_else(|| format!("dangling $ref {r}"))
            }
        }
    }

    /// Checks `body` against `schema`, a schema from this document (its
    /// `$ref`s resolve against the document's `components`).
    pub fn validate(&self, schema: &Value, body: &Value) -> Result<(), String> {
        let mut root: Map<String, Value> = match schema {
            Value::Object(m) => m.clone(),
            Value::Bool(b) => {
                return if *b {
                    Ok(())
                } else {
                    Err("schema false".into())
                }
            }
            other => return Err(format!("not a schema: {other}")),
        };
        root.insert("components".into(), self.doc["components"].clone());
        let v = jsonschema::draft202012::new(&Value::Object(root))
            .map_err(|e| format!("the schema itself is broken: {e}"))?;
        let errors: Vec<String> = v
            .iter_errors(body)
            .map(|e| format!("{} at {:?}", e, e.instance_path().to_string()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// The JSON schema documented for `content` (a `content` map), if any.
    fn json_schema<'a>(&'a self, content: &'a Value) -> Option<&'a Value> {
        content.get("application/json").map(|m| &m["schema"])
    }

    /// Checks one answer of `method path` (the template).
    pub fn check_response(
        &self,
        method: &str,
        path: &str,
        status: u16,
        body: &Value,
    ) -> Result<(), String> {
        let op = self.op(method, path)?;
        let responses = &op["responses"];
        let code = status.to_string();
        let resp = match (responses.get(&code), responses.get("default")) {
            (Some(r), _) => r,
            (None, Some(r)) if status >= 400 => r,
            _ => {
                return Err(format!(
                    "{method} {path}: status {status} is not documented (success statuses must be listed)"
                ))
            }
        };
        let resp = self.deref(resp)?;
        match resp.get("content").and_then(|c| self.json_schema(c)) {
            None if body.is_null() => Ok(()),
            None => Err(format!(
                "{method} {path} {status}: documented without a body, got {body}"
            )),
            Some(schema) => self
                .validate(schema, body)
                .map_err(|e| format!("{method} {path} {status}: {e}; body {body}")),
        }
    }

    /// Checks a request body against the documented `requestBody`.
    pub fn check_request(&self, method: &str, path: &str, body: &Value) -> Result<(), String> {
        let op = self.op(method, path)?;
        let Some(rb) = op.get("requestBody") else {
            return if body.is_null() {
                Ok(())
            } else {
                Err(format!("{method} {path} takes no body, got {body}"))
            };
        };
        let rb = self.deref(rb)?;
        if body.is_null() {
            return if rb["required"] == Value::Bool(true) {
                Err(format!("{method} {path}: the body is required"))
            } else {
                Ok(())
            };
        }
        let schema = self
            .json_schema(&rb["content"])
            .ok_or_else(|| format!("{method} {path}: no JSON request schema"))?;
        self.validate(schema, body)
            .map_err(|e| format!("{method} {path} request: {e}; body {body}"))
    }

    /// A named schema of `components/schemas`, as a `$ref` schema.
    pub fn schema(name: &str) -> Value {
        serde_json::json!({ "$ref": format!("#/components/schemas/{name}") })
    }
}
