//! Secrets out of what admins read: the configuration versions and their diffs are shown
//! by the admin API and page, but SIP passwords, CTI password hashes and TLS keys must not
//! be readable there (an admin could log in as anyone otherwise). The version files on
//! disk keep the real text, so a rollback restores the real secrets.

use std::collections::HashMap;

/// Keys whose values are secrets wherever they appear.
const SECRET_KEYS: &[&str] = &[
    "password",
    "password_hash",
    "secret",
    "token",
    "credential",
    "private_key",
    "api_key",
];

/// What a secret is replaced with.
pub const REDACTED: &str = "<redacted>";
/// … when the secret differs from the previous version (so the diff still says so).
pub const REDACTED_CHANGED: &str = "<redacted, changed>";

/// Whether the value under `key` (in the table at `path`) is a secret.
fn is_secret(path: &[String], key: &str, value: &toml_edit::Value) -> bool {
    SECRET_KEYS.contains(&key)
        || (key == "key" && path.last().is_some_and(|p| p == "tls"))
        || value
            .as_str()
            .is_some_and(|s| s.contains("-----BEGIN") && s.contains("PRIVATE KEY"))
}

/// The name of an entry of an array of tables: its `name`, `id` or `number`, so a
/// secret keeps its identity when entries are inserted before it.
fn entry_name(t: &dyn toml_edit::TableLike, i: usize) -> String {
    ["name", "id", "number"]
        .iter()
        .find_map(|k| {
            t.get(k)
                .and_then(|v| v.as_str())
                .map(|s| format!("{k}={s}"))
        })
        .unwrap_or_else(|| i.to_string())
}

/// Calls `f(path, key, value)` for every secret value under `t`.
fn walk(
    t: &mut dyn toml_edit::TableLike,
    path: &mut Vec<String>,
    f: &mut dyn FnMut(&str, &mut toml_edit::Value),
) {
    for (k, item) in t.iter_mut() {
        let key = k.get().to_string();
        path.push(key.clone());
        match item {
            toml_edit::Item::Table(sub) => walk(sub, path, f),
            toml_edit::Item::ArrayOfTables(a) => {
                for (i, sub) in a.iter_mut().enumerate() {
                    path.push(entry_name(sub, i));
                    walk(sub, path, f);
                    path.pop();
                }
            }
            toml_edit::Item::Value(v) => walk_value(&key, v, path, f),
            toml_edit::Item::None => {}
        }
        path.pop();
    }
}

fn walk_value(
    key: &str,
    v: &mut toml_edit::Value,
    path: &mut Vec<String>,
    f: &mut dyn FnMut(&str, &mut toml_edit::Value),
) {
    let parent = &path[..path.len().saturating_sub(1)];
    if is_secret(parent, key, v) {
        f(&path.join("."), v);
        return;
    }
    match v {
        toml_edit::Value::InlineTable(t) => walk(t, path, f),
        toml_edit::Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                let name = x
                    .as_inline_table()
                    .map(|t| entry_name(t, i))
                    .unwrap_or_else(|| i.to_string());
                path.push(name);
                walk_value(key, x, path, f);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Every secret of `text` by its path (values as written).
fn secrets(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    if let Ok(mut doc) = text.parse::<toml_edit::DocumentMut>() {
        walk(doc.as_table_mut(), &mut Vec::new(), &mut |p, v| {
            out.insert(p.to_string(), v.to_string());
        });
    }
    out
}

/// `text` with every secret replaced by [`REDACTED`], or by [`REDACTED_CHANGED`] where it
/// differs from `previous` (absent: nothing is marked changed). A text that is not TOML
/// is withheld whole rather than shown with its secrets.
pub fn redact(text: &str, previous: Option<&str>) -> String {
    let Ok(mut doc) = text.parse::<toml_edit::DocumentMut>() else {
        return "# (not valid TOML: withheld, it may hold secrets)\n".to_string();
    };
    let before = previous.map(secrets);
    walk(doc.as_table_mut(), &mut Vec::new(), &mut |p, v| {
        let changed = before
            .as_ref()
            .is_some_and(|b| b.get(p) != Some(&v.to_string()));
        let decor = v.decor().clone();
        *v = toml_edit::Value::from(if changed { REDACTED_CHANGED } else { REDACTED });
        *v.decor_mut() = decor;
    });
    doc.to_string()
}

/// A unified diff of two configuration texts with their secrets redacted; a changed
/// secret shows as a changed line without its value.
pub fn diff(old: &str, new: &str, old_label: &str, new_label: &str) -> String {
    let (a, b) = (redact(old, None), redact(new, Some(old)));
    similar::TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(2)
        .header(old_label, new_label)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# users
[[users]]
name = "1001"
password = "hunter2"  # the phone's

[[users]]
name = "1002"
password = "swordfish"

[sip.tls]
cert = "cert.pem"
key = "key.pem"

[[acd.queue]]
name = "support"
leave_key = "1"

[[cti.user]]
name = "root"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$abc$def"
role = "admin"
"#;

    #[test]
    fn secrets_are_redacted_and_the_rest_kept() {
        let r = redact(TEXT, None);
        for s in ["hunter2", "swordfish", "key.pem", "argon2id"] {
            assert!(!r.contains(s), "{s} leaked: {r}");
        }
        assert!(
            r.contains("password = \"<redacted>\"  # the phone's"),
            "{r}"
        );
        assert!(r.contains("leave_key = \"1\""), "{r}");
        assert!(r.contains("cert = \"cert.pem\""), "{r}");
        assert!(r.contains("role = \"admin\""), "{r}");
    }

    #[test]
    fn a_changed_secret_shows_in_the_diff_without_its_value() {
        let new = TEXT.replace("swordfish", "correct-horse").replace(
            "[[users]]\nname = \"1001\"",
            "[[users]]\nname = \"1000\"\npassword = \"x\"\n\n[[users]]\nname = \"1001\"",
        );
        let d = diff(TEXT, &new, "v1", "v2");
        assert!(
            !d.contains("swordfish") && !d.contains("correct-horse"),
            "{d}"
        );
        assert!(d.contains("+password = \"<redacted, changed>\""), "{d}");
        assert!(d.contains("-password = \"<redacted>\""), "{d}");
        // 1001's password did not change although its entry moved: not marked.
        assert_eq!(d.matches("<redacted, changed>").count(), 2, "{d}");
    }

    #[test]
    fn inline_tables_and_pem_values_are_redacted() {
        let t = "users = [{ name = \"a\", password = \"p1\" }]\nblob = \"-----BEGIN PRIVATE KEY-----\\nMII\"\n";
        let r = redact(t, None);
        assert!(!r.contains("p1") && !r.contains("MII"), "{r}");
        assert!(!redact("password = = \"p2\"", None).contains("p2"));
    }
}
