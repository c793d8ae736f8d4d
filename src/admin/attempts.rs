//! `/admin/v1/attempts`: list the live attempts, look at one, end one.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::{Admin, AdminError, at, limit, query};
use crate::config::Scope;
use crate::engine::Phase;
use crate::engine::admin::{AttemptId, AttemptInfo, Filter, cursor_position, cursor_text};
use crate::ids::{LoginMode, mask_openid};
use crate::metrics::labels::AdminAction;

/// An attempt as an operator sees it: nothing here lets anyone poll for its token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    /// The first 16 hex digits of the SHA-256 of the attempt's poll uuid.
    #[schema(pattern = "^[0-9a-f]{16}$", example = "3fa85f6457174562")]
    pub id: String,
    #[schema(example = "default")]
    pub app: String,
    #[schema(value_type = crate::api::openapi::LoginState)]
    pub state: &'static str,
    /// Why it ended, once `expired` (`ended`: by an operator).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::api::openapi::ExpiredReason>)]
    pub reason: Option<&'static str>,
    /// `qr`: a scan of its QR code; `code`: a code sent to the account (code mode).
    #[schema(value_type = String, pattern = "^(qr|code)$", example = "qr")]
    pub mode: LoginMode,
    #[schema(format = DateTime, example = "2026-05-01T08:00:00Z")]
    pub created_at: Option<String>,
    #[schema(format = DateTime, example = "2026-05-01T08:05:00Z")]
    pub expires_at: String,
    /// The openid that scanned it, masked.
    #[schema(example = "oAbc****wxyz")]
    pub scanned_by: Option<String>,
    /// The address of the browser that asked for the attempt (as the service saw it).
    #[schema(example = "203.0.113.7")]
    pub client_ip: Option<String>,
    /// The OpenID Connect client an attempt of the provider's login page serves.
    pub oidc_client: Option<String>,
}

/// One step of an attempt: the state it entered, when, and on which node (null where
/// the engine does not record it).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Transition {
    #[schema(value_type = crate::api::openapi::LoginState)]
    pub state: &'static str,
    #[schema(format = DateTime)]
    pub at: Option<String>,
    pub node: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttemptDetail {
    #[serde(flatten)]
    pub attempt: AttemptView,
    pub transitions: Vec<Transition>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttemptList {
    pub attempts: Vec<AttemptView>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

impl From<&AttemptInfo> for AttemptView {
    fn from(i: &AttemptInfo) -> Self {
        Self {
            id: i.id.to_string(),
            app: i.app.clone(),
            state: i.phase.name(),
            reason: i.ending.and_then(crate::engine::Ending::reason),
            mode: i.mode,
            created_at: i.created_ms.map(at),
            expires_at: at(i.expires_at_ms),
            scanned_by: i.openid.as_deref().map(mask_openid),
            client_ip: i.client_ip.clone(),
            // Filled from the provider's records ([`with_clients`]).
            oidc_client: None,
        }
    }
}

/// The views of `infos`, each provider attempt with the client it serves (one indexed
/// read per provider attempt; direct attempts need none).
async fn with_clients(admin: &Admin, infos: &[AttemptInfo]) -> Result<Vec<AttemptView>, AdminError> {
    let mut out = Vec::with_capacity(infos.len());
    for i in infos {
        let mut v = AttemptView::from(i);
        if let Some(key) = &i.provider_key {
            v.oidc_client = admin.store.oidc_client(key).await?;
        }
        out.push(v);
    }
    Ok(out)
}

/// What the engine recorded of the attempt's way: made (on `node`), scanned, ended. A
/// single node did every step itself; in a cluster only the maker is recorded.
fn transitions(i: &AttemptInfo, this_node: &str) -> Vec<Transition> {
    // On a single node every step was this node's; in a cluster each mark names its node.
    let single = i.made_on.is_none();
    let node_of = |n: &Option<String>| n.clone().or_else(|| single.then(|| this_node.to_string()));
    let mut out = vec![Transition {
        state: Phase::Loop.name(),
        at: i.created_ms.map(at),
        node: Some(i.made_on.clone().unwrap_or_else(|| this_node.to_string())),
    }];
    out.extend(i.trail.iter().map(|m| Transition {
        state: m.phase.name(),
        at: Some(at(m.at_ms)),
        node: node_of(&m.node),
    }));
    // An attempt of an older release keeps no trail: what its timeline says.
    if i.trail.is_empty() {
        if let (Some(t), Phase::NotReg | Phase::Reg | Phase::Scanned) = (i.scanned_ms, i.phase) {
            out.push(Transition { state: i.phase.name(), at: Some(at(t)), node: None });
        }
        if i.phase == Phase::Expired {
            out.push(Transition { state: Phase::Expired.name(), at: None, node: None });
        }
    }
    out
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only attempts in this state (`loop`, `scanned`, `not_reg`, `reg`).
    #[param(value_type = Option<crate::api::openapi::LoginState>)]
    pub state: Option<String>,
    /// Only attempts of this app.
    pub app: Option<String>,
    /// At most this many (1–500, default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn phase(name: &str) -> Result<Phase, AdminError> {
    [Phase::Loop, Phase::Scanned, Phase::NotReg, Phase::Reg, Phase::Expired]
        .into_iter()
        .find(|p| p.name() == name)
        .ok_or_else(|| AdminError::Invalid("state must be loop, scanned, not_reg, reg or expired".into()))
}

fn attempt_id(raw: &str) -> Result<AttemptId, AdminError> {
    AttemptId::parse(raw).ok_or_else(|| AdminError::Invalid("an attempt id is 16 hex digits".into()))
}

#[utoipa::path(
    get,
    path = "/admin/v1/attempts",
    tag = "attempts",
    summary = "The live attempts, a page at a time (scope attempts:read)",
    security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, description = "A page of attempts", body = AttemptList))
)]
pub async fn list(admin: web::Data<Admin>, req: HttpRequest) -> Result<HttpResponse, AdminError> {
    admin.admit(&req, AdminAction::ListAttempts, Scope::AttemptsRead, None).await?;
    let r = async {
        let q: ListQuery = query(&req)?;
        let filter = Filter { phase: q.state.as_deref().map(phase).transpose()?, app: q.app.filter(|a| !a.is_empty()) };
        let n = limit(q.limit.as_deref())?;
        let cursor = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
            Some(c) => Some(cursor_position(c).ok_or_else(|| AdminError::Invalid("not a cursor of ours".into()))?),
            None => None,
        };
        let page = admin.engine.admin_list(&filter, cursor.as_deref(), n).await?;
        Ok(AttemptList {
            attempts: with_clients(&admin, &page.attempts).await?,
            next_cursor: page.next.as_deref().map(cursor_text),
        })
    }
    .await;
    Ok(HttpResponse::Ok().json(admin.read(AdminAction::ListAttempts, r)?))
}

#[utoipa::path(
    get,
    path = "/admin/v1/attempts/{id}",
    tag = "attempts",
    summary = "One attempt and its transitions (scope attempts:read)",
    security(("bearer" = [])),
    params(("id" = String, Path, pattern = "^[0-9a-fA-F]{16}$", description = "The attempt's id")),
    responses((status = 200, description = "The attempt", body = AttemptDetail))
)]
pub async fn inspect(
    admin: web::Data<Admin>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    admin.admit(&req, AdminAction::InspectAttempt, Scope::AttemptsRead, Some(&id)).await?;
    let r = async {
        let info =
            admin.engine.admin_inspect(attempt_id(&id)?).await?.ok_or(AdminError::NotFound("no such attempt"))?;
        let attempt = with_clients(&admin, std::slice::from_ref(&info)).await?.remove(0);
        Ok(AttemptDetail { attempt, transitions: transitions(&info, &admin.node) })
    }
    .await;
    Ok(HttpResponse::Ok().json(admin.read(AdminAction::InspectAttempt, r)?))
}

#[utoipa::path(
    post,
    path = "/admin/v1/attempts/{id}/end",
    tag = "attempts",
    summary = "End an attempt now (scope attempts:write)",
    description = "Its polls and event streams answer `{\"status\":1,\"state\":\"expired\",\"reason\":\"ended\"}` at once.",
    security(("bearer" = [])),
    params(("id" = String, Path, pattern = "^[0-9a-fA-F]{16}$", description = "The attempt's id")),
    responses((status = 200, description = "The attempt, ended", body = AttemptView))
)]
pub async fn end(admin: web::Data<Admin>, req: HttpRequest, id: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let caller = admin.admit(&req, AdminAction::EndAttempt, Scope::AttemptsWrite, Some(&id)).await?;
    let r = async {
        let info =
            admin.engine.admin_end(attempt_id(&id)?).await?.ok_or(AdminError::NotFound("no such live attempt"))?;
        tracing::info!(key = %caller.name, attempt = %info.id, "admin: attempt ended");
        Ok(AttemptView::from(&info))
    }
    .await;
    Ok(HttpResponse::Ok().json(admin.changed(&req, &caller, AdminAction::EndAttempt, &id, r).await?))
}
