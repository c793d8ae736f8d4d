//! Why the service could not start: one line naming the key whose value could not be
//! used, what happened and what to do, with secrets cut out of any URL shown.

use std::net::TcpListener;

use crate::config::Settings;

/// Why the service could not start once its configuration was accepted (the
/// configuration's own refusals are [`crate::config::ConfigError`]s, checked before
/// anything is opened). Its `Display` is the one line printed at exit: the key whose
/// value could not be used, what happened, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `server.bind`, `server.metrics_bind` or `admin.bind` cannot be listened on.
    #[error("{key}: cannot listen on {addr} ({reason}): {advice}")]
    Listen { key: &'static str, addr: String, reason: String, advice: &'static str },
    /// The database of `storage.database_url` cannot be opened, migrated or read.
    #[error("storage.database_url: {what} {url} ({reason}): {advice}")]
    Database { what: &'static str, url: String, reason: String, advice: String },
    /// The Redis of `storage.snapshots` cannot be set up (its URL or TLS settings).
    #[error("storage.snapshots: cannot use {url} ({reason}): check the URL and storage.redis_ca_file")]
    Redis { url: String, reason: String },
    /// The signing keys cannot be opened (a wrong `token.secret`, a broken stored key).
    #[error("{0}")]
    Keys(String),
    /// A setting that only turns out wrong when used (a file it names cannot be read).
    #[error("{0}")]
    Setting(String),
    /// The HTTP server could not be set up on listeners already bound (not a setting).
    #[error("cannot start the HTTP server ({0})")]
    Http(String),
}

/// An operating system error's text without its " (os error N)" tail.
pub(super) fn os_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rsplit_once(" (os error ") {
        Some((reason, _)) => reason.to_string(),
        None => text,
    }
}

/// Binds the address of `key` (`server.bind` or `server.metrics_bind`).
pub(super) fn listen(key: &'static str, addr: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).map_err(|e| {
        use std::io::ErrorKind;
        let advice = match (e.kind(), key) {
            (ErrorKind::AddrInUse, _) => "another process listens there: stop it, or choose another port",
            (ErrorKind::PermissionDenied, _) => {
                "ports below 1024 need root or CAP_NET_BIND_SERVICE (systemd: AmbientCapabilities=CAP_NET_BIND_SERVICE): choose a port above 1023"
            }
            (_, "server.metrics_bind" | "admin.bind") => "set it to an address of this host or empty",
            _ => "set it to an address of this host (127.0.0.1 or 0.0.0.0 with a port)",
        };
        StartError::Listen { key, addr: addr.to_string(), reason: os_reason(&e), advice }
    })
}

/// The start's failure to open the signing keys.
pub fn keyring_error(settings: &Settings, e: crate::token::keyring::KeyringError) -> StartError {
    use crate::token::keyring::KeyringError;
    use crate::token::keys::KeyError;
    match e {
        KeyringError::Db(e) => read_error(settings, "cannot read the signing keys from", &e),
        KeyringError::Key(e @ KeyError::Sealed(_)) => StartError::Keys(format!("token.secret: {e}")),
        KeyringError::Key(e) => StartError::Keys(format!("signing keys: {e}")),
    }
}

/// A read of the database that failed after it connected and migrated.
pub(super) fn read_error(settings: &Settings, what: &'static str, e: &sqlx::Error) -> StartError {
    StartError::Database {
        what,
        url: shown_url(&settings.storage.database_url),
        reason: one_line(&db_reason(e)),
        advice: "check the database server's log".into(),
    }
}

/// `url` as a message may show it: no password, no query (which may hold one).
pub(super) fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.set_query(None);
            u.to_string()
        }
        Err(_) => crate::config::redacted_url(url),
    }
}

/// A message on one line.
pub(super) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What the database or the driver said, without sqlx's own prefix.
pub(super) fn db_reason(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Io(io) => os_reason(io),
        sqlx::Error::Database(d) => d.message().to_string(),
        sqlx::Error::PoolTimedOut => "no connection within 3 s".into(),
        other => other.to_string(),
    }
}

/// The start's failure to connect to the database of `url`.
pub(super) fn connect_error(url: &str, e: &sqlx::Error) -> StartError {
    let sqlite = crate::store::Backend::from_url(url) == crate::store::Backend::Sqlite;
    let server = url::Url::parse(url)
        .ok()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default().unwrap_or(0))))
        .unwrap_or_default();
    let advice = match e {
        _ if sqlite => "check the file's path, and that this user may create and write files in its directory".into(),
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => {
            format!("check that the database server at {server} runs and that this host can reach it")
        }
        sqlx::Error::Database(_) => "check the user, the password and the database name of the URL".into(),
        sqlx::Error::Tls(_) => format!("check the TLS settings of the URL and the certificate of {server}"),
        _ => "use sqlite://path, postgres://user:password@host/database or mysql://user:password@host/database".into(),
    };
    StartError::Database { what: "cannot connect to", url: shown_url(url), reason: one_line(&db_reason(e)), advice }
}
