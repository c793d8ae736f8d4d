//! Cluster mode: which node this is, compare-and-set conflicts, commit announcements
//! received and the attempts this node watches for its held polls.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};

use super::metric_names::*;
use super::{Metrics, counter, counter_vec, gauge, gauge_vec};

pub(super) struct ClusterMetrics {
    cas_conflicts: IntCounter,
    wakeups: IntCounter,
    views: IntGauge,
    node_info: IntGaugeVec,
    topology: IntGaugeVec,
    resubscriptions: IntCounterVec,
    reopened: IntCounter,
}

/// Why a node subscribed to its wake-ups again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resubscribe {
    /// The connection was lost and opened again (a restart, a failover).
    Reconnect,
    /// A Redis Cluster node dropped one sharded channel (its slot moved).
    SlotMoved,
    /// Redis Sentinel named another primary (a failover noticed).
    Failover,
}

impl Resubscribe {
    fn name(self) -> &'static str {
        match self {
            Resubscribe::Reconnect => "reconnect",
            Resubscribe::SlotMoved => "slot_moved",
            Resubscribe::Failover => "failover",
        }
    }
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
            topology: gauge_vec(r, REDIS_TOPOLOGY, "Cluster: 1, labelled with the Redis topology", &["topology"]),
            resubscriptions: counter_vec(
                r,
                CLUSTER_RESUBSCRIPTIONS,
                "Cluster: wake-up subscriptions established again",
                &["reason"],
            ),
            reopened: counter(
                r,
                REDIS_REOPENED,
                "Cluster: Redis Cluster connections dropped as wedged and opened anew",
            ),
        }
    }
}

impl ClusterMetrics {
    /// Every topology at 0 and every reason to subscribe again, before the first.
    pub(super) fn preset(&self) {
        use crate::kv::TopologyKind;
        for t in [TopologyKind::Single, TopologyKind::Cluster, TopologyKind::Sentinel] {
            self.topology.with_label_values(&[t.name()]).set(0);
        }
        for why in [Resubscribe::Reconnect, Resubscribe::SlotMoved, Resubscribe::Failover] {
            self.resubscriptions.with_label_values(&[why.name()]);
        }
    }
}

impl Metrics {
    /// `n` more Redis Cluster connections were dropped as wedged (see
    /// `crate::kv::conn::LazyCluster`).
    pub fn redis_reopened(&self, n: u64) {
        self.0.cluster.reopened.inc_by(n);
    }

    pub fn cluster_cas_conflict(&self) {
        self.0.cluster.cas_conflicts.inc();
    }

    pub fn cluster_wakeup(&self) {
        self.0.cluster.wakeups.inc();
    }

    pub fn cluster_views(&self, n: usize) {
        self.0.cluster.views.set(n as i64);
    }

    /// The Redis topology this node talks to (`single`, `cluster`, `sentinel`; the others stay 0).
    pub fn redis_topology(&self, topology: &str) {
        self.0.cluster.topology.with_label_values(&[topology]).set(1);
    }

    pub fn cluster_resubscribed(&self, why: Resubscribe) {
        self.0.cluster.resubscriptions.with_label_values(&[why.name()]).inc();
    }

    /// Names this node (`scanlogin_node_info{node} 1`).
    pub fn node(&self, id: &str) {
        self.0.cluster.node_info.with_label_values(&[id]).set(1);
    }
}
