//! WeChat's side: the pushes it sends to our callback, our calls to its API and the
//! access-token fetches among them.

use prometheus::{HistogramVec, IntCounterVec, Registry};

use super::labels::{CallbackKind, CallbackResult, FallbackErrcode, TokenRefresh, WechatApi};
use super::metric_names::*;
use super::{LATENCY_BUCKETS, Metrics, counter_vec, histogram_vec};

pub(super) struct WechatMetrics {
    callbacks: IntCounterVec,
    callback_duration: HistogramVec,
    calls: IntCounterVec,
    call_duration: HistogramVec,
    token_refreshes: IntCounterVec,
    code_fallbacks: IntCounterVec,
}

impl WechatMetrics {
    pub(super) fn new(r: &Registry) -> Self {
        Self {
            callbacks: counter_vec(
                r,
                CALLBACKS,
                "WeChat callbacks by app, kind and result",
                &["app", "kind", "result"],
            ),
            callback_duration: histogram_vec(
                r,
                CALLBACK_DURATION,
                "Time to answer a WeChat callback",
                LATENCY_BUCKETS,
                &["app"],
            ),
            calls: counter_vec(
                r,
                WECHAT_API_CALLS,
                "Calls to WeChat's API by api and result",
                &["app", "api", "result"],
            ),
            call_duration: histogram_vec(
                r,
                WECHAT_API_DURATION,
                "Duration of calls to WeChat's API",
                LATENCY_BUCKETS,
                &["api"],
            ),
            token_refreshes: counter_vec(
                r,
                ACCESS_TOKEN_REFRESHES,
                "Access-token fetches by result",
                &["app", "result"],
            ),
            code_fallbacks: counter_vec(
                r,
                CODE_FALLBACKS,
                "Creates answered in code mode because WeChat refused a QR code, by errcode",
                &["app", "errcode"],
            ),
        }
    }

    /// Every push kind answered `ok`, every refusal of a push not yet read (`unknown`),
    /// every API answered `ok`.
    pub(super) fn preset(&self, apps: &[&str]) {
        for app in apps {
            for kind in CallbackKind::ALL {
                self.callbacks.with_label_values(&[app, kind.label(), CallbackResult::Ok.label()]);
            }
            for result in CallbackResult::ALL.iter().filter(|r| **r != CallbackResult::Ok) {
                self.callbacks.with_label_values(&[app, CallbackKind::Unknown.label(), result.label()]);
            }
            self.callback_duration.with_label_values(&[app]);
            for api in WechatApi::ALL {
                self.calls.with_label_values(&[app, api.label(), "ok"]);
            }
            for result in TokenRefresh::ALL {
                self.token_refreshes.with_label_values(&[app, result.label()]);
            }
            for errcode in FallbackErrcode::ALL {
                self.code_fallbacks.with_label_values(&[app, errcode.label()]);
            }
        }
        for api in WechatApi::ALL {
            self.call_duration.with_label_values(&[api.label()]);
        }
    }
}

impl Metrics {
    fn wechat(&self) -> &WechatMetrics {
        &self.0.wechat
    }

    pub fn callback(&self, app: &str, kind: CallbackKind, result: CallbackResult, secs: f64) {
        self.wechat().callbacks.with_label_values(&[app, kind.label(), result.label()]).inc();
        self.wechat().callback_duration.with_label_values(&[app]).observe(secs);
    }

    /// One call to WeChat's `api`; `result`: `ok`, `errcode_N`, `transport` or
    /// `bad_response` (the errcodes are WeChat's, not a set of ours).
    pub fn wechat_call(&self, app: &str, api: WechatApi, result: &str, secs: f64) {
        self.wechat().calls.with_label_values(&[app, api.label(), result]).inc();
        self.wechat().call_duration.with_label_values(&[api.label()]).observe(secs);
    }

    /// A create of `app` answered in code mode after WeChat refused it a QR code.
    pub fn code_fallback(&self, app: &str, errcode: FallbackErrcode) {
        self.wechat().code_fallbacks.with_label_values(&[app, errcode.label()]).inc();
    }

    pub fn token_refresh(&self, app: &str, result: TokenRefresh) {
        self.wechat().token_refreshes.with_label_values(&[app, result.label()]).inc();
    }
}
