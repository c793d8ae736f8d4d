//! `GET /admin/v1/openapi.json`: the OpenAPI 3 document of the admin API, served on the
//! admin listener without a key (it holds nothing secret: the same document is in the
//! repository). Its error answers are added from one list, as the public API's are.

use std::sync::LazyLock;

use actix_web::HttpResponse;
use serde_json::json;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{attempts, audit, users};

/// The error codes the admin API answers, as the `error` field spells them.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum AdminErrorCode {
    InvalidRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    RateLimited,
    Internal,
    Overloaded,
}

/// The body of every admin error answer.
#[derive(ToSchema)]
#[schema(example = json!({"error": "forbidden", "message": "this key lacks the scope attempts:write"}))]
pub struct AdminErrorBody {
    pub error: AdminErrorCode,
    /// Human text; not for matching.
    pub message: String,
}

/// Each error's status, code and meaning; `for_ids`: only on routes with an `{id}`.
const ERRORS: &[(u16, &str, &str, bool)] = &[
    (400, "invalid_request", "a malformed query or id", false),
    (401, "unauthorized", "no key, or not a configured one", false),
    (403, "forbidden", "the key lacks the route's scope", false),
    (404, "not_found", "no such attempt or user", true),
    (429, "rate_limited", "too many calls with this key; retry after `Retry-After` seconds", false),
    (500, "internal", "internal error", false),
    (503, "overloaded", "the service cannot answer now; retry after `Retry-After` seconds", false),
];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "scanlogin admin API",
        description = "For operators, on its own listener (`admin.bind`). Every call but this document carries \
            `Authorization: Bearer <key>`; each route needs one scope of the key. Errors are `{\"error\", \"message\"}`, \
            with `Retry-After` on 429 and 503.",
        license(name = "MIT OR Apache-2.0")
    ),
    paths(attempts::list, attempts::inspect, attempts::end, users::inspect, users::logout, audit::list, openapi_json),
    components(schemas(AdminErrorBody, AdminErrorCode)),
    modifiers(&Errors),
    tags(
        (name = "attempts", description = "Login attempts in progress"),
        (name = "users", description = "Accounts"),
        (name = "audit", description = "Who did what through this API"),
        (name = "meta", description = "This document")
    )
)]
pub struct AdminDoc;

struct Errors;

impl Modify for Errors {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        crate::api::openapi::add_bearer(doc, None, "An admin key; the config holds only its SHA-256");
        for (path, item) in doc.paths.paths.iter_mut() {
            if path.ends_with("/openapi.json") {
                continue;
            }
            let with_id = path.contains('{');
            for op in [&mut item.get, &mut item.post].into_iter().flatten() {
                for (status, code, meaning, for_ids) in ERRORS {
                    if *for_ids && !with_id {
                        continue;
                    }
                    op.responses.responses.insert(status.to_string(), RefOr::T(error_response(*status, code, meaning)));
                }
            }
        }
    }
}

fn error_response(status: u16, code: &str, meaning: &str) -> utoipa::openapi::Response {
    let example =
        utoipa::openapi::example::ExampleBuilder::new().value(Some(json!({"error": code, "message": meaning}))).build();
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("AdminErrorBody")))
        .examples_from_iter([(code, example)]);
    let response =
        ResponseBuilder::new().description(format!("`{code}`: {meaning}")).content("application/json", content.build());
    crate::api::openapi::with_retry_after(status, response).build()
}

static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| serde_json::to_string(&AdminDoc::openapi()).expect("the OpenAPI document serialises"));

#[utoipa::path(
    get,
    path = "/admin/v1/openapi.json",
    tag = "meta",
    summary = "This OpenAPI document (no key needed)",
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json", body = Object))
)]
pub async fn openapi_json() -> HttpResponse {
    crate::api::openapi::json_document(&DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every admin route is in the document with its scope's refusals, and nothing of
    /// the public API is.
    #[test]
    fn the_document_lists_every_admin_route_with_its_refusals() {
        let doc = serde_json::to_value(AdminDoc::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for (p, m) in [
            ("/admin/v1/attempts", "get"),
            ("/admin/v1/attempts/{id}", "get"),
            ("/admin/v1/attempts/{id}/end", "post"),
            ("/admin/v1/users/{id}", "get"),
            ("/admin/v1/users/{id}/logout", "post"),
            ("/admin/v1/audit", "get"),
        ] {
            let r = &paths[p][m]["responses"];
            for s in ["200", "401", "403", "429"] {
                assert!(r.get(s).is_some(), "{p} {m} {s}");
            }
            assert_eq!(r.get("404").is_some(), p.contains('{'), "{p}");
        }
        assert!(paths.keys().all(|p| p.starts_with("/admin/v1/")));
    }
}
