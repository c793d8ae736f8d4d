//! The open-file limit. Every held long poll and event stream is an open connection, and
//! a process out of file descriptors stops accepting any connection — WeChat's callbacks
//! included. So at start (`scanlogin serve`) the soft limit is raised to the hard one
//! (and the hard one to what is needed, where the process may: root or
//! `CAP_SYS_RESOURCE`), and a limit still below `limits.long_polls_max` + [`MARGIN`]
//! stops the start with one line.

use crate::config::ConfigError;

/// Files beyond the held polls: listeners, database and Redis connections, short
/// requests, the log.
pub const MARGIN: u64 = 1024;

/// The open-file limit `long_polls_max` needs.
pub fn needed(long_polls_max: usize) -> u64 {
    long_polls_max as u64 + MARGIN
}

/// The refusal when the soft limit `soft` (hard: `hard`) is below what `long_polls_max` needs.
pub fn check(long_polls_max: usize, soft: u64, hard: u64) -> Result<(), ConfigError> {
    let need = needed(long_polls_max);
    if soft >= need {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        key: "limits.long_polls_max".into(),
        why: format!(
            "{long_polls_max} held polls need an open-file limit of at least {need} (+{MARGIN} for the rest), \
             and this process may open {soft} files (hard limit {hard}); raise the open-file limit \
             (ulimit -n, systemd LimitNOFILE=) or lower limits.long_polls_max"
        ),
    })
}

/// Raises this process's open-file limit as far as it may (see the module doc) and
/// checks it against `long_polls_max`; answers the soft limit now in force.
#[cfg(unix)]
pub fn raise_for(long_polls_max: usize) -> Result<u64, ConfigError> {
    use rlimit::Resource;
    let need = needed(long_polls_max);
    let Ok((_, hard)) = Resource::NOFILE.get() else {
        return Ok(0); // no limit to read: nothing to raise or check
    };
    if hard < need {
        // Only a privileged process may raise its hard limit; for others this fails.
        let _ = Resource::NOFILE.set(need, need);
    }
    // The soft limit up to the hard one (on macOS, up to what the kernel allows a process).
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let (soft, hard) = Resource::NOFILE.get().unwrap_or((0, 0));
    check(long_polls_max, soft, hard)?;
    Ok(soft)
}

#[cfg(not(unix))]
pub fn raise_for(_long_polls_max: usize) -> Result<u64, ConfigError> {
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_below_the_held_polls_and_the_margin_is_refused_with_one_line() {
        assert!(check(50_000, 51_024, 51_024).is_ok());
        assert!(check(0, 1024, 1024).is_ok());
        let e = check(50_000, 1024, 4096).expect_err("too low").to_string();
        assert!(e.starts_with("config: limits.long_polls_max:"), "{e}");
        assert!(e.contains("open-file limit of at least 51024") && e.contains("1024 files (hard limit 4096)"), "{e}");
        assert_eq!(e.lines().count(), 1);
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let (soft, hard) = rlimit::Resource::NOFILE.get().expect("getrlimit");
        let now = raise_for(0).expect("0 held polls fit any limit");
        assert_eq!(now, hard.max(soft));
        assert_eq!(rlimit::Resource::NOFILE.get().expect("getrlimit").0, now);
    }
}
