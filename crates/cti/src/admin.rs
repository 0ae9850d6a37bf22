//! The admin REST API under `/api/…`: routing resources (numbers, menus, hours, queues,
//! agents and their skills, overflow, prompts, dispositions, not-ready reasons), their
//! versions with rollback, and the audit log.
//!
//! This crate knows HTTP, tokens and roles, not the configuration model: every request
//! becomes an [`AdminRequest`] on the channel of an [`AdminHandle`], which the binary
//! serves (one task, so changes are applied one at a time, in order). Validation, the
//! file, the versions and the live apply live there.
//!
//! Every call needs `Authorization: Bearer <token>` of an `admin` login (a CTI
//! `auth.login` token, or `POST /api/login`): no token or an expired one is `401`,
//! another role `403`, both with a JSON body `{"error": …, "message": …}`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use utoipa::{OpenApi, ToSchema};

use crate::Role;
use crate::hub::Hub;
use crate::reports::{ApiError, api_error, bearer_user};

/// Largest prompt upload (about 17 minutes of 8 kHz 16-bit mono).
pub const MAX_PROMPT_BYTES: usize = 16 * 1024 * 1024;
/// Largest JSON body of a resource change.
const MAX_JSON_BYTES: usize = 256 * 1024;

/// A routing resource kept as a list of named entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Resource {
    /// `[[numbers]]`, keyed by `number`.
    Numbers,
    /// `[[menus]]`, keyed by `name`.
    Menus,
    /// `[[hours]]` (opening ranges and holidays), keyed by `name`.
    Hours,
    /// `[[acd.queue]]` (skills, strategy, timeouts, overflow, fallback), keyed by `name`.
    Queues,
    /// `[[queues]]` (leave key, whisper, callback offer), keyed by `name`.
    QueueOptions,
    /// `[[acd.agent]]` (skills, queue memberships), keyed by `id`.
    Agents,
}

impl Resource {
    fn parse(s: &str) -> Option<Resource> {
        serde_json::from_value(Value::String(s.to_string())).ok()
    }
}

/// A list of words: `dispositions` or `not-ready-reasons`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum WordList {
    Dispositions,
    NotReadyReasons,
}

/// What an admin asks for.
#[derive(Debug)]
pub enum AdminOp {
    List(Resource),
    Get(Resource, String),
    /// Create or replace the entry (the body is the whole entry as JSON).
    Put(Resource, String, Value),
    Delete(Resource, String),
    /// One field of an entry: `skills` of an agent, `overflow` of a queue.
    PutField(Resource, String, &'static str, Value),
    GetWords(WordList),
    PutWords(WordList, Vec<String>),
    /// Skills in use: which queues require them, which agents have them.
    Skills,
    Versions,
    Version(u64),
    Rollback(u64),
    Audit {
        limit: usize,
    },
    Prompts,
    /// A WAV file under a name (validated as 8 kHz µ-law, A-law or 16-bit PCM).
    UploadPrompt(String, Bytes),
    /// Simulate the routing with proposed changes (not saved) at the recent arrival rate.
    WhatIf(WhatIfRequest),
    /// Each number's route: number → hours → menu → queues → overflow → fallback.
    Routes,
}

/// One proposed change of a what-if: the entry as a `PUT` would take it, or a delete.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposedChange {
    pub resource: Resource,
    pub id: String,
    /// The whole entry (as for `PUT`); absent with `delete`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub entry: Option<Value>,
    #[serde(default)]
    pub delete: bool,
}

/// Traffic assumed for one queue (defaults: the recent arrival rate from the CDRs — calls
/// of the last hour, else of the last 24 hours per hour, else `[admin]
/// whatif_calls_per_hour` —, the queue's `expected_aht_secs`, callers who never hang up).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrafficAssumption {
    pub calls_per_hour: Option<f64>,
    pub aht_secs: Option<f64>,
    pub patience_secs: Option<f64>,
}

/// `POST /api/whatif`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WhatIfRequest {
    #[serde(default)]
    pub changes: Vec<ProposedChange>,
    /// Queue name → traffic assumption.
    #[serde(default)]
    pub traffic: std::collections::BTreeMap<String, TrafficAssumption>,
    /// Simulated hours (default 4, at most 24).
    pub hours: Option<f64>,
}

impl AdminOp {
    /// Whether the operation changes something (and is audited as a change).
    pub fn is_change(&self) -> bool {
        matches!(
            self,
            AdminOp::Put(..)
                | AdminOp::Delete(..)
                | AdminOp::PutField(..)
                | AdminOp::PutWords(..)
                | AdminOp::Rollback(_)
                | AdminOp::UploadPrompt(..)
        )
    }
}

/// One request with the admin who made it; the answer goes to `reply`.
#[derive(Debug)]
pub struct AdminRequest {
    pub who: String,
    pub op: AdminOp,
    pub reply: oneshot::Sender<Result<Value, AdminFault>>,
}

/// Why a request was refused, as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The body or the configuration it makes is invalid (422).
    Invalid,
    /// The body is not what the endpoint takes (400).
    BadRequest,
    NotFound,
    /// The change could not be applied to the running switch (409): nothing changed.
    Conflict,
    Internal,
}

/// A refusal: what kind, why, and where when the configuration is at fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AdminFault {
    #[serde(rename = "error")]
    pub kind: FaultKind,
    pub message: String,
    /// The field of the entry at fault, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Position in the configuration file the change would have written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
}

impl AdminFault {
    pub fn new(kind: FaultKind, message: impl Into<String>) -> Self {
        AdminFault {
            kind,
            message: message.into(),
            field: None,
            line: None,
            column: None,
        }
    }

    fn status(&self) -> StatusCode {
        match self.kind {
            FaultKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            FaultKind::BadRequest => StatusCode::BAD_REQUEST,
            FaultKind::NotFound => StatusCode::NOT_FOUND,
            FaultKind::Conflict => StatusCode::CONFLICT,
            FaultKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for AdminFault {
    fn into_response(self) -> Response {
        (self.status(), axum::Json(self)).into_response()
    }
}

/// The API's side of the admin channel. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AdminHandle {
    tx: mpsc::Sender<AdminRequest>,
}

impl AdminHandle {
    /// A handle and the receiver its requests arrive on (served by the binary).
    pub fn channel(capacity: usize) -> (AdminHandle, mpsc::Receiver<AdminRequest>) {
        let (tx, rx) = mpsc::channel(capacity);
        (AdminHandle { tx }, rx)
    }

    async fn ask(&self, who: &str, op: AdminOp) -> Result<Value, AdminFault> {
        let (reply, rx) = oneshot::channel();
        let gone = || AdminFault::new(FaultKind::Internal, "the admin service is not running");
        self.tx
            .send(AdminRequest {
                who: who.to_string(),
                op,
                reply,
            })
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// The current word list (as the file says now, after any admin edit): what desks
    /// offer and the CTI server checks against.
    pub async fn words(&self, which: WordList) -> Result<Vec<String>, AdminFault> {
        let v = self.ask("cti", AdminOp::GetWords(which)).await?;
        serde_json::from_value(v)
            .map_err(|e| AdminFault::new(FaultKind::Internal, format!("word list: {e}")))
    }
}

/// A refusal at the door (401/403) of every HTTP API (admin, reports, voicemail, floor),
/// before any request reaches a service.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthError {
    /// `unauthorized` (no live session token; the answer carries `WWW-Authenticate:
    /// Bearer`) or `forbidden` (the role may not).
    pub error: String,
    pub message: String,
}

#[derive(Clone)]
struct AdminState {
    hub: Arc<Hub>,
    admin: AdminHandle,
}

impl AdminState {
    /// The admin's name, or the 401/403 answer.
    fn admin(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        let u = bearer_user(&self.hub, headers)?;
        if u.role == Role::Admin {
            return Ok(u.name);
        }
        Err(api_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "user {:?} has role {}; the admin API needs role admin",
                u.name,
                serde_json::to_value(u.role)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            ),
        ))
    }

    async fn run(&self, headers: &HeaderMap, op: AdminOp) -> Response {
        let who = match self.admin(headers) {
            Ok(w) => w,
            Err(r) => return r.into_response(),
        };
        let created = matches!(op, AdminOp::Put(..) | AdminOp::UploadPrompt(..));
        match self.admin.ask(&who, op).await {
            Ok(v) if created && v.get("created").and_then(Value::as_bool) == Some(true) => {
                (StatusCode::CREATED, axum::Json(v)).into_response()
            }
            Ok(v) => axum::Json(v).into_response(),
            Err(f) => f.into_response(),
        }
    }
}

fn resource(name: &str) -> Result<Resource, AdminFault> {
    Resource::parse(name).ok_or_else(|| {
        AdminFault::new(
            FaultKind::NotFound,
            format!("no resource {name:?} (numbers, menus, hours, queues, queue-options, agents)"),
        )
    })
}

/// A JSON body, or a 400 that says where it broke.
fn json_body(body: &[u8]) -> Result<Value, AdminFault> {
    serde_json::from_slice(body).map_err(|e| {
        AdminFault::new(
            FaultKind::BadRequest,
            format!(
                "body is not JSON: {e} (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })
}

/// A hash to verify against for unknown users, so they take as long as known ones.
fn dummy_hash() -> String {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| crate::hash_password("not a password").unwrap_or_default())
        .clone()
}

/// `POST /api/login` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub user: String,
    pub password: String,
}

/// A session token for the `Authorization: Bearer` header (the same tokens as the
/// WebSocket's `auth.login`).
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginReply {
    pub token: String,
    pub role: String,
    pub expires_at_ms: i64,
}

/// Logs in with a password; any role may log in, only `admin` may use the other calls.
#[utoipa::path(post, path = "/api/login", request_body = LoginRequest,
    responses((status = 200, body = LoginReply), (status = 401, body = AuthError)))]
async fn login(State(st): State<AdminState>, body: Bytes) -> Response {
    let req: LoginRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return AdminFault::new(
                FaultKind::BadRequest,
                format!("expected {{\"user\": …, \"password\": …}}: {e}"),
            )
            .into_response();
        }
    };
    let user = st.hub.users.get(&req.user).cloned();
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(dummy_hash);
    let pw = req.password;
    let ok = tokio::task::spawn_blocking(move || crate::verify_password(&hash, &pw))
        .await
        .unwrap_or(false);
    let Some(user) = user.filter(|_| ok) else {
        return api_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong user or password",
        )
        .into_response();
    };
    let Some((token, s)) = st.hub.sessions.create(&user.name) else {
        return AdminFault::new(FaultKind::Internal, "too many sessions").into_response();
    };
    axum::Json(LoginReply {
        token,
        role: serde_json::to_value(user.role)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        expires_at_ms: s.expires_at_ms,
    })
    .into_response()
}

/// Every entry of a resource.
#[utoipa::path(get, path = "/api/{resource}",
    params(("resource" = Resource, Path, description = "numbers, menus, hours, queues, queue-options, agents")),
    responses((status = 200, description = "the entries, as in the configuration file"),
        (status = 401, body = AuthError), (status = 403, body = AuthError)))]
async fn list(
    State(st): State<AdminState>,
    Path(res): Path<String>,
    headers: HeaderMap,
) -> Response {
    match res.as_str() {
        "skills" => st.run(&headers, AdminOp::Skills).await,
        "versions" => st.run(&headers, AdminOp::Versions).await,
        "prompts" => st.run(&headers, AdminOp::Prompts).await,
        "dispositions" => {
            st.run(&headers, AdminOp::GetWords(WordList::Dispositions))
                .await
        }
        "not-ready-reasons" => {
            st.run(&headers, AdminOp::GetWords(WordList::NotReadyReasons))
                .await
        }
        _ => match resource(&res) {
            Ok(r) => st.run(&headers, AdminOp::List(r)).await,
            Err(e) => e.into_response(),
        },
    }
}

/// One entry.
#[utoipa::path(get, path = "/api/{resource}/{id}",
    params(("resource" = Resource, Path), ("id" = String, Path, description = "the entry's number, name or id")),
    responses((status = 200, description = "the entry"), (status = 404, body = AdminFault),
        (status = 401, body = AuthError), (status = 403, body = AuthError)))]
async fn get_one(
    State(st): State<AdminState>,
    Path((res, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if res == "versions" {
        return match id.parse() {
            Ok(n) => st.run(&headers, AdminOp::Version(n)).await,
            Err(_) => {
                AdminFault::new(FaultKind::NotFound, format!("no version {id:?}")).into_response()
            }
        };
    }
    match resource(&res) {
        Ok(r) => st.run(&headers, AdminOp::Get(r, id)).await,
        Err(e) => e.into_response(),
    }
}

/// A change's outcome: the new version and what the running switch changed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChangeReply {
    pub version: u64,
    /// Whether the entry is new (201) or replaced (200).
    #[serde(default)]
    pub created: bool,
    /// What the live apply did (`queue support updated`, …).
    pub applied: Vec<String>,
}

/// Creates or replaces an entry; the body is the whole entry as JSON (its key field may
/// be left out). Validated with the whole configuration, written, versioned and applied
/// live.
#[utoipa::path(put, path = "/api/{resource}/{id}",
    params(("resource" = Resource, Path), ("id" = String, Path)),
    request_body(content = Object, description = "the entry, e.g. {\"queue\": \"support\"} for a number"),
    responses((status = 200, body = ChangeReply), (status = 201, body = ChangeReply),
        (status = 422, body = AdminFault), (status = 400, body = AdminFault),
        (status = 401, body = AuthError), (status = 403, body = AuthError)))]
async fn put_one(
    State(st): State<AdminState>,
    Path((res, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let words = match res.as_str() {
        "dispositions" => Some(WordList::Dispositions),
        "not-ready-reasons" => Some(WordList::NotReadyReasons),
        _ => None,
    };
    if words.is_some() {
        return AdminFault::new(
            FaultKind::NotFound,
            format!("{res} is one list: PUT /api/{res} with a JSON array of strings"),
        )
        .into_response();
    }
    let r = match resource(&res) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let v = match json_body(&body) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    st.run(&headers, AdminOp::Put(r, id, v)).await
}

/// Replaces a whole word list (`dispositions`, `not-ready-reasons`).
#[utoipa::path(put, path = "/api/{list}",
    params(("list" = WordList, Path)),
    request_body(content = Vec<String>),
    responses((status = 200, body = ChangeReply), (status = 422, body = AdminFault),
        (status = 401, body = AuthError), (status = 403, body = AuthError)))]
async fn put_words(
    State(st): State<AdminState>,
    Path(list): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let which = match list.as_str() {
        "dispositions" => WordList::Dispositions,
        "not-ready-reasons" => WordList::NotReadyReasons,
        _ => {
            return AdminFault::new(
                FaultKind::NotFound,
                format!("PUT /api/{list}: only dispositions and not-ready-reasons are lists"),
            )
            .into_response();
        }
    };
    let words: Vec<String> = match json_body(&body).and_then(|v| {
        serde_json::from_value(v).map_err(|e| {
            AdminFault::new(
                FaultKind::BadRequest,
                format!("expected a JSON array of strings: {e}"),
            )
        })
    }) {
        Ok(w) => w,
        Err(e) => return e.into_response(),
    };
    st.run(&headers, AdminOp::PutWords(which, words)).await
}

/// Removes an entry (refused while other entries refer to it). A removed queue drains
/// its waiting calls to its fallback.
#[utoipa::path(delete, path = "/api/{resource}/{id}",
    params(("resource" = Resource, Path), ("id" = String, Path)),
    responses((status = 200, body = ChangeReply), (status = 404, body = AdminFault),
        (status = 422, body = AdminFault), (status = 401, body = AuthError), (status = 403, body = AuthError)))]
async fn delete_one(
    State(st): State<AdminState>,
    Path((res, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    match resource(&res) {
        Ok(r) => st.run(&headers, AdminOp::Delete(r, id)).await,
        Err(e) => e.into_response(),
    }
}

/// Sets an agent's skills: `{"skill": proficiency 1-10, …}`.
#[utoipa::path(put, path = "/api/agents/{id}/skills", params(("id" = String, Path)),
    request_body(content = Object, description = "{\"lang-de\": 8, \"billing\": 5}"),
    responses((status = 200, body = ChangeReply), (status = 422, body = AdminFault),
        (status = 404, body = AdminFault), (status = 401, body = AuthError), (status = 403, body = AuthError)))]
async fn put_agent_skills(
    State(st): State<AdminState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match json_body(&body) {
        Ok(v) => {
            st.run(
                &headers,
                AdminOp::PutField(Resource::Agents, id, "skills", v),
            )
            .await
        }
        Err(e) => e.into_response(),
    }
}

/// Sets a queue's overflow (bullseye) steps: `[{"after_secs": 30, "add_queues": […]}, …]`.
#[utoipa::path(put, path = "/api/queues/{name}/overflow", params(("name" = String, Path)),
    request_body(content = Vec<Object>),
    responses((status = 200, body = ChangeReply), (status = 422, body = AdminFault),
        (status = 404, body = AdminFault), (status = 401, body = AuthError), (status = 403, body = AuthError)))]
async fn put_queue_overflow(
    State(st): State<AdminState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match json_body(&body) {
        Ok(v) => {
            st.run(
                &headers,
                AdminOp::PutField(Resource::Queues, name, "overflow", v),
            )
            .await
        }
        Err(e) => e.into_response(),
    }
}

/// Puts the configuration of version `n` back (as a new version).
#[utoipa::path(post, path = "/api/versions/{n}/rollback", params(("n" = u64, Path)),
    responses((status = 200, body = ChangeReply), (status = 404, body = AdminFault),
        (status = 401, body = AuthError), (status = 403, body = AuthError)))]
async fn rollback(
    State(st): State<AdminState>,
    Path(n): Path<u64>,
    headers: HeaderMap,
) -> Response {
    st.run(&headers, AdminOp::Rollback(n)).await
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    limit: Option<usize>,
}

/// Simulates the routing as it is and with the proposed changes (nothing is saved): per
/// queue the assumed traffic, service level, ASA and abandonment.
#[utoipa::path(post, path = "/api/whatif", request_body = WhatIfRequest,
    responses((status = 200, description = "{\"current\": [...], \"proposed\": [...], \"default_calls_per_hour\": n} per queue: calls_per_hour, rate_source (request, last_hour, last_day or default), recent_calls, aht_secs, service_level, sl_secs, asa_secs, abandon_rate"),
        (status = 422, body = AdminFault), (status = 401, body = AuthError), (status = 403, body = AuthError)))]
async fn whatif(State(st): State<AdminState>, headers: HeaderMap, body: Bytes) -> Response {
    let req: WhatIfRequest = match json_body(&body).and_then(|v| {
        serde_json::from_value(v)
            .map_err(|e| AdminFault::new(FaultKind::BadRequest, format!("what-if body: {e}")))
    }) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    st.run(&headers, AdminOp::WhatIf(req)).await
}

/// Each number's route as a tree, from the configuration in force: `[{"number": …,
/// "route": node}]`; a node has a `kind` (`hours` with `open`/`closed`, `menu` with
/// `choices`/`default`, `queue` with `strategy`, `overflow` steps and `fallback`,
/// `extension`, `say`, `prompt`, `number`, `voicemail`, `callback`, `hangup`,
/// `closed-message`) and its `name`; a loop ends in a node with `cycle: true`.
#[utoipa::path(get, path = "/api/routes",
    responses((status = 200, description = "one route tree per number"),
        (status = 401, body = AuthError), (status = 403, body = AuthError)))]
async fn routes(State(st): State<AdminState>, headers: HeaderMap) -> Response {
    st.run(&headers, AdminOp::Routes).await
}

/// The latest admin actions, newest last: who, when, what, and the outcome.
#[utoipa::path(get, path = "/api/audit", params(("limit" = Option<usize>, Query)),
    responses((status = 200, description = "audit entries"), (status = 401, body = AuthError), (status = 403, body = AuthError)))]
async fn audit(
    State(st): State<AdminState>,
    Query(q): Query<AuditQuery>,
    headers: HeaderMap,
) -> Response {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    st.run(&headers, AdminOp::Audit { limit }).await
}

/// Uploads a prompt: the body is a WAV file, 8 kHz, µ-law, A-law or 16-bit PCM.
#[utoipa::path(put, path = "/api/prompts/{name}", params(("name" = String, Path, description = "letters, digits, - and _")),
    request_body(content = Vec<u8>, content_type = "audio/wav"),
    responses((status = 201, description = "stored; menus refer to it by the returned path"),
        (status = 422, body = AdminFault), (status = 401, body = AuthError), (status = 403, body = AuthError)))]
async fn upload_prompt(
    State(st): State<AdminState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    st.run(&headers, AdminOp::UploadPrompt(name, body)).await
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hotline admin API",
        description = "Routing administration with live apply, versions and audit."
    ),
    paths(
        login,
        list,
        get_one,
        put_one,
        put_words,
        delete_one,
        put_agent_skills,
        put_queue_overflow,
        rollback,
        audit,
        upload_prompt,
        whatif,
        routes,
        crate::voicemail::list,
        crate::voicemail::get_one,
        crate::voicemail::audio,
        crate::voicemail::listened,
        crate::voicemail::delete
    ),
    components(schemas(
        Resource,
        WordList,
        AdminFault,
        FaultKind,
        AuthError,
        LoginRequest,
        LoginReply,
        ChangeReply,
        WhatIfRequest,
        ProposedChange,
        TrafficAssumption
    ))
)]
struct ApiDoc;

/// The OpenAPI document of this API (served at `/api/openapi.json`).
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json()).into_response()
}

/// The `/api` routes; without an [`AdminHandle`] only the OpenAPI document is served
/// and the rest answers 503.
pub(crate) fn router(hub: Arc<Hub>, admin: Option<AdminHandle>) -> Router {
    let Some(admin) = admin else {
        return Router::new().route("/api/openapi.json", get(openapi));
    };
    let st = AdminState { hub, admin };
    Router::new()
        .route("/api/openapi.json", get(openapi))
        .route("/api/login", post(login))
        .route("/api/audit", get(audit))
        .route("/api/whatif", post(whatif))
        .route("/api/routes", get(routes))
        .route("/api/{res}", get(list).put(put_words))
        .route(
            "/api/{res}/{id}",
            get(get_one).put(put_one).delete(delete_one),
        )
        .route("/api/agents/{id}/skills", put(put_agent_skills))
        .route("/api/queues/{name}/overflow", put(put_queue_overflow))
        .route("/api/versions/{n}/rollback", post(rollback))
        .route(
            "/api/prompts/{name}",
            put(upload_prompt).layer(DefaultBodyLimit::max(MAX_PROMPT_BYTES)),
        )
        .layer(DefaultBodyLimit::max(MAX_JSON_BYTES))
        .with_state(st)
}
