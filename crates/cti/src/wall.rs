//! The supervisor pages, compiled into the binary (`assets/wall/`): the wallboard
//! (`/wall`), the report page (`/reports`) and their shared script and style. The pages log
//! in over the CTI WebSocket (`/cti`, so their origin must be in `allowed_origins`) and read
//! reports from `/api/reports/…` with the session token; `/wall/config.json` gives the
//! colour thresholds of `[cti.wall]`.
//!
//! The floor view's supervisor actions are HTTP too (`POST /api/floor/{agent}/{action}`,
//! Bearer token, `action` = `not_ready` (body `{"reason": "…"}`, default "supervisor") or
//! `logout`): they go to the ACD task like a desk's own state change, so the agent's desk
//! sees the same `agent.state` event with the next version (a logged-out agent is not
//! logged in by a forced not-ready: 409). Supervisors limited to some
//! queues may not force agents (the CTI server does not know agents' queues): 403.

use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hotline_switch::{AgentCommand, AgentStatus, SwitchError};
use serde::{Deserialize, Serialize};

use crate::Role;
use crate::assets::{self, Asset, etags};
use crate::hub::Hub;
use crate::reports::{api_error, supervisor};

/// `[cti.wall]`: when the wallboard colours a figure amber (warn) or red (alarm).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WallConfig {
    /// Service level (0..1) below which the queue turns amber / red.
    pub service_level_warn: f64,
    pub service_level_alarm: f64,
    /// Longest wait (seconds) above which …
    pub wait_warn_secs: f64,
    pub wait_alarm_secs: f64,
    /// Waiting calls at or above which …
    pub waiting_warn: u32,
    pub waiting_alarm: u32,
    /// Abandonment rate (0..1) above which …
    pub abandon_warn: f64,
    pub abandon_alarm: f64,
    /// Hour and day buckets of the wallboard and of `/api/reports` (a request's `tz`
    /// overrides it): `"UTC"` (default), `"+01:00"` or an IANA name.
    pub timezone: Option<String>,
}

impl Default for WallConfig {
    fn default() -> Self {
        WallConfig {
            service_level_warn: 0.8,
            service_level_alarm: 0.6,
            wait_warn_secs: 30.0,
            wait_alarm_secs: 60.0,
            waiting_warn: 3,
            waiting_alarm: 6,
            abandon_warn: 0.05,
            abandon_alarm: 0.10,
            timezone: None,
        }
    }
}

impl WallConfig {
    /// Each alarm threshold lies beyond its warning.
    pub fn validate(&self) -> Result<(), String> {
        let unit = |v: f64| (0.0..=1.0).contains(&v);
        if !(unit(self.service_level_warn) && unit(self.service_level_alarm))
            || self.service_level_alarm > self.service_level_warn
        {
            return Err("[cti.wall] service levels are 0..1 with alarm <= warn".into());
        }
        if !(unit(self.abandon_warn) && unit(self.abandon_alarm))
            || self.abandon_alarm < self.abandon_warn
        {
            return Err("[cti.wall] abandonment rates are 0..1 with alarm >= warn".into());
        }
        if !(self.wait_warn_secs >= 0.0 && self.wait_alarm_secs >= self.wait_warn_secs) {
            return Err("[cti.wall] wait_alarm_secs must be >= wait_warn_secs >= 0".into());
        }
        if self.waiting_alarm < self.waiting_warn {
            return Err("[cti.wall] waiting_alarm must be >= waiting_warn".into());
        }
        if let Some(tz) = &self.timezone {
            hotline_switch::hours::parse_tz(tz).map_err(|e| format!("[cti.wall] timezone: {e}"))?;
        }
        Ok(())
    }
}

/// The wallboard is `/wall` (`index.html`), the report page `/reports`; both load the
/// rest from `/wall/`.
const ASSETS: &[Asset] = &[
    Asset::page("index.html", include_bytes!("../assets/wall/wall.html")),
    Asset::page(
        "reports.html",
        include_bytes!("../assets/wall/reports.html"),
    ),
    Asset::page("common.js", include_bytes!("../assets/wall/common.js")),
    Asset::page("wall.js", include_bytes!("../assets/wall/wall.js")),
    Asset::page("reports.js", include_bytes!("../assets/wall/reports.js")),
    Asset::page("style.css", include_bytes!("../assets/wall/style.css")),
];

static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| etags(ASSETS));

/// The floor view's buttons force agents' states: as strict as the admin page.
const CSP: &str = assets::SAME_ORIGIN_CSP;

async fn config(State(hub): State<Arc<Hub>>) -> Response {
    axum::Json(hub.cfg.wall.clone()).into_response()
}

/// Body of `POST /api/floor/{agent}/not_ready`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForceBody {
    reason: Option<String>,
}

async fn force(
    State(hub): State<Arc<Hub>>,
    Path((agent, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let user = match supervisor(&hub, &headers) {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    if user.role == Role::Supervisor && !user.queues.is_empty() {
        return api_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "supervisors limited to some queues may not force agents",
        )
        .into_response();
    }
    let parsed: ForceBody = if body.iter().all(u8::is_ascii_whitespace) {
        ForceBody { reason: None }
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("body: {e} (send {{\"reason\": \"…\"}} or nothing)"),
                )
                .into_response();
            }
        }
    };
    let cmd = match action.as_str() {
        "not_ready" => AgentCommand::NotReady {
            reason: parsed.reason.unwrap_or_else(|| "supervisor".into()),
        },
        "logout" if parsed.reason.is_none() => AgentCommand::Logout,
        "logout" => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "logout takes no reason",
            )
            .into_response();
        }
        other => {
            return api_error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no action {other:?} (use not_ready or logout)"),
            )
            .into_response();
        }
    };
    if matches!(cmd, AgentCommand::NotReady { .. }) {
        // A desk's own not-ready logs its agent in; a supervisor's must not.
        let logged_out = hub.switch.agents().await.ok().is_some_and(|all| {
            all.iter()
                .any(|a| a.agent == agent && a.status == AgentStatus::LoggedOut)
        });
        if logged_out {
            return api_error(
                StatusCode::CONFLICT,
                "invalid_state",
                format!("agent {agent:?} is logged out"),
            )
            .into_response();
        }
    }
    match hub.switch.agent_state(&agent, cmd).await {
        Ok(state) => {
            tracing::info!(supervisor = %user.name, %agent, %action, "agent state forced");
            axum::Json(state).into_response()
        }
        Err(e) => {
            let status = match &e {
                SwitchError::NotFound(_) => StatusCode::NOT_FOUND,
                SwitchError::InvalidState(_) => StatusCode::CONFLICT,
                SwitchError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                SwitchError::NotSupported(_) => StatusCode::NOT_IMPLEMENTED,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            api_error(status, e.code(), e.to_string()).into_response()
        }
    }
}

pub(crate) fn routes() -> Router<Arc<Hub>> {
    assets::routes("/wall", ASSETS, &ETAGS, CSP)
        .route(
            "/reports",
            get(|headers: HeaderMap| async move {
                assets::serve(ASSETS, &ETAGS, CSP, "reports.html", &headers)
            }),
        )
        .route("/wall/config.json", get(config))
        .route("/api/floor/{agent}/{action}", post(force))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header;

    /// Every file: the strict CSP, an ETag, `no-cache`, and 304 when the browser has it.
    #[test]
    fn files_are_served_with_an_etag_and_the_csp() {
        for a in ASSETS {
            let r = assets::serve(ASSETS, &ETAGS, CSP, a.name, &HeaderMap::new());
            assert_eq!(r.status(), StatusCode::OK, "{}", a.name);
            let h = r.headers();
            assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP, "{}", a.name);
            assert_eq!(h[header::CACHE_CONTROL], "no-cache", "{}", a.name);
            let mut again = HeaderMap::new();
            again.insert(header::IF_NONE_MATCH, h[header::ETAG].clone());
            let r = assets::serve(ASSETS, &ETAGS, CSP, a.name, &again);
            assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "{}", a.name);
        }
        let mut names: Vec<_> = ETAGS.iter().collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ASSETS.len(), "one ETag per file");
        assert!(!CSP.contains("unsafe"));
    }

    /// The strict CSP holds for the pages: no inline script or style, and every file they
    /// load is in the table.
    #[test]
    fn the_pages_load_only_their_own_files() {
        for page in ["index.html", "reports.html"] {
            let html = ASSETS
                .iter()
                .find(|a| a.name == page)
                .and_then(|a| std::str::from_utf8(a.body).ok())
                .unwrap_or("");
            assert!(
                !html.contains("<style") && !html.contains("style="),
                "{page}"
            );
            for src in html
                .split("src=\"")
                .skip(1)
                .chain(html.split("href=\"/wall/").skip(1))
            {
                let file = src.split('"').next().unwrap_or("");
                let file = file.strip_prefix("/wall/").unwrap_or(file);
                assert!(ASSETS.iter().any(|a| a.name == file), "{page}: {file}");
            }
            assert_eq!(
                html.matches("<script").count(),
                html.matches("<script src=\"/wall/").count(),
                "{page}: inline script"
            );
        }
    }

    #[test]
    fn thresholds_are_checked() {
        assert!(WallConfig::default().validate().is_ok());
        let c = WallConfig {
            service_level_alarm: 0.9,
            ..WallConfig::default()
        };
        assert!(c.validate().is_err());
        let c = WallConfig {
            wait_alarm_secs: 10.0,
            ..WallConfig::default()
        };
        assert!(c.validate().is_err());
        let c = WallConfig {
            timezone: Some("Mars/Olympus".into()),
            ..WallConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("timezone"));
    }
}
