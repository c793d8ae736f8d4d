//! `GET /admin/v1/audit`: the append-only record of admin calls that changed something
//! or were refused, oldest first from `since`.

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::{Admin, AdminError, at, limit, query};
use crate::config::Scope;
use crate::metrics::labels::AdminAction;
use crate::store::admin::{AuditCursor, AuditRow};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    #[schema(format = DateTime, example = "2026-05-01T08:00:00Z")]
    pub at: String,
    /// The key's name; null for a call without a known key.
    #[schema(example = "oncall")]
    pub key_name: Option<String>,
    #[schema(example = "attempts.end")]
    pub action: String,
    /// The attempt or user acted on, as the call named it.
    #[schema(example = "3fa85f6457174562")]
    pub target: Option<String>,
    #[schema(example = "10.0.0.7")]
    pub address: String,
    /// `ok`, `not_found`, `invalid`, `unauthorized`, `forbidden`, `rate_limited`, `error`.
    #[schema(example = "ok")]
    pub outcome: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditList {
    pub entries: Vec<AuditEntry>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

impl From<AuditRow> for AuditEntry {
    fn from(r: AuditRow) -> Self {
        Self {
            at: at(r.at_ms.max(0) as u64),
            key_name: r.key_name,
            action: r.action,
            target: r.target,
            address: r.address,
            outcome: r.outcome,
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only calls at or after this time: UTC as `2026-05-01T00:00:00Z`, or Unix seconds.
    #[param(example = "2026-05-01T00:00:00Z")]
    pub since: Option<String>,
    /// At most this many (1–500, default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// `since` as ms since the epoch: Unix seconds, or RFC 3339 (`2026-05-01T00:00:00Z`).
fn since_ms(raw: Option<&str>) -> Result<i64, AdminError> {
    let bad = || AdminError::Invalid("since must be UTC as 2026-05-01T00:00:00Z, or Unix seconds".into());
    match raw.filter(|s| !s.is_empty()) {
        None => Ok(0),
        Some(s) if s.bytes().all(|b| b.is_ascii_digit()) && s.len() <= 12 => {
            Ok(s.parse::<i64>().map_err(|_| bad())? * 1000)
        }
        Some(s) => Ok(crate::store::parse_rfc3339(s).ok_or_else(bad)? * 1000),
    }
}

fn cursor_text(c: &AuditCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", c.at_ms, c.id))
}

fn cursor_of(text: &str) -> Option<AuditCursor> {
    if text.len() > 128 {
        return None;
    }
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(text).ok()?).ok()?;
    let (at, id) = raw.split_once(':')?;
    let ok_id = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
    ok_id.then(|| Some(AuditCursor { at_ms: at.parse().ok()?, id: id.to_string() })).flatten()
}

#[utoipa::path(
    get,
    path = "/admin/v1/audit",
    tag = "audit",
    summary = "The audit of admin calls, oldest first (scope audit:read)",
    security(("bearer" = [])),
    params(AuditQuery),
    responses((status = 200, description = "A page of audit entries", body = AuditList))
)]
pub async fn list(admin: web::Data<Admin>, req: HttpRequest) -> Result<HttpResponse, AdminError> {
    admin.admit(&req, AdminAction::ListAudit, Scope::AuditRead, None).await?;
    let r = async {
        let q: AuditQuery = query(&req)?;
        let since = since_ms(q.since.as_deref())?;
        let n = limit(q.limit.as_deref())?;
        let cursor = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
            Some(c) => Some(cursor_of(c).ok_or_else(|| AdminError::Invalid("not a cursor of ours".into()))?),
            None => None,
        };
        let rows = admin.store.list(since, cursor.as_ref(), n as i64 + 1).await?;
        let more = rows.len() > n;
        let rows: Vec<_> = rows.into_iter().take(n).collect();
        let next = rows.last().filter(|_| more).map(|r| cursor_text(&AuditCursor { at_ms: r.at_ms, id: r.id.clone() }));
        Ok(AuditList { entries: rows.into_iter().map(AuditEntry::from).collect(), next_cursor: next })
    }
    .await;
    Ok(HttpResponse::Ok().json(admin.read(AdminAction::ListAudit, r)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reads_rfc3339_and_unix_seconds() {
        assert_eq!(since_ms(None).unwrap(), 0);
        assert_eq!(since_ms(Some("1700000000")).unwrap(), 1_700_000_000_000);
        assert_eq!(since_ms(Some("1970-01-01T00:00:01Z")).unwrap(), 1000);
        assert!(since_ms(Some("yesterday")).is_err());
        assert!(since_ms(Some("99999999999999999999")).is_err());
    }

    #[test]
    fn cursors_round_trip() {
        let c = AuditCursor { at_ms: 5, id: "ab".repeat(16) };
        assert_eq!(cursor_of(&cursor_text(&c)), Some(c));
        assert_eq!(cursor_of("nope"), None);
    }
}
