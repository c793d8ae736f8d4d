//! The Attempt actor: one per login attempt (one QR code).
//!
//! It owns the attempt's state, executes the pure [`step`] on every event, arms its own
//! expiry timer from the absolute deadline, and wakes held long polls on every change.
//! When the attempt ends it tells the registry and stops.
//!
//! Write before answer: a transition is snapshotted before anyone learns of it. The
//! handler answers through [`Answer::AfterPersist`], which holds the actor (no other
//! message, no timer) until the snapshot is acknowledged or the ack budget passes; the
//! I/O itself runs in the snapshot writer, never on this thread.
//!
//! An answer that acknowledges a step (a scan, a code sent) goes only once the step is
//! stored: a store that is up but did not take it within the ack budget makes the answer
//! [`EngineError::Overloaded`] (the state stays in memory and queued; the caller's retry
//! finds it and waits for it to be stored, see [`Attempt::stored`]). Only a store known
//! to be down lets the answer go with the state in memory alone (degraded mode). A token
//! is stricter still: it is handed out only once its "consumed" state is stored (see
//! [`token_owed`]), otherwise the caller gets [`EngineError::Unavailable`].

use std::sync::Arc;

use actix::dev::{MessageResponse, OneshotSender};
use actix::prelude::*;
use tokio::sync::oneshot;

use super::clock::Clock;
use super::commit;
use super::outcome::{Detail, EngineError, Outcome};
use super::persist::{Persister, Snapshot, Stored};
use super::state::{Actions, AttemptState, Event, Phase, Reply, Rules, Step, step, token_owed};
use super::table::LiveTable;
use super::waiters::Waiters;
use crate::ids::{PollId, Scene};
use crate::metrics::Metrics;

/// A command routed to one attempt by the registry.
pub enum Cmd {
    /// Feed an event to the state machine.
    Apply(Event),
    /// Register a long-poll or event-stream waiter, woken (by drop) on the next change.
    /// Answered with the current state; a waiter is only kept while the attempt is live
    /// (a stream in `not_reg` waits for the bind or the expiry).
    Watch(oneshot::Sender<()>),
    /// Read the state and its detail without changing anything.
    Peek,
    /// Submit the current state to the snapshot store again (it was down or lost data).
    Resnapshot,
    /// Panic inside the handler: the planted failure of the supervision test.
    #[cfg(test)]
    Crash,
}

impl Cmd {
    /// A copy for a retry after the attempt was restarted; a waiter is not copied (its
    /// sender died with the old actor, which already woke the poll).
    pub fn try_clone(&self) -> Option<Cmd> {
        match self {
            Cmd::Apply(e) => Some(Cmd::Apply(e.clone())),
            Cmd::Peek => Some(Cmd::Peek),
            Cmd::Resnapshot => Some(Cmd::Resnapshot),
            Cmd::Watch(_) => None,
            #[cfg(test)]
            Cmd::Crash => None,
        }
    }
}

impl Message for Cmd {
    type Result = Result<Outcome, EngineError>;
}

/// Sent to the registry when an attempt's actor stops.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Ended {
    pub poll: PollId,
    /// `Some(its address)` when it stopped before its attempt was over: a panic in a
    /// handler (actix still runs `stopped()` while unwinding). The registry restarts it.
    pub died: Option<Addr<Attempt>>,
}

pub struct Attempt {
    pub(super) poll: PollId,
    pub(super) scene: Scene,
    pub(super) app: String,
    pub(super) state: AttemptState,
    /// The registry's table: a confirmation ticket is listed there, and a reason kept
    /// once the attempt is gone, before anyone learns of the change.
    pub(super) table: Arc<LiveTable>,
    /// The highest version the store acknowledged (`None`: nothing yet). A repeated scan
    /// of a state not yet stored waits for it instead of acknowledging it blindly.
    pub(super) stored: Option<u64>,
    pub(super) rules: Rules,
    pub(super) clock: Clock,
    pub(super) waiters: Waiters,
    pub(super) registry: Recipient<Ended>,
    pub(super) metrics: Metrics,
    pub(super) persister: Persister,
}

type Answered = Result<Outcome, EngineError>;

/// The handler's answer: now, or once the transition's snapshot is stored.
// `Now` is the common answer (every poll): boxing it would allocate on each one to save
// a few bytes in the rarer future.
#[allow(clippy::large_enum_variant)]
pub enum Answer {
    Now(Answered),
    AfterPersist(ResponseActFuture<Attempt, Answered>),
}

impl MessageResponse<Attempt, Cmd> for Answer {
    fn handle(self, ctx: &mut Context<Attempt>, tx: Option<OneshotSender<Answered>>) {
        match self {
            Answer::Now(r) => {
                if let Some(tx) = tx {
                    let _ = tx.send(r);
                }
            }
            // `wait`, not `spawn`: nothing else runs on this attempt until the snapshot
            // is acknowledged, so nobody can observe a state that a crash could undo.
            Answer::AfterPersist(fut) => ctx.wait(fut.map(|r, _, _| {
                if let Some(tx) = tx {
                    let _ = tx.send(r);
                }
            })),
        }
    }
}

impl Attempt {
    pub(super) fn snapshot(&self) -> Snapshot {
        Snapshot {
            poll: self.poll.clone(),
            scene: self.scene.clone(),
            app: self.app.clone(),
            state: self.state.clone(),
        }
    }

    /// The answer; `detail` asks for who owns the attempt (a scan's answer needs it, so a
    /// second scanner is not told to go on). A token answer always says which app it
    /// logs into (for the audit and metrics); other answers skip the copies.
    fn outcome(&self, reply: Reply, detail: bool) -> Outcome {
        let detail = (detail || matches!(reply, Reply::Token(_))).then(|| Detail::of(&self.app, &self.state));
        let mut o = Outcome::of_state(reply, &self.state, self.clock.now_ms());
        o.detail = detail;
        o
    }

    /// Runs the machine and performs its actions: persist (the answer waits for it),
    /// then hand out the token, wake the waiters, stop if the attempt ended.
    fn apply(&mut self, event: Event) -> Answer {
        let now = self.clock.now_ms();
        let Step { state: next, reply, actions } = step(&self.state, &event, now, &self.rules);
        let scan = matches!(event, Event::Scanned { .. } | Event::ScannedToConfirm { .. });
        let acknowledges = scan || matches!(event, Event::CodeIssued { .. });
        let detail = scan;
        if !actions.persist {
            // A repeated scan (WeChat's retry) acknowledges what the first one did.
            if acknowledges && self.stored != Some(self.state.version) && self.state.phase != Phase::Expired {
                return self.when_stored(reply, detail);
            }
            return Answer::Now(Ok(self.outcome(reply, detail)));
        }
        let before = std::mem::replace(&mut self.state, next);
        let persister = self.persister.clone();
        let snap = self.snapshot();
        let version = snap.version();
        let stored = async move { persister.persist(snap, actions.hand_out).await };
        Answer::AfterPersist(Box::pin(stored.into_actor(self).map(move |stored, act, ctx| {
            if stored.is_durable() {
                act.stored = act.stored.max(Some(version));
            }
            if actions.hand_out && !stored.is_durable() {
                act.metrics.token_withheld();
                tracing::warn!(poll = ?act.poll, "token withheld: its consumed state could not be stored");
                act.state = token_owed(&before, &act.state);
                // Replaces the queued consumed state (same version) for when the store
                // is back; should that one land first, the store keeps it instead.
                act.persister.submit(act.snapshot(), None);
                let owed = Actions { hand_out: false, end: None, ..actions };
                act.committed(before.phase, &event, now, owed, ctx);
                return Err(EngineError::Unavailable);
            }
            act.committed(before.phase, &event, now, actions, ctx);
            if acknowledges && stored == Stored::Late {
                return Err(EngineError::Overloaded);
            }
            let mut o = act.outcome(reply, detail);
            o.actions = actions;
            Ok(o)
        })))
    }

    /// Answers `reply` once the current state is stored (submitted again: the store keeps
    /// one copy of a version), or at once while the store is known down.
    fn when_stored(&mut self, reply: Reply, detail: bool) -> Answer {
        let persister = self.persister.clone();
        let snap = self.snapshot();
        let version = snap.version();
        let stored = async move { persister.persist(snap, false).await };
        Answer::AfterPersist(Box::pin(stored.into_actor(self).map(move |stored, act, _| match stored {
            Stored::Durable => {
                act.stored = act.stored.max(Some(version));
                Ok(act.outcome(reply, detail))
            }
            Stored::StoreDown => Ok(act.outcome(reply, detail)),
            Stored::Late => Err(EngineError::Overloaded),
        })))
    }

    /// After a change is stored (or given up on): count it, wake held polls, stop if over.
    fn committed(&mut self, before: Phase, event: &Event, now: u64, actions: Actions, ctx: &mut Context<Self>) {
        commit::committed(&self.metrics, &self.app, before, &self.state, event, actions, now);
        if before != Phase::Scanned
            && self.state.phase == Phase::Scanned
            && let Some(ticket) = self.state.ticket
        {
            self.table.lock().index_ticket(&self.poll, ticket);
        }
        if let Some(ending) = actions.end {
            let mut t = self.table.lock();
            t.tombstone(&self.poll, ending, self.state.expires_at_ms, now);
            let lifetime = self.state.expires_at_ms.saturating_sub(self.state.created_ms.unwrap_or(now));
            t.retire(&self.app, &self.scene, lifetime, now);
        }
        if actions.wake {
            self.waiters.wake();
        }
        if actions.end.is_some() {
            ctx.stop();
        }
    }
}

impl Actor for Attempt {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
        // Counted live by the registry when it listed the attempt (idle or not).
        let delay = self.clock.until(self.state.expires_at_ms);
        ctx.run_later(delay, |act, ctx| {
            if let Answer::AfterPersist(fut) = act.apply(Event::Timeout) {
                ctx.wait(fut.map(|_, _, _| ()));
            }
        });
    }

    fn stopped(&mut self, ctx: &mut Self::Context) {
        self.metrics.live_changed(&self.app, Some(self.state.phase.into()), None);
        let died = (self.state.phase != Phase::Expired).then(|| ctx.address());
        self.registry.do_send(Ended { poll: self.poll.clone(), died });
    }
}

impl Handler<Cmd> for Attempt {
    type Result = Answer;

    fn handle(&mut self, cmd: Cmd, _ctx: &mut Self::Context) -> Answer {
        match cmd {
            Cmd::Apply(ev) => self.apply(ev),
            Cmd::Watch(tx) => {
                // An ended attempt holds nobody: `tx` drops and its poll reads again.
                if self.state.phase != Phase::Expired {
                    self.waiters.hold(tx);
                }
                Answer::Now(Ok(self.outcome(Reply::Ok, false)))
            }
            Cmd::Peek => Answer::Now(Ok(self.outcome(Reply::Ok, true))),
            Cmd::Resnapshot => {
                self.persister.submit(self.snapshot(), None);
                Answer::Now(Ok(self.outcome(Reply::Ok, false)))
            }
            #[cfg(test)]
            Cmd::Crash => panic!("planted failure in an attempt actor"),
        }
    }
}
