//! Greeting-script templates.
//!
//! Syntax: `{name}` inserts a value; `[ ... ]` is an optional section that renders only if
//! every placeholder inside it has a value, so "Good morning[, {title} {surname}]" degrades
//! to "Good morning" for an unknown caller instead of "Good morning,  ". `{{`, `}}`, `[[`
//! and `]]` are literal braces/brackets. Values are inserted once and never re-parsed, control
//! characters are dropped, and anything malformed (unknown name, unclosed brace) renders
//! literally: a bad template must never break a screen pop.

use std::collections::HashMap;

/// Longest value inserted for one placeholder (a notes field must not flood the script).
const MAX_VALUE: usize = 200;

/// Renders `template` with `values`; a missing or empty value counts as absent.
pub fn render(template: &str, values: &HashMap<&str, String>) -> String {
    let chars: Vec<char> = template.chars().collect();
    let mut out = String::new();
    let mut section: Option<(String, bool)> = None; // (text so far, all placeholders present)
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let mut piece = String::new();
        let mut missing = false;
        match (c, next) {
            ('{', Some('{')) | ('}', Some('}')) | ('[', Some('[')) | (']', Some(']')) => {
                piece.push(c);
                i += 2;
            }
            ('{', _) => {
                let close = chars[i + 1..].iter().position(|&x| x == '}' || x == '{');
                match close {
                    Some(off) if chars[i + 1 + off] == '}' => {
                        let key: String = chars[i + 1..i + 1 + off].iter().collect();
                        let key = key.trim();
                        if is_name(key) {
                            match values.get(key).map(|v| clean(v)).filter(|v| !v.is_empty()) {
                                Some(v) => piece.push_str(&v),
                                None => missing = true,
                            }
                        } else {
                            piece.extend(&chars[i..i + 2 + off]);
                        }
                        i += 2 + off;
                    }
                    _ => {
                        piece.push('{');
                        i += 1;
                    }
                }
            }
            ('[', _) if section.is_none() => {
                section = Some((String::new(), true));
                i += 1;
                continue;
            }
            (']', _) if section.is_some() => {
                if let Some((text, ok)) = section.take()
                    && ok
                {
                    out.push_str(&text);
                }
                i += 1;
                continue;
            }
            _ => {
                piece.push(c);
                i += 1;
            }
        }
        match section.as_mut() {
            Some((text, ok)) => {
                text.push_str(&piece);
                *ok &= !missing;
            }
            None => out.push_str(&piece),
        }
    }
    // An unclosed section is shown as written text would be: literally, if complete.
    if let Some((text, ok)) = section
        && ok
    {
        out.push('[');
        out.push_str(&text);
    }
    collapse_spaces(&out)
}

fn is_name(key: &str) -> bool {
    !key.is_empty() && key.len() <= 32 && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn clean(v: &str) -> String {
    v.chars()
        .filter(|c| !c.is_control())
        .take(MAX_VALUE)
        .collect::<String>()
        .trim()
        .to_string()
}

/// A missing value in the middle of plain text leaves a double space; squeeze it.
fn collapse_spaces(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_space = false;
    for c in s.chars() {
        if c == ' ' {
            if !prev_space {
                out.push(c);
            }
            prev_space = true;
        } else {
            out.push(c);
            prev_space = false;
        }
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(pairs: &[(&'static str, &str)]) -> HashMap<&'static str, String> {
        pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
    }

    #[test]
    fn full_values_render_everything() {
        let v = vals(&[
            ("title", "Dr."),
            ("surname", "Weber"),
            ("last_ticket", "RO-17"),
        ]);
        assert_eq!(
            render(
                "Good morning[, {title} {surname}][ — is this about repair order {last_ticket}?]",
                &v
            ),
            "Good morning, Dr. Weber — is this about repair order RO-17?"
        );
    }

    #[test]
    fn missing_values_drop_their_section_or_leave_no_gap() {
        let v = vals(&[("surname", "Weber")]);
        assert_eq!(
            render(
                "Good morning[, {title} {surname}][ — about {last_ticket}?]",
                &v
            ),
            "Good morning"
        );
        assert_eq!(render("Hello {title} {surname}!", &v), "Hello Weber!");
    }

    #[test]
    fn weird_templates_render_literally_and_values_are_not_reparsed() {
        let v = vals(&[("surname", "{title}[x]\u{7}"), ("title", "Dr.")]);
        assert_eq!(render("Hi {surname}", &v), "Hi {title}[x]");
        assert_eq!(
            render("{unclosed and {{ literal }} {bad key!}", &v),
            "{unclosed and { literal } {bad key!}"
        );
        assert_eq!(render("[{title}", &v), "[Dr.");
        assert_eq!(render("]]{", &v), "]{");
        assert_eq!(render("", &v), "");
    }

    /// Arbitrary templates and values render without panicking, and never grow without bound.
    #[test]
    fn arbitrary_templates_never_panic() {
        let alphabet: Vec<char> = "{}[]ab_ \u{1}é💥".chars().collect();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let v = vals(&[("a", "{b}"), ("b", "[x]"), ("ab", "")]);
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 20) as usize;
            let t: String = (0..len)
                .map(|k| alphabet[((x >> (k * 3 % 60)) as usize) % alphabet.len()])
                .collect();
            let out = render(&t, &v);
            assert!(out.len() <= t.len() + 3 * MAX_VALUE * 4, "{t:?} -> {out:?}");
        }
    }
}
