//! YAML read as PyYAML's `safe_load` reads it (what remote-store users load YAML configs
//! with): YAML 1.1 plain scalars (`yes`/`on`/`off` booleans, `~` null, `0x1f`/`017`
//! integers, `.5` floats), anchors and aliases, and merge keys (`<<: *base`,
//! `<<: [*a, *b]`, the mapping's own keys winning). yaml-rust2 parses; what is ours is
//! only the YAML 1.1 resolution of plain scalars and the merge, which no YAML 1.2 crate
//! does.

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Parses one YAML document into a JSON-like tree (an empty document is `null`).
pub fn parse(text: &str) -> Result<Value, String> {
    let mut b = Builder::default();
    Parser::new_from_str(text).load(&mut b, false).map_err(|e| e.to_string())?;
    match b.error {
        Some(e) => Err(e),
        None => Ok(b.doc.unwrap_or(Value::Null)),
    }
}

enum Frame {
    Seq { items: Vec<Value>, anchor: usize },
    Map { entries: Map<String, Value>, key: Option<String>, merges: Vec<Value>, anchor: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: std::collections::HashMap<usize, Value>,
    doc: Option<Value>,
    error: Option<String>,
}

impl Builder {
    /// A finished value goes into the collection being built (or is the document).
    fn push(&mut self, v: Value, anchor: usize, mark: Marker) {
        if anchor > 0 {
            self.anchors.insert(anchor, v.clone());
        }
        match self.stack.last_mut() {
            None => self.doc = Some(v),
            Some(Frame::Seq { items, .. }) => items.push(v),
            Some(Frame::Map { entries, key, merges, .. }) => match key.take() {
                None if v == Value::String(MERGE.into()) => *key = Some(MERGE.into()),
                None => match key_text(&v) {
                    Some(k) => *key = Some(k),
                    None => self.fail(format!("line {}: a mapping key must be a scalar", mark.line())),
                },
                Some(k) if k == MERGE => merges.push(v),
                Some(k) => {
                    entries.insert(k, v);
                }
            },
        }
    }

    fn fail(&mut self, e: String) {
        self.error.get_or_insert(e);
    }
}

const MERGE: &str = "<<";

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let v = resolve(text, style, tag.as_ref());
                self.push(v, anchor, mark);
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(v) => self.push(v, 0, mark),
                None => self.fail(format!("line {}: alias to an unknown anchor", mark.line())),
            },
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq { items: Vec::new(), anchor }),
            Event::MappingStart(anchor, _) => {
                self.stack.push(Frame::Map { entries: Map::new(), key: None, merges: Vec::new(), anchor })
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq { items, anchor }) = self.stack.pop() {
                    self.push(Value::Array(items), anchor, mark);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map { mut entries, merges, anchor, .. }) = self.stack.pop() {
                    if let Err(e) = merge(&mut entries, merges) {
                        self.fail(format!("line {}: {e}", mark.line()));
                    }
                    self.push(Value::Object(entries), anchor, mark);
                }
            }
            _ => {}
        }
    }
}

/// `<<: *base` or `<<: [*a, *b]`: keys of the merged mappings that the mapping does not
/// set itself; with a list, earlier mappings win (PyYAML's rule).
fn merge(entries: &mut Map<String, Value>, merges: Vec<Value>) -> Result<(), String> {
    let own: Vec<String> = entries.keys().cloned().collect();
    for m in merges {
        let sources = match m {
            Value::Object(o) => vec![o],
            Value::Array(list) => list
                .into_iter()
                .map(|v| match v {
                    Value::Object(o) => Ok(o),
                    _ => Err("a merge key list must hold mappings".to_string()),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err("a merge key (<<) must name a mapping or a list of mappings".into()),
        };
        for src in sources {
            for (k, v) in src {
                if !own.contains(&k) && !entries.contains_key(&k) {
                    entries.insert(k, v);
                }
            }
        }
    }
    Ok(())
}

/// A mapping key as text (PyYAML would keep non-string keys; remote-store names are strings).
fn key_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "True" } else { "False" }.to_string()),
        Value::Null => Some("None".to_string()),
        _ => None,
    }
}

/// A scalar as PyYAML's SafeLoader resolves it: quoted and block scalars and `!!str`
/// are strings; plain ones follow YAML 1.1's null, bool, int and float forms.
fn resolve(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Value {
    let explicit = tag.filter(|t| t.handle == "tag:yaml.org,2002:" || t.handle == "!!").map(|t| t.suffix.as_str());
    if explicit == Some("str") || (style != TScalarStyle::Plain && explicit.is_none()) {
        return Value::String(text);
    }
    let t = text.as_str();
    if matches!(t, "" | "~" | "null" | "Null" | "NULL") {
        return Value::Null;
    }
    match t {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => return Value::Bool(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => return Value::Bool(false),
        _ => {}
    }
    if let Some(n) = int_1_1(t) {
        return Value::Number(n.into());
    }
    if let Some(f) = float_1_1(t).and_then(Number::from_f64) {
        return Value::Number(f);
    }
    Value::String(text)
}

/// YAML 1.1 integers: decimal, `0x` hex, `0b` binary, a leading `0` for octal; `_` allowed.
fn int_1_1(t: &str) -> Option<i64> {
    let (neg, body) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let clean: String = body.chars().filter(|c| *c != '_').collect();
    let v = if let Some(h) = clean.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()?
    } else if let Some(b) = clean.strip_prefix("0b") {
        i64::from_str_radix(b, 2).ok()?
    } else if clean.len() > 1 && clean.starts_with('0') {
        i64::from_str_radix(&clean[1..], 8).ok()?
    } else if !clean.is_empty() && clean.bytes().all(|c| c.is_ascii_digit()) && !body.starts_with('_') {
        clean.parse().ok()?
    } else {
        return None;
    };
    Some(if neg { -v } else { v })
}

/// YAML 1.1 floats: a `.` is required (`1.5`, `.5`, `1.e3`, `6.8523015e+5`), and the
/// `.inf`/`.nan` spellings (not representable in JSON: kept as text).
fn float_1_1(t: &str) -> Option<f64> {
    let body = t.trim_start_matches(['-', '+']);
    if !body.contains('.') || !body.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let clean: String = t.chars().filter(|c| *c != '_').collect();
    clean.parse::<f64>().ok().filter(|f| f.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_scalars_resolve_as_pyyaml_safe_load_does() {
        let v = parse(
            "a: yes\nb: 'yes'\nc: off\nd: ~\ne: 017\nf: 0x1F\ng: 1_000\nh: .5\ni: 1.0e+3\nj: text\nk: \"on\"\nl: !!str 12\nm:\nn: -3\n",
        )
        .unwrap();
        let want = json!({"a": true, "b": "yes", "c": false, "d": null, "e": 15, "f": 31, "g": 1000,
            "h": 0.5, "i": 1000.0, "j": "text", "k": "on", "l": "12", "m": null, "n": -3});
        assert_eq!(v, want);
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let v = parse(
            "base: &b {x: 1, y: 2}\nother: &o {y: 20, z: 30}\none: {<<: *b, y: 9}\nmany:\n  <<: [*b, *o]\n  w: 0\nlist: [*b]\n",
        )
        .unwrap();
        assert_eq!(v["one"], json!({"x": 1, "y": 9}), "own keys win");
        assert_eq!(v["many"], json!({"w": 0, "x": 1, "y": 2, "z": 30}), "earlier merged mappings win");
        assert_eq!(v["list"], json!([{"x": 1, "y": 2}]));
        assert!(parse("a: {<<: 3}\n").unwrap_err().contains("merge key"));
        assert!(parse("a: [1\n").is_err(), "syntax errors are errors");
    }
}
