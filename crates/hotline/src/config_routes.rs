//! The route tree of each number for the admin page: number → hours → menu → queues →
//! overflow → fallback, computed from the configuration as it is (what the next call
//! would follow). Loops (a menu offering itself, queues falling back to each other) end
//! in a node marked `cycle` instead of recursing.

use serde_json::{Map, Value, json};

use crate::config::{Config, RouteTarget};

/// How deep a tree goes before it is cut (menus nested deeper are not an IVR anyone uses).
const MAX_DEPTH: usize = 16;

struct Tree<'a> {
    cfg: &'a Config,
    /// Menus and queues on the path from the number down to here.
    path: Vec<String>,
}

impl Tree<'_> {
    fn target(&mut self, t: &RouteTarget) -> Value {
        if let Some(h) = &t.hours {
            let open = RouteTarget {
                hours: None,
                closed: None,
                ..t.clone()
            };
            let closed = match &t.closed {
                Some(c) => self.target(c),
                None => json!({"kind": "closed-message"}),
            };
            let tz = self
                .cfg
                .hours
                .iter()
                .find(|x| x.name.get_ref() == h)
                .map(|x| x.timezone.get_ref().clone());
            return json!({
                "kind": "hours",
                "name": h,
                "timezone": tz,
                "open": self.target(&open),
                "closed": closed,
            });
        }
        if let Some(q) = &t.queue {
            return self.queue(q);
        }
        if let Some(m) = &t.menu {
            return self.menu(m);
        }
        if let Some(e) = &t.extension {
            return json!({"kind": "extension", "name": e});
        }
        if let Some(b) = &t.voicemail {
            return json!({"kind": "voicemail", "name": b});
        }
        if let Some(s) = &t.say {
            return json!({"kind": "say", "text": s});
        }
        if let Some(p) = &t.prompt {
            return json!({"kind": "prompt", "path": p.display().to_string()});
        }
        json!({"kind": "hangup"})
    }

    /// `kind name` already on the path (or the tree too deep): a leaf marked `cycle`.
    fn enter(&mut self, kind: &str, name: &str) -> Option<Value> {
        let id = format!("{kind} {name}");
        if self.path.contains(&id) || self.path.len() >= MAX_DEPTH {
            return Some(json!({"kind": kind, "name": name, "cycle": true}));
        }
        self.path.push(id);
        None
    }

    fn menu(&mut self, name: &str) -> Value {
        if let Some(leaf) = self.enter("menu", name) {
            return leaf;
        }
        let out = match self.cfg.menus.iter().find(|m| m.name.get_ref() == name) {
            Some(m) => {
                let mut choices = Map::new();
                for (k, t) in &m.choices {
                    choices.insert(k.clone(), self.target(t.get_ref()));
                }
                let default = match &m.default {
                    Some(d) => self.target(d.get_ref()),
                    None => json!({"kind": "hangup"}),
                };
                json!({
                    "kind": "menu",
                    "name": name,
                    "say": m.say,
                    "timeout_secs": m.timeout_secs,
                    "choices": choices,
                    "default": default,
                })
            }
            None => json!({"kind": "menu", "name": name, "missing": true}),
        };
        self.path.pop();
        out
    }

    fn queue(&mut self, name: &str) -> Value {
        if let Some(leaf) = self.enter("queue", name) {
            return leaf;
        }
        let q = self
            .cfg
            .acd
            .as_ref()
            .and_then(|a| a.queues.iter().find(|q| q.name == name));
        let out = match q {
            Some(q) => {
                let strategy = kebab(&format!("{:?}", q.strategy));
                let overflow: Vec<Value> = q
                    .overflow
                    .iter()
                    .map(|s| {
                        json!({
                            "after_secs": s.after_secs,
                            "add_queues": s.add_queues,
                            "min_proficiency": s.min_proficiency,
                            "add_sites": s.add_sites,
                            "any_site": s.any_site,
                        })
                    })
                    .collect();
                use hotline_acd::Fallback;
                let fallback = match &q.fallback {
                    Fallback::Hangup => json!({"kind": "hangup"}),
                    Fallback::Queue(n) => self.queue(n),
                    Fallback::Number(n) => json!({"kind": "number", "name": n}),
                    Fallback::Voicemail(n) => json!({"kind": "voicemail", "name": n}),
                    Fallback::Callback => json!({"kind": "callback"}),
                };
                json!({
                    "kind": "queue",
                    "name": name,
                    "strategy": strategy,
                    "ring_timeout_secs": q.ring_timeout_secs,
                    "max_wait_secs": q.max_wait_secs,
                    "skills": q.skills.iter().map(|s| json!({"skill": s.skill, "min": s.min})).collect::<Vec<_>>(),
                    "overflow": overflow,
                    "fallback": fallback,
                })
            }
            None => json!({"kind": "queue", "name": name, "missing": true}),
        };
        self.path.pop();
        out
    }
}

/// `RingAll` → `ring-all`, as the file spells a strategy.
fn kebab(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `[{"number": "4000", "route": {kind, name, …}}, …]` in the file's order.
pub fn route_tree(cfg: &Config) -> Value {
    Value::Array(
        cfg.numbers
            .iter()
            .map(|n| {
                let mut t = Tree {
                    cfg,
                    path: Vec::new(),
                };
                json!({"number": n.number.get_ref(), "route": t.target(&n.target())})
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_shows_hours_menu_queues_overflow_and_fallback() {
        let text = r#"
[sip]
udp = ["127.0.0.1:0"]

[[numbers]]
number = "4000"
menu = "main"
hours = "office"
closed = { say = "We are closed" }

[[menus]]
name = "main"
say = "Press 1 for sales, 2 for this menu again"
choices = { "1" = { queue = "sales" }, "2" = { menu = "main" } }

[[hours]]
name = "office"
timezone = "Europe/Berlin"
open = [{ days = "mon-fri", from = "08:00", to = "18:00" }]

[acd]
[[acd.queue]]
name = "sales"
strategy = "ring-all"
overflow = [{ after_secs = 30, add_queues = ["support"] }]
fallback = { queue = "support" }

[[acd.queue]]
name = "support"
fallback = { voicemail = "support-box" }

[[voicemail]]
name = "support-box"
"#;
        let cfg =
            Config::parse(std::path::Path::new("t.toml"), text).unwrap_or_else(|e| panic!("{e}"));
        let t = route_tree(&cfg);
        let r = &t[0]["route"];
        assert_eq!(t[0]["number"], "4000");
        assert_eq!(
            (r["kind"].as_str(), r["name"].as_str()),
            (Some("hours"), Some("office"))
        );
        assert_eq!(r["timezone"], "Europe/Berlin");
        assert_eq!(r["closed"], json!({"kind": "say", "text": "We are closed"}));
        let menu = &r["open"];
        assert_eq!(menu["kind"], "menu");
        assert_eq!(
            menu["choices"]["2"],
            json!({"kind": "menu", "name": "main", "cycle": true})
        );
        let sales = &menu["choices"]["1"];
        assert_eq!(
            (sales["name"].as_str(), sales["strategy"].as_str()),
            (Some("sales"), Some("ring-all"))
        );
        assert_eq!(sales["overflow"][0]["after_secs"], 30);
        assert_eq!(sales["overflow"][0]["add_queues"], json!(["support"]));
        assert_eq!(sales["fallback"]["name"], "support");
        assert_eq!(
            sales["fallback"]["fallback"],
            json!({"kind": "voicemail", "name": "support-box"})
        );
    }
}
