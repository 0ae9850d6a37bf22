//! The agent desktop page, `GET /desk`, served from the CTI server so an agent needs
//! nothing but a browser pointed at Hotline. The files are compiled into the binary (no
//! build step, nothing to install); the page speaks the CTI protocol on `/cti` and, for
//! the in-browser phone, SIP over WebSocket through the vendored JsSIP.
//!
//! Caching: the page's own files are `no-cache` with an `ETag`, so a browser revalidates
//! (a cheap 304) and picks up a new Hotline at once; the vendored library has its version
//! in its URL and is cached for a year.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// One file of the desk.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// Versioned URL: may be cached for good.
    immutable: bool,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../assets/desk/index.html"),
        immutable: false,
    },
    Asset {
        name: "desk.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../assets/desk/desk.css"),
        immutable: false,
    },
    Asset {
        name: "desk.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/desk/desk.js"),
        immutable: false,
    },
    Asset {
        name: "cti.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/desk/cti.js"),
        immutable: false,
    },
    Asset {
        name: "phone.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/desk/phone.js"),
        immutable: false,
    },
    Asset {
        name: "vendor/jssip-3.12.0.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/vendor/jssip.min.js"),
        immutable: true,
    },
    Asset {
        name: "vendor/JSSIP-LICENSE.txt",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("../assets/vendor/JSSIP-LICENSE"),
        immutable: true,
    },
];

/// Strong ETags, one per asset (FNV-1a of the bytes), computed once.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let h = a.body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
            });
            HeaderValue::from_str(&format!("\"{h:016x}\""))
                .unwrap_or(HeaderValue::from_static("\"0\""))
        })
        .collect()
});

/// What the page may do: its own scripts only (no inline script, no eval), WebSockets to
/// any host (the SIP-over-WebSocket server may be another port or host), media from the
/// phone, never framed by another site.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; media-src 'self' blob: mediastream:; connect-src 'self' ws: wss:; \
    frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The desk's routes, merged into the CTI server's router.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/desk", get(index))
        .route("/desk/", get(|| async { Redirect::permanent("/desk") }))
        .route("/desk/{*file}", get(file))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn file(Path(file): Path<String>, headers: HeaderMap) -> Response {
    serve(&file, &headers)
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let asset = &ASSETS[i];
    let etag = ETAGS
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
            HeaderValue::from_static(CSP),
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
            HeaderValue::from_static(asset.content_type),
        )],
        asset.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JsSIP release vendored in `assets/vendor/` (see its README).
    const JSSIP_VERSION: &str = "3.12.0";

    #[test]
    fn every_asset_has_a_distinct_name_and_etag() {
        let mut names: Vec<_> = ASSETS.iter().map(|a| a.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ASSETS.len());
        assert_eq!(ETAGS.len(), ASSETS.len());
        assert!(ASSETS.iter().all(|a| !a.body.is_empty()));
    }

    #[test]
    fn the_page_loads_the_vendored_jssip_by_its_versioned_name() {
        let phone = ASSETS
            .iter()
            .find(|a| a.name == "phone.js")
            .map_or(&[][..], |a| a.body);
        let js = std::str::from_utf8(phone).unwrap_or("");
        assert!(js.contains(&format!("vendor/jssip-{JSSIP_VERSION}.min.js")));
        assert!(
            ASSETS
                .iter()
                .any(|a| a.name == format!("vendor/jssip-{JSSIP_VERSION}.min.js"))
        );
    }

    #[test]
    fn unknown_files_are_404_and_a_matching_etag_is_304() {
        let r = serve("../Cargo.toml", &HeaderMap::new());
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = serve("desk.js", &HeaderMap::new());
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
        let etag = r.headers()[header::ETAG].clone();
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(serve("desk.js", &h).status(), StatusCode::NOT_MODIFIED);
        let r = serve("vendor/jssip-3.12.0.min.js", &HeaderMap::new());
        assert_eq!(
            r.headers()[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
    }
}
