//! Label values as enums: each owns its set (`ALL`), which [`super::Metrics::preset`]
//! creates at 0, so a series that can appear is exported from the start and a value
//! cannot be spelled one way where it is counted and another where it is pre-created.

macro_rules! label_set {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant),+];
            /// The values' texts, in the order of `ALL`.
            pub const LABELS: &[&str] = &[$($text),+];

            pub fn label(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }
    };
}

label_set! {
    /// `scanlogin_code_fallbacks_total{errcode}`: the WeChat errcodes on which a service
    /// account falls back to code mode; any other is `other` (a bounded set).
    FallbackErrcode {
        Unauthorized => "48001",
        QuotaReached => "45009",
        Forbidden => "48004",
        SystemError1 => "50001",
        SystemError2 => "50002",
        Other => "other",
    }
}

impl FallbackErrcode {
    /// The label of WeChat's `errcode`, `None` for the errcodes that are no reason to
    /// fall back.
    pub fn of(errcode: i64) -> Option<Self> {
        Some(match errcode {
            48001 => Self::Unauthorized,
            45009 => Self::QuotaReached,
            48004 => Self::Forbidden,
            50001 => Self::SystemError1,
            50002 => Self::SystemError2,
            _ => return None,
        })
    }
}

label_set! {
    /// An attempt's state (`scanlogin_live_attempts{state}`, `scanlogin_transitions_total{from,to}`):
    /// the engine maps its phases onto these, so metrics know nothing of the engine's types.
    State { Loop => "loop", NotReg => "not_reg", Reg => "reg", Expired => "expired", Scanned => "scanned" }
}

impl State {
    /// `expired` is not live: it has no `scanlogin_live_attempts` series.
    pub fn is_live(self) -> bool {
        self != State::Expired
    }

    /// The transitions the state machine can make, as (from, to).
    pub const TRANSITIONS: &[(State, State)] = &[
        (State::Loop, State::NotReg),
        (State::Loop, State::Reg),
        (State::Loop, State::Expired),
        (State::NotReg, State::Expired),
        (State::Reg, State::Expired),
        (State::Loop, State::Scanned),
        (State::Scanned, State::Reg),
        (State::Scanned, State::NotReg),
        (State::Scanned, State::Expired),
    ];
}

label_set! {
    /// `scanlogin_attempts_finished_total{outcome}`: a token after a registered scan
    /// (`reg`) or after a phone bind (`bound`); the timer ran out before anyone scanned
    /// (`expired`) or after a scan without a login (`abandoned`); the service gave it up
    /// (`discarded`); the person who scanned denied it on the phone (`denied`); an
    /// operator ended it (`ended`).
    Finish {
        Reg => "reg",
        Bound => "bound",
        Expired => "expired",
        Abandoned => "abandoned",
        Discarded => "discarded",
        Denied => "denied",
        Ended => "ended",
    }
}

label_set! {
    /// `how` of `scanlogin_logins_total` and the login latencies (also the login audit's
    /// `how`): in the answer to a poll after a scan, or to a bind.
    LoginHow { Scan => "scan", Bind => "bind" }
}

label_set! {
    /// `decision` of `scanlogin_confirmations_total` and `scanlogin_scan_to_decision_seconds`:
    /// the person who scanned confirmed the login on the phone, or denied it.
    Decision { Confirm => "confirm", Deny => "deny" }
}

label_set! {
    /// `scanlogin_polls_total{kind}`: answered at once, or held.
    PollKind { Short => "short", Long => "long" }
}

label_set! {
    /// `scanlogin_code_checks_total{result}`.
    CodeCheck { Ok => "ok", Wrong => "wrong", Refused => "refused" }
}

label_set! {
    /// `scanlogin_snapshot_writes_total{result}`: stored in the snapshot store, failed,
    /// or stored in the user database because the snapshot store could not take it.
    SnapshotWrite { Ok => "ok", Error => "error", Fallback => "fallback" }
}

label_set! {
    /// `scanlogin_snapshot_errors_total{op}`: which store call failed (and is retried);
    /// `late`: an answer gave up waiting for its snapshot.
    SnapshotOp { Write => "write", Probe => "probe", Load => "load", Fallback => "fallback", Late => "late" }
}

label_set! {
    /// `scanlogin_attempt_restarts_total{result}`: a dead attempt actor restarted from
    /// its snapshot, or lost for want of one.
    Restart { Restarted => "restarted", Lost => "lost" }
}

label_set! {
    /// `scanlogin_sms_sent_total{result}`.
    SmsResult { Ok => "ok", Failed => "failed" }
}

label_set! {
    /// `scanlogin_callbacks_total{kind}`: the kind of WeChat push; `verify` for the URL
    /// check (GET); `unknown` when the push was refused before it was read.
    CallbackKind {
        Verify => "verify",
        Subscribe => "subscribe",
        Scan => "scan",
        Unsubscribe => "unsubscribe",
        Text => "text",
        Other => "other",
        Unknown => "unknown",
    }
}

label_set! {
    /// `scanlogin_callbacks_total{result}`.
    CallbackResult {
        Ok => "ok",
        BadSignature => "bad_signature",
        Duplicate => "duplicate",
        DecryptError => "decrypt_error",
        Late => "late",
        BadXml => "bad_xml",
        Dtd => "dtd",
        Error => "error",
    }
}

label_set! {
    /// `scanlogin_wechat_api_calls_total{api}`: the WeChat APIs the client calls.
    WechatApi { Token => "token", QrcodeCreate => "qrcode_create", Showqrcode => "showqrcode", UserInfo => "user_info" }
}

label_set! {
    /// `scanlogin_access_token_refreshes_total{result}`.
    TokenRefresh { Ok => "ok", Error => "error" }
}

label_set! {
    /// `scanlogin_limits_hit_total{kind}` (and `scanlogin_capacity{limit}` for the two
    /// capacities): the limits that refuse requests, named like their configuration keys.
    /// The request limits of [`crate::limits::Kind`] take their names from here.
    LimitKind {
        LiveAttemptsMax => "live_attempts_max",
        LongPollsMax => "long_polls_max",
        LongPollsPerIp => "long_polls_per_ip",
        SmsPerAttempt => "sms_per_attempt",
        ConnectionsPerIp => "connections_per_ip",
        QrPerIp => "qr_per_ip",
        QrPerIpPerDay => "qr_per_ip_per_day",
        QrPerNetwork => "qr_per_network",
        QrPerSite => "qr_per_site",
        QrReserved => "qr_reserved",
        QrPerApp => "qr_per_app",
        SmsResend => "sms_resend",
        SmsPerPhone => "sms_per_phone",
        SmsPerIp => "sms_per_ip",
        SmsPerDay => "sms_per_day",
        CodeFailuresPerOpenid => "code_failures_per_openid",
        CodeFailuresPerIp => "code_failures_per_ip",
        CodesPerOpenid => "codes_per_openid",
        BindPerAttempt => "bind_per_attempt",
        BindPerIp => "bind_per_ip",
        OidcTokenFailuresPerIp => "oidc_token_failures_per_ip",
        OidcTokenFailuresPerClient => "oidc_token_failures_per_client",
    }
}

label_set! {
    /// `scanlogin_oidc_authorize_total{client,outcome}`: the login page of a new attempt,
    /// a code at once from the session (`sso`), or an error.
    OidcAuthorize { Page => "page", Sso => "sso", Error => "error" }
}

label_set! {
    /// `scanlogin_oidc_codes_total{client,outcome}`.
    OidcCode { Issued => "issued", Exchanged => "exchanged", Refused => "refused" }
}

label_set! {
    /// `scanlogin_oidc_codes_refused_total{client,reason}`: why a code was not exchanged.
    OidcCodeRefusal {
        Unknown => "unknown",
        Replayed => "replayed",
        Expired => "expired",
        OtherClient => "other_client",
        RedirectUri => "redirect_uri",
        Verifier => "verifier",
    }
}

label_set! {
    /// `scanlogin_oidc_tokens_total{client,grant}`.
    OidcGrant { AuthorizationCode => "authorization_code", RefreshToken => "refresh_token" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_snake_case() {
        let sets = [
            State::LABELS,
            Finish::LABELS,
            LoginHow::LABELS,
            Decision::LABELS,
            PollKind::LABELS,
            CodeCheck::LABELS,
            SnapshotWrite::LABELS,
            SnapshotOp::LABELS,
            Restart::LABELS,
            SmsResult::LABELS,
            CallbackKind::LABELS,
            CallbackResult::LABELS,
            WechatApi::LABELS,
            TokenRefresh::LABELS,
            LimitKind::LABELS,
            OidcAuthorize::LABELS,
            OidcCode::LABELS,
            OidcCodeRefusal::LABELS,
            OidcGrant::LABELS,
        ];
        for set in sets {
            assert!(set.iter().all(|l| l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')), "{set:?}");
            let distinct: std::collections::HashSet<_> = set.iter().collect();
            assert_eq!(distinct.len(), set.len(), "{set:?}");
        }
    }
}

label_set! {
    /// `action` of `scanlogin_admin_requests_total` (and of the admin audit's rows).
    AdminAction {
        ListAttempts => "attempts.list",
        InspectAttempt => "attempts.inspect",
        EndAttempt => "attempts.end",
        InspectUser => "users.inspect",
        LogoutUser => "users.logout",
        ListAudit => "audit.list",
    }
}

label_set! {
    /// `outcome` of `scanlogin_admin_requests_total` (and of the admin audit's rows): done,
    /// nothing found to act on, the request itself was wrong, refused (no or an unknown
    /// key; a key without the scope; too many calls), or failed on our side.
    AdminOutcome {
        Ok => "ok",
        NotFound => "not_found",
        Invalid => "invalid",
        Unauthorized => "unauthorized",
        Forbidden => "forbidden",
        RateLimited => "rate_limited",
        Error => "error",
    }
}
