//! Held polls and event streams: the one loop that waits on an attempt ([`Watcher`]),
//! and [`Subscription`], one watcher's view of an attempt as a sequence of states for the
//! server-sent event stream (docs/api.md `GET /api/v1/login/events`).
//!
//! A long poll and a stream wait the same way: register a waiter with the backend (which
//! reads the state after registering it, so no change falls between), then wait for the
//! waiter, the attempt's deadline, the poll's own limit or the server's shutdown — then
//! read again. Every state told comes from the same `Claim` a status poll makes, so a
//! token still leaves the engine exactly once (whoever claims first gets it; a stream
//! that comes second reads `expired`), and a token that a `bind-phone` answer carried is
//! never told again (the bind ended the attempt, the next claim reads `expired`).
//!
//! The caller of a stream alternates [`Subscription::changed`] (waits; cancel-safe, so it
//! can race a heartbeat timer) and [`Subscription::next`] (reads; never raced, because a
//! claim in flight may carry the token).

use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, oneshot, watch};
use tokio::time::Instant;

use super::backend::Backend;
use super::clock::Clock;
use super::outcome::{EngineError, Outcome};
use super::state::{Event, Phase};
use crate::ids::PollId;
use crate::metrics::HoldGuard;

/// The least time between two waiter registrations of one watcher. An attempt whose
/// waiter list is full refuses a new waiter at once; without this pause a stream would
/// ask again and again.
const MIN_REWATCH: Duration = Duration::from_millis(100);

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woken {
    /// Something may have changed (the attempt, its deadline, the poll's limit, the
    /// server's shutdown): read again.
    Changed,
    /// The attempt holds no more waiters: a poll answers now.
    NotHeld,
}

/// One poll's or stream's wait on one attempt.
pub struct Watcher {
    backend: Backend,
    poll: PollId,
    clock: Clock,
    closing: watch::Receiver<bool>,
    /// The registered waiter and the attempt's deadline, kept across cancelled waits so a
    /// change that lands while a stream sends a heartbeat is not missed.
    woken: Option<(oneshot::Receiver<()>, u64)>,
    last_watch: Option<Instant>,
}

impl Watcher {
    pub(super) fn new(backend: Backend, poll: PollId, clock: Clock, closing: watch::Receiver<bool>) -> Self {
        Self { backend, poll, clock, closing, woken: None, last_watch: None }
    }

    /// The attempt's state now; in `reg` this takes the token.
    pub async fn claim(&self) -> Result<Outcome, EngineError> {
        self.backend.apply(&self.poll, Event::Claim).await
    }

    pub fn is_closing(&self) -> bool {
        *self.closing.borrow()
    }

    /// Whether a waiter is registered (after [`Watcher::claim_held`]: the attempt took it).
    pub fn is_held(&self) -> bool {
        self.woken.is_some()
    }

    /// [`Watcher::claim`] with a waiter registered before its read: when the state is
    /// one that waits, the next [`Watcher::changed`] waits on that waiter instead of
    /// registering (and reading) again.
    pub async fn claim_held(&mut self) -> Result<Outcome, EngineError> {
        self.last_watch = Some(Instant::now());
        let (o, rx) = self.backend.claim_watching(&self.poll).await?;
        self.woken = rx.filter(|_| o.phase.is_waiting()).map(|rx| (rx, o.deadline_ms));
        Ok(o)
    }

    /// Waits until the attempt may have left `told` (the phase last read): a change, its
    /// deadline, `until`, or the server's shutdown. Cancel-safe.
    pub async fn changed(&mut self, told: Phase, until: Option<Instant>) -> Result<Woken, EngineError> {
        if self.is_closing() {
            return Ok(Woken::Changed);
        }
        if self.woken.is_none() {
            if let Some(t) = self.last_watch {
                tokio::time::sleep_until(t + MIN_REWATCH).await;
            }
            self.last_watch = Some(Instant::now());
            let (seen, rx) = self.backend.watch(&self.poll).await?;
            // Changed between the last read and this registration, or gone: read now.
            let Some(seen) = seen.filter(|o| o.phase == told) else { return Ok(Woken::Changed) };
            let Some(rx) = rx else { return Ok(Woken::NotHeld) };
            self.woken = Some((rx, seen.deadline_ms));
        }
        let Some((rx, deadline_ms)) = self.woken.as_mut() else { return Ok(Woken::Changed) };
        let deadline = Instant::now() + self.clock.until(*deadline_ms);
        let until = until.map_or(deadline, |u| u.min(deadline));
        tokio::select! {
            _ = rx => {}
            _ = tokio::time::sleep_until(until) => {}
            _ = self.closing.wait_for(|c| *c) => {}
        }
        self.woken = None;
        Ok(Woken::Changed)
    }
}

pub struct Subscription {
    watcher: Watcher,
    /// The phase last told; `None` before the first state.
    told: Option<Phase>,
    /// A terminal state (or the server's last word at shutdown) was told.
    finished: bool,
    /// A stream counts against the node's held-poll cap while it lives.
    _permit: OwnedSemaphorePermit,
    _held: HoldGuard,
}

impl Subscription {
    pub(super) fn new(watcher: Watcher, permit: OwnedSemaphorePermit, held: HoldGuard) -> Self {
        Self { watcher, told: None, finished: false, _permit: permit, _held: held }
    }

    /// Whether the stream is over: nothing more will be told.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// What to tell now, if anything: the current state on the first call, then a state
    /// whenever the phase changed; at shutdown the current state once more, as the last.
    /// In `reg` this claims the token. `Ok(None)`: nothing new (a change inside a phase,
    /// such as an SMS code sent in `not_reg`), or the stream is finished.
    pub async fn next(&mut self) -> Result<Option<Outcome>, EngineError> {
        if self.finished {
            return Ok(None);
        }
        let o = self.watcher.claim().await?;
        let closing = self.watcher.is_closing();
        let tell = self.told != Some(o.phase) || closing;
        self.told = Some(o.phase);
        // A claimed token leaves the attempt `expired`: that is the terminal case too.
        self.finished = o.phase == Phase::Expired || closing;
        Ok(tell.then_some(o))
    }

    /// Waits until the attempt may have changed since the last state told, or the server
    /// shuts down. Cancel-safe: a cancelled wait keeps its waiter for the next call.
    pub async fn changed(&mut self) -> Result<(), EngineError> {
        let Some(told) = self.told.filter(|_| !self.finished) else { return Ok(()) };
        // Not held (the attempt's waiters are full): the next registration is paced.
        self.watcher.changed(told, None).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::persist::WriterConfig;
    use crate::engine::persist::memory::MemoryStore;
    use crate::engine::state::Reply;
    use crate::engine::tests::{engine_on, settle, user};
    use crate::engine::{Clock, LoginsHandle};

    async fn started() -> (LoginsHandle, PollId) {
        tokio::time::pause();
        let (e, _) = engine_on(Arc::new(MemoryStore::new()), 10, WriterConfig::default(), Clock::new());
        let c = e.create("app", Duration::from_secs(300)).await.unwrap();
        settle().await;
        (e, c.poll)
    }

    /// Drives `sub` to its next told state.
    async fn told(sub: &mut Subscription) -> Outcome {
        loop {
            sub.changed().await.unwrap();
            if let Some(o) = sub.next().await.unwrap() {
                return o;
            }
        }
    }

    #[actix::test]
    async fn tells_the_state_at_once_then_the_token_once_against_a_racing_poll() {
        let (e, poll) = started().await;
        let mut sub = e.subscribe(&poll).unwrap();
        assert_eq!(sub.next().await.unwrap().map(|o| o.phase), Some(Phase::Loop));
        let scanned = Event::Scanned { openid: "o1".into(), user: Some(user()) };
        let (o, racer) = tokio::join!(told(&mut sub), async {
            e.apply(&poll, scanned).await.unwrap();
            e.poll(&poll, Duration::ZERO).await.unwrap()
        });
        let tokens = [&o, &racer].iter().filter(|o| matches!(o.reply, Reply::Token(_))).count();
        assert_eq!(tokens, 1, "stream {o:?}, poll {racer:?}");
        assert_eq!(o.phase, Phase::Expired);
        assert!(sub.finished());
        assert_eq!(sub.next().await.unwrap(), None);
    }

    #[actix::test]
    async fn a_bind_ends_the_stream_without_repeating_the_token() {
        let (e, poll) = started().await;
        let mut sub = e.subscribe(&poll).unwrap();
        sub.next().await.unwrap();
        e.apply(&poll, Event::Scanned { openid: "o1".into(), user: None }).await.unwrap();
        assert_eq!(told(&mut sub).await.phase, Phase::NotReg);
        // A change inside not_reg (a code sent) wakes the stream but tells nothing.
        let code = Event::CodeIssued { phone: "13800138000".into(), hash: [7; 32], ttl_ms: 60_000 };
        tokio::join!(async { sub.changed().await.unwrap() }, async {
            // The paused clock moves only once the stream's waiter is registered.
            tokio::time::sleep(Duration::from_secs(1)).await;
            e.apply(&poll, code).await.unwrap();
        });
        assert_eq!(sub.next().await.unwrap(), None);
        let entered = Event::CodeEntered { phone: "13800138000".into(), hash: [7; 32] };
        assert!(matches!(e.apply(&poll, entered).await.unwrap().reply, Reply::CodeAccepted { .. }));
        let bound = e.apply(&poll, Event::Bound { user: user() }).await.unwrap();
        assert!(matches!(bound.reply, Reply::Token(_)));
        let o = told(&mut sub).await;
        assert_eq!((o.phase, &o.reply), (Phase::Expired, &Reply::Expired));
        assert!(sub.finished());
    }

    #[actix::test]
    async fn shutdown_tells_the_current_state_as_the_last() {
        let (e, poll) = started().await;
        let mut sub = e.subscribe(&poll).unwrap();
        sub.next().await.unwrap();
        let waiting = async {
            sub.changed().await.unwrap();
            sub.next().await.unwrap()
        };
        let (last, ()) = tokio::join!(waiting, async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            e.close();
        });
        assert_eq!(last.map(|o| o.phase), Some(Phase::Loop));
        assert!(sub.finished());
    }

    #[actix::test]
    async fn the_stream_ends_when_the_attempt_expires() {
        let (e, poll) = started().await;
        let mut sub = e.subscribe(&poll).unwrap();
        let t0 = Instant::now();
        sub.next().await.unwrap();
        // The paused clock jumps to the attempt's timer: the stream waits for it.
        let o = told(&mut sub).await;
        assert_eq!(o.phase, Phase::Expired);
        assert!(t0.elapsed() >= Duration::from_secs(299), "{:?}", t0.elapsed());
        assert!(sub.finished());
    }
}
