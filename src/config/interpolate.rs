//! `${VAR}` / `${VAR:-default}` / `$${` interpolation in string values, as remote-store
//! does it. Hand-written on purpose: shell-style crates also expand bare `$VAR`, which
//! would corrupt secrets that contain a `$`.

use serde_json::Value;

/// Looks variables up; tests pass a map instead of the process environment.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Interpolates every string in `value`, at any depth. Errors name the dotted path.
pub fn interpolate(value: &mut Value, path: &str, env: Lookup) -> Result<(), String> {
    match value {
        Value::String(s) => *s = expand(s, path, env)?,
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate(item, &format!("{path}[{i}]"), env)?;
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let child = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                interpolate(v, &child, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Expands one string exactly as remote-store's `resolve_env` does (its pattern is
/// `\$\$\{|\$\{([^}]+)\}`): `$${` is a literal `${`; `${NAME}` and `${NAME:-default}`
/// take any characters but `}` as the name; `${}` and an unterminated `${A` stay as
/// they are; a set but empty variable is empty (the default is only for unset ones).
pub fn expand(input: &str, path: &str, env: Lookup) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
            continue;
        }
        let placeholder = tail.strip_prefix("${").and_then(|body| Some((body, body.find('}')?)));
        match placeholder {
            Some((body, end)) if end > 0 => {
                out.push_str(&resolve(&body[..end], path, env)?);
                rest = &body[end + 1..];
            }
            _ => {
                out.push('$');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn resolve(expr: &str, path: &str, env: Lookup) -> Result<String, String> {
    if let Some((name, default)) = expr.split_once(":-") {
        return Ok(env(name).unwrap_or_else(|| default.to_string()));
    }
    env(expr).ok_or_else(|| {
        format!("{path}: environment variable {expr} is not set (use ${{{expr}:-default}} for a default)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(s: &str) -> Result<String, String> {
        let vars: HashMap<&str, &str> = [("A", "alpha"), ("EMPTY", "")].into();
        let env = |k: &str| vars.get(k).map(|v| v.to_string());
        expand(s, "x.y", &env)
    }

    #[test]
    fn expands_set_variables_and_defaults() {
        assert_eq!(run("${A}").unwrap(), "alpha");
        assert_eq!(run("pre-${A}-post").unwrap(), "pre-alpha-post");
        assert_eq!(run("${B:-dflt}").unwrap(), "dflt");
        assert_eq!(run("${B:-}").unwrap(), "");
        assert_eq!(run("${A:-dflt}").unwrap(), "alpha");
        assert_eq!(run("${EMPTY}").unwrap(), "");
    }

    #[test]
    fn escapes_and_plain_dollars_stay() {
        assert_eq!(run("$${A}").unwrap(), "${A}");
        assert_eq!(run("cost $5 and $A").unwrap(), "cost $5 and $A");
        assert_eq!(run("a$").unwrap(), "a$");
    }

    #[test]
    fn unset_variable_names_the_path() {
        let err = run("${MISSING}").unwrap_err();
        assert!(err.contains("x.y") && err.contains("MISSING"), "{err}");
        // As remote-store's pattern: these are not placeholders and stay as written.
        assert_eq!(run("${A").unwrap(), "${A");
        assert_eq!(run("${}").unwrap(), "${}");
        assert!(run("${1X}").unwrap_err().contains("1X"), "any characters but }} name a variable");
    }

    #[test]
    fn walks_nested_values_with_paths() {
        let mut v = serde_json::json!({"b": {"o": {"k": "${A}", "l": ["${A}", 3]}}});
        let env = |k: &str| (k == "A").then(|| "v".to_string());
        interpolate(&mut v, "", &env).unwrap();
        assert_eq!(v, serde_json::json!({"b": {"o": {"k": "v", "l": ["v", 3]}}}));
        let mut bad = serde_json::json!({"backends": {"s3": {"options": {"key": "${NOPE}"}}}});
        let err = interpolate(&mut bad, "", &env).unwrap_err();
        assert!(err.starts_with("backends.s3.options.key:"), "{err}");
    }
}
