//! Where the config comes from and how each file format becomes one JSON-like tree.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The config file to use: `--config`, `$RSTORE_CONFIG`, then the standard places.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("RSTORE_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let candidates = candidates();
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        let list: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        format!("no config file: pass --config FILE or set RSTORE_CONFIG (looked in {})", list.join(", "))
    })
}

fn candidates() -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from("rstore.toml")];
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    if let Some(x) = xdg {
        out.push(x.join("rstore/config.toml"));
    }
    out.push(PathBuf::from("/etc/rstore/config.toml"));
    out
}

/// Reads `path` and returns the registry tree (for pyproject.toml, `[tool.remote-store]`).
pub fn read_tree(path: &Path) -> Result<Value, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read config {shown}: {e}"))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if matches!(ext, "yaml" | "yml") {
        // As PyYAML's safe_load reads it (YAML 1.1 scalars, anchors, merge keys).
        let v = super::yaml::parse(&text).map_err(|e| format!("{shown}: invalid YAML: {e}"))?;
        return Ok(if v.is_null() { Value::Object(Default::default()) } else { v });
    }
    let doc: toml::Table = toml::from_str(&text).map_err(|e| toml_error(&shown.to_string(), &text, &e))?;
    let v = serde_json::to_value(doc).map_err(|e| format!("{shown}: {e}"))?;
    if name == "pyproject.toml" {
        return v
            .get("tool")
            .and_then(|t| t.get("remote-store"))
            .cloned()
            .ok_or_else(|| format!("{shown}: no [tool.remote-store] table"));
    }
    Ok(v)
}

/// One line: file, line, column and what is wrong.
fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("{file}:{line}:{col}: invalid TOML: {msg}")
        }
        None => format!("{file}: invalid TOML: {msg}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[stores.data]\nbackend = \n").unwrap();
        let err = read_tree(&p).unwrap_err();
        assert!(err.contains("c.toml:2:"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }

    #[test]
    fn pyproject_uses_the_tool_table() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pyproject.toml");
        std::fs::write(&p, "[project]\nname='x'\n[tool.remote-store.stores.data]\nbackend='m'\n").unwrap();
        let v = read_tree(&p).unwrap();
        assert_eq!(v["stores"]["data"]["backend"], "m");
        std::fs::write(&p, "[project]\nname='x'\n").unwrap();
        assert!(read_tree(&p).unwrap_err().contains("[tool.remote-store]"));
    }

    #[test]
    fn yaml_errors_are_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, "stores:\n  data: [unclosed\n").unwrap();
        let err = read_tree(&p).unwrap_err();
        assert!(err.contains("invalid YAML"), "{err}");
    }
}
