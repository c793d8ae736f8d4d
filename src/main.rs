//! The `scanlogin` command: `serve` (default), `migrate`, `sandbox scan|message`, `keys list|rotate`.
//!
//! Exit status: 0 when done (`serve`: stopped by SIGTERM or SIGINT with everything
//! written); [`REFUSED`] (2) when the command line or the configuration is refused
//! before anything is opened; [`FAILED`] (1) for every other failure. Either way the
//! reason is the last line on stderr, and it starts with the configuration key to fix.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use scanlogin::config::{self, Settings};
use scanlogin::startup::{self, Application};

/// Every request allocates dozens of short-lived buffers on two worker threads; glibc's
/// allocator took ~15 % of the server's CPU samples under `load login` (`perf record`),
/// and with mimalloc the server's CPU per login is ~15 % lower (interleaved runs,
/// `load/REPORT.md`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Refused before anything was opened: the command line (clap's own status for a usage
/// error), the configuration file (unreadable, not TOML, a bad value: `config: key: why`)
/// or an open-file limit below what `limits.long_polls_max` needs. Restarting changes
/// nothing until the configuration does (systemd: `RestartPreventExitStatus=2`).
const REFUSED: u8 = 2;

/// Failed: something the configuration names could not be opened or used (the database
/// of `storage.database_url`, the address of `server.bind` or `server.metrics_bind`, the
/// file of `storage.redis_ca_file`, the signing keys), or the service failed while
/// running (snapshots left unwritten when the grace period ran out at a stop). Such a
/// failure may pass: a database that comes up, an address that is freed.
const FAILED: u8 = 1;

#[derive(Parser)]
#[command(name = "scanlogin", version, about = "Log in by scanning a WeChat Official Account QR code")]
struct Cli {
    /// The TOML configuration file.
    #[arg(long, global = true, default_value = "config/default.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Act as WeChat against a running server.
    Sandbox {
        #[command(subcommand)]
        action: SandboxAction,
    },
    /// The token signing keys in the configured database (works while the service runs).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Each key's kid, algorithm, state and dates.
    List,
    /// Add the next key of every algorithm: published now, signing after
    /// `token.key_publish_secs`.
    Rotate,
}

#[derive(Subcommand)]
enum SandboxAction {
    /// Scan a QR ticket as `openid` (a new follower unless --subscribed).
    Scan {
        #[arg(long)]
        ticket: String,
        #[arg(long)]
        openid: String,
        #[arg(long)]
        subscribed: bool,
        /// The server to talk to; default: the config's `server.public_url`.
        #[arg(long)]
        server: Option<String>,
    },
    /// Send the text `text` to the account as `openid` (code mode: the code on the page).
    Message {
        #[arg(long)]
        openid: String,
        #[arg(long)]
        text: String,
        /// The account's configured name; default: the first.
        #[arg(long)]
        app: Option<String>,
        /// The server to talk to; default: the config's `server.public_url`.
        #[arg(long)]
        server: Option<String>,
    },
}

fn load(path: &std::path::Path) -> Result<Settings, String> {
    let loaded = config::load(path).map_err(|e| e.to_string())?;
    for key in &loaded.unknown_keys {
        tracing::warn!(key = %key, "unknown configuration key ignored");
    }
    Ok(loaded.settings)
}

#[actix_web::main]
async fn main() -> ExitCode {
    scanlogin::telemetry::init();
    scanlogin::install_crypto();
    let cli = Cli::parse();
    let settings = match load(&cli.config) {
        Ok(s) => s,
        Err(line) => {
            eprintln!("{line}");
            return ExitCode::from(REFUSED);
        }
    };
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Serve = command {
        // Held polls are open files: a limit too low for them is refused like a bad key.
        match scanlogin::open_files::raise_for(settings.limits.long_polls_max) {
            Ok(n) => tracing::info!(open_files = n, "open-file limit"),
            Err(line) => {
                eprintln!("{line}");
                return ExitCode::from(REFUSED);
            }
        }
    }
    let result = match command {
        Command::Serve => serve(settings).await,
        Command::Migrate => migrate(settings).await,
        Command::Sandbox { action: SandboxAction::Scan { ticket, openid, subscribed, server } } => {
            scan(server.unwrap_or(settings.server.public_url), ticket, openid, subscribed).await
        }
        Command::Sandbox { action: SandboxAction::Message { openid, text, app, server } } => {
            let body = serde_json::json!({"openid": openid, "text": text, "app": app});
            sandbox_post(server.unwrap_or(settings.server.public_url), "message", body).await
        }
        Command::Keys { action } => keys(settings, action).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(line) => {
            eprintln!("{line}");
            ExitCode::from(FAILED)
        }
    }
}

async fn serve(settings: Settings) -> Result<(), String> {
    let bind = settings.server.bind.clone();
    // Where /metrics is served: its own address, or the API's.
    let metrics = match settings.server.metrics_bind.as_str() {
        "" => bind.clone(),
        only => only.to_string(),
    };
    let sandbox = settings.wechat.sandbox;
    let app = Application::build(settings).await.map_err(|e| e.to_string())?;
    tracing::info!(%bind, %metrics, sandbox, "scanlogin listening");
    app.run_until_stopped().await.map_err(|e| e.to_string())
}

async fn keys(settings: Settings, action: KeysAction) -> Result<(), String> {
    let db = startup::connect_database(&settings).await.map_err(|e| e.to_string())?;
    startup::migrate_database(&settings, &db).await.map_err(|e| e.to_string())?;
    let keyring =
        startup::keyring(&settings, &db).await.map_err(|e| startup::keyring_error(&settings, e).to_string())?;
    if let KeysAction::Rotate = action {
        let made = keyring.rotate().await.map_err(|e| e.to_string())?;
        let from = scanlogin::wall::unix_secs() + settings.token.key_publish_secs;
        for kid in made {
            println!("rotated: {kid} published now, signs from {}", scanlogin::store::rfc3339(from as i64));
        }
    }
    println!(
        "{:<44} {:<6} {:>3} {:<8} {:<20} {:<20} {:<20} {:<20}",
        "kid", "alg", "gen", "state", "created", "signs_from", "retired", "dropped_after"
    );
    let date = |t: Option<i64>| t.map(scanlogin::store::rfc3339).unwrap_or_else(|| "-".into());
    for k in keyring.list() {
        println!(
            "{:<44} {:<6} {:>3} {:<8} {:<20} {:<20} {:<20} {:<20}",
            k.kid,
            k.alg.as_str(),
            k.generation,
            k.state.as_str(),
            date(Some(k.created_at)),
            date(Some(k.signs_from)),
            date(k.retired_at),
            date(k.dropped_at)
        );
    }
    Ok(())
}

async fn migrate(settings: Settings) -> Result<(), String> {
    let db = startup::connect_database(&settings).await.map_err(|e| e.to_string())?;
    let ran = startup::migrate_database(&settings, &db).await.map_err(|e| e.to_string())?;
    println!("applied {ran} migration(s)");
    Ok(())
}

/// A ticket as a reader copies it: plain (from `/_sandbox/tickets`) or percent-encoded
/// (from a QR answer's `qr_image_url`, `…?ticket=T`). Real tickets are base64, which has
/// no `%`: a `%XX` can only be an escape.
fn plain_ticket(copied: &str) -> String {
    let bytes = copied.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| copied.to_string())
}

async fn scan(server: String, ticket: String, openid: String, subscribed: bool) -> Result<(), String> {
    let ticket = plain_ticket(&ticket);
    sandbox_post(server, "scan", serde_json::json!({"ticket": ticket, "openid": openid, "subscribed": subscribed}))
        .await
}

/// POSTs `body` to the sandbox's `/_sandbox/{what}` and prints what it answered.
async fn sandbox_post(server: String, what: &str, body: serde_json::Value) -> Result<(), String> {
    let url = format!("{}/_sandbox/{what}", server.trim_end_matches('/'));
    let resp = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("cannot reach the server: {}", e.without_url()))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    println!("{text}");
    if status.is_success() { Ok(()) } else { Err(format!("sandbox {what} failed: HTTP {}", status.as_u16())) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_ticket_is_taken_plain_or_as_the_qr_url_has_it() {
        let plain = "gQH47joAAAAAAAAAASxodHRw+Oi8v/d2VpeGluLnFxLmNvbS9xLzAy==";
        let copied = "gQH47joAAAAAAAAAASxodHRw%2BOi8v%2Fd2VpeGluLnFxLmNvbS9xLzAy%3D%3D";
        assert_eq!(super::plain_ticket(plain), plain);
        assert_eq!(super::plain_ticket(copied), plain);
        assert_eq!(super::plain_ticket("50%"), "50%", "a lone % is kept");
    }
}
