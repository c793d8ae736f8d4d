//! The command line of `load`.

use std::time::Duration;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// create → scan (posted to the callback) → long poll → SMS → bind → /me; a user's
    /// first login binds a phone, later ones are returning-user scans.
    Login,
    /// `users` browsers each with a live QR code, short-polling its status.
    PollStorm,
    /// `users` held long polls; with `--rate`, that many scans per second wake them.
    Hold,
    /// Signed WeChat pushes at `--rate` against `users` live attempts: scans of real
    /// scenes, unknown scenes, other events, and WeChat-style duplicate retries.
    Callbacks,
    /// The OpenID Connect provider's flow with the shipped `demo` client: authorize (the
    /// login page) → scan → long poll → (first time: SMS, bind) → continue → code
    /// exchange with PKCE; no session kept, so every iteration is a full login.
    Oidc,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Login => "login",
            Scenario::PollStorm => "poll-storm",
            Scenario::Hold => "hold",
            Scenario::Callbacks => "callbacks",
            Scenario::Oidc => "oidc",
        }
    }
}

/// Parses `250ms`, `30s`, `2m` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| c.is_ascii_alphabetic()).map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = num.parse().map_err(|_| format!("`{s}` is not a duration like 30s, 2m, 500ms"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit in `{s}` (ms, s, m, h)")),
    };
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("`{s}` is out of range (0..24h)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[derive(Debug, Clone, Parser)]
#[command(name = "load", about = "Load scenarios against a scanlogin server with its sandbox")]
pub struct Options {
    /// What to run.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Base URL of the server (loopback or your own test host only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub target: String,
    /// Virtual users (browsers; for `callbacks`, live attempts to create first).
    #[arg(long, default_value_t = 10)]
    pub users: usize,
    /// Iterations per second over all users (login: logins; poll-storm: polls; hold:
    /// scans; callbacks: pushes). 0 = as fast as the users go (callbacks: 1000).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// How long the measured phase runs.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Concurrent connections for set-up and for `callbacks`.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Long-poll `wait` in seconds (login, hold).
    #[arg(long, default_value_t = 25)]
    pub wait: u64,
    /// `callbacks`: share of pushes that are WeChat retries of an earlier push.
    #[arg(long, default_value_t = 0.2)]
    pub duplicates: f64,
    /// The official account's AppID (callbacks go to /wechat/{app_id}/callback).
    #[arg(long, default_value = "wxsandbox0000000001")]
    pub app_id: String,
    /// The account's Token (signatures).
    #[arg(long, default_value = "sandbox-token")]
    pub wechat_token: String,
    /// The account's EncodingAESKey: set it for a safe-mode app (pushes are encrypted).
    #[arg(long, default_value = "")]
    pub aes_key: String,
    /// Write the JSON report here (`-` for stdout) besides the text report.
    #[arg(long)]
    pub json: Option<String>,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

impl Options {
    /// Options for `scenario` against `target`, everything else at its default.
    pub fn new(scenario: Scenario, target: &str) -> Self {
        let name = scenario.name();
        let mut o = Options::parse_from(["load", name]);
        o.target = target.trim_end_matches('/').to_string();
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("2d").is_err());
    }

    #[test]
    fn command_line_parses() {
        let o = Options::parse_from(["load", "poll-storm", "--users", "64", "--rate", "500", "--duration", "5s"]);
        assert_eq!((o.scenario, o.users, o.rate, o.duration), (Scenario::PollStorm, 64, 500.0, Duration::from_secs(5)));
        assert_eq!(Options::new(Scenario::Hold, "http://x:1/").target, "http://x:1");
    }
}
