//! The metric catalogue's names, in one place (the label-value sets are [`super::labels`]).
//!
//! Every name carries the `scanlogin_` prefix; the metrics catalogue of docs/operations.md
//! lists each one (a test keeps the two in step). No label ever holds a poll id, scene, openid or
//! phone: values come from configuration (app names) or the small sets of [`super::labels`].

pub const ATTEMPTS_CREATED: &str = "scanlogin_attempts_created_total";
pub const LIVE_ATTEMPTS: &str = "scanlogin_live_attempts";
pub const TRANSITIONS: &str = "scanlogin_transitions_total";
pub const ATTEMPTS_FINISHED: &str = "scanlogin_attempts_finished_total";
pub const SCAN_TO_TOKEN: &str = "scanlogin_scan_to_token_seconds";
pub const CREATE_TO_TOKEN: &str = "scanlogin_create_to_token_seconds";
pub const LOGINS: &str = "scanlogin_logins_total";
/// Decisions on the phone (confirm on the phone), by app and `decision`.
pub const CONFIRMATIONS: &str = "scanlogin_confirmations_total";
/// From the scan to the person's decision on the phone.
pub const SCAN_TO_DECISION: &str = "scanlogin_scan_to_decision_seconds";
pub const POLLS: &str = "scanlogin_polls_total";
pub const HELD_LONG_POLLS: &str = "scanlogin_held_long_polls";
/// Configured capacities (`limit` = `live_attempts_max`, `long_polls_max`), so alerts can
/// say "near the cap" without copying the configuration.
pub const CAPACITY: &str = "scanlogin_capacity";
pub const CALLBACKS: &str = "scanlogin_callbacks_total";
pub const CALLBACK_DURATION: &str = "scanlogin_callback_duration_seconds";
pub const WECHAT_API_CALLS: &str = "scanlogin_wechat_api_calls_total";
pub const WECHAT_API_DURATION: &str = "scanlogin_wechat_api_duration_seconds";
/// Creates answered in code mode because WeChat refused a service account a QR code.
pub const CODE_FALLBACKS: &str = "scanlogin_code_fallbacks_total";
pub const ACCESS_TOKEN_REFRESHES: &str = "scanlogin_access_token_refreshes_total";
pub const SNAPSHOT_WRITES: &str = "scanlogin_snapshot_writes_total";
pub const SNAPSHOT_WRITE_DURATION: &str = "scanlogin_snapshot_write_duration_seconds";
pub const SNAPSHOT_ERRORS: &str = "scanlogin_snapshot_errors_total";
/// Attempt records read from Redis that failed their authentication (treated as gone).
pub const REDIS_RECORDS_REJECTED: &str = "scanlogin_redis_records_rejected_total";
pub const RESTORED_ATTEMPTS: &str = "scanlogin_restored_attempts_total";
pub const SNAPSHOT_PENDING: &str = "scanlogin_snapshot_pending";
/// Pages in SQLite's write-ahead log after the latest background checkpoint.
pub const SQLITE_WAL_PAGES: &str = "scanlogin_sqlite_wal_pages";
pub const SNAPSHOT_STORE_UP: &str = "scanlogin_snapshot_store_up";
pub const RESTORE_OUTCOMES: &str = "scanlogin_restore_attempts";
pub const RESTORE_DURATION: &str = "scanlogin_restore_duration_seconds";
pub const ATTEMPT_RESTARTS: &str = "scanlogin_attempt_restarts_total";
pub const TOKENS_WITHHELD: &str = "scanlogin_tokens_withheld_total";
pub const SMS_SENT: &str = "scanlogin_sms_sent_total";
pub const CODE_CHECKS: &str = "scanlogin_code_checks_total";
pub const LIMITS_HIT: &str = "scanlogin_limits_hit_total";
/// QR codes this node created for an app in the current UTC day (`limits.qr_per_app_per_day`
/// counts per day too); summed over the nodes against [`QR_QUOTA_LIMIT`] by the 80 % alert.
pub const QR_QUOTA_USED: &str = "scanlogin_qr_quota_used";
/// The configured daily QR quota of an app (`limits.qr_per_app_per_day`).
pub const QR_QUOTA_LIMIT: &str = "scanlogin_qr_quota_limit";
/// SMS codes this node sent today (UTC); summed over the nodes against
/// [`SMS_BUDGET_LIMIT`] by the 80 % alert.
pub const SMS_BUDGET_USED: &str = "scanlogin_sms_budget_used";
/// The deployment's configured SMS codes per day (`limits.sms_per_day`).
pub const SMS_BUDGET_LIMIT: &str = "scanlogin_sms_budget_limit";
pub const HTTP_REQUESTS: &str = "scanlogin_http_requests_total";
pub const HTTP_DURATION: &str = "scanlogin_http_request_duration_seconds";
/// Cluster mode: compare-and-set rounds lost to a concurrent writer (retried).
pub const CLUSTER_CAS_CONFLICTS: &str = "scanlogin_cluster_cas_conflicts_total";
/// Cluster mode: commit announcements received over Redis pub/sub.
pub const CLUSTER_WAKEUPS: &str = "scanlogin_cluster_wakeups_total";
/// Cluster mode: view actors (attempts with polls held on this node).
pub const CLUSTER_VIEWS: &str = "scanlogin_cluster_views";
/// Cluster mode: 1, labelled with the Redis topology this node talks to.
pub const REDIS_TOPOLOGY: &str = "scanlogin_redis_topology";
/// Cluster mode: wake-up subscriptions established again, by why.
pub const CLUSTER_RESUBSCRIPTIONS: &str = "scanlogin_cluster_resubscriptions_total";
/// Cluster mode: Redis Cluster connections dropped as wedged (a call and a probe timed
/// out) and opened anew.
pub const REDIS_REOPENED: &str = "scanlogin_redis_connections_reopened_total";
/// 1, labelled with this node's `cluster.node_id` (host name and pid by default).
pub const NODE_INFO: &str = "scanlogin_node_info";
/// Namespace of the process collector: `scanlogin_process_cpu_seconds_total`, …
pub const PROCESS_NAMESPACE: &str = "scanlogin";

/// Every name above (the process collector's excepted), for the catalogue tests.
pub const OIDC_AUTHORIZE: &str = "scanlogin_oidc_authorize_total";
pub const OIDC_CODES: &str = "scanlogin_oidc_codes_total";
pub const OIDC_CODES_REFUSED: &str = "scanlogin_oidc_codes_refused_total";
pub const OIDC_TOKENS: &str = "scanlogin_oidc_tokens_total";
pub const OIDC_REFRESH_REUSE: &str = "scanlogin_oidc_refresh_reuse_total";

pub const ALL: &[&str] = &[
    ADMIN_REQUESTS,
    CLUSTER_CAS_CONFLICTS,
    CLUSTER_WAKEUPS,
    CLUSTER_VIEWS,
    REDIS_TOPOLOGY,
    CLUSTER_RESUBSCRIPTIONS,
    REDIS_REOPENED,
    NODE_INFO,
    ATTEMPTS_CREATED,
    LIVE_ATTEMPTS,
    TRANSITIONS,
    ATTEMPTS_FINISHED,
    SCAN_TO_TOKEN,
    CREATE_TO_TOKEN,
    LOGINS,
    CONFIRMATIONS,
    SCAN_TO_DECISION,
    POLLS,
    HELD_LONG_POLLS,
    CAPACITY,
    CALLBACKS,
    CALLBACK_DURATION,
    WECHAT_API_CALLS,
    WECHAT_API_DURATION,
    CODE_FALLBACKS,
    ACCESS_TOKEN_REFRESHES,
    SNAPSHOT_WRITES,
    SNAPSHOT_WRITE_DURATION,
    SNAPSHOT_ERRORS,
    REDIS_RECORDS_REJECTED,
    RESTORED_ATTEMPTS,
    SNAPSHOT_PENDING,
    SQLITE_WAL_PAGES,
    SNAPSHOT_STORE_UP,
    RESTORE_OUTCOMES,
    RESTORE_DURATION,
    ATTEMPT_RESTARTS,
    TOKENS_WITHHELD,
    SMS_SENT,
    CODE_CHECKS,
    LIMITS_HIT,
    QR_QUOTA_USED,
    QR_QUOTA_LIMIT,
    SMS_BUDGET_USED,
    SMS_BUDGET_LIMIT,
    HTTP_REQUESTS,
    HTTP_DURATION,
    OIDC_AUTHORIZE,
    OIDC_CODES,
    OIDC_CODES_REFUSED,
    OIDC_TOKENS,
    OIDC_REFRESH_REUSE,
];

/// Label names that would leak an identity or explode cardinality; none may be used.
pub const FORBIDDEN_LABELS: &[&str] = &["uuid", "poll", "scene", "openid", "phone", "user", "token", "ip"];

/// Distinct `scene_type` values counted by name; later ones are counted as `other`
/// (scene types come from requests, so their number must be capped).
pub const SCENE_TYPES_MAX: usize = 16;
/// Admin API calls (`action`, `outcome`).
pub const ADMIN_REQUESTS: &str = "scanlogin_admin_requests_total";
