//! The admin page, `GET /admin`: forms over the admin REST API (`/api/…`), the route tree
//! of each number, the version history with diffs and rollback, and the what-if of a
//! pending queue edit. Compiled into the binary like the desk; the page logs in with
//! `POST /api/login` (role admin) and keeps the token for the tab's session only.

use std::sync::LazyLock;

use axum::Router;
use axum::http::HeaderValue;

use crate::assets::{self, Asset, etags};

const ASSETS: &[Asset] = &[
    Asset::page("index.html", include_bytes!("../assets/admin/index.html")),
    Asset::page("admin.css", include_bytes!("../assets/admin/admin.css")),
    Asset::page("admin.js", include_bytes!("../assets/admin/admin.js")),
];

static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| etags(ASSETS));

const CSP: &str = assets::SAME_ORIGIN_CSP;

/// The admin page's routes, merged into the CTI server's router.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    assets::routes("/admin", ASSETS, &ETAGS, CSP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assets::serve;
    use axum::http::{HeaderMap, StatusCode, header};

    #[test]
    fn the_page_and_its_files_are_served_with_a_strict_csp() {
        for name in ["index.html", "admin.js", "admin.css"] {
            let r = serve(ASSETS, &ETAGS, CSP, name, &HeaderMap::new());
            assert_eq!(r.status(), StatusCode::OK, "{name}");
            let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap_or("");
            assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
            assert!(!csp.contains("unsafe"), "{csp}");
        }
        let r = serve(ASSETS, &ETAGS, CSP, "../../Cargo.toml", &HeaderMap::new());
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let html = std::str::from_utf8(ASSETS[0].body).unwrap_or("");
        assert!(html.contains(r#"<script type="module" src="/admin/admin.js"></script>"#));
        assert_eq!(
            html.matches("<script").count(),
            1,
            "one external module only"
        );
        assert!(!html.contains("style=") && !html.contains("<style"));
        assert!(!html.contains(" on") || !html.contains("onclick="));
    }
}
