//! Logging: structured `tracing` output to stderr, level from `RUST_LOG` (default info).
//! Colours only on a terminal: a log file or journald gets plain text, so that grep and
//! log shippers see `ERROR`, not escape codes around it.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The HTTP server library's own INFO lines ("Actix runtime found; starting in Actix
/// runtime", "starting 2 workers", one "starting service …" per listener) say at start
/// what our "scanlogin listening" line says once: kept to its warnings and errors unless
/// `RUST_LOG` names it.
const QUIET: &str = "actix_server=warn";

pub fn init() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(std::env::var("RUST_LOG").ok().as_deref()))
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// The filter of `rust_log` (the value of `RUST_LOG`, if set).
fn filter(rust_log: Option<&str>) -> EnvFilter {
    let given = rust_log.filter(|v| !v.trim().is_empty()).and_then(|v| EnvFilter::try_new(v).ok().map(|f| (v, f)));
    match given {
        Some((v, f)) if v.contains("actix_server") => f,
        Some((_, f)) => f.add_directive(QUIET.parse().expect("a valid directive")),
        None => EnvFilter::new(format!("info,{QUIET}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_own_info_lines_are_quiet_unless_asked_for() {
        assert_eq!(filter(None).to_string(), "actix_server=warn,info");
        assert!(filter(Some("debug")).to_string().contains("actix_server=warn"));
        assert!(!filter(Some("info,actix_server=info")).to_string().contains("actix_server=warn"));
        // A value that does not parse is the default.
        assert_eq!(filter(Some("=bad=")).to_string(), "actix_server=warn,info");
    }
}
