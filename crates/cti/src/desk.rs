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
use axum::http::HeaderValue;

use crate::assets::{self, Asset, etags};

const ASSETS: &[Asset] = &[
    Asset::page("index.html", include_bytes!("../assets/desk/index.html")),
    Asset::page("desk.css", include_bytes!("../assets/desk/desk.css")),
    Asset::page("desk.js", include_bytes!("../assets/desk/desk.js")),
    Asset::page("cti.js", include_bytes!("../assets/desk/cti.js")),
    Asset::page("phone.js", include_bytes!("../assets/desk/phone.js")),
    Asset::versioned(
        "vendor/jssip-3.12.0.min.js",
        include_bytes!("../assets/vendor/jssip.min.js"),
    ),
    Asset::versioned(
        "vendor/JSSIP-LICENSE.txt",
        include_bytes!("../assets/vendor/JSSIP-LICENSE"),
    ),
];

static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| etags(ASSETS));

/// What the page may do: its own scripts only (no inline script, no eval), WebSockets to
/// any host (the SIP-over-WebSocket server may be another port or host), media from the
/// phone, never framed by another site.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; media-src 'self' blob: mediastream:; connect-src 'self' ws: wss:; \
    frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The desk's routes, merged into the CTI server's router.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    assets::routes("/desk", ASSETS, &ETAGS, CSP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, StatusCode, header};

    fn serve(name: &str, headers: &HeaderMap) -> axum::response::Response {
        assets::serve(ASSETS, &ETAGS, CSP, name, headers)
    }

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
