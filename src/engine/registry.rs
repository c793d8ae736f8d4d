//! The Registry actor: creates attempts, indexes them by poll id and by (app, scene),
//! enforces the live-attempt cap, and is the only router to attempts.
//!
//! Nothing outside the engine holds an attempt's `Addr`: this single routing point is
//! where snapshots restore and where multi-node forwarding will plug in.

use std::collections::HashMap;

use actix::prelude::*;

use super::attempt::{Attempt, Cmd, Ended, Outcome, Timeline};
use super::clock::Clock;
use super::state::{AttemptState, Rules};
use crate::ids::{PollId, Scene};
use crate::metrics::Metrics;

/// Mailbox depth of the registry: deep enough for bursts, bounded so a flood turns into
/// `overloaded` answers instead of memory.
pub const REGISTRY_MAILBOX: usize = 16_384;

struct Entry {
    addr: Addr<Attempt>,
    app: String,
    scene: Scene,
}

pub struct Registry {
    by_poll: HashMap<PollId, Entry>,
    by_scene: HashMap<(String, Scene), PollId>,
    max_live: usize,
    rules: Rules,
    clock: Clock,
    metrics: Metrics,
}

impl Registry {
    pub fn new(max_live: usize, rules: Rules, clock: Clock, metrics: Metrics) -> Self {
        Self { by_poll: HashMap::new(), by_scene: HashMap::new(), max_live, rules, clock, metrics }
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(REGISTRY_MAILBOX);
    }
}

/// A fresh attempt's public identity.
#[derive(Debug, Clone)]
pub struct Created {
    pub poll: PollId,
    pub scene: Scene,
    pub expires_at_ms: u64,
}

/// Start a new attempt for `app` that lives `ttl_ms`.
pub struct Create {
    pub app: String,
    pub ttl_ms: u64,
}

impl Message for Create {
    /// `None`: the live-attempt cap is reached.
    type Result = Option<Created>;
}

impl Handler<Create> for Registry {
    type Result = Option<Created>;

    fn handle(&mut self, msg: Create, ctx: &mut Self::Context) -> Self::Result {
        if self.by_poll.len() >= self.max_live {
            return None;
        }
        let poll = PollId::generate();
        let scene = Scene::generate();
        let now = self.clock.now_ms();
        let expires_at_ms = now + msg.ttl_ms;
        let attempt = Attempt {
            poll: poll.clone(),
            scene: scene.clone(),
            app: msg.app.clone(),
            state: AttemptState::new(expires_at_ms),
            rules: self.rules,
            clock: self.clock,
            waiters: Vec::new(),
            registry: ctx.address().recipient(),
            metrics: self.metrics.clone(),
            timeline: Timeline { created_ms: Some(now), scanned_ms: None },
        };
        let addr = attempt.start();
        self.by_scene.insert((msg.app.clone(), scene.clone()), poll.clone());
        self.by_poll.insert(poll.clone(), Entry { addr, app: msg.app, scene: scene.clone() });
        Some(Created { poll, scene, expires_at_ms })
    }
}

/// Where a routed command goes.
pub enum Target {
    Poll(PollId),
    Scene { app: String, scene: Scene },
}

/// Route `cmd` to the attempt named by `target`.
pub struct Route {
    pub target: Target,
    pub cmd: Cmd,
}

impl Message for Route {
    /// `None`: no such live attempt (never existed, ended, or just stopping).
    type Result = Option<Outcome>;
}

impl Handler<Route> for Registry {
    type Result = ResponseFuture<Option<Outcome>>;

    fn handle(&mut self, msg: Route, _ctx: &mut Self::Context) -> Self::Result {
        let poll = match &msg.target {
            Target::Poll(p) => Some(p),
            Target::Scene { app, scene } => self.by_scene.get(&(app.clone(), scene.clone())),
        };
        let addr = poll.and_then(|p| self.by_poll.get(p)).map(|e| e.addr.clone());
        Box::pin(async move {
            match addr {
                // A closed mailbox means the attempt stopped between lookup and send:
                // for the caller that is an ended attempt.
                Some(addr) => addr.send(msg.cmd).await.ok(),
                None => None,
            }
        })
    }
}

impl Handler<Ended> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Ended, _ctx: &mut Self::Context) {
        if let Some(e) = self.by_poll.remove(&msg.poll) {
            self.by_scene.remove(&(e.app, e.scene));
        }
    }
}

/// How many attempts are live.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CountLive;

impl Handler<CountLive> for Registry {
    type Result = usize;

    fn handle(&mut self, _: CountLive, _ctx: &mut Self::Context) -> usize {
        self.by_poll.len()
    }
}
