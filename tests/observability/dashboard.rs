//! Reads `dashboards/scanlogin.json` the way Grafana does: panels (inside rows too),
//! their queries, and the template variables those queries use.

use serde_json::Value;

pub struct PanelQuery {
    pub panel: String,
    pub expr: String,
}

pub fn load() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards/scanlogin.json"))
        .expect("dashboards/scanlogin.json");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

fn flatten(panels: &Value, out: &mut Vec<Value>) {
    for p in panels.as_array().into_iter().flatten() {
        out.push(p.clone());
        flatten(&p["panels"], out);
    }
}

/// Every panel, rows' children included.
pub fn panels(d: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    flatten(&d["panels"], &mut out);
    out
}

/// Every panel query.
pub fn queries(d: &Value) -> Vec<PanelQuery> {
    panels(d)
        .iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or("?").to_string();
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |t| PanelQuery { panel: title.clone(), expr: t["expr"].as_str().unwrap_or("").to_string() })
        })
        .collect()
}

/// Substitutes the variables as Grafana would for one app and one job; the rate
/// interval covers the test's few seconds of 1 s scrapes.
pub fn substitute(expr: &str, app: &str, job: &str) -> String {
    expr.replace("$__rate_interval", "30s")
        .replace("$__range", "10m")
        .replace("$__interval", "5s")
        .replace("$app", app)
        .replace("$job", job)
}

/// The `scanlogin_*` series names an expression reads.
pub fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("scanlogin_") {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}
