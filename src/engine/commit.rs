//! What is counted when an attempt is made or a transition is committed — on either
//! engine, by whichever thread or node committed it. Written once, so the two engines
//! cannot count differently.
//!
//! In cluster mode each node counts what it commits: a node's live-attempt series moves
//! by the attempts it made and the transitions it wrote, so only the sum over the nodes
//! is the deployment's number (one node's series may go below zero).

use super::labels::finish;
use super::state::{Actions, AttemptState, Event, Phase};
use crate::metrics::labels::{Decision, LoginHow};
use crate::metrics::{Metrics, State};

/// A new attempt of `app` is live (in `loop`).
pub fn made(metrics: &Metrics, app: &str) {
    metrics.live_changed(app, None, Some(State::Loop));
}

/// `event` moved an attempt of `app` from `before` to `after` at `now_ms`, with `actions`.
pub fn committed(
    metrics: &Metrics,
    app: &str,
    before: Phase,
    after: &AttemptState,
    event: &Event,
    actions: Actions,
    now_ms: u64,
) {
    if before != after.phase {
        metrics.transition(app, before.into(), after.phase.into());
    }
    let since = |t: Option<u64>| t.map(|t| now_ms.saturating_sub(t) as f64 / 1000.0);
    if before == Phase::Scanned && before != after.phase {
        match event {
            Event::Confirm { .. } => metrics.decision(app, Decision::Confirm, since(after.scanned_ms)),
            Event::Deny { .. } => metrics.decision(app, Decision::Deny, since(after.scanned_ms)),
            _ => {}
        }
    }
    if actions.hand_out {
        let how = if matches!(event, Event::Bound { .. }) { LoginHow::Bind } else { LoginHow::Scan };
        metrics.token_latency(app, how, since(after.created_ms), since(after.scanned_ms));
    }
    if let Some(why) = actions.end {
        metrics.finished(app, finish(why, event, after.openid.is_some()));
    }
}
