//! The abuse controls: requests refused by a limit, the daily QR quota per app, SMS
//! codes sent and checked.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Registry};

use super::labels::{CodeCheck, LimitKind, SmsResult};
use super::metric_names::*;
use super::{Metrics, counter_vec, gauge, gauge_vec};

fn utc_day() -> u64 {
    crate::wall::unix_secs() / 86_400
}

pub(super) struct LimitMetrics {
    limits_hit: IntCounterVec,
    qr_quota_used: IntGaugeVec,
    qr_quota_limit: IntGaugeVec,
    /// The UTC day `qr_quota_used` counts (days since the epoch).
    qr_quota_day: AtomicU64,
    /// The apps whose quota series exist (set by [`Metrics::qr_quota_limit`]).
    qr_quota_apps: Mutex<Vec<String>>,
    sms_sent: IntCounterVec,
    code_checks: IntCounterVec,
    sms_budget_used: IntGauge,
    sms_budget_limit: IntGauge,
    /// The UTC day `sms_budget_used` counts.
    sms_budget_day: AtomicU64,
}

impl LimitMetrics {
    pub(super) fn new(r: &Registry) -> Self {
        Self {
            limits_hit: counter_vec(r, LIMITS_HIT, "Requests refused by a limit, by kind", &["kind"]),
            qr_quota_used: gauge_vec(r, QR_QUOTA_USED, "QR codes created by this node today (UTC), by app", &["app"]),
            qr_quota_limit: gauge_vec(r, QR_QUOTA_LIMIT, "Configured QR codes per app per day", &["app"]),
            qr_quota_day: AtomicU64::new(utc_day()),
            qr_quota_apps: Mutex::new(Vec::new()),
            sms_sent: counter_vec(r, SMS_SENT, "SMS codes sent by provider and result", &["provider", "result"]),
            code_checks: counter_vec(r, CODE_CHECKS, "SMS code checks by result", &["result"]),
            sms_budget_used: gauge(r, SMS_BUDGET_USED, "SMS codes sent by this node today (UTC)"),
            sms_budget_limit: gauge(r, SMS_BUDGET_LIMIT, "Configured SMS codes per day for the deployment"),
            sms_budget_day: AtomicU64::new(utc_day()),
        }
    }

    pub(super) fn preset(&self, apps: &[&str], sms_provider: &str) {
        for app in apps {
            self.qr_quota_used.with_label_values(&[app]);
            self.qr_quota_limit.with_label_values(&[app]);
        }
        for k in LimitKind::ALL {
            self.limits_hit.with_label_values(&[k.label()]);
        }
        for r in SmsResult::ALL {
            self.sms_sent.with_label_values(&[sms_provider, r.label()]);
        }
        for r in CodeCheck::ALL {
            self.code_checks.with_label_values(&[r.label()]);
        }
    }

    /// A new UTC day starts every app's count at 0 again (as the quota windows do).
    pub(super) fn roll_quota_day(&self) {
        let today = utc_day();
        if self.qr_quota_day.swap(today, Ordering::Relaxed) != today {
            // Resetting drops every series; the configured apps come back at 0.
            self.qr_quota_used.reset();
            for app in self.qr_quota_apps.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                self.qr_quota_used.with_label_values(&[app]);
            }
        }
    }
}

impl Metrics {
    fn limits(&self) -> &LimitMetrics {
        &self.0.limits
    }

    pub fn limit_hit(&self, kind: LimitKind) {
        self.limits().limits_hit.with_label_values(&[kind.label()]).inc();
    }

    /// Publishes the configured daily QR quota of each app.
    pub fn qr_quota_limit(&self, apps: &[&str], per_day: u32) {
        let m = self.limits();
        for app in apps {
            m.qr_quota_limit.with_label_values(&[app]).set(i64::from(per_day));
            m.qr_quota_used.with_label_values(&[app]);
        }
        *m.qr_quota_apps.lock().unwrap_or_else(|e| e.into_inner()) = apps.iter().map(|a| a.to_string()).collect();
    }

    /// One QR code of `app` charged to today's quota.
    pub fn qr_quota_charged(&self, app: &str) {
        self.limits().roll_quota_day();
        self.limits().qr_quota_used.with_label_values(&[app]).inc();
    }

    /// Publishes the deployment's configured daily SMS budget.
    pub fn sms_budget_limit(&self, per_day: u32) {
        self.limits().sms_budget_limit.set(i64::from(per_day));
    }

    /// One SMS code charged to today's budget.
    pub fn sms_budget_charged(&self) {
        let m = self.limits();
        let today = utc_day();
        if m.sms_budget_day.swap(today, Ordering::Relaxed) != today {
            m.sms_budget_used.set(0);
        }
        m.sms_budget_used.inc();
    }

    pub fn sms(&self, provider: &str, result: SmsResult) {
        self.limits().sms_sent.with_label_values(&[provider, result.label()]).inc();
    }

    pub fn code_check(&self, result: CodeCheck) {
        self.limits().code_checks.with_label_values(&[result.label()]).inc();
    }
}
