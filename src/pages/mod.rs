//! The demo pages: the login page at `/` (a reference client of docs/api.md, with a TV
//! layout at `/?layout=tv`) and the sandbox phone's page (mounted by [`crate::sandbox`]
//! at `/_sandbox/`). Plain HTML, CSS and JavaScript compiled into the binary: nothing is
//! fetched from anywhere but this server, and a strict Content-Security-Policy (scripts
//! and styles only from `/assets/`, no inline code) keeps it that way.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::api::AppState;

mod confirm;
mod icon;

/// Only this server's files; images also as `data:` (the inline QR picture);
/// no frames, no form posts (the pages submit through `fetch`), no `<base>`.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("static/index.html");
const SANDBOX_HTML: &str = include_str!("static/sandbox.html");
/// Replaced in `index.html` by `true`/`false`: whether to offer the sandbox phone link.
const SANDBOX_FLAG: &str = "{{SANDBOX}}";

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Everything under `/assets/`: name, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    ("style.css", CSS, include_str!("static/style.css")),
    ("common.js", JS, include_str!("static/common.js")),
    ("qr.js", JS, include_str!("static/qr.js")),
    ("login.js", JS, include_str!("static/login.js")),
    ("sandbox.js", JS, include_str!("static/sandbox.js")),
];

/// The `<link>`s of the pages' icon, in every page's head.
const ICON_LINKS: &str = r#"<link rel="icon" href="/favicon.ico" sizes="32x32">
<link rel="icon" href="/favicon.svg" type="image/svg+xml">"#;

/// Mounts `/assets/{name}` and the icon (whenever a page is on: the sandbox page, the
/// provider's login page and the confirm page need them too), with `demo_page` the login
/// page at `/`, and with `confirm` (an app asks for confirmation) the confirm page.
pub fn configure(cfg: &mut web::ServiceConfig, demo_page: bool, sandbox: bool, provider: bool, confirm: bool) {
    if confirm {
        confirm::configure(cfg);
    }
    if demo_page || sandbox || provider || confirm {
        cfg.route("/assets/{name}", web::get().to(asset));
        cfg.route("/favicon.ico", web::get().to(favicon_ico));
        cfg.route("/favicon.svg", web::get().to(favicon_svg));
    }
    if demo_page {
        cfg.route("/", web::get().to(index));
    }
}

/// An HTML page with the headers every page carries.
fn html(body: String) -> HttpResponse {
    // The page is tiny and must never outlive a deploy in a cache.
    page_with(StatusCode::OK, body, [CSP, "no-referrer", "no-cache"])
}

/// An HTML page with its `Content-Security-Policy`, `Referrer-Policy` and `Cache-Control`
/// (in that order); never in a frame.
fn page_with(status: StatusCode, body: String, [csp, referrer, cache]: [&'static str; 3]) -> HttpResponse {
    let mut res = HttpResponse::build(status).content_type("text/html; charset=utf-8").body(body);
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static(referrer));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    res
}

async fn index(state: web::Data<AppState>) -> HttpResponse {
    login_page(&state.settings, None)
}

/// The login page; with `attempt` (the JSON of an attempt the server made, for the
/// provider's authorize request) the page uses that attempt instead of asking for one.
pub fn login_page(settings: &crate::config::Settings, attempt: Option<&serde_json::Value>) -> HttpResponse {
    let page = INDEX_HTML.replace(SANDBOX_FLAG, if settings.wechat.sandbox { "true" } else { "false" });
    let page = match attempt {
        None => page,
        Some(attempt) => {
            // Data, not code (the CSP forbids inline scripts, not JSON blocks); `<`
            // escaped so no value can close the element.
            let json = attempt.to_string().replace('<', "\\u003c");
            let block = format!(r#"<script type="application/json" id="scanlogin-attempt">{json}</script>"#);
            page.replacen("</head>", &format!("{block}\n</head>"), 1)
        }
    };
    let mut res = html(page);
    // Code mode shows the account's own QR picture, from where the operator put it.
    let origins = picture_origins(settings);
    if !origins.is_empty() {
        let csp = CSP.replacen("img-src 'self' data:", &format!("img-src 'self' data: {origins}"), 1);
        if let Ok(v) = HeaderValue::from_str(&csp) {
            res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
        }
    }
    res
}

/// The origins (`https://host[:port]`) of the apps' `account_qr_url`s, space-separated:
/// only what the configuration names, so the page's CSP stays closed to anything else.
fn picture_origins(settings: &crate::config::Settings) -> String {
    let mut origins: Vec<String> = settings
        .wechat
        .apps
        .iter()
        .filter_map(|a| url::Url::parse(&a.account_qr_url).ok())
        .filter(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some())
        .map(|u| u.origin().ascii_serialization())
        .collect();
    origins.sort();
    origins.dedup();
    origins.join(" ")
}

/// A page that only says something (the provider's errors, "signed out").
pub fn message_page(status: actix_web::http::StatusCode, title: &str, text: &str) -> HttpResponse {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
    let body = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{} — scanlogin</title>\n\
         {ICON_LINKS}\n<link rel=\"stylesheet\" href=\"/assets/style.css\">\n</head>\n<body>\n<main class=\"card\">\n\
         <h1>{}</h1>\n<p id=\"message\">{}</p>\n</main>\n</body>\n</html>\n",
        esc(title),
        esc(title),
        esc(text)
    );
    let mut res = html(body);
    *res.status_mut() = status;
    res
}

/// The sandbox phone's page (routed by the sandbox, so it exists only with it).
pub fn sandbox_page() -> HttpResponse {
    html(SANDBOX_HTML.to_string())
}

/// The icon a browser asks for by itself; it changes only with a release.
fn icon(content_type: &'static str, body: &'static [u8]) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .body(body)
}

async fn favicon_ico() -> HttpResponse {
    icon("image/x-icon", &icon::ICO)
}

async fn favicon_svg() -> HttpResponse {
    icon("image/svg+xml", icon::SVG.as_bytes())
}

async fn asset(req: HttpRequest) -> HttpResponse {
    let name = req.match_info().get("name").unwrap_or_default();
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => HttpResponse::Ok()
            .content_type(*content_type)
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .body(*body),
        None => crate::api::not_found().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_a_page_names_is_served() {
        for page in [INDEX_HTML, SANDBOX_HTML] {
            for part in page.split("/assets/").skip(1) {
                let name: String = part.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '.').collect();
                assert!(ASSETS.iter().any(|(n, _, _)| *n == name), "{name} is linked but not served");
            }
        }
    }

    #[test]
    fn every_page_links_the_icon() {
        use actix_web::body::MessageBody as _;
        let message = message_page(actix_web::http::StatusCode::OK, "t", "x");
        let message = match message.into_body().try_into_bytes() {
            Ok(b) => String::from_utf8(b.to_vec()).unwrap(),
            Err(_) => panic!("a page is one body"),
        };
        for page in [INDEX_HTML, SANDBOX_HTML, message.as_str()] {
            assert!(page.contains(ICON_LINKS), "no icon links in:\n{page}");
        }
    }

    #[test]
    fn pages_hold_no_inline_script_or_style() {
        // The CSP would block them: a page that relies on one is broken in the browser.
        for page in [INDEX_HTML, SANDBOX_HTML] {
            assert!(!page.contains("<script>"), "inline script");
            assert!(!page.contains("style="), "inline style attribute");
            assert!(!page.contains("<style"), "inline style element");
            let handler = page.split(" on").skip(1).find(|rest| {
                let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
                !name.is_empty() && rest[name.len()..].starts_with('=')
            });
            assert!(handler.is_none(), "inline event handler: on{}", handler.unwrap_or_default());
        }
    }
}
