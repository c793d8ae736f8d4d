//! The admin API: calls by action and outcome, so a dashboard shows who acts on the
//! service (the audit table says who exactly) and an alert can fire on refused calls.

use prometheus::{IntCounterVec, Registry};

use super::labels::{AdminAction, AdminOutcome};
use super::metric_names::ADMIN_REQUESTS;
use super::{Metrics, counter_vec};

pub(super) struct AdminMetrics {
    requests: IntCounterVec,
}

impl AdminMetrics {
    pub(super) fn new(r: &Registry) -> Self {
        Self {
            requests: counter_vec(r, ADMIN_REQUESTS, "Admin API calls by action and outcome", &["action", "outcome"]),
        }
    }

    pub(super) fn preset(&self) {
        for a in AdminAction::ALL {
            for o in AdminOutcome::ALL {
                self.requests.with_label_values(&[a.label(), o.label()]);
            }
        }
    }
}

impl Metrics {
    pub fn admin_request(&self, action: AdminAction, outcome: AdminOutcome) {
        self.0.admin.requests.with_label_values(&[action.label(), outcome.label()]).inc();
    }
}
