//! The HTTP API: requests by route pattern and status, and how long they took.

use prometheus::{HistogramVec, IntCounterVec, Registry};

use super::metric_names::*;
use super::{LATENCY_BUCKETS, Metrics, counter_vec, histogram_vec};

pub(super) struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl HttpMetrics {
    pub(super) fn new(r: &Registry) -> Self {
        Self {
            requests: counter_vec(r, HTTP_REQUESTS, "HTTP requests by route and status", &["route", "status"]),
            duration: histogram_vec(r, HTTP_DURATION, "HTTP request duration by route", LATENCY_BUCKETS, &["route"]),
        }
    }
}

impl Metrics {
    /// One answer on `route` (the pattern, never the raw path: no ids in labels).
    pub fn http(&self, route: &str, status: u16, secs: f64) {
        let m = &self.0.http;
        m.requests.with_label_values(&[route, &status.to_string()]).inc();
        m.duration.with_label_values(&[route]).observe(secs);
    }
}
