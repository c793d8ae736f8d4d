//! What operations ask of the login service: whether it is ready to serve (readiness
//! probe) and whether it is shutting down (the HTTP layer closes connections then).

use super::LoginService;

/// What `GET /readyz` reports. `failing` names the parts that do not answer: the
/// snapshot store by its name (`redis`, `sqlite`, …), `database`, `engine`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Snapshots are being restored; `restored` attempts are back so far.
    Recovering {
        restored: usize,
        failing: Vec<&'static str>,
    },
    NotReady {
        failing: Vec<&'static str>,
    },
}

impl LoginService {
    /// Asks every dependency; while a restore runs, only the snapshot store's last
    /// known state is looked at (the restore is the answer).
    pub async fn readiness(&self) -> Readiness {
        let store = self.engine.store_health();
        let mut failing = Vec::new();
        if !store.up {
            failing.push(store.store);
        }
        if let Some(restored) = self.engine.recovering() {
            return Readiness::Recovering { restored, failing };
        }
        let db_ok = self.users.db().ping().await;
        let engine_ok = self.engine.responsive().await;
        if !db_ok {
            failing.push("database");
        }
        if !engine_ok {
            failing.push("engine");
        }
        if failing.is_empty() { Readiness::Ready } else { Readiness::NotReady { failing } }
    }

    /// Shutting down: held polls are being answered and no new one is held.
    pub fn is_closing(&self) -> bool {
        self.engine.is_closing()
    }
}
