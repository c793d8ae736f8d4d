//! Catalogue tests: names, labels, presets, the listing in docs/operations.md, bounded
//! label values.

use std::collections::HashSet;

use super::Metrics;
use super::metric_names::{self, ALL, FORBIDDEN_LABELS};

fn preset() -> Metrics {
    let m = Metrics::new();
    m.preset(&["default", "tv"], "log", "sqlite");
    m.capacity(super::labels::LimitKind::LiveAttemptsMax, 2_000_000);
    m.node("node-1");
    m
}

#[test]
fn every_family_is_named_in_the_catalogue_and_none_is_missing() {
    let m = preset();
    // Routes and statuses are not preset (their values appear with the first request).
    m.http("/healthz", 200, 0.001);
    let families = m.registry().gather();
    let exported: HashSet<&str> = families.iter().map(|f| f.name()).collect();
    for f in &families {
        let name = f.name();
        assert!(name.starts_with("scanlogin_"), "{name} lacks the prefix");
        assert!(
            ALL.contains(&name) || name.starts_with("scanlogin_process_"),
            "{name} is exported but not in metric_names::ALL"
        );
    }
    for name in ALL {
        assert!(exported.contains(name), "{name} has no series after preset()");
    }
}

#[test]
fn no_label_can_carry_an_identity() {
    let m = preset();
    for f in m.registry().gather() {
        for metric in f.get_metric() {
            for l in metric.get_label() {
                assert!(!FORBIDDEN_LABELS.contains(&l.name()), "{} has label {}", f.name(), l.name());
            }
        }
    }
}

#[test]
fn preset_exports_rare_series_at_zero() {
    let text = preset().render();
    for line in [
        "scanlogin_snapshot_errors_total{op=\"write\",store=\"sqlite\"} 0",
        "scanlogin_restored_attempts_total 0",
        "scanlogin_snapshot_writes_total{result=\"error\"} 0",
        "scanlogin_callbacks_total{app=\"tv\",kind=\"unknown\",result=\"duplicate\"} 0",
        "scanlogin_callbacks_total{app=\"default\",kind=\"unknown\",result=\"late\"} 0",
        "scanlogin_attempts_finished_total{app=\"default\",outcome=\"bound\"} 0",
        "scanlogin_limits_hit_total{kind=\"long_polls_max\"} 0",
        "scanlogin_sms_sent_total{provider=\"log\",result=\"failed\"} 0",
        "scanlogin_scan_to_token_seconds_count{app=\"default\",how=\"scan\"} 0",
        "scanlogin_live_attempts{app=\"tv\",state=\"not_reg\"} 0",
        "scanlogin_capacity{limit=\"live_attempts_max\"} 2000000",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
    }
}

#[test]
fn readme_lists_every_metric() {
    let readme = include_str!("../../docs/operations.md");
    for name in ALL {
        assert!(readme.contains(&format!("`{name}`")), "docs/operations.md does not list `{name}`");
    }
}

#[test]
fn scene_types_from_requests_are_capped() {
    let m = Metrics::new();
    for i in 0..40 {
        m.created("default", &format!("t{i}"));
    }
    m.created("default", "t0");
    let text = m.render();
    let series: Vec<&str> = text.lines().filter(|l| l.starts_with("scanlogin_attempts_created_total{")).collect();
    assert_eq!(series.len(), metric_names::SCENE_TYPES_MAX + 1, "{series:?}");
    assert!(text.contains("scanlogin_attempts_created_total{app=\"default\",scene_type=\"other\"} 24"), "{text}");
    assert!(text.contains("scanlogin_attempts_created_total{app=\"default\",scene_type=\"t0\"} 2"), "{text}");
}

#[test]
fn token_latency_and_snapshot_hooks_record() {
    let m = preset();
    m.token_latency("default", super::labels::LoginHow::Scan, Some(2.0), Some(0.004));
    m.token_latency("default", super::labels::LoginHow::Bind, None, Some(30.0));
    m.snapshot_write_took(0.0002);
    m.snapshot_written("sqlite", super::labels::SnapshotWrite::Ok, 1);
    m.snapshot_error("sqlite", super::labels::SnapshotOp::Write);
    m.restored(7);
    let text = m.render();
    for line in [
        "scanlogin_create_to_token_seconds_count{app=\"default\",how=\"scan\"} 1",
        "scanlogin_create_to_token_seconds_count{app=\"default\",how=\"bind\"} 0",
        "scanlogin_scan_to_token_seconds_bucket{app=\"default\",how=\"scan\",le=\"0.005\"} 1",
        "scanlogin_scan_to_token_seconds_bucket{app=\"default\",how=\"bind\",le=\"10\"} 0",
        "scanlogin_scan_to_token_seconds_bucket{app=\"default\",how=\"bind\",le=\"30\"} 1",
        "scanlogin_snapshot_writes_total{result=\"ok\"} 1",
        "scanlogin_snapshot_write_duration_seconds_count 1",
        "scanlogin_snapshot_errors_total{op=\"write\",store=\"sqlite\"} 1",
        "scanlogin_restored_attempts_total 7",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}`");
    }
}

/// Each typed label set: every value has a series after `preset()` and is named in the
/// catalogue's row of its metric in docs/operations.md, so the table and the code cannot drift apart.
#[test]
fn typed_label_sets_are_pre_created_and_listed_in_the_readme() {
    use super::labels::*;
    let readme = include_str!("../../docs/operations.md");
    let text = preset().render();
    let sets: Vec<(&str, Vec<&str>)> = vec![
        ("scanlogin_polls_total", PollKind::LABELS.to_vec()),
        ("scanlogin_code_checks_total", CodeCheck::LABELS.to_vec()),
        ("scanlogin_snapshot_writes_total", SnapshotWrite::LABELS.to_vec()),
        ("scanlogin_snapshot_errors_total", SnapshotOp::LABELS.to_vec()),
        ("scanlogin_attempt_restarts_total", Restart::LABELS.to_vec()),
        ("scanlogin_sms_sent_total", SmsResult::LABELS.to_vec()),
        ("scanlogin_live_attempts", State::ALL.iter().filter(|s| s.is_live()).map(|l| l.label()).collect()),
        ("scanlogin_attempts_finished_total", Finish::LABELS.to_vec()),
        ("scanlogin_logins_total", LoginHow::LABELS.to_vec()),
        ("scanlogin_confirmations_total", Decision::LABELS.to_vec()),
        ("scanlogin_callbacks_total", CallbackKind::LABELS.to_vec()),
        ("scanlogin_callbacks_total", CallbackResult::LABELS.to_vec()),
        ("scanlogin_wechat_api_calls_total", WechatApi::LABELS.to_vec()),
        ("scanlogin_access_token_refreshes_total", TokenRefresh::LABELS.to_vec()),
    ];
    let pre_created = |metric: &str, v: &str| {
        let series = format!("=\"{v}\"");
        assert!(
            text.lines().any(|l| l.starts_with(metric) && l.contains(&series) && l.ends_with(" 0")),
            "{metric} with {v} is not pre-created at 0"
        );
    };
    for (metric, values) in sets {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{metric}`")))
            .unwrap_or_else(|| panic!("docs/operations.md has no row for {metric}"));
        for v in values {
            assert!(row.contains(&format!("`{v}`")), "docs/operations.md row of {metric} lacks `{v}`: {row}");
            pre_created(metric, v);
        }
    }
    // The catalogue's row points at the limits table for these.
    for k in LimitKind::ALL {
        pre_created("scanlogin_limits_hit_total", k.label());
    }
    for (from, to) in State::TRANSITIONS {
        let series = format!("from=\"{}\",to=\"{}\"", from.label(), to.label());
        assert!(
            text.lines().any(|l| l.contains(&series) && l.ends_with(" 0")),
            "transition {series} is not pre-created"
        );
    }
}
