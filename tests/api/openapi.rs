//! `GET /api/v1/openapi.json`: the document is served, agrees with the API summary table
//! of docs/api.md, and a wrong method on a known route answers as the document's preamble
//! says.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::client::parts;
use crate::helpers::spawn_app;

/// `(METHOD, path)` of every `/api/v1/` row of the API summary table in docs/api.md.
fn readme_endpoints() -> BTreeSet<(String, String)> {
    let readme = include_str!("../../docs/api.md");
    let table = readme.split("## API summary").nth(1).expect("an API summary section");
    table
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter_map(|cell| {
            let (methods, path) = cell.split_once(' ')?;
            let path = path.split('?').next()?.to_string();
            path.starts_with("/api/v1/").then(|| (methods.to_string(), path))
        })
        .flat_map(|(methods, path)| methods.split('/').map(|m| (m.to_string(), path.clone())).collect::<Vec<_>>())
        .collect()
}

#[actix_web::test]
async fn the_document_and_the_readme_table_list_the_same_endpoints() {
    let app = spawn_app().await;
    let r = app.http.get(app.url("/api/v1/openapi.json")).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "application/json");
    let (s, doc) = parts(r).await;
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().unwrap();
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object().unwrap().keys().map(|m| (m.to_uppercase(), path.clone())).collect::<Vec<_>>()
        })
        .collect();
    let readme = readme_endpoints();
    assert!(readme.len() >= 8, "the table was read: {readme:?}");
    assert_eq!(documented, readme, "document vs docs/api.md table");

    // The uuid parameter carries its pattern; the Bearer scheme guards the account.
    let params = doc["paths"]["/api/v1/login/status"]["get"]["parameters"].as_array().unwrap();
    let uuid = params.iter().find(|p| p["name"] == "uuid").unwrap();
    assert_eq!((&uuid["required"], &uuid["schema"]["pattern"]), (&Value::Bool(true), &"^[A-Za-z0-9_-]{22,64}$".into()));
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let qr_429 = &doc["paths"]["/api/v1/login/qrcode"]["post"]["responses"]["429"];
    assert!(qr_429["headers"]["Retry-After"].is_object(), "{qr_429}");
}

#[actix_web::test]
async fn a_wrong_method_on_a_known_route_is_405_with_allow_in_the_error_shape() {
    let app = spawn_app().await;
    for (method, path, allow) in [
        (reqwest::Method::GET, "/api/v1/login/qrcode", "POST"),
        (reqwest::Method::DELETE, "/api/v1/login/status", "GET"),
        (reqwest::Method::POST, "/api/v1/login/events", "GET"),
        (reqwest::Method::PUT, "/api/v1/me", "GET"),
        (reqwest::Method::PATCH, "/api/v1/openapi.json", "GET"),
    ] {
        let r = app.http.request(method.clone(), app.url(path)).send().await.unwrap();
        assert_eq!(r.headers().get("allow").map(|v| v.to_str().unwrap()), Some(allow), "{method} {path}");
        let (s, b) = parts(r).await;
        assert_eq!((s, b["error"].as_str()), (405, Some("method_not_allowed")), "{method} {path}");
        assert!(b["message"].is_string());
    }
}
