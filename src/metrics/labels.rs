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

            pub fn label(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_snake_case() {
        let all: Vec<&str> = PollKind::ALL
            .iter()
            .map(|l| l.label())
            .chain(CodeCheck::ALL.iter().map(|l| l.label()))
            .chain(SnapshotWrite::ALL.iter().map(|l| l.label()))
            .chain(SnapshotOp::ALL.iter().map(|l| l.label()))
            .chain(Restart::ALL.iter().map(|l| l.label()))
            .chain(SmsResult::ALL.iter().map(|l| l.label()))
            .collect();
        assert!(all.iter().all(|l| l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')), "{all:?}");
    }
}
