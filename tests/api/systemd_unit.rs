//! The systemd unit example, `config/scanlogin.service`: valid for systemd, and in step
//! with the service it runs (the stop timeout above the shutdown grace period, enough
//! open files for the production example's held polls).

use std::process::Command;

const UNIT: &str = include_str!("../../config/scanlogin.service");
const INSTALLED_BIN: &str = "/usr/local/bin/scanlogin";

/// The value of `Key=` in the unit (its only occurrence).
fn value(key: &str) -> &'static str {
    let prefix = format!("{key}=");
    let mut found = UNIT.lines().filter_map(|l| l.strip_prefix(prefix.as_str()));
    let v = found.next().unwrap_or_else(|| panic!("no {key}= in the unit"));
    assert!(found.next().is_none(), "{key}= twice");
    v
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    // `verify` also checks that ExecStart's program exists, and the unit names where it is
    // installed (/usr/local/bin), which need not exist where the tests run: it checks a
    // copy of the unit that starts the binary built for these tests instead, unchanged
    // otherwise. The copy keeps the file name: the name is part of what is checked.
    assert_eq!(value("ExecStart"), format!("{INSTALLED_BIN} serve --config /etc/scanlogin/config.toml"));
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("scanlogin.service");
    std::fs::write(&copy, UNIT.replace(INSTALLED_BIN, env!("CARGO_BIN_EXE_scanlogin"))).unwrap();
    // Absent, it fails: the suite installs it (scripts/test.sh: Debian's `systemd`).
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze runs (scripts/test.sh installs Debian's `systemd` package)");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "systemd-analyze verify: {}\n{said}", out.status);
    // Warnings do not fail `verify`; about this unit there must be none.
    let about_it: Vec<&str> = said.lines().filter(|l| l.contains("scanlogin.service")).collect();
    assert!(about_it.is_empty(), "systemd-analyze verify said:\n{said}");
}

#[test]
fn the_systemd_unit_fits_the_service() {
    assert_eq!(value("Type"), "simple", "the binary does not speak sd_notify");
    assert_eq!(value("KillSignal"), "SIGTERM", "SIGTERM starts the ordered shutdown");
    assert_eq!(value("RestartPreventExitStatus"), "2", "a refused configuration is not restarted");
    let grace = scanlogin::config::Settings::default().server.shutdown_grace_secs;
    let stop: u64 = value("TimeoutStopSec").parse().unwrap();
    assert!(stop > grace && stop <= grace + 10, "TimeoutStopSec={stop} against shutdown_grace_secs {grace}");
    let example = include_str!("../../config/production.example.toml");
    let polls = toml::from_str::<toml::Value>(example).unwrap()["limits"]["long_polls_max"].as_integer().unwrap();
    let files: u64 = value("LimitNOFILE").parse().unwrap();
    assert!(files >= scanlogin::open_files::needed(polls as usize), "LimitNOFILE={files} for {polls} held polls");
}
