//! Cluster mode: which node this is, compare-and-set conflicts, commit announcements
//! received and the attempts this node watches for its held polls.

use prometheus::{IntCounter, IntGauge, IntGaugeVec, Registry};

use super::metric_names::*;
use super::{Metrics, counter, gauge, gauge_vec};

pub(super) struct ClusterMetrics {
    cas_conflicts: IntCounter,
    wakeups: IntCounter,
    views: IntGauge,
    node_info: IntGaugeVec,
}

impl ClusterMetrics {
    pub(super) fn new(r: &Registry) -> Self {
        Self {
            cas_conflicts: counter(
                r,
                CLUSTER_CAS_CONFLICTS,
                "Cluster: compare-and-set rounds lost to a concurrent writer",
            ),
            wakeups: counter(r, CLUSTER_WAKEUPS, "Cluster: commit announcements received over pub/sub"),
            views: gauge(r, CLUSTER_VIEWS, "Cluster: attempts with polls held on this node"),
            node_info: gauge_vec(r, NODE_INFO, "1, labelled with this node's id", &["node"]),
        }
    }
}

impl Metrics {
    pub fn cluster_cas_conflict(&self) {
        self.0.cluster.cas_conflicts.inc();
    }

    pub fn cluster_wakeup(&self) {
        self.0.cluster.wakeups.inc();
    }

    pub fn cluster_views(&self, n: usize) {
        self.0.cluster.views.set(n as i64);
    }

    /// Names this node (`scanlogin_node_info{node} 1`).
    pub fn node(&self, id: &str) {
        self.0.cluster.node_info.with_label_values(&[id]).set(1);
    }
}
