//! The admin API's backend: the configuration file stays the one source of truth.
//!
//! Every change is made on the file's text with `toml_edit` (comments and layout outside
//! the edited entry survive), validated as a whole file with the same checks as at
//! startup, applied to the running switch, and only then written back atomically
//! (temporary file, fsync, rename, fsync of the directory). Each written text is kept as
//! a numbered version with who, when, what and a diff; a rollback writes an old text
//! back as a new version. Every change attempt, refused or not, goes to the audit log
//! (JSON lines, fsynced).

use std::io::Write;
use std::path::{Path, PathBuf};

use hotline_cti::admin::{AdminFault, AdminOp, AdminRequest, FaultKind, Resource, WordList};
use hotline_media::Prompt;
use hotline_switch::SwitchHandle;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::config::{Config, ConfigError, locate, span_at};

/// `[admin]`: where versions, the audit log and uploaded prompts live, and the word lists
/// desks offer (dispositions, not-ready reasons).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Directory of configuration versions (`000001.toml` + `000001.json`, …).
    #[serde(default = "default_versions")]
    pub versions: PathBuf,
    /// Audit log of admin changes (JSON lines).
    #[serde(default = "default_audit")]
    pub audit_log: PathBuf,
    /// Directory of uploaded prompts (menus refer to them by path).
    #[serde(default = "default_prompts")]
    pub prompts: PathBuf,
    /// Call outcomes an agent picks at wrap-up.
    #[serde(default)]
    pub dispositions: Vec<String>,
    /// Reasons an agent may give for not-ready.
    #[serde(default)]
    pub not_ready_reasons: Vec<String>,
    /// Arrival rate the what-if assumes for a queue without calls in the last 24 hours
    /// of CDRs (the admin page says when it does).
    #[serde(default = "default_whatif_rate")]
    pub whatif_calls_per_hour: f64,
}

fn default_whatif_rate() -> f64 {
    10.0
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection {
            versions: default_versions(),
            audit_log: default_audit(),
            prompts: default_prompts(),
            dispositions: Vec::new(),
            not_ready_reasons: Vec::new(),
            whatif_calls_per_hour: default_whatif_rate(),
        }
    }
}

fn default_versions() -> PathBuf {
    PathBuf::from("data/config-versions")
}
fn default_audit() -> PathBuf {
    PathBuf::from("data/admin-audit.jsonl")
}
fn default_prompts() -> PathBuf {
    PathBuf::from("data/uploaded-prompts")
}

/// Longest disposition or not-ready reason (the desk protocol's limit for reasons).
const MAX_WORD: usize = 40;

impl Config {
    /// Checks `[admin]`: words are 1–40 bytes, no repeats.
    pub(crate) fn validate_admin(&self, path: &Path, text: &str) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        let Some(a) = &self.admin else { return errs };
        if !(a.whatif_calls_per_hour.is_finite()
            && (0.0..=100_000.0).contains(&a.whatif_calls_per_hour))
        {
            errs.push(locate(
                path,
                text,
                span_at(text, &["admin", "whatif_calls_per_hour"]),
                "[admin] whatif_calls_per_hour must be 0 to 100000".to_string(),
            ));
        }
        for (what, list) in [
            ("dispositions", &a.dispositions),
            ("not_ready_reasons", &a.not_ready_reasons),
        ] {
            let mut seen = std::collections::HashSet::new();
            for (i, w) in list.iter().enumerate() {
                let at = span_at(text, &["admin", what, &i.to_string()]);
                if w.trim().is_empty() || w.len() > MAX_WORD {
                    errs.push(locate(
                        path,
                        text,
                        at,
                        format!("[admin] {what}: {w:?} must be 1 to {MAX_WORD} bytes"),
                    ));
                } else if !seen.insert(w) {
                    errs.push(locate(
                        path,
                        text,
                        at,
                        format!("[admin] {what}: {w:?} is listed twice"),
                    ));
                }
            }
        }
        errs
    }
}

/// Where a resource's entries live in the file and which field names them.
fn spec(r: Resource) -> (&'static [&'static str], &'static str) {
    match r {
        Resource::Numbers => (&["numbers"], "number"),
        Resource::Menus => (&["menus"], "name"),
        Resource::Hours => (&["hours"], "name"),
        Resource::Queues => (&["acd", "queue"], "name"),
        Resource::QueueOptions => (&["queues"], "name"),
        Resource::Agents => (&["acd", "agent"], "id"),
    }
}

fn label(r: Resource) -> &'static str {
    match r {
        Resource::Numbers => "numbers",
        Resource::Menus => "menus",
        Resource::Hours => "hours",
        Resource::Queues => "queues",
        Resource::QueueOptions => "queue-options",
        Resource::Agents => "agents",
    }
}

fn words_key(w: WordList) -> &'static str {
    match w {
        WordList::Dispositions => "dispositions",
        WordList::NotReadyReasons => "not_ready_reasons",
    }
}

fn fault(kind: FaultKind, m: impl Into<String>) -> AdminFault {
    AdminFault::new(kind, m)
}

/// A configuration error of the text a change would write, with the field named on
/// the error's line when it is a `key = value` line.
fn invalid(e: &ConfigError, text: &str) -> AdminFault {
    let field = text
        .lines()
        .nth(e.line.saturating_sub(1))
        .and_then(|l| l.split_once('='))
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('[') && !k.contains(['{', ' ']))
        .map(|k| {
            // Route errors are reported at the entry's key line; the message names the
            // field that points nowhere.
            let route = ["queue", "menu", "extension", "hours"]
                .into_iter()
                .find(|f| e.message.contains(&format!(": {f} \"")));
            match route {
                Some(f) if ["number", "name", "id"].contains(&k.as_str()) => f.to_string(),
                _ => k,
            }
        });
    AdminFault {
        kind: FaultKind::Invalid,
        message: e.message.clone(),
        field,
        line: Some(e.line),
        column: Some(e.column),
    }
}

/// The first of a file's errors as the API's answer, saying how many more there are.
fn first_error(errs: &[ConfigError], text: &str) -> AdminFault {
    let Some(e) = errs.first() else {
        return fault(FaultKind::Internal, "invalid configuration");
    };
    let mut f = invalid(e, text);
    if errs.len() > 1 {
        f.message = format!("{} (and {} more errors)", f.message, errs.len() - 1);
    }
    f
}

/// A JSON value as a TOML value (objects become inline tables).
fn toml_value(v: &Value, at: &str) -> Result<toml_edit::Value, AdminFault> {
    Ok(match v {
        Value::Null => {
            return Err(fault(
                FaultKind::BadRequest,
                format!("{at}: null is not a value (leave the field out)"),
            ));
        }
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.into(),
            (None, Some(f)) => f.into(),
            _ => {
                return Err(fault(
                    FaultKind::BadRequest,
                    format!("{at}: number out of range"),
                ));
            }
        },
        Value::String(s) => s.as_str().into(),
        Value::Array(a) => {
            let mut out = toml_edit::Array::new();
            for (i, x) in a.iter().enumerate() {
                out.push(toml_value(x, &format!("{at}[{i}]"))?);
            }
            toml_edit::Value::Array(out)
        }
        Value::Object(o) => {
            let mut t = toml_edit::InlineTable::new();
            for (k, x) in o {
                if !x.is_null() {
                    t.insert(k, toml_value(x, &format!("{at}.{k}"))?);
                }
            }
            toml_edit::Value::InlineTable(t)
        }
    })
}

/// The array of tables at `path`, created when missing (with `create`).
fn entries<'d>(
    doc: &'d mut toml_edit::DocumentMut,
    path: &[&str],
    create: bool,
) -> Result<Option<&'d mut toml_edit::ArrayOfTables>, AdminFault> {
    let mut table = doc.as_table_mut();
    let (last, parents) = path.split_last().unwrap_or((&"", &[]));
    for p in parents {
        if !table.contains_key(p) {
            if !create {
                return Ok(None);
            }
            let mut t = toml_edit::Table::new();
            t.set_implicit(true);
            table.insert(p, toml_edit::Item::Table(t));
        }
        table = table
            .get_mut(p)
            .and_then(|i| i.as_table_mut())
            .ok_or_else(|| {
                fault(
                    FaultKind::Conflict,
                    format!("[{p}] is not a table in the file; edit it by hand"),
                )
            })?;
    }
    if !table.contains_key(last) {
        if !create {
            return Ok(None);
        }
        table.insert(
            last,
            toml_edit::Item::ArrayOfTables(toml_edit::ArrayOfTables::new()),
        );
    }
    table
        .get_mut(last)
        .and_then(|i| i.as_array_of_tables_mut())
        .map(Some)
        .ok_or_else(|| {
            fault(
                FaultKind::Conflict,
                format!(
                    "{} is not written as [[{}]] tables in the file; edit it by hand",
                    path.join("."),
                    path.join(".")
                ),
            )
        })
}

fn position(list: &toml_edit::ArrayOfTables, key: &str, id: &str) -> Option<usize> {
    list.iter()
        .position(|t| t.get(key).and_then(|v| v.as_str()) == Some(id))
}

/// A version's record (`NNNNNN.json` beside the text).
fn version_meta(n: u64, who: &str, action: &str, applied: &[String], diff: &str) -> Value {
    json!({
        "version": n,
        "at_ms": hotline_cdr::now_millis(),
        "who": who,
        "action": action,
        "applied": applied,
        "diff": diff,
    })
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename, fsync
/// of the directory, so a crash leaves the old or the new file, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(&dir)?.sync_all()
}

/// The state behind the admin API: the file's text, its versions, the audit log, and
/// the running switch to apply changes to.
pub struct AdminStore {
    path: PathBuf,
    text: String,
    settings: AdminSection,
    version: u64,
    switch: SwitchHandle,
    music: Prompt,
    cdr: hotline_cdr::CdrSink,
    /// The CDRs the what-if takes the recent arrival rate from.
    arrivals: Arrivals,
}

/// Where finished calls are read back from for the what-if's arrival rate.
#[derive(Clone)]
pub enum Arrivals {
    Store(hotline_cdr::CdrStore),
    /// `[store] url = "memory"`.
    Memory(hotline_cdr::MemoryCdrs),
    None,
}

impl Arrivals {
    /// Queue → calls that arrived in `[from, to)` (a store error counts as none, logged).
    async fn per_queue(&self, from: i64, to: i64) -> std::collections::HashMap<String, u64> {
        let calls = match self {
            Arrivals::Store(s) => s.calls(from, to).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "reading CDRs for the what-if");
                Vec::new()
            }),
            Arrivals::Memory(m) => m.calls(),
            Arrivals::None => Vec::new(),
        };
        let mut out = std::collections::HashMap::new();
        for c in calls {
            if let Some(q) = c
                .queue
                .filter(|_| c.arrived_at >= from && c.arrived_at < to)
            {
                *out.entry(q).or_insert(0) += 1;
            }
        }
        out
    }
}

impl AdminStore {
    /// Opens the store of the configuration file `path` whose text the server started
    /// with. The text becomes a new version when it differs from the last one kept.
    pub fn open(
        path: &Path,
        text: String,
        cfg: &Config,
        switch: SwitchHandle,
        music: Prompt,
        cdr: hotline_cdr::CdrSink,
        arrivals: Arrivals,
    ) -> anyhow::Result<AdminStore> {
        use anyhow::Context;
        let settings = cfg.admin_settings();
        for d in [
            &settings.versions,
            &settings.prompts,
            &settings.versions.join(PROMPT_BLOBS),
        ] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        if let Some(d) = settings
            .audit_log
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let mut store = AdminStore {
            path: path.to_path_buf(),
            text,
            settings,
            version: 0,
            switch,
            music,
            cdr,
            arrivals,
        };
        store.version = store.last_version()?;
        let last = match store.version {
            0 => None,
            n => std::fs::read_to_string(store.version_path(n, "toml")).ok(),
        };
        if last.as_deref() != Some(store.text.as_str()) {
            let old = last.unwrap_or_default();
            let text = store.text.clone();
            store
                .save_version(
                    "file",
                    "loaded from the configuration file",
                    &old,
                    &text,
                    &[],
                )
                .context("saving the first configuration version")?;
        }
        Ok(store)
    }

    fn version_path(&self, n: u64, ext: &str) -> PathBuf {
        self.settings.versions.join(format!("{n:06}.{ext}"))
    }

    fn last_version(&self) -> std::io::Result<u64> {
        let mut max = 0;
        for e in std::fs::read_dir(&self.settings.versions)? {
            let name = e?.file_name().to_string_lossy().into_owned();
            if let Some(n) = name
                .strip_suffix(".json")
                .and_then(|n| n.parse::<u64>().ok())
            {
                max = max.max(n);
            }
        }
        Ok(max)
    }

    fn save_version(
        &mut self,
        who: &str,
        action: &str,
        old: &str,
        new: &str,
        applied: &[String],
    ) -> std::io::Result<u64> {
        let n = self.version + 1;
        let diff = crate::config_redact::diff(
            old,
            new,
            &format!("version {}", n - 1),
            &format!("version {n}"),
        );
        write_atomic(&self.version_path(n, "toml"), new.as_bytes())?;
        let mut meta = version_meta(n, who, action, applied, &diff);
        meta["prompts"] = self.snapshot_prompts()?;
        write_atomic(&self.version_path(n, "json"), meta.to_string().as_bytes())?;
        self.version = n;
        Ok(n)
    }

    /// Appends one line to the audit log (fsynced: an admin action is not lost).
    fn audit(&self, who: &str, action: &str, outcome: &Result<Value, AdminFault>) {
        let mut line = json!({
            "at_ms": hotline_cdr::now_millis(),
            "who": who,
            "action": action,
        });
        match outcome {
            Ok(v) => {
                line["ok"] = true.into();
                if let Some(n) = v.get("version") {
                    line["version"] = n.clone();
                }
            }
            Err(f) => {
                line["ok"] = false.into();
                line["error"] = f.message.clone().into();
            }
        }
        let r = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.settings.audit_log)
            .and_then(|mut f| {
                writeln!(f, "{line}")?;
                f.sync_data()
            });
        if let Err(e) = r {
            tracing::error!(error = %e, path = %self.settings.audit_log.display(), "writing the admin audit log");
        }
    }

    fn parsed(&self) -> Result<Config, AdminFault> {
        Config::parse(&self.path, &self.text).map_err(|e| invalid(&e, &self.text))
    }

    /// The file as plain TOML values (what `GET` returns).
    fn value(&self) -> Result<toml::Value, AdminFault> {
        toml::from_str(&self.text).map_err(|e| fault(FaultKind::Internal, e.to_string()))
    }

    fn list(&self, r: Resource) -> Result<Vec<Value>, AdminFault> {
        let (path, _) = spec(r);
        let mut v = &self.value()?;
        for p in path {
            match v.get(p) {
                Some(x) => v = x,
                None => return Ok(Vec::new()),
            }
        }
        let v = serde_json::to_value(v).map_err(|e| fault(FaultKind::Internal, e.to_string()))?;
        Ok(match v {
            Value::Array(a) => a,
            _ => Vec::new(),
        })
    }

    fn get(&self, r: Resource, id: &str) -> Result<Value, AdminFault> {
        let (_, key) = spec(r);
        self.list(r)?
            .into_iter()
            .find(|e| e.get(key).and_then(Value::as_str) == Some(id))
            .ok_or_else(|| not_found(r, id))
    }

    /// Edits the text, then validates, applies and writes it (see [`AdminStore::commit`]).
    async fn edit(
        &mut self,
        who: &str,
        action: &str,
        f: impl FnOnce(&mut toml_edit::DocumentMut) -> Result<bool, AdminFault>,
    ) -> Result<Value, AdminFault> {
        let mut doc: toml_edit::DocumentMut = self
            .text
            .parse()
            .map_err(|e: toml_edit::TomlError| fault(FaultKind::Internal, e.to_string()))?;
        let created = f(&mut doc)?;
        let new = doc.to_string();
        self.commit(who, action, new, created).await
    }

    /// Validates `new` as a whole file, builds the switch's tables from it, applies them
    /// live, and only then writes the file and a version. Refused at any step, nothing
    /// has changed.
    async fn commit(
        &mut self,
        who: &str,
        action: &str,
        new: String,
        created: bool,
    ) -> Result<Value, AdminFault> {
        self.commit_with(who, action, new, created, false).await
    }

    /// [`AdminStore::commit`]; with `force` an unchanged text is applied and versioned
    /// too (the prompts changed under it).
    async fn commit_with(
        &mut self,
        who: &str,
        action: &str,
        new: String,
        created: bool,
        force: bool,
    ) -> Result<Value, AdminFault> {
        if new == self.text && !force {
            return Ok(
                json!({"version": self.version, "created": false, "applied": [], "unchanged": true}),
            );
        }
        // The file is the truth: an edit by hand since start is not overwritten.
        match std::fs::read_to_string(&self.path) {
            Ok(disk) if disk == self.text => {}
            Ok(_) => {
                return Err(fault(
                    FaultKind::Conflict,
                    format!(
                        "{} was changed on disk since Hotline loaded it; restart to load it first",
                        self.path.display()
                    ),
                ));
            }
            Err(e) => {
                return Err(fault(
                    FaultKind::Internal,
                    format!("reading {}: {e}", self.path.display()),
                ));
            }
        }
        if let Err(errs) = Config::check(&self.path, &new) {
            return Err(first_error(&errs, &new));
        }
        let (path, text, music, cdr) = (
            self.path.clone(),
            new.clone(),
            self.music.clone(),
            self.cdr.clone(),
        );
        // Prompts spoken from text run espeak-ng: off the async thread.
        let built = tokio::task::spawn_blocking(move || {
            let cfg = Config::parse(&path, &text).map_err(anyhow::Error::from)?;
            crate::switch_config(&cfg, music, cdr)
        })
        .await
        .map_err(|e| fault(FaultKind::Internal, e.to_string()))?
        .map_err(|e| fault(FaultKind::Invalid, format!("{e:#}")))?;
        let report = self
            .switch
            .reconfigure(built)
            .await
            .map_err(|e| fault(FaultKind::Conflict, format!("not applied: {e}")))?;
        if let Err(e) = write_atomic(&self.path, new.as_bytes()) {
            // The switch runs the new tables; put the old ones back so file and switch agree.
            tracing::error!(error = %e, "writing the configuration file; reverting the live apply");
            let old = self.text.clone();
            self.reapply(&old).await;
            return Err(fault(
                FaultKind::Internal,
                format!("writing {}: {e}", self.path.display()),
            ));
        }
        let old = std::mem::replace(&mut self.text, new.clone());
        let n = self
            .save_version(who, action, &old, &new, &report.acd)
            .map_err(|e| fault(FaultKind::Internal, format!("saving the version: {e}")))?;
        tracing::info!(version = n, %who, %action, "configuration changed");
        Ok(json!({"version": n, "created": created, "applied": report.acd}))
    }

    async fn reapply(&self, text: &str) {
        let Ok(cfg) = Config::parse(&self.path, text) else {
            return;
        };
        if let Ok(sw) = crate::switch_config(&cfg, self.music.clone(), self.cdr.clone()) {
            let _ = self.switch.reconfigure(sw).await;
        }
    }

    async fn handle(&mut self, who: &str, op: AdminOp) -> Result<Value, AdminFault> {
        match op {
            AdminOp::List(r) => Ok(Value::Array(self.list(r)?)),
            AdminOp::Get(r, id) => self.get(r, &id),
            AdminOp::Put(r, id, body) => {
                let table = put_table(r, &id, body)?;
                let action = format!("put {}/{id}", label(r));
                self.edit(who, &action, |doc| put_entry(doc, r, &id, table))
                    .await
            }
            AdminOp::Delete(r, id) => {
                let action = format!("delete {}/{id}", label(r));
                self.edit(who, &action, |doc| delete_entry(doc, r, &id).map(|_| false))
                    .await
            }
            AdminOp::PutField(r, id, field, value) => {
                let (path, key) = spec(r);
                let v = match &value {
                    Value::Null => None,
                    v => Some(toml_value(v, field)?),
                };
                let action = format!("put {}/{id}/{field}", label(r));
                self.edit(who, &action, |doc| {
                    let list = entries(doc, path, false)?.ok_or_else(|| not_found(r, &id))?;
                    let i = position(list, key, &id).ok_or_else(|| not_found(r, &id))?;
                    let t = list.get_mut(i).ok_or_else(|| not_found(r, &id))?;
                    match v {
                        Some(v) => {
                            t.insert(field, toml_edit::Item::Value(v));
                        }
                        None => {
                            t.remove(field);
                        }
                    }
                    Ok(false)
                })
                .await
            }
            AdminOp::GetWords(w) => {
                let a = self.parsed()?.admin_settings();
                Ok(json!(match w {
                    WordList::Dispositions => a.dispositions,
                    WordList::NotReadyReasons => a.not_ready_reasons,
                }))
            }
            AdminOp::PutWords(w, words) => {
                let key = words_key(w);
                let action = format!("put {key}");
                self.edit(who, &action, |doc| {
                    let root = doc.as_table_mut();
                    if !root.contains_key("admin") {
                        root.insert("admin", toml_edit::Item::Table(toml_edit::Table::new()));
                    }
                    let admin = root
                        .get_mut("admin")
                        .and_then(|i| i.as_table_mut())
                        .ok_or_else(|| {
                            fault(FaultKind::Conflict, "[admin] is not a table in the file")
                        })?;
                    let arr: toml_edit::Array = words.iter().map(|s| s.as_str()).collect();
                    admin.insert(key, toml_edit::value(arr));
                    Ok(false)
                })
                .await
            }
            AdminOp::Skills => Ok(self.skills()?),
            AdminOp::Versions => self.versions(),
            AdminOp::Version(n) => {
                let mut meta = self.read_meta(n)?;
                let text = std::fs::read_to_string(self.version_path(n, "toml"))
                    .map_err(|e| fault(FaultKind::Internal, e.to_string()))?;
                // Shown without secrets; the diff is made again from the texts so that
                // versions kept before redaction existed do not show them either.
                let prev = match n {
                    1 => String::new(),
                    _ => std::fs::read_to_string(self.version_path(n - 1, "toml"))
                        .unwrap_or_default(),
                };
                meta["diff"] = crate::config_redact::diff(
                    &prev,
                    &text,
                    &format!("version {}", n - 1),
                    &format!("version {n}"),
                )
                .into();
                meta["config"] = crate::config_redact::redact(&text, None).into();
                Ok(meta)
            }
            AdminOp::Rollback(n) => self.rollback(who, n).await,
            AdminOp::Audit { limit } => {
                let text = std::fs::read_to_string(&self.settings.audit_log).unwrap_or_default();
                let lines: Vec<Value> = text
                    .lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect();
                let skip = lines.len().saturating_sub(limit);
                Ok(Value::Array(lines.into_iter().skip(skip).collect()))
            }
            AdminOp::Prompts => self.prompts(),
            AdminOp::UploadPrompt(name, bytes) => self.upload(who, &name, &bytes).await,
            AdminOp::WhatIf(req) => self.whatif(req).await,
            AdminOp::Routes => Ok(crate::config_routes::route_tree(&self.parsed()?)),
        }
    }

    /// Simulates the current routing and the routing with `req.changes` (validated like a
    /// change, never saved) with the ACD simulator, at the arrival rate seen since start
    /// unless the request says otherwise.
    async fn whatif(&self, req: hotline_cti::admin::WhatIfRequest) -> Result<Value, AdminFault> {
        let hours = req.hours.unwrap_or(4.0);
        if !(hours > 0.0 && hours <= 24.0) {
            let mut f = fault(FaultKind::Invalid, "hours must be in (0, 24]");
            f.field = Some("hours".into());
            return Err(f);
        }
        let mut doc: toml_edit::DocumentMut = self
            .text
            .parse()
            .map_err(|e: toml_edit::TomlError| fault(FaultKind::Internal, e.to_string()))?;
        for c in req.changes {
            if c.delete {
                delete_entry(&mut doc, c.resource, &c.id)?;
            } else {
                let entry = c.entry.ok_or_else(|| {
                    fault(
                        FaultKind::BadRequest,
                        format!(
                            "change of {}/{}: give entry or delete",
                            label(c.resource),
                            c.id
                        ),
                    )
                })?;
                put_entry(
                    &mut doc,
                    c.resource,
                    &c.id,
                    put_table(c.resource, &c.id, entry)?,
                )?;
            }
        }
        let proposed_text = doc.to_string();
        let proposed = Config::check(&self.path, &proposed_text)
            .map_err(|errs| first_error(&errs, &proposed_text))?;
        let current = self.parsed()?;
        // The recent arrival rate per queue: the last hour's calls, else the last day's
        // per hour, else the configured default (and the answer says which).
        let now = hotline_cdr::now_millis();
        let (hour, day) = (3_600_000, 86_400_000);
        let last_day = self.arrivals.per_queue(now - day, now + 1).await;
        let last_hour = self.arrivals.per_queue(now - hour, now + 1).await;
        let default_rate = self.settings.whatif_calls_per_hour;
        let recent = |q: &str| -> (f64, &'static str, u64) {
            match (last_hour.get(q).copied(), last_day.get(q).copied()) {
                (Some(n), _) if n > 0 => (n as f64, "last_hour", n),
                (_, Some(n)) if n > 0 => (n as f64 / 24.0, "last_day", n),
                _ => (default_rate, "default", 0),
            }
        };
        let mut sources: std::collections::HashMap<String, (&'static str, u64)> =
            Default::default();
        let traffic = req.traffic;
        let sims = [current.acd, proposed.acd].map(|acd| {
            let acd = acd.unwrap_or_else(|| hotline_acd::AcdConfig {
                aging_secs: 0,
                short_abandon_secs: 0,
                resume_window_secs: 0,
                tier_priority: Default::default(),
                seed: 0,
                queues: Vec::new(),
                agents: Vec::new(),
            });
            let streams: Vec<hotline_acd::sim::Traffic> = acd
                .queues
                .iter()
                .map(|q| {
                    let t = traffic.get(&q.name).cloned().unwrap_or_default();
                    let (rate, source, n) = match t.calls_per_hour {
                        Some(r) => (r, "request", 0),
                        None => recent(&q.name),
                    };
                    sources.insert(q.name.clone(), (source, n));
                    hotline_acd::sim::Traffic {
                        queue: q.name.clone(),
                        calls_per_hour: rate,
                        aht_secs: t.aht_secs.unwrap_or(f64::from(q.expected_aht_secs.max(1))),
                        patience_secs: t.patience_secs,
                        classes: Vec::new(),
                        skills: Vec::new(),
                    }
                })
                .collect();
            hotline_acd::sim::SimConfig {
                sim: hotline_acd::sim::SimParams {
                    hours,
                    warmup_hours: (hours / 8.0).min(0.5),
                    seed: 1,
                    answer_delay_secs: 0.0,
                },
                acd,
                agent_groups: Vec::new(),
                traffic: streams,
            }
        });
        let out = tokio::task::spawn_blocking(move || -> Result<Value, String> {
            let mut out = Map::new();
            for (name, sim) in ["current", "proposed"].into_iter().zip(sims) {
                let report =
                    hotline_acd::sim::simulate(&sim).map_err(|e| format!("{name}: {e}"))?;
                let rows: Vec<Value> = report
                    .queues
                    .iter()
                    .zip(&sim.traffic)
                    .map(|(r, t)| {
                        let (source, n) = sources.get(&r.name).copied().unwrap_or(("default", 0));
                        json!({
                            "queue": r.name,
                            "calls_per_hour": t.calls_per_hour,
                            "rate_source": source,
                            "recent_calls": n,
                            "aht_secs": t.aht_secs,
                            "offered": r.offered,
                            "service_level": r.service_level(),
                            "sl_secs": r.sl_secs,
                            "asa_secs": r.asa_secs(),
                            "abandon_rate": r.abandon_rate(),
                        })
                    })
                    .collect();
                out.insert(name.into(), Value::Array(rows));
            }
            out.insert("hours".into(), hours.into());
            out.insert("default_calls_per_hour".into(), default_rate.into());
            Ok(Value::Object(out))
        })
        .await
        .map_err(|e| fault(FaultKind::Internal, e.to_string()))?
        .map_err(|e| fault(FaultKind::Invalid, e))?;
        Ok(out)
    }

    fn read_meta(&self, n: u64) -> Result<Value, AdminFault> {
        let text = std::fs::read_to_string(self.version_path(n, "json"))
            .map_err(|_| fault(FaultKind::NotFound, format!("no version {n}")))?;
        serde_json::from_str(&text).map_err(|e| fault(FaultKind::Internal, e.to_string()))
    }

    fn versions(&self) -> Result<Value, AdminFault> {
        let mut out = Vec::new();
        for n in 1..=self.version {
            if let Ok(mut m) = self.read_meta(n) {
                if let Some(o) = m.as_object_mut() {
                    o.remove("diff");
                }
                out.push(m);
            }
        }
        Ok(json!({"current": self.version, "versions": out}))
    }

    /// Skills in use: the queues that require each and the agents who have it.
    fn skills(&self) -> Result<Value, AdminFault> {
        let cfg = self.parsed()?;
        // Skill → (queue → minimum, agent → proficiency).
        type Uses = (Map<String, Value>, Map<String, Value>);
        let mut skills: std::collections::BTreeMap<String, Uses> = Default::default();
        if let Some(acd) = &cfg.acd {
            for q in &acd.queues {
                for s in &q.skills {
                    skills
                        .entry(s.skill.clone())
                        .or_default()
                        .0
                        .insert(q.name.clone(), s.min.into());
                }
            }
            for a in &acd.agents {
                for (s, p) in &a.skills {
                    skills
                        .entry(s.clone())
                        .or_default()
                        .1
                        .insert(a.id.clone(), (*p).into());
                }
            }
        }
        Ok(Value::Array(
            skills
                .into_iter()
                .map(|(name, (queues, agents))| {
                    json!({"skill": name, "queues": queues, "agents": agents})
                })
                .collect(),
        ))
    }

    fn prompts(&self) -> Result<Value, AdminFault> {
        let mut out = Vec::new();
        let dir = std::fs::read_dir(&self.settings.prompts)
            .map_err(|e| fault(FaultKind::Internal, e.to_string()))?;
        for e in dir.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "wav")
                && let Ok(w) = hotline_media::wav::read_wav(&p)
            {
                out.push(json!({
                    "name": p.file_stem().map(|s| s.to_string_lossy().into_owned()),
                    "path": p.display().to_string(),
                    "encoding": format!("{:?}", w.encoding),
                    "seconds": w.samples.len() as f64 / 8000.0,
                }));
            }
        }
        out.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        Ok(Value::Array(out))
    }

    /// Puts version `n` back as a new version: its text and its uploaded prompts (versions
    /// from before prompts were versioned leave the prompts alone).
    async fn rollback(&mut self, who: &str, n: u64) -> Result<Value, AdminFault> {
        let meta = self.read_meta(n)?;
        let text = std::fs::read_to_string(self.version_path(n, "toml"))
            .map_err(|e| fault(FaultKind::Internal, e.to_string()))?;
        let internal = |e: std::io::Error| fault(FaultKind::Internal, e.to_string());
        let before = self.snapshot_prompts().map_err(internal)?;
        let wanted = meta.get("prompts").filter(|p| p.is_object());
        let prompts_changed = wanted.is_some_and(|w| *w != before);
        if let Some(w) = wanted.filter(|_| prompts_changed) {
            self.restore_prompts(w)?;
        }
        let action = format!("rollback to version {n}");
        let r = self
            .commit_with(who, &action, text, false, prompts_changed)
            .await;
        if r.is_err() && prompts_changed {
            // Nothing changed: the prompts go back to what the switch still plays.
            if let Err(e) = self.restore_prompts(&before) {
                tracing::error!(error = ?e, "restoring the prompts after a refused rollback");
            }
        }
        r
    }

    fn blobs(&self) -> PathBuf {
        self.settings.versions.join(PROMPT_BLOBS)
    }

    /// The uploaded prompts as name → SHA-256 of the file, each file kept under its hash
    /// beside the versions so that a rollback can put it back.
    fn snapshot_prompts(&self) -> std::io::Result<Value> {
        use sha2::Digest;
        let mut out = Map::new();
        for e in std::fs::read_dir(&self.settings.prompts)? {
            let p = e?.path();
            let Some(name) = p
                .file_stem()
                .filter(|_| p.extension().is_some_and(|x| x == "wav"))
                .map(|s| s.to_string_lossy().into_owned())
            else {
                continue;
            };
            let bytes = std::fs::read(&p)?;
            let hash = hex::encode(sha2::Sha256::digest(&bytes));
            let blob = self.blobs().join(format!("{hash}.wav"));
            if !blob.exists() {
                write_atomic(&blob, &bytes)?;
            }
            out.insert(name, hash.into());
        }
        Ok(Value::Object(out))
    }

    /// Makes the prompts directory hold exactly the files of `manifest` (a
    /// [`AdminStore::snapshot_prompts`]).
    fn restore_prompts(&self, manifest: &Value) -> Result<(), AdminFault> {
        let internal = |e: std::io::Error| fault(FaultKind::Internal, e.to_string());
        let empty = Map::new();
        let m = manifest.as_object().unwrap_or(&empty);
        for (name, hash) in m {
            let hash = hash.as_str().unwrap_or_default();
            if !is_prompt_name(name)
                || hash.is_empty()
                || !hash.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(fault(
                    FaultKind::Internal,
                    format!("version record names prompt {name:?} with hash {hash:?}"),
                ));
            }
            let bytes = std::fs::read(self.blobs().join(format!("{hash}.wav"))).map_err(|e| {
                fault(
                    FaultKind::Internal,
                    format!("the kept copy of prompt {name:?} is missing: {e}"),
                )
            })?;
            let path = self.settings.prompts.join(format!("{name}.wav"));
            if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
                write_atomic(&path, &bytes).map_err(internal)?;
            }
        }
        for e in std::fs::read_dir(&self.settings.prompts).map_err(internal)? {
            let p = e.map_err(internal)?.path();
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned());
            if p.extension().is_some_and(|x| x == "wav")
                && stem.is_some_and(|s| !m.contains_key(&s))
            {
                std::fs::remove_file(&p).map_err(internal)?;
            }
        }
        Ok(())
    }

    /// Stores a prompt, rebuilds the switch's tables (menus that play it pick it up) and
    /// keeps a version, so a rollback restores the previous recording.
    async fn upload(&mut self, who: &str, name: &str, bytes: &[u8]) -> Result<Value, AdminFault> {
        if !is_prompt_name(name) {
            let mut f = fault(
                FaultKind::Invalid,
                format!("prompt name {name:?}: 1 to 64 letters, digits, - or _"),
            );
            f.field = Some("name".into());
            return Err(f);
        }
        let w = hotline_media::wav::parse_wav(bytes).map_err(|e| {
            fault(
                FaultKind::Invalid,
                format!("not a usable prompt (8 kHz WAV, µ-law, A-law or 16-bit PCM): {e}"),
            )
        })?;
        if w.samples.is_empty() {
            return Err(fault(FaultKind::Invalid, "the WAV file holds no audio"));
        }
        let path = self.settings.prompts.join(format!("{name}.wav"));
        let previous = std::fs::read(&path).ok();
        let created = previous.is_none();
        write_atomic(&path, bytes).map_err(|e| fault(FaultKind::Internal, e.to_string()))?;
        let text = self.text.clone();
        let action = format!("upload prompt {name} ({} bytes)", bytes.len());
        let version = match self.commit_with(who, &action, text, false, true).await {
            Ok(v) => v["version"].clone(),
            Err(f) => {
                let undo = match &previous {
                    Some(old) => write_atomic(&path, old),
                    None => std::fs::remove_file(&path),
                };
                if let Err(e) = undo {
                    tracing::error!(error = %e, "restoring prompt {name} after a refused upload");
                }
                return Err(f);
            }
        };
        Ok(json!({
            "version": version,
            "created": created,
            "name": name,
            "path": path.display().to_string(),
            "encoding": format!("{:?}", w.encoding),
            "seconds": w.samples.len() as f64 / 8000.0,
        }))
    }
}

/// Where the versions directory keeps every uploaded prompt under its hash.
const PROMPT_BLOBS: &str = "prompts";

/// 1 to 64 letters, digits, `-` or `_` (a file name that cannot leave the directory).
fn is_prompt_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The table a `PUT` of `body` makes (its key field may be left out, must match if given).
fn put_table(r: Resource, id: &str, body: Value) -> Result<toml_edit::Table, AdminFault> {
    let (_, key) = spec(r);
    let Value::Object(mut obj) = body else {
        return Err(fault(
            FaultKind::BadRequest,
            format!("the body of PUT /api/{}/{id} is a JSON object", label(r)),
        ));
    };
    match obj.get(key) {
        None => {}
        Some(Value::String(s)) if s == id => {}
        Some(other) => {
            let mut f = fault(
                FaultKind::Invalid,
                format!("{key} {other} does not match the path's {id:?}"),
            );
            f.field = Some(key.into());
            return Err(f);
        }
    }
    obj.remove(key);
    entry_table(key, id, &obj)
}

/// Replaces (keeping its header's comments) or appends the entry; `true` when appended.
fn put_entry(
    doc: &mut toml_edit::DocumentMut,
    r: Resource,
    id: &str,
    table: toml_edit::Table,
) -> Result<bool, AdminFault> {
    let (path, key) = spec(r);
    let list = entries(doc, path, true)?.ok_or_else(|| not_found(r, id))?;
    match position(list, key, id) {
        Some(i) => {
            if let Some(old) = list.get_mut(i) {
                let decor = old.decor().clone();
                *old = table;
                *old.decor_mut() = decor;
            }
            Ok(false)
        }
        None => {
            list.push(table);
            Ok(true)
        }
    }
}

fn delete_entry(doc: &mut toml_edit::DocumentMut, r: Resource, id: &str) -> Result<(), AdminFault> {
    let (path, key) = spec(r);
    let list = entries(doc, path, false)?.ok_or_else(|| not_found(r, id))?;
    let i = position(list, key, id).ok_or_else(|| not_found(r, id))?;
    list.remove(i);
    Ok(())
}

fn not_found(r: Resource, id: &str) -> AdminFault {
    fault(FaultKind::NotFound, format!("no {} entry {id:?}", label(r)))
}

/// An entry as a TOML table: its key first, then the fields in the body's order.
fn entry_table(
    key: &str,
    id: &str,
    obj: &Map<String, Value>,
) -> Result<toml_edit::Table, AdminFault> {
    let mut t = toml_edit::Table::new();
    t.insert(key, toml_edit::value(id));
    for (k, v) in obj {
        if v.is_null() {
            continue;
        }
        t.insert(k, toml_edit::Item::Value(toml_value(v, k)?));
    }
    Ok(t)
}

fn describe(op: &AdminOp) -> String {
    match op {
        AdminOp::Put(r, id, _) => format!("put {}/{id}", label(*r)),
        AdminOp::Delete(r, id) => format!("delete {}/{id}", label(*r)),
        AdminOp::PutField(r, id, f, _) => format!("put {}/{id}/{f}", label(*r)),
        AdminOp::PutWords(w, _) => format!("put {}", words_key(*w)),
        AdminOp::Rollback(n) => format!("rollback to version {n}"),
        AdminOp::UploadPrompt(n, b) => format!("upload prompt {n} ({} bytes)", b.len()),
        other => format!("{other:?}"),
    }
}

/// Serves admin requests one at a time until every [`hotline_cti::admin::AdminHandle`]
/// is gone; changes are audited whatever their outcome.
pub async fn serve(mut rx: mpsc::Receiver<AdminRequest>, mut store: AdminStore) {
    while let Some(req) = rx.recv().await {
        let change = req.op.is_change();
        let action = if change {
            describe(&req.op)
        } else {
            String::new()
        };
        let r = store.handle(&req.who, req.op).await;
        if change {
            store.audit(&req.who, &action, &r);
        }
        let _ = req.reply.send(r);
    }
}

impl Config {
    /// `[admin]`, or its defaults.
    pub fn admin_settings(&self) -> AdminSection {
        match &self.admin {
            Some(a) => AdminSection {
                versions: a.versions.clone(),
                audit_log: a.audit_log.clone(),
                prompts: a.prompts.clone(),
                dispositions: a.dispositions.clone(),
                not_ready_reasons: a.not_ready_reasons.clone(),
                whatif_calls_per_hour: a.whatif_calls_per_hour,
            },
            None => AdminSection::default(),
        }
    }
}
