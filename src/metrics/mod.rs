//! The metrics catalogue: one registry per application, one method per thing counted.
//!
//! Names live in [`metric_names`], label-value sets in [`labels`]. No label ever takes a
//! poll id, scene, openid or phone: label values come only from configuration (app
//! names) or small fixed sets, and the one request-chosen value (`scene_type`) is capped.
//! Known label sets are created at start ([`Metrics::preset`]) so every series is
//! exported at 0 before its first event: dashboards and alerts see "zero", not "no data".
//!
//! Each area registers and counts its own group of metrics (one file each); [`Metrics`]
//! is their common handle.

pub mod labels;
pub mod metric_names;

mod admin;
mod cluster;
mod engine;
mod http;
mod limits;
mod oidc;
mod store;
mod wechat;

pub use cluster::Resubscribe;
pub use engine::HoldGuard;
pub use labels::{Finish, State};

use std::sync::Arc;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets for HTTP handlers, callbacks and WeChat calls (seconds): 1 ms .. 10 s.
const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

struct Inner {
    registry: Registry,
    engine: engine::EngineMetrics,
    wechat: wechat::WechatMetrics,
    store: store::StoreMetrics,
    limits: limits::LimitMetrics,
    http: http::HttpMetrics,
    cluster: cluster::ClusterMetrics,
    oidc: oidc::OidcMetrics,
    admin: admin::AdminMetrics,
}

/// Cheap to clone; all clones feed the same registry.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

fn register<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    r.register(Box::new(c.clone())).expect("metric names are unique");
    c
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    register(r, IntCounter::new(name, help).expect("valid metric"))
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(r, IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    register(r, IntGauge::new(name, help).expect("valid metric"))
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(r, IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
}

fn histogram_vec(r: &Registry, name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    register(r, HistogramVec::new(opts, labels).expect("valid metric"))
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::new(
                std::process::id() as i32,
                metric_names::PROCESS_NAMESPACE,
            );
            let _ = r.register(Box::new(pc));
        }
        Self(Arc::new(Inner {
            engine: engine::EngineMetrics::new(&r),
            wechat: wechat::WechatMetrics::new(&r),
            store: store::StoreMetrics::new(&r),
            limits: limits::LimitMetrics::new(&r),
            http: http::HttpMetrics::new(&r),
            cluster: cluster::ClusterMetrics::new(&r),
            oidc: oidc::OidcMetrics::new(&r),
            admin: admin::AdminMetrics::new(&r),
            registry: r,
        }))
    }

    /// Creates every known label set at 0: the configured apps (and their default
    /// scene type `web`) crossed with the fixed sets of [`labels`].
    pub fn preset(&self, apps: &[&str], sms_provider: &str, snapshot_store: &str) {
        let m = &self.0;
        m.engine.preset(apps);
        m.wechat.preset(apps);
        m.limits.preset(apps, sms_provider);
        m.store.preset(snapshot_store);
        // The provider's series (clients are added when it starts).
        self.preset_oidc(&[]);
        m.admin.preset();
        m.cluster.preset();
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self) -> String {
        self.0.limits.roll_quota_day();
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.0.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// The registry, for tests that inspect the catalogue.
    pub fn registry(&self) -> &Registry {
        &self.0.registry
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests;
