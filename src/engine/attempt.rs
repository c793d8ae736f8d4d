//! The Attempt actor: one per login attempt (one QR code).
//!
//! It owns the attempt's state, executes the pure [`step`] on every event, arms its own
//! expiry timer from the absolute deadline, and wakes held long polls on every change.
//! When the attempt ends it tells the registry and stops.

use actix::prelude::*;
use tokio::sync::oneshot;

use super::clock::Clock;
use super::state::{AttemptState, Event, Phase, Reply, Rules, step};
use crate::ids::{PollId, Scene};
use crate::metrics::{Finish, Metrics};

/// Waiters one attempt holds at most; further long polls answer at once.
const MAX_WAITERS: usize = 32;

/// What callers learn after any command: the reply and the state it left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub reply: Reply,
    pub phase: Phase,
    pub expires_in: u64,
    /// Filled by [`Cmd::Peek`] and on token replies: who scanned, and the attempt's app.
    pub detail: Option<Detail>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    pub app: String,
    pub openid: Option<String>,
}

impl Outcome {
    pub fn expired() -> Self {
        Self { reply: Reply::Expired, phase: Phase::Expired, expires_in: 0, detail: None }
    }
}

/// A command routed to one attempt by the registry.
pub enum Cmd {
    /// Feed an event to the state machine.
    Apply(Event),
    /// Register a long-poll waiter, woken (by drop) on the next change. Answered with
    /// the current state; a waiter is only kept when the phase is `loop`.
    Watch(oneshot::Sender<()>),
    /// Read the state and its detail without changing anything.
    Peek,
}

impl Message for Cmd {
    type Result = Outcome;
}

/// Sent to the registry when an attempt has ended and stopped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Ended {
    pub poll: PollId,
}

/// When this attempt was created and first scanned (ms since the epoch), for the
/// login-latency histograms. Not part of the snapshot: a restored attempt has no
/// creation time and is simply left out of the create→token histogram.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timeline {
    pub created_ms: Option<u64>,
    pub scanned_ms: Option<u64>,
}

pub struct Attempt {
    pub(super) poll: PollId,
    #[allow(dead_code)] // kept for snapshots and logs; the registry indexes it
    pub(super) scene: Scene,
    pub(super) app: String,
    pub(super) state: AttemptState,
    pub(super) rules: Rules,
    pub(super) clock: Clock,
    pub(super) waiters: Vec<oneshot::Sender<()>>,
    pub(super) registry: Recipient<Ended>,
    pub(super) metrics: Metrics,
    pub(super) timeline: Timeline,
}

impl Attempt {
    fn outcome(&self, reply: Reply) -> Outcome {
        // A token answer says which app it logs into (for the audit and metrics).
        let detail = matches!(reply, Reply::Token(_))
            .then(|| Detail { app: self.app.clone(), openid: self.state.openid.clone() });
        Outcome { reply, phase: self.state.phase, expires_in: self.state.expires_in(self.clock.now_ms()), detail }
    }

    fn apply(&mut self, event: Event, ctx: &mut Context<Self>) -> Outcome {
        let now = self.clock.now_ms();
        let before = self.state.phase;
        let (next, reply) = step(&self.state, &event, now, &self.rules);
        if next.version != self.state.version {
            self.state = next;
            if before != self.state.phase {
                self.metrics.transition(&self.app, before, self.state.phase);
                if before == Phase::Loop && self.state.phase != Phase::Expired {
                    self.timeline.scanned_ms = Some(now);
                }
            }
            if matches!(reply, Reply::Token(_)) {
                self.observe_login(&event, now);
            }
            // Dropping the senders wakes every held poll; they re-read the state.
            self.waiters.clear();
            if self.state.phase == Phase::Expired {
                if let Some(why) = self.state.ending {
                    self.metrics.finished(&self.app, Finish::of(why, &event, self.state.openid.is_some()));
                }
                ctx.stop();
            }
        }
        self.outcome(reply)
    }
}

impl Attempt {
    /// A token leaves the engine now: record how long the login took.
    fn observe_login(&self, event: &Event, now: u64) {
        let how = if matches!(event, Event::Bound { .. }) { "bind" } else { "scan" };
        let since = |t: Option<u64>| t.map(|t| now.saturating_sub(t) as f64 / 1000.0);
        self.metrics.token_latency(&self.app, how, since(self.timeline.created_ms), since(self.timeline.scanned_ms));
    }
}

impl Actor for Attempt {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
        self.metrics.live_changed(&self.app, None, Some(self.state.phase));
        let delay = self.clock.until(self.state.expires_at_ms);
        ctx.run_later(delay, |act, ctx| {
            act.apply(Event::Timeout, ctx);
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.metrics.live_changed(&self.app, Some(self.state.phase), None);
        self.registry.do_send(Ended { poll: self.poll.clone() });
    }
}

impl Handler<Cmd> for Attempt {
    type Result = MessageResult<Cmd>;

    fn handle(&mut self, cmd: Cmd, ctx: &mut Self::Context) -> Self::Result {
        MessageResult(match cmd {
            Cmd::Apply(ev) => self.apply(ev, ctx),
            Cmd::Watch(tx) => {
                self.waiters.retain(|w| !w.is_closed());
                if self.state.phase == Phase::Loop && self.waiters.len() < MAX_WAITERS {
                    self.waiters.push(tx);
                }
                self.outcome(Reply::Ok)
            }
            Cmd::Peek => {
                let mut o = self.outcome(Reply::Ok);
                o.detail = Some(Detail { app: self.app.clone(), openid: self.state.openid.clone() });
                o
            }
        })
    }
}
