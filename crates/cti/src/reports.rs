//! `GET /api/reports/{queue,agent,hour,day}?from=…&to=…[&format=csv][&sl_secs=N]
//! [&short_abandon_secs=N]`: the CDR reports of `hotline_cdr::report` over HTTP, as JSON
//! (the `Report` shape) or CSV. The CTI session token is the credential
//! (`Authorization: Bearer <token>`); supervisors and admins only. A supervisor limited to
//! some queues gets figures from those queues' calls only (agent time lines, which belong
//! to no queue, stay in).
//!
//! Times: `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS][Z]` (UTC) or Unix milliseconds; `from`
//! defaults to today's midnight, `to` to now. Windows are limited to 366 days. Hour and
//! day rows (and "today") follow `tz` (`UTC`, `+01:00`, `Europe/Berlin`), default
//! `[cti.wall] timezone`, else UTC.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hotline_cdr::report::{Calendar, GroupBy, ReportOptions, build_in};
use hotline_cdr::time::{DAY_MS, parse_time};
use hotline_cdr::{CdrStore, now_millis};
use serde_json::json;

use crate::hub::Hub;
use crate::{CtiUser, Role};

/// Longest window a request may ask for (the rows are read into memory).
const MAX_WINDOW_MS: i64 = 366 * DAY_MS;

/// Where reports come from and their default thresholds.
#[derive(Clone)]
pub struct ReportSource {
    pub store: CdrStore,
    /// Default service-level threshold T (the queues' `sl_secs`).
    pub service_level_secs: u32,
    /// Default short-abandon threshold (`[acd] short_abandon_secs`).
    pub short_abandon_secs: u32,
}

impl std::fmt::Debug for ReportSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportSource")
            .field("backend", &self.store.backend())
            .field("service_level_secs", &self.service_level_secs)
            .field("short_abandon_secs", &self.short_abandon_secs)
            .finish()
    }
}

/// A JSON error answer: `{"error": code, "message": …}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            axum::Json(json!({"error": self.code, "message": self.message})),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

pub(crate) fn api_error(
    status: StatusCode,
    code: &'static str,
    message: impl Into<String>,
) -> ApiError {
    ApiError {
        status,
        code,
        message: message.into(),
    }
}

fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> Response {
    api_error(status, code, message).into_response()
}

/// The logged-in user behind `Authorization: Bearer <token>` (the CTI session token): the
/// one check of every HTTP API (admin, reports, voicemail, floor). Without a live token,
/// a 401 `unauthorized` with `WWW-Authenticate: Bearer`.
pub(crate) fn bearer_user(hub: &Hub, headers: &HeaderMap) -> Result<CtiUser, ApiError> {
    let unauth = |m: &str| api_error(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauth(
            "send the session token as `Authorization: Bearer <token>` (log in with \
             POST /api/login or the desk's auth.login)",
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauth("the Authorization header is not `Bearer <token>`"))?;
    hub.sessions
        .get(token)
        .and_then(|s| hub.users.get(&s.user).cloned())
        .ok_or_else(|| unauth("the token is unknown or expired; log in again"))
}

/// [`bearer_user`], if a supervisor or admin (403 for agents).
pub(crate) fn supervisor(hub: &Hub, headers: &HeaderMap) -> Result<CtiUser, ApiError> {
    let user = bearer_user(hub, headers)?;
    if user.role == Role::Agent {
        return Err(api_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "reports need the supervisor or admin role",
        ));
    }
    Ok(user)
}

/// Validated query parameters.
#[derive(Debug, PartialEq)]
struct Params {
    from: i64,
    to: i64,
    csv: bool,
    sl_secs: Option<u32>,
    short_abandon_secs: Option<u32>,
    tz: Option<String>,
}

fn bad(message: String) -> Response {
    error(StatusCode::BAD_REQUEST, "bad_request", message)
}

/// The decoded `key=value` pairs of a query string, in order; the error names the first
/// pair that is not valid percent-encoded UTF-8.
pub(crate) fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, String> {
    use hotline_sip::percent::decode_query;
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            decode_query(k)
                .zip(decode_query(v))
                .ok_or_else(|| format!("{pair:?} is not valid percent-encoded UTF-8"))
        })
        .collect()
}

fn parse_params(
    query: Option<&str>,
    now: i64,
    default_tz: Option<&str>,
) -> Result<(Params, Calendar), String> {
    let mut seen: HashMap<String, String> = HashMap::new();
    for (k, v) in query_pairs(query)? {
        if ![
            "from",
            "to",
            "format",
            "sl_secs",
            "short_abandon_secs",
            "tz",
        ]
        .contains(&k.as_str())
        {
            return Err(format!(
                "unknown parameter {k:?} (use from, to, format, sl_secs, short_abandon_secs, tz)"
            ));
        }
        if seen.insert(k.clone(), v).is_some() {
            return Err(format!("parameter {k:?} given twice"));
        }
    }
    let time = |name: &str| -> Result<Option<i64>, String> {
        seen.get(name)
            .map(|v| parse_time(v).map_err(|e| format!("{name}: {e}")))
            .transpose()
    };
    let secs = |name: &str| -> Result<Option<u32>, String> {
        seen.get(name)
            .map(|v| {
                v.parse::<u32>()
                    .ok()
                    .filter(|s| *s <= 86_400)
                    .ok_or_else(|| format!("{name}: {v:?} is not a number of seconds 0..=86400"))
            })
            .transpose()
    };
    let tz = seen.get("tz").map(String::as_str).or(default_tz);
    let calendar = match tz {
        None => Calendar::utc(),
        Some(t) => {
            Calendar::zone(hotline_switch::hours::parse_tz(t).map_err(|e| format!("tz: {e}"))?)
        }
    };
    let from = time("from")?.unwrap_or_else(|| calendar.day_start(now));
    let to = time("to")?.unwrap_or(now);
    if to <= from {
        return Err(format!("`to` ({to}) must be after `from` ({from})"));
    }
    if to - from > MAX_WINDOW_MS {
        return Err("the window is longer than 366 days".into());
    }
    let csv = match seen.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => return Err(format!("format: {other:?} (use json or csv)")),
    };
    let p = Params {
        from,
        to,
        csv,
        sl_secs: secs("sl_secs")?,
        short_abandon_secs: secs("short_abandon_secs")?,
        tz: tz.map(str::to_string),
    };
    Ok((p, calendar))
}

async fn report(
    State(hub): State<Arc<Hub>>,
    Path(by): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let user = match supervisor(&hub, &headers) {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let Ok(by) = by.parse::<GroupBy>() else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no report {by:?} (use queue, agent, hour or day)"),
        );
    };
    let now = now_millis();
    let (p, calendar) = match parse_params(query.as_deref(), now, hub.cfg.wall.timezone.as_deref())
    {
        Ok(p) => p,
        Err(m) => return bad(m),
    };
    let Some(src) = hub.cfg.supervision.reports.as_ref() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "no CDR store is configured ([store] url = \"memory\")",
        );
    };
    let mut input = match src.store.report_input(p.from, p.to).await {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error = %e, "report: reading the CDR store failed");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_error",
                "the CDR store failed; retry",
            );
        }
    };
    if user.role == Role::Supervisor && !user.queues.is_empty() {
        let mine = |q: &str| user.queues.iter().any(|u| u == q);
        input.calls.retain(|c| c.queue.as_deref().is_some_and(mine));
        input.events.retain(|e| e.queue == "NONE" || mine(&e.queue));
    }
    let r = build_in(
        &input,
        &ReportOptions {
            by,
            service_level_secs: p.sl_secs.unwrap_or(src.service_level_secs),
            short_abandon_secs: p.short_abandon_secs.unwrap_or(src.short_abandon_secs),
            now,
        },
        &calendar,
    );
    if !p.csv {
        return axum::Json(r).into_response();
    }
    let mut out = Vec::new();
    if let Err(e) = r.write_csv(&mut out) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string());
    }
    let by_name = match by {
        GroupBy::Queue => "queue",
        GroupBy::Agent => "agent",
        GroupBy::Hour => "hour",
        GroupBy::Day => "day",
    };
    let disposition = format!("attachment; filename=\"report-{by_name}.csv\"");
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        out,
    )
        .into_response()
}

pub(crate) fn routes() -> Router<Arc<Hub>> {
    Router::new().route("/api/reports/{by}", get(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 20_780 * DAY_MS + 15 * 3_600_000;

    #[test]
    fn parameters_default_to_today_and_are_checked() {
        let (p, _) = parse_params(None, NOW, None).unwrap();
        assert_eq!((p.from, p.to, p.csv), (20_780 * DAY_MS, NOW, false));
        // "Today" in Berlin began at 23:00 UTC the day before.
        let (p, _) = parse_params(None, NOW, Some("Europe/Berlin")).unwrap();
        assert_eq!(p.from, 20_780 * DAY_MS - 3_600_000);
        let (p, _) = parse_params(Some("tz=UTC"), NOW, Some("Europe/Berlin")).unwrap();
        assert_eq!((p.from, p.tz.as_deref()), (20_780 * DAY_MS, Some("UTC")));
        let (p, _) = parse_params(
            Some("from=2026-11-22&to=2026-11-23T00%3A00Z&format=csv&sl_secs=30"),
            NOW,
            None,
        )
        .unwrap();
        assert_eq!(
            p,
            Params {
                from: 20_779 * DAY_MS,
                to: 20_780 * DAY_MS,
                csv: true,
                sl_secs: Some(30),
                short_abandon_secs: None,
                tz: None,
            }
        );
        for (q, needle) in [
            ("from=yesterday", "from:"),
            ("from=2026-11-23&to=2026-11-22", "must be after"),
            ("format=xml", "format"),
            ("sl_secs=-1", "sl_secs"),
            ("sl_secs=99999999", "sl_secs"),
            ("from=2026-11-22&from=2026-11-21", "twice"),
            ("colour=red", "unknown parameter"),
            ("from=2024-01-01&to=2026-01-01", "366 days"),
            ("from=%ZZ", "percent-encoded"),
            ("from=%+1", "percent-encoded"),
            ("tz=Mars%2FOlympus", "tz: unknown time zone"),
        ] {
            let e = parse_params(Some(q), NOW, None).unwrap_err();
            assert!(e.contains(needle), "{q}: {e}");
        }
    }
}
