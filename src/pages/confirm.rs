//! The confirm page of confirmation on the phone (docs/api.md "Confirm on the phone"):
//! `GET /confirm/{ticket}` shows the login request waiting for the scanner's decision,
//! `POST /confirm/{ticket}` takes it. Opened from the link in WeChat's reply, so it must
//! work in WeChat's in-app browser: a plain HTML form, no script at all, this server's
//! stylesheet only, and a CSP that allows nothing else (form posts only to itself).
//!
//! The ticket in the path is the capability; a POST that a browser marks as coming from
//! another site (`Origin`) is refused anyway, and a ticket works once.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::ICON_LINKS;
use crate::api::AppState;
use crate::ids::ConfirmTicket;
use crate::login::{ConfirmView, Decided};
use crate::metrics::labels::Decision;

/// No script, this server's stylesheet and icon, forms only to this server.
pub const CONFIRM_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; \
                               form-action 'self'; frame-ancestors 'none'";

/// The form body: one short field.
const FORM_LIMIT: usize = 256;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/confirm/{ticket}", web::get().to(show)).route("/confirm/{ticket}", web::post().to(decide));
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// A page of the confirmation: `main` is its (already escaped) content.
fn page(status: StatusCode, title: &str, main: &str) -> HttpResponse {
    let body = format!(
        "<!doctype html>\n<html lang=\"zh-CN\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} — scanlogin</title>\n{ICON_LINKS}\n<link rel=\"stylesheet\" href=\"/assets/style.css\">\n\
         </head>\n<body>\n<main class=\"card\">\n<h1>{title}</h1>\n{main}\n</main>\n</body>\n</html>\n",
        title = esc(title),
    );
    // The ticket is in the URL: no other site learns it from a Referer, and a browser
    // still sends this site's Origin with the form (with `no-referrer` some send `null`).
    super::page_with(status, body, [CONFIRM_CSP, "same-origin", "no-store"])
}

fn message(status: StatusCode, title: &str, text: &str) -> HttpResponse {
    page(status, title, &format!("<p id=\"message\">{}</p>", esc(text)))
}

fn gone() -> HttpResponse {
    message(
        StatusCode::GONE,
        "请求已失效 Request no longer valid",
        "这个登录请求已被处理、已过期或不存在。This login request was already answered, has expired, or never existed.",
    )
}

fn view_html(ticket: &ConfirmTicket, v: &ConfirmView) -> String {
    let (ip, browser) = match &v.requester {
        Some(r) => (r.ip.clone(), crate::login::describe_agent(&r.user_agent)),
        None => ("?".into(), crate::login::describe_agent("")),
    };
    let when = v.created_secs.map(crate::login::beijing_time).unwrap_or_else(|| "?".into());
    format!(
        "<p>有人请求登录 <strong>{app}</strong>。只有你本人刚刚在电脑上扫码时才确认。<br>\
         Someone asked to log in to <strong>{app}</strong>. Confirm only if you just scanned this yourself.</p>\n\
         <dl class=\"facts\">\n<dt>地址 Address</dt><dd id=\"ip\">{ip}</dd>\n\
         <dt>浏览器 Browser</dt><dd id=\"browser\">{browser}</dd>\n\
         <dt>时间 Time</dt><dd id=\"time\">{when}</dd>\n</dl>\n\
         <form method=\"post\" action=\"/confirm/{ticket}\">\n\
         <button type=\"submit\" name=\"decision\" value=\"confirm\" id=\"confirm\">确认登录 Confirm</button>\n\
         <button type=\"submit\" name=\"decision\" value=\"deny\" id=\"deny\" class=\"secondary\">拒绝 Deny</button>\n\
         </form>",
        app = esc(&v.app),
        ip = esc(&ip),
        browser = esc(&browser),
        when = esc(&when),
        ticket = ticket.as_str(),
    )
}

async fn show(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, crate::error::ApiError> {
    let Some(ticket) = req.match_info().get("ticket").and_then(ConfirmTicket::parse) else { return Ok(gone()) };
    Ok(match state.login.confirm_view(&ticket).await? {
        Some(v) => page(StatusCode::OK, "确认登录 Confirm the login", &view_html(&ticket, &v)),
        None => gone(),
    })
}

/// Whether the request's `Origin`, if it has a real one, is this server's.
fn same_origin(req: &HttpRequest, public_url: &str) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else { return true };
    let own = url::Url::parse(public_url).ok().map(|u| u.origin().ascii_serialization());
    // `null` (a privacy-minded browser, a sandboxed frame) names no site: the ticket decides.
    origin.as_bytes() == b"null" || own.is_some_and(|o| o.as_bytes().eq_ignore_ascii_case(origin.as_bytes()))
}

async fn decide(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, crate::error::ApiError> {
    if !same_origin(&req, &state.settings.server.public_url) {
        return Ok(message(StatusCode::FORBIDDEN, "不允许 Not allowed", "This form was sent from another site."));
    }
    let Some(ticket) = req.match_info().get("ticket").and_then(ConfirmTicket::parse) else { return Ok(gone()) };
    let body = crate::api::read_body(payload, FORM_LIMIT).await?;
    let field = url::form_urlencoded::parse(&body).find(|(k, _)| k == "decision").map(|(_, v)| v);
    let decision = match field.as_deref() {
        Some("confirm") => Decision::Confirm,
        Some("deny") => Decision::Deny,
        _ => {
            return Ok(message(
                StatusCode::BAD_REQUEST,
                "无效请求 Invalid request",
                "decision must be confirm or deny",
            ));
        }
    };
    Ok(match state.login.decide(&ticket, decision).await? {
        Some(Decided::LoggedIn) => {
            message(StatusCode::OK, "已确认 Confirmed", "登录已确认，请回到电脑。Confirmed: go back to your computer.")
        }
        Some(Decided::ContinueOnPage) => message(
            StatusCode::OK,
            "已确认 Confirmed",
            "请在电脑上的网页绑定手机号完成登录。Confirmed: bind your phone number on the page to finish.",
        ),
        Some(Decided::Denied) => message(
            StatusCode::OK,
            "已拒绝 Denied",
            "这次登录已被拒绝，没有人登录。The login was denied: nobody was logged in.",
        ),
        None => gone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_requesters_text_is_escaped() {
        let t = ConfirmTicket::generate();
        let v = ConfirmView {
            app: "<script>a</script>".into(),
            requester: Some(crate::engine::Requester::new("1.2.3.4", "<img src=x>")),
            created_secs: Some(0),
        };
        let html = view_html(&t, &v);
        assert!(!html.contains("<script>") && !html.contains("<img"), "{html}");
        assert!(html.contains(&format!("action=\"/confirm/{}\"", t.as_str())));
    }
}
