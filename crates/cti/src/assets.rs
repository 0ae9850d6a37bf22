//! Files compiled into the binary and served with an `ETag` (the desk and admin pages):
//! the page's own files are `no-cache`, so a browser revalidates (a cheap 304) and picks up
//! a new Hotline at once; files with a version in their URL are cached for a year.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// The admin page's and the supervisor pages' policy: their own scripts and styles only
/// (no inline code, no eval), requests to this origin only (the API, the CTI WebSocket),
/// never framed: their buttons change the centre, what a clickjacker wants most.
pub(crate) const SAME_ORIGIN_CSP: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; \
    frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// One served file.
pub(crate) struct Asset {
    pub name: &'static str,
    pub body: &'static [u8],
    /// Versioned URL: may be cached for good.
    pub immutable: bool,
}

impl Asset {
    /// One of the page's own files (revalidated on every load).
    pub(crate) const fn page(name: &'static str, body: &'static [u8]) -> Asset {
        Asset {
            name,
            body,
            immutable: false,
        }
    }

    /// A file with its version in its name (cached for a year).
    pub(crate) const fn versioned(name: &'static str, body: &'static [u8]) -> Asset {
        Asset {
            name,
            body,
            immutable: true,
        }
    }

    /// The media type, by the name's extension (the pages ship these kinds only).
    fn content_type(&self) -> &'static str {
        match self.name.rsplit_once('.').map_or("", |(_, ext)| ext) {
            "html" => "text/html; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "js" => "text/javascript; charset=utf-8",
            "txt" => "text/plain; charset=utf-8",
            _ => "application/octet-stream",
        }
    }
}

/// A page's routes: `path` (its `index.html`), `path/` (redirected there) and
/// `path/<file>`, each answer with the page's `csp`.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(
    path: &'static str,
    assets: &'static [Asset],
    etags: &'static LazyLock<Vec<HeaderValue>>,
    csp: &'static str,
) -> Router<S> {
    Router::new()
        .route(
            path,
            get(move |headers: HeaderMap| async move {
                serve(assets, etags, csp, "index.html", &headers)
            }),
        )
        .route(
            &format!("{path}/"),
            get(move || async move { Redirect::permanent(path) }),
        )
        .route(
            &format!("{path}/{{*file}}"),
            get(
                move |Path(file): Path<String>, headers: HeaderMap| async move {
                    serve(assets, etags, csp, &file, &headers)
                },
            ),
        )
}

/// Strong ETags, one per asset (FNV-1a of the bytes); compute once per set.
pub(crate) fn etags(assets: &[Asset]) -> Vec<HeaderValue> {
    assets
        .iter()
        .map(|a| {
            let h = a.body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
            });
            HeaderValue::from_str(&format!("\"{h:016x}\""))
                .unwrap_or(HeaderValue::from_static("\"0\""))
        })
        .collect()
}

/// The file `name` of `assets` (404 when there is none), 304 when the browser's
/// `If-None-Match` holds its ETag; every answer carries the page's `csp`.
pub(crate) fn serve(
    assets: &[Asset],
    etags: &[HeaderValue],
    csp: &'static str,
    name: &str,
    headers: &HeaderMap,
) -> Response {
    let Some(i) = assets.iter().position(|a| a.name == name) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let asset = &assets[i];
    let etag = etags
        .get(i)
        .cloned()
        .unwrap_or(HeaderValue::from_static("\"0\""));
    let cache = if asset.immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let common = [
        (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        (header::ETAG, etag),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(csp),
        ),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        StatusCode::OK,
        common,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type()),
        )],
        asset.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_content_type_follows_the_extension() {
        let ct = |name| Asset::page(name, b"x").content_type();
        assert_eq!(ct("index.html"), "text/html; charset=utf-8");
        assert_eq!(ct("desk.css"), "text/css; charset=utf-8");
        assert_eq!(
            ct("vendor/jssip-3.12.0.min.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(ct("vendor/JSSIP-LICENSE.txt"), "text/plain; charset=utf-8");
        assert_eq!(ct("LICENSE"), "application/octet-stream");
    }
}
