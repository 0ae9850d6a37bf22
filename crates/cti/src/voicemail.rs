//! `GET /api/voicemail[?mailbox=…&deleted=true&limit=N]`, `GET /api/voicemail/{id}`,
//! `GET /api/voicemail/{id}/audio` (the WAV), `POST /api/voicemail/{id}/listened` and
//! `DELETE /api/voicemail/{id}`: the messages callers left in voicemail boxes, from the
//! CDR store. `{id}` is the call id of the call that left the message. Like the reports:
//! the CTI session token as `Authorization: Bearer <token>`, supervisors and admins only;
//! a supervisor limited to some queues sees those queues' messages only.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hotline_cdr::{CdrStore, VoicemailFilter, VoicemailMessage, now_millis};
use serde_json::json;

use crate::hub::Hub;
use crate::reports::{ApiError, api_error, query_pairs, supervisor};
use crate::{CtiUser, Role};

/// Most messages one list returns.
const MAX_LIMIT: u32 = 1000;

fn store(hub: &Hub) -> Result<&CdrStore, ApiError> {
    hub.cfg
        .supervision
        .reports
        .as_ref()
        .map(|r| &r.store)
        .ok_or_else(|| {
            api_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "no store is configured ([store] url = \"memory\")",
            )
        })
}

fn store_error(e: hotline_cdr::CdrError) -> ApiError {
    tracing::warn!(error = %e, "voicemail: the store failed");
    api_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_error",
        "the store failed; retry",
    )
}

/// The queues `user` may see messages of (empty: all).
fn queues_of(user: &CtiUser) -> Vec<String> {
    match user.role {
        Role::Supervisor => user.queues.clone(),
        _ => Vec::new(),
    }
}

/// Parses the list's query: `mailbox`, `deleted` (true/false), `limit` (1..=1000).
fn parse_filter(query: Option<&str>) -> Result<VoicemailFilter, String> {
    let mut f = VoicemailFilter {
        limit: 100,
        ..VoicemailFilter::default()
    };
    let mut seen = std::collections::HashSet::new();
    for (k, v) in query_pairs(query)? {
        if !seen.insert(k.clone()) {
            return Err(format!("parameter {k:?} given twice"));
        }
        match k.as_str() {
            "mailbox" => f.mailbox = Some(v),
            "deleted" => {
                f.deleted = match v.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(format!("deleted: {v:?} (use true or false)")),
                }
            }
            "limit" => {
                f.limit = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| format!("limit: {v:?} is not a number 1..={MAX_LIMIT}"))?
            }
            _ => {
                return Err(format!(
                    "unknown parameter {k:?} (use mailbox, deleted, limit)"
                ));
            }
        }
    }
    Ok(f)
}

/// The messages, newest first.
#[utoipa::path(get, path = "/api/voicemail",
    params(("mailbox" = Option<String>, Query, description = "only this box"),
        ("deleted" = Option<bool>, Query, description = "include deleted messages"),
        ("limit" = Option<u32>, Query, description = "at most this many (default 100, 1..=1000)")),
    responses((status = 200, description = "`{\"messages\": [...]}`"),
        (status = 400, description = "a bad parameter"),
        (status = 401, description = "no valid session token"),
        (status = 403, description = "not a supervisor or admin")))]
pub(crate) async fn list(
    State(hub): State<Arc<Hub>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let run = async {
        let user = supervisor(&hub, &headers)?;
        let mut f = parse_filter(q.as_deref())
            .map_err(|m| api_error(StatusCode::BAD_REQUEST, "bad_request", m))?;
        f.queues = queues_of(&user);
        let messages = store(&hub)?.voicemail_list(&f).await.map_err(store_error)?;
        Ok::<_, ApiError>(axum::Json(json!({ "messages": messages })).into_response())
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// The message `id` if `user` may see it (404 otherwise, so ids of other queues' messages
/// are not confirmed).
async fn visible(hub: &Hub, headers: &HeaderMap, id: &str) -> Result<VoicemailMessage, ApiError> {
    let user = supervisor(hub, headers)?;
    let queues = queues_of(&user);
    let m = store(hub)?.voicemail_get(id).await.map_err(store_error)?;
    m.filter(|m| queues.is_empty() || m.queue.as_ref().is_some_and(|q| queues.contains(q)))
        .ok_or_else(|| {
            api_error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no voicemail message {id:?}"),
            )
        })
}

/// One message (`id`: the call id).
#[utoipa::path(get, path = "/api/voicemail/{id}", params(("id" = String, Path)),
    responses((status = 200, description = "the message"), (status = 404, description = "no such message (or not one of your queues')")))]
pub(crate) async fn get_one(
    State(hub): State<Arc<Hub>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match visible(&hub, &headers, &id).await {
        Ok(m) => axum::Json(m).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The message's WAV (mono 8 kHz 16-bit), streamed from its file (a long message is not
/// read into memory); one `Range: bytes=…` gets a 206 with that part (players seek).
#[utoipa::path(get, path = "/api/voicemail/{id}/audio", params(("id" = String, Path)),
    responses((status = 200, description = "audio/wav"), (status = 206, description = "the requested byte range"),
        (status = 404, description = "no such message"), (status = 410, description = "deleted"),
        (status = 416, description = "the range is past the end")))]
pub(crate) async fn audio(
    State(hub): State<Arc<Hub>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let m = match visible(&hub, &headers, &id).await {
        Ok(m) if m.deleted_at.is_none() => m,
        Ok(_) => {
            return api_error(StatusCode::GONE, "deleted", "the message was deleted")
                .into_response();
        }
        Err(e) => return e.into_response(),
    };
    let opened = async {
        let f = tokio::fs::File::open(&m.path).await?;
        let len = f.metadata().await?.len();
        Ok::<_, std::io::Error>((f, len))
    };
    let (mut file, len) = match opened.await {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(error = %e, path = %m.path, "voicemail: the WAV cannot be read");
            return api_error(
                StatusCode::NOT_FOUND,
                "file_missing",
                "the message's file is missing",
            )
            .into_response();
        }
    };
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| byte_range(r, len));
    let mut out = Response::builder()
        .header(header::CONTENT_TYPE, "audio/wav")
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"voicemail-{}.wav\"", m.mailbox),
        )
        .header(header::ACCEPT_RANGES, "bytes");
    let (first, last) = match range {
        None => (0, len.saturating_sub(1)),
        Some(Ok((first, last))) => {
            out = out
                .status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_RANGE, format!("bytes {first}-{last}/{len}"));
            (first, last)
        }
        Some(Err(())) => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{len}"))],
            )
                .into_response();
        }
    };
    let size = if len == 0 { 0 } else { last - first + 1 };
    if first > 0
        && let Err(e) = file.seek(std::io::SeekFrom::Start(first)).await
    {
        tracing::warn!(error = %e, path = %m.path, "voicemail: the WAV cannot be read");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file.take(size)));
    out.header(header::CONTENT_LENGTH, size)
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The one `bytes=` range of a Range header over `len` bytes, as inclusive offsets.
/// `None` when the whole file answers (no such header we serve: several ranges, other
/// units, bad syntax; RFC 9110 §14.2 lets a server ignore those); `Some(Err(()))` when
/// the range starts past the end (416).
fn byte_range(spec: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
    let r = spec.trim().strip_prefix("bytes=")?;
    if r.contains(',') {
        return None;
    }
    let (a, b) = r.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // The last `b` bytes.
        let n: u64 = b.parse().ok()?;
        return Some(if n == 0 || len == 0 {
            Err(())
        } else {
            Ok((len.saturating_sub(n), len - 1))
        });
    }
    let first: u64 = a.parse().ok()?;
    let last = match b {
        "" => u64::MAX,
        b => b.parse().ok().filter(|&l| l >= first)?,
    };
    Some(if first >= len {
        Err(())
    } else {
        Ok((first, last.min(len - 1)))
    })
}

/// Marks the message listened (the first time counts).
#[utoipa::path(post, path = "/api/voicemail/{id}/listened", params(("id" = String, Path)),
    responses((status = 200, description = "the message"), (status = 404, description = "no such message")))]
pub(crate) async fn listened(
    State(hub): State<Arc<Hub>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let run = async {
        visible(&hub, &headers, &id).await?;
        store(&hub)?
            .voicemail_listened(&id, now_millis())
            .await
            .map_err(store_error)?;
        let m = visible(&hub, &headers, &id).await?;
        Ok::<_, ApiError>(axum::Json(m).into_response())
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// Marks the message deleted and removes its WAV.
#[utoipa::path(delete, path = "/api/voicemail/{id}", params(("id" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 404, description = "no such message")))]
pub(crate) async fn delete(
    State(hub): State<Arc<Hub>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let run = async {
        let m = visible(&hub, &headers, &id).await?;
        store(&hub)?
            .voicemail_deleted(&id, now_millis())
            .await
            .map_err(store_error)?;
        // The row stays (the CDR names the file); the audio goes.
        if let Err(e) = tokio::fs::remove_file(&m.path).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, path = %m.path, "voicemail: the WAV was not removed");
        }
        Ok::<_, ApiError>(StatusCode::NO_CONTENT.into_response())
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

pub(crate) fn routes() -> Router<Arc<Hub>> {
    Router::new()
        .route("/api/voicemail", get(list))
        .route("/api/voicemail/{id}", get(get_one).delete(delete))
        .route("/api/voicemail/{id}/audio", get(audio))
        .route("/api/voicemail/{id}/listened", post(listened))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges_are_parsed_and_bounded() {
        assert_eq!(byte_range("bytes=0-99", 1000), Some(Ok((0, 99))));
        assert_eq!(byte_range("bytes=44-", 1000), Some(Ok((44, 999))));
        assert_eq!(byte_range("bytes=900-5000", 1000), Some(Ok((900, 999))));
        assert_eq!(byte_range("bytes=-100", 1000), Some(Ok((900, 999))));
        assert_eq!(byte_range("bytes=-5000", 1000), Some(Ok((0, 999))));
        assert_eq!(byte_range(" bytes= 1 - 2 ", 1000), Some(Ok((1, 2))));
        // Past the end, or nothing of an empty file: 416.
        assert_eq!(byte_range("bytes=1000-", 1000), Some(Err(())));
        assert_eq!(byte_range("bytes=-0", 1000), Some(Err(())));
        assert_eq!(byte_range("bytes=0-", 0), Some(Err(())));
        // Not served as ranges: the whole file.
        for spec in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=5-2",
            "bytes=x-",
            "bytes=-",
            "bytes=1",
            "bytes=-1-2",
        ] {
            assert_eq!(byte_range(spec, 1000), None, "{spec}");
        }
    }

    #[test]
    fn list_parameters_are_checked() {
        let f = parse_filter(Some("mailbox=support%2Dbox&deleted=true&limit=5")).unwrap();
        assert_eq!(f.mailbox.as_deref(), Some("support-box"));
        assert!(f.deleted);
        assert_eq!(f.limit, 5);
        assert_eq!(parse_filter(None).unwrap().limit, 100);
        assert!(parse_filter(Some("limit=0")).is_err());
        assert!(parse_filter(Some("limit=1001")).is_err());
        assert!(parse_filter(Some("deleted=yes")).is_err());
        assert!(parse_filter(Some("box=x")).unwrap_err().contains("unknown"));
        assert!(parse_filter(Some("limit=1&limit=2")).is_err());
    }
}
