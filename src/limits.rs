//! Abuse limits on the login path: every counter an attacker can drive has a bound.
//!
//! Rates are kept by `governor` (GCRA) in process, or by fixed windows in Redis when
//! Redis is configured, so the limits that must agree across nodes (per phone, per IP,
//! per app) do. While Redis is slow or down (the breaker is open) the same limits are
//! kept in process instead: they are per node then, but never off. Held long polls are
//! a local resource and are counted locally. Per-address limits take the client's
//! [`crate::net::limit_bucket`] (an IPv6 /64). Every refusal counts in
//! `scanlogin_limits_hit_total{kind}` and carries a retry delay.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::LimitSettings;
use crate::metrics::Metrics;
use crate::metrics::labels::LimitKind;

const DAY: Duration = Duration::from_secs(86_400);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3_600);

/// The request limits; each is named by its [`LimitKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    QrPerIp,
    QrPerIpPerDay,
    QrPerNetwork,
    QrPerSite,
    QrPerApp,
    /// Not a counter: the app's day use passed what new addresses may spend.
    QrReserved,
    SmsResend,
    SmsPerPhone,
    SmsPerIp,
    SmsPerDay,
    CodeFailuresPerOpenid,
    CodeFailuresPerIp,
    /// Wrong login codes a WeChat user sent to the account this hour (code mode).
    CodesPerOpenid,
    BindPerAttempt,
    BindPerIp,
    /// Failed requests at the provider's token endpoint, by client address.
    TokenFailuresPerIp,
    /// … and by the client they named.
    TokenFailuresPerClient,
}

impl Kind {
    pub const ALL: [Kind; 17] = [
        Kind::QrPerIp,
        Kind::QrPerIpPerDay,
        Kind::QrPerNetwork,
        Kind::QrPerSite,
        Kind::QrPerApp,
        Kind::QrReserved,
        Kind::SmsResend,
        Kind::SmsPerPhone,
        Kind::SmsPerIp,
        Kind::SmsPerDay,
        Kind::CodeFailuresPerOpenid,
        Kind::CodeFailuresPerIp,
        Kind::CodesPerOpenid,
        Kind::BindPerAttempt,
        Kind::BindPerIp,
        Kind::TokenFailuresPerIp,
        Kind::TokenFailuresPerClient,
    ];

    /// The limit's name in metrics, in Redis keys and in docs/architecture.md's limits table.
    pub fn name(self) -> &'static str {
        LimitKind::from(self).label()
    }

    /// The `[limits]` setting that sets this limit (`SCANLOGIN__LIMITS__` + it in
    /// capitals in the environment): what a refused client's operator raises.
    pub fn setting(self) -> &'static str {
        match self {
            Kind::QrPerIp => "qr_per_ip_per_minute",
            Kind::QrPerIpPerDay => "qr_per_ip_per_day",
            Kind::QrPerNetwork => "qr_per_network_per_day",
            Kind::QrPerSite => "qr_per_site_per_day",
            Kind::QrPerApp => "qr_per_app_per_day",
            Kind::QrReserved => "qr_reserved_percent",
            Kind::SmsResend => "sms_resend_secs",
            Kind::SmsPerPhone => "sms_per_phone_per_day",
            Kind::SmsPerIp => "sms_per_ip_per_day",
            Kind::SmsPerDay => "sms_per_day",
            Kind::CodeFailuresPerOpenid => "code_failures_per_openid_per_day",
            Kind::CodeFailuresPerIp => "code_failures_per_ip_per_day",
            Kind::CodesPerOpenid => "codes_per_openid_per_hour",
            Kind::BindPerAttempt => "bind_per_attempt",
            Kind::BindPerIp => "bind_per_ip_per_day",
            Kind::TokenFailuresPerIp => "oidc_token_failures_per_ip_per_day",
            Kind::TokenFailuresPerClient => "oidc_token_failures_per_client_per_day",
        }
    }

    /// The `message` of a refusal's error body (the load tool maps it back to the kind).
    pub fn message(self) -> &'static str {
        self.human()
    }

    /// Keyed by a phone number (which then never appears in a Redis key name).
    fn is_per_phone(self) -> bool {
        matches!(self, Kind::SmsResend | Kind::SmsPerPhone)
    }

    fn human(self) -> &'static str {
        match self {
            Kind::QrPerIp => "too many QR codes from this address",
            Kind::QrPerIpPerDay => "too many QR codes from this address today",
            Kind::QrPerNetwork => "too many QR codes from this network today",
            Kind::QrPerSite => "too many QR codes from this site's network today",
            Kind::QrReserved => "the QR codes left today are kept for returning users",
            Kind::QrPerApp => "the QR code quota of this account is used up for now",
            Kind::SmsResend => "a code was just sent to this phone",
            Kind::SmsPerPhone => "too many codes for this phone today",
            Kind::SmsPerIp => "too many codes from this address today",
            Kind::SmsPerDay => "the service has sent all the codes it may today",
            Kind::CodeFailuresPerOpenid => "too many wrong codes from this WeChat user today",
            Kind::CodeFailuresPerIp => "too many wrong codes from this address today",
            Kind::CodesPerOpenid => "too many wrong login codes from this WeChat user this hour",
            Kind::BindPerAttempt => "too many tries for this login: start a new one",
            Kind::BindPerIp => "too many phone bindings from this address today",
            Kind::TokenFailuresPerIp => "too many failed token requests from this address today",
            Kind::TokenFailuresPerClient => "too many failed token requests for this client today",
        }
    }
}

impl From<Kind> for LimitKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::QrPerIp => LimitKind::QrPerIp,
            Kind::QrPerIpPerDay => LimitKind::QrPerIpPerDay,
            Kind::QrPerNetwork => LimitKind::QrPerNetwork,
            Kind::QrPerSite => LimitKind::QrPerSite,
            Kind::QrReserved => LimitKind::QrReserved,
            Kind::QrPerApp => LimitKind::QrPerApp,
            Kind::SmsResend => LimitKind::SmsResend,
            Kind::SmsPerPhone => LimitKind::SmsPerPhone,
            Kind::SmsPerIp => LimitKind::SmsPerIp,
            Kind::SmsPerDay => LimitKind::SmsPerDay,
            Kind::CodeFailuresPerOpenid => LimitKind::CodeFailuresPerOpenid,
            Kind::CodeFailuresPerIp => LimitKind::CodeFailuresPerIp,
            Kind::CodesPerOpenid => LimitKind::CodesPerOpenid,
            Kind::BindPerAttempt => LimitKind::BindPerAttempt,
            Kind::BindPerIp => LimitKind::BindPerIp,
            Kind::TokenFailuresPerIp => LimitKind::OidcTokenFailuresPerIp,
            Kind::TokenFailuresPerClient => LimitKind::OidcTokenFailuresPerClient,
        }
    }
}

/// A refusal: which limit, and when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub kind: Kind,
    pub retry_after_secs: u64,
}

impl Refused {
    pub fn message(&self) -> &'static str {
        self.kind.human()
    }
}

/// `n` per `period`, as a GCRA quota with a burst of `n`.
fn quota(n: u32, period: Duration) -> Quota {
    let n = NonZeroU32::new(n.max(1)).expect("max(1)");
    Quota::with_period(period / n.get()).expect("non-zero period").allow_burst(n)
}

/// Counts per key for the current UTC day: a key's count starts again at 0 on a new day.
struct DayCounts<K>(Mutex<HashMap<K, (u64, u64)>>);

impl<K: std::hash::Hash + Eq> DayCounts<K> {
    fn new() -> Self {
        Self(Mutex::new(HashMap::new()))
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<K, (u64, u64)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Today's count of `key`.
    fn get<Q>(&self, key: &Q) -> u64
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        let (day, _) = Limits::day();
        self.map().get(key).filter(|(d, _)| *d == day).map_or(0, |(_, n)| *n)
    }

    /// Sets today's count of `key` to `f(its count)`, in one hold of the lock.
    fn update(&self, key: K, f: impl FnOnce(u64) -> u64) {
        let (day, _) = Limits::day();
        let mut map = self.map();
        let e = map.entry(key).or_insert((day, 0));
        *e = (day, f(if e.0 == day { e.1 } else { 0 }));
    }

    /// Forgets the keys of past days.
    fn sweep(&self) {
        let (today, _) = Limits::day();
        self.map().retain(|_, (day, _)| *day == today);
    }
}

struct Local {
    limiters: HashMap<Kind, DefaultKeyedRateLimiter<String>>,
    /// QR codes charged per app today, as this node knows them (see
    /// [`Limits::qr_used_today`]).
    app_day: DayCounts<String>,
    /// Wrong codes per guesser and window (of the limit's period) today, on this node.
    failures: DayCounts<(Kind, String, u64)>,
}

/// The counters every node shares, and the breaker that sends calls to [`Local`] while
/// Redis does not answer.
struct RedisCounters {
    kv: crate::kv::Kv,
    breaker: crate::breaker::Breaker,
}

impl RedisCounters {
    /// The shared store, unless it failed a moment ago.
    fn usable(shared: &Option<RedisCounters>) -> Option<&RedisCounters> {
        shared.as_ref().filter(|s| s.breaker.allows())
    }

    /// Counts one in the window counter `k` (the window is in its name) and answers
    /// the count: one script, `INCR` and, at the window's first count only, the key's
    /// expiry (a transaction of `INCR` and `EXPIRE` cost four commands every time).
    async fn count(&self, k: &str, period: Duration) -> Result<u64, redis::RedisError> {
        static COUNT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
            redis::Script::new(
                "local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end return n",
            )
        });
        let mut c = self.kv.conn(crate::kv::Class::Fast);
        COUNT.key(k).arg(period.as_millis() as u64).invoke_async(&mut c).await
    }

    /// Counts one in each window counter of `keys` (one hash slot), in order, and stops
    /// at the first past its limit: one script. `Some(i)`: `keys[i]` refused.
    async fn count_all(
        &self,
        keys: &[String],
        periods: &[u64],
        maxes: &[u32],
    ) -> Result<Option<usize>, redis::RedisError> {
        static COUNT_ALL: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
            redis::Script::new(
                "for i, k in ipairs(KEYS) do \
                   local n = redis.call('INCR', k) \
                   if n == 1 then redis.call('PEXPIRE', k, ARGV[i]) end \
                   if n > tonumber(ARGV[#KEYS + i]) then return i end \
                 end return 0",
            )
        });
        let mut inv = COUNT_ALL.prepare_invoke();
        for k in keys {
            inv.key(k);
        }
        for p in periods {
            inv.arg(*p);
        }
        for m in maxes {
            inv.arg(*m);
        }
        let i: usize = inv.invoke_async(&mut self.kv.conn(crate::kv::Class::Fast)).await?;
        Ok(i.checked_sub(1))
    }

    fn failed(&self, e: &redis::RedisError, what: &str) {
        self.breaker.trip();
        tracing::warn!(error = %e, limit = what, "limit store unavailable; node-local limits until it answers");
    }
}

pub struct Limits {
    /// Always there: the limits themselves without Redis, the fallback with it.
    local: Local,
    shared: Option<RedisCounters>,
    settings: LimitSettings,
    holds: Mutex<HashMap<IpAddr, usize>>,
    metrics: Metrics,
}

use crate::wall::unix_secs;

impl Limits {
    fn rule(s: &LimitSettings, kind: Kind) -> (u32, Duration) {
        match kind {
            Kind::QrPerIp => (s.qr_per_ip_per_minute, MINUTE),
            Kind::QrPerApp => (s.qr_per_app_per_day, DAY),
            Kind::SmsResend => (1, Duration::from_secs(s.sms_resend_secs.max(1))),
            Kind::SmsPerPhone => (s.sms_per_phone_per_day, DAY),
            Kind::SmsPerIp => (s.sms_per_ip_per_day, DAY),
            Kind::SmsPerDay => (s.sms_per_day, DAY),
            Kind::CodeFailuresPerOpenid => (s.code_failures_per_openid_per_day, DAY),
            Kind::CodeFailuresPerIp => (s.code_failures_per_ip_per_day, DAY),
            Kind::CodesPerOpenid => (s.codes_per_openid_per_hour, HOUR),
            Kind::QrPerIpPerDay => (s.qr_per_ip_per_day, DAY),
            Kind::QrPerNetwork => (s.qr_per_network_per_day, DAY),
            Kind::QrPerSite => (s.qr_per_site_per_day, DAY),
            // What new addresses may spend of the app's day (the rest is kept).
            Kind::QrReserved => {
                let open = u64::from(s.qr_per_app_per_day) * u64::from(100 - s.qr_reserved_percent.min(100)) / 100;
                (u32::try_from(open).unwrap_or(u32::MAX), DAY)
            }
            // An attempt lives minutes; a day-long window outlives any attempt.
            Kind::BindPerAttempt => (s.bind_per_attempt, DAY),
            Kind::BindPerIp => (s.bind_per_ip_per_day, DAY),
            Kind::TokenFailuresPerIp => (s.oidc_token_failures_per_ip_per_day, DAY),
            Kind::TokenFailuresPerClient => (s.oidc_token_failures_per_client_per_day, DAY),
        }
    }

    fn build(settings: &LimitSettings, metrics: Metrics, shared: Option<RedisCounters>) -> Arc<Self> {
        let limiters = Kind::ALL
            .into_iter()
            .map(|k| {
                let (n, period) = Self::rule(settings, k);
                (k, RateLimiter::keyed(quota(n, period)))
            })
            .collect();
        let local = Local { limiters, app_day: DayCounts::new(), failures: DayCounts::new() };
        Arc::new(Self { local, shared, settings: settings.clone(), holds: Mutex::new(HashMap::new()), metrics })
    }

    /// In-process limits.
    pub fn local(settings: &LimitSettings, metrics: Metrics) -> Arc<Self> {
        Self::build(settings, metrics, None)
    }

    /// Limits shared by every node through Redis (fixed windows).
    pub fn redis(kv: &crate::kv::Kv, settings: &LimitSettings, metrics: Metrics) -> Arc<Self> {
        Self::build(settings, metrics, Some(RedisCounters { kv: kv.clone(), breaker: Default::default() }))
    }

    fn refused(&self, kind: Kind, retry_after_secs: u64) -> Refused {
        self.metrics.limit_hit(kind.into());
        Refused { kind, retry_after_secs: retry_after_secs.max(1) }
    }

    /// Counts one event of `kind` for `key`; refuses when over the limit.
    pub async fn hit(&self, kind: Kind, key: &str) -> Result<(), Refused> {
        if kind == Kind::QrPerApp {
            self.local.app_day.update(key.to_string(), |n| n + 1);
        }
        if let Some(shared) = RedisCounters::usable(&self.shared) {
            let (max, period) = Self::rule(&self.settings, kind);
            let (window, retry) = Self::window(period);
            let kv = &shared.kv;
            let subject = if kind.is_per_phone() { kv.phone_tag(key) } else { key.to_string() };
            let k = kv.key(&["limit", kind.name(), &subject, &window.to_string()]);
            let r = shared.count(&k, period).await;
            // Every node's count, as Redis has it now.
            if let (Kind::QrPerApp, Ok(n)) = (kind, &r) {
                self.local.app_day.update(key.to_string(), |seen| seen.max(*n));
            }
            match r {
                Ok(n) if n > u64::from(max) => return Err(self.refused(kind, retry)),
                Ok(_) => return Ok(()),
                Err(e) => shared.failed(&e, kind.name()),
            }
        }
        self.hit_here(kind, key)
    }

    /// [`Limits::hit`] on this node's own limiters (no Redis, or Redis not answering).
    fn hit_here(&self, kind: Kind, key: &str) -> Result<(), Refused> {
        match self.local.limiters[&kind].check_key(&key.to_string()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Err(self.refused(kind, wait.as_secs_f64().ceil() as u64))
            }
        }
    }

    /// Charges one QR request of the client at `ip` to every limit on QR requests by
    /// address: its own bucket per minute and per day, its network (IPv4 /24, IPv6 /56)
    /// and its IPv6 site (/48), in that order, the first refusal stopping the count as
    /// one `hit` after another would. With Redis the counters share the hash tag of the
    /// widest block, so one script counts them all, on one slot of a Redis Cluster.
    pub async fn charge_qr(&self, ip: IpAddr) -> Result<(), Refused> {
        let ip = crate::net::limit_bucket(ip);
        let (one, net) = (ip.to_string(), crate::net::block(ip, 24, 56).to_string());
        let mut hits =
            vec![(Kind::QrPerIp, one.clone()), (Kind::QrPerIpPerDay, one), (Kind::QrPerNetwork, net.clone())];
        let tag = match ip {
            IpAddr::V6(_) => {
                let site = crate::net::block(ip, 32, 48).to_string();
                hits.push((Kind::QrPerSite, site.clone()));
                site
            }
            IpAddr::V4(_) => net,
        };
        if let Some(shared) = RedisCounters::usable(&self.shared) {
            let rules: Vec<(u32, Duration)> = hits.iter().map(|(k, _)| Self::rule(&self.settings, *k)).collect();
            let windows: Vec<(u64, u64)> = rules.iter().map(|(_, p)| Self::window(*p)).collect();
            let keys: Vec<String> = hits
                .iter()
                .zip(&windows)
                .map(|((k, subject), (w, _))| {
                    shared.kv.key(&["limit", &format!("{{{tag}}}"), k.name(), subject, &w.to_string()])
                })
                .collect();
            let periods: Vec<u64> = rules.iter().map(|(_, p)| p.as_millis() as u64).collect();
            let maxes: Vec<u32> = rules.iter().map(|(m, _)| *m).collect();
            match shared.count_all(&keys, &periods, &maxes).await {
                Ok(None) => return Ok(()),
                Ok(Some(i)) => return Err(self.refused(hits[i].0, windows[i].1)),
                Err(e) => shared.failed(&e, "qr_per_address"),
            }
        }
        hits.iter().try_for_each(|(k, subject)| self.hit_here(*k, subject))
    }

    /// Counts one event of a per-address `kind` for the client at `ip` (by its bucket).
    pub async fn hit_address(&self, kind: Kind, ip: IpAddr) -> Result<(), Refused> {
        self.hit(kind, &crate::net::limit_bucket(ip).to_string()).await
    }

    /// How many QR codes `app` was charged today (UTC): with Redis, the count its last
    /// charge on this node saw (every node's), plus this node's since; without, this
    /// node's. Costs no round trip: the day's use only grows, and the reserve is a share.
    pub fn qr_used_today(&self, app: &str) -> u64 {
        self.local.app_day.get(app)
    }

    /// Whether `used` (an app's day so far) passed what new addresses may spend: from
    /// then on the rest of the day's quota is kept for returning users.
    pub fn in_reserve(&self, used: u64) -> bool {
        used >= u64::from(Self::rule(&self.settings, Kind::QrReserved).0)
    }

    /// The refusal of a QR code to an address without a recent login, in the reserve.
    pub fn reserve_refused(&self) -> Refused {
        self.refused(Kind::QrReserved, Self::day().1)
    }

    /// Is the guesser (`kind` keyed by `key`: a WeChat user, or an address bucket) locked
    /// for wrong codes? It is once it sent its limit of them in the limit's window (a UTC
    /// day, or an hour), until the window ends. Counts nothing. Wrong codes cost whoever
    /// guesses, never the phone guessed at: nobody can lock someone else's number.
    pub async fn locked(&self, kind: Kind, key: &str) -> Option<Refused> {
        let (max, period) = Self::rule(&self.settings, kind);
        let (window, retry) = Self::window(period);
        let mut n = self.local.failures.get(&(kind, key.to_string(), window));
        if let Some(shared) = RedisCounters::usable(&self.shared) {
            let kv = &shared.kv;
            let mut c = kv.conn(crate::kv::Class::Fast);
            let stored: Result<Option<u64>, _> =
                redis::cmd("GET").arg(Self::failure_key(kv, kind, key, window)).query_async(&mut c).await;
            match stored {
                Ok(stored) => n = n.max(stored.unwrap_or(0)),
                Err(e) => shared.failed(&e, kind.name()),
            }
        }
        (n >= u64::from(max)).then(|| self.refused(kind, retry))
    }

    /// Counts a wrong code against the guesser `key` of `kind` (on this node, and for
    /// every node in Redis when it answers).
    pub async fn wrong_code(&self, kind: Kind, key: &str) {
        let (_, period) = Self::rule(&self.settings, kind);
        let (window, _) = Self::window(period);
        self.local.failures.update((kind, key.to_string(), window), |n| n + 1);
        if let Some(shared) = RedisCounters::usable(&self.shared) {
            let kv = &shared.kv;
            let k = Self::failure_key(kv, kind, key, window);
            if let Err(e) = shared.count(&k, period).await {
                shared.failed(&e, kind.name());
            }
        }
    }

    /// Today (UTC days since the epoch) and the seconds until it ends.
    fn day() -> (u64, u64) {
        Self::window(DAY)
    }

    /// The current window of `period` (windows since the epoch) and the seconds until it ends.
    fn window(period: Duration) -> (u64, u64) {
        let now = unix_secs();
        let p = period.as_secs().max(1);
        let w = now / p;
        (w, (w + 1) * p - now)
    }

    fn failure_key(kv: &crate::kv::Kv, kind: Kind, key: &str, window: u64) -> String {
        kv.key(&["failures", kind.name(), key, &window.to_string()])
    }

    /// Takes one of `ip`'s held-long-poll slots (shared by its /64); `None` when none is left.
    pub fn hold(self: &Arc<Self>, ip: IpAddr) -> Option<HoldSlot> {
        let ip = crate::net::limit_bucket(ip);
        let mut holds = self.holds.lock().unwrap_or_else(|e| e.into_inner());
        let n = holds.entry(ip).or_insert(0);
        if *n >= self.settings.long_polls_per_ip {
            drop(holds);
            self.metrics.limit_hit(LimitKind::LongPollsPerIp);
            return None;
        }
        *n += 1;
        Some(HoldSlot { limits: Arc::clone(self), ip })
    }

    /// Forgets idle keys and ended locks (call periodically so address churn cannot grow
    /// memory).
    pub fn sweep(&self) {
        self.local.failures.sweep();
        for lim in self.local.limiters.values() {
            lim.retain_recent();
            lim.shrink_to_fit();
        }
    }
}

/// A held-long-poll slot of one address; released on drop.
pub struct HoldSlot {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Drop for HoldSlot {
    fn drop(&mut self) {
        let mut holds = self.limits.holds.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = holds.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                holds.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every limit names a setting that `config/default.toml` really has, and its own message.
    #[test]
    fn every_kind_names_a_real_setting_and_a_distinct_message() {
        let default: toml::Value = toml::from_str(include_str!("../config/default.toml")).unwrap();
        let limits = default["limits"].as_table().unwrap();
        let mut messages = std::collections::HashSet::new();
        for k in Kind::ALL {
            assert!(limits.contains_key(k.setting()), "{:?} names {} which is not a setting", k, k.setting());
            assert!(messages.insert(k.message()), "{:?} shares its message", k);
        }
    }

    fn settings() -> LimitSettings {
        LimitSettings {
            qr_per_ip_per_minute: 3,
            sms_per_phone_per_day: 2,
            code_failures_per_openid_per_day: 2,
            code_failures_per_ip_per_day: 2,
            codes_per_openid_per_hour: 2,
            long_polls_per_ip: 2,
            ..Default::default()
        }
    }

    async fn exercise(l: Arc<Limits>, tag: &str) {
        let ip = format!("198.51.100.{tag}");
        for _ in 0..3 {
            assert!(l.hit(Kind::QrPerIp, &ip).await.is_ok());
        }
        let r = l.hit(Kind::QrPerIp, &ip).await.unwrap_err();
        assert_eq!(r.kind, Kind::QrPerIp);
        assert!((1..=60).contains(&r.retry_after_secs), "{r:?}");
        assert!(l.hit(Kind::QrPerIp, &format!("{ip}9")).await.is_ok(), "other keys are not affected");
        let guesser = format!("guesser-{tag}");
        assert!(l.locked(Kind::CodeFailuresPerOpenid, &guesser).await.is_none());
        for _ in 0..3 {
            l.wrong_code(Kind::CodeFailuresPerOpenid, &guesser).await;
        }
        let locked = l.locked(Kind::CodeFailuresPerOpenid, &guesser).await.expect("locked");
        assert!((1..=86_400).contains(&locked.retry_after_secs), "until the day ends: {locked:?}");
        assert!(l.locked(Kind::CodeFailuresPerIp, &guesser).await.is_none(), "one lock per kind");
        assert!(l.locked(Kind::CodeFailuresPerOpenid, "someone else").await.is_none());
        // Code mode's wrong codes per sender lock for the rest of the hour.
        for _ in 0..2 {
            assert!(l.locked(Kind::CodesPerOpenid, &guesser).await.is_none());
            l.wrong_code(Kind::CodesPerOpenid, &guesser).await;
        }
        let locked = l.locked(Kind::CodesPerOpenid, &guesser).await.expect("locked");
        assert!((1..=3_600).contains(&locked.retry_after_secs), "until the hour ends: {locked:?}");
        assert!(l.locked(Kind::CodesPerOpenid, "someone else").await.is_none());
    }

    /// Redis down (nothing listens): the code mode limit is kept in process, never off.
    #[tokio::test]
    async fn codes_per_openid_hold_without_redis() {
        let kv = crate::kv::Kv::new("redis://127.0.0.1:1/0", "test").unwrap();
        let l = Limits::redis(&kv, &settings(), Metrics::new());
        for _ in 0..2 {
            l.wrong_code(Kind::CodesPerOpenid, "sender").await;
        }
        assert!(l.locked(Kind::CodesPerOpenid, "sender").await.is_some());
    }

    #[test]
    fn local_limits() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(exercise(Limits::local(&settings(), Metrics::new()), "1"));
    }

    #[tokio::test]
    async fn redis_limits() {
        let url = std::env::var("SCANLOGIN_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
        let l = Limits::redis(&crate::kv::Kv::new(&url, "test").unwrap(), &settings(), Metrics::new());
        let tag = format!("{}", rand::random_range(1000..9999u32));
        exercise(l, &tag).await;
    }

    #[test]
    fn holds_per_ip() {
        let l = Limits::local(&settings(), Metrics::new());
        let ip: IpAddr = "203.0.113.1".parse().unwrap();
        let a = l.hold(ip).unwrap();
        let _b = l.hold(ip).unwrap();
        assert!(l.hold(ip).is_none());
        drop(a);
        assert!(l.hold(ip).is_some());
        assert!(l.hold("203.0.113.2".parse().unwrap()).is_some());
        // One /64 is one client.
        let _c = l.hold("2001:db8::1".parse().unwrap()).unwrap();
        let _d = l.hold("2001:db8::2".parse().unwrap()).unwrap();
        assert!(l.hold("2001:db8::ffff:3".parse().unwrap()).is_none());
        assert!(l.hold("2001:db8:0:1::1".parse().unwrap()).is_some());
    }
}
