//! Supervision: an attempt whose actor died before its attempt was over is restarted
//! from its last snapshot, once however many callers found it dead.

use actix::prelude::*;
use tokio::sync::oneshot;

use super::Registry;
use crate::engine::attempt::Attempt;
use crate::engine::table::Body;
use crate::ids::PollId;

/// The attempt `poll` was found dead at `dead`: restart it from its last snapshot.
/// Answers whether the attempt lives (restarted now or by a concurrent revive).
pub struct Revive {
    pub poll: PollId,
    pub dead: Addr<Attempt>,
}

impl Message for Revive {
    type Result = bool;
}

impl Handler<Revive> for Registry {
    type Result = ResponseFuture<bool>;

    fn handle(&mut self, msg: Revive, ctx: &mut Self::Context) -> Self::Result {
        let rx = self.revive(msg.poll, msg.dead, ctx);
        Box::pin(async move { rx.await.unwrap_or(false) })
    }
}

impl Registry {
    /// Restarts the attempt `poll`, found dead at `dead`, from its last snapshot (once,
    /// however many callers found it dead). The receiver learns whether it lives.
    pub(super) fn revive(
        &mut self,
        poll: PollId,
        dead: Addr<Attempt>,
        ctx: &mut Context<Self>,
    ) -> oneshot::Receiver<bool> {
        let (tx, rx) = oneshot::channel();
        // `Some(Some(expiry))`: the dead actor is still listed; `Some(None)`: another is.
        let listed = {
            let t = self.table.lock();
            t.find_poll(&poll).and_then(|k| t.get(k)).map(|r| match &r.body {
                Body::Active(a, at) => (*a == dead).then_some(*at),
                // An idle record cannot die: it was replaced too.
                Body::Idle(_) => None,
            })
        };
        let expires_at_ms = match listed {
            None => {
                let _ = tx.send(false);
                return rx;
            }
            // Already replaced by an earlier revive.
            Some(None) => {
                let _ = tx.send(true);
                return rx;
            }
            Some(Some(at)) => at,
        };
        if let Some(waiters) = self.reviving.get_mut(&poll) {
            waiters.push(tx);
            return rx;
        }
        self.reviving.insert(poll.clone(), vec![tx]);
        let persister = self.persister.clone();
        let key = poll.clone();
        let load = async move { persister.load(&key, expires_at_ms).await };
        ctx.spawn(load.into_actor(self).map(move |loaded, act, ctx| {
            let now = act.clock.now_ms();
            let alive = match loaded {
                Ok(Some(snap)) if snap.is_live(now) && snap.poll == poll => {
                    act.forget(&poll);
                    act.admit(snap, ctx);
                    act.metrics.attempt_restart(crate::metrics::labels::Restart::Restarted);
                    tracing::warn!(poll = ?poll, "attempt died unexpectedly; restarted from its snapshot");
                    true
                }
                other => {
                    act.forget(&poll);
                    act.metrics.attempt_restart(crate::metrics::labels::Restart::Lost);
                    let found = other.map(|s| s.map(|s| s.state.phase));
                    tracing::error!(poll = ?poll, ?found, "attempt died unexpectedly and has no live snapshot");
                    false
                }
            };
            for w in act.reviving.remove(&poll).unwrap_or_default() {
                let _ = w.send(alive);
            }
        }));
        rx
    }
}
