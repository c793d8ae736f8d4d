//! `/admin/v1/users/{id}`: look at an account (masked), and log it out everywhere.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

use super::{Admin, AdminError};
use crate::config::Scope;
use crate::ids::{mask_openid, mask_phone};
use crate::metrics::labels::AdminAction;
use crate::store::rfc3339;
use crate::store::users::UserRow;

/// One WeChat identity of the account: the app's name (or its app id when no configured
/// app has it) and the openid, masked.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IdentityView {
    #[schema(example = "default")]
    pub app: String,
    #[schema(example = "oAbc****wxyz")]
    pub openid: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserDetail {
    pub id: String,
    #[schema(example = "138****0000")]
    pub phone: Option<String>,
    pub openids: Vec<IdentityView>,
    #[schema(format = DateTime, example = "2026-05-01T08:00:00Z")]
    pub created_at: String,
    /// The last 10 logins, newest first.
    pub recent_logins: Vec<crate::api::answers::LoginView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogoutAnswer {
    pub id: String,
    /// Tokens issued before this time are refused, on every node.
    #[schema(format = DateTime, example = "2026-05-01T08:00:00Z")]
    pub tokens_before: String,
}

/// A user id as the service makes them (a UUID), or 404 before any query.
fn user_id(raw: &str) -> Result<&str, AdminError> {
    let ok = raw.len() == 36 && raw.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    ok.then_some(raw).ok_or(AdminError::NotFound("no such user"))
}

/// The account `raw` names, or 404 (a malformed id before any query).
async fn found(admin: &Admin, raw: &str) -> Result<UserRow, AdminError> {
    admin.users.get(user_id(raw)?).await?.ok_or(AdminError::NotFound("no such user"))
}

#[utoipa::path(
    get,
    path = "/admin/v1/users/{id}",
    tag = "users",
    summary = "An account, masked, with its recent logins (scope users:read)",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The user's id")),
    responses((status = 200, description = "The account", body = UserDetail))
)]
pub async fn inspect(
    admin: web::Data<Admin>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    admin.admit(&req, AdminAction::InspectUser, Scope::UsersRead, Some(&id)).await?;
    let r = async {
        let user = found(&admin, &id).await?;
        let id = user.id.as_str();
        let openids = admin
            .store
            .identities(id)
            .await?
            .into_iter()
            .map(|(app_id, openid)| IdentityView {
                app: admin.apps.iter().find(|(_, a)| *a == app_id).map_or(app_id, |(name, _)| name.clone()),
                openid: mask_openid(&openid),
            })
            .collect();
        let recent = admin.users.recent_logins(id, 10).await?;
        Ok(UserDetail {
            id: user.id,
            phone: user.phone.as_deref().map(mask_phone),
            openids,
            created_at: rfc3339(user.created_at),
            recent_logins: recent.into_iter().map(crate::api::answers::LoginView::from).collect(),
        })
    }
    .await;
    Ok(HttpResponse::Ok().json(admin.read(AdminAction::InspectUser, r)?))
}

#[utoipa::path(
    post,
    path = "/admin/v1/users/{id}/logout",
    tag = "users",
    summary = "Log a user out everywhere (scope users:write)",
    description = "Every token of the user issued until now is refused from now on, on every node: login \
        tokens, the provider's access tokens; the provider's sessions end and their refresh tokens are revoked.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The user's id")),
    responses((status = 200, description = "Logged out everywhere", body = LogoutAnswer))
)]
pub async fn logout(
    admin: web::Data<Admin>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let caller = admin.admit(&req, AdminAction::LogoutUser, Scope::UsersWrite, Some(&id)).await?;
    let r = async {
        let user = found(&admin, &id).await?;
        let now = crate::wall::unix_secs() as i64;
        // Tokens carry whole seconds: one issued in this very second is older than the cut.
        let before = now + 1;
        admin.revocations.logouts.cut(&user.id, before).await?;
        admin.store.end_provider_sessions(&user.id, now).await?;
        tracing::info!(key = %caller.name, user = %user.id, "admin: user logged out everywhere");
        Ok(LogoutAnswer { id: user.id, tokens_before: rfc3339(before) })
    }
    .await;
    Ok(HttpResponse::Ok().json(admin.changed(&req, &caller, AdminAction::LogoutUser, &id, r).await?))
}
