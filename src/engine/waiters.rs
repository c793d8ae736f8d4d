//! The held polls and streams of one attempt, wherever it is held: an attempt actor, an
//! idle record of the single-node table, a cluster node's view. One cap, one way to
//! wake them: a waiter is a oneshot sender, and dropping it wakes its poll, which then
//! reads the state again.

use tokio::sync::oneshot;

/// Waiters one attempt holds at most, on any engine; a further poll is not held and
/// answers at once.
pub const MAX_WAITERS: usize = 32;

#[derive(Debug, Default)]
pub struct Waiters(Vec<oneshot::Sender<()>>);

impl Waiters {
    /// Holds `tx` until the next wake; whether it was held. Past [`MAX_WAITERS`] it is
    /// dropped here, and its poll answers without waiting.
    pub fn hold(&mut self, tx: oneshot::Sender<()>) -> bool {
        self.prune();
        let room = self.0.len() < MAX_WAITERS;
        if room {
            self.0.push(tx);
        }
        room
    }

    /// Wakes every waiter.
    pub fn wake(&mut self) {
        self.0.clear();
    }

    /// Forgets the waiters whose polls gave up; whether any is left.
    pub fn prune(&mut self) -> bool {
        self.0.retain(|w| !w.is_closed());
        !self.0.is_empty()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_drops_the_extra_waiter_and_a_wake_drops_all() {
        let mut w = Waiters::default();
        let mut held: Vec<_> = (0..MAX_WAITERS)
            .map(|_| {
                let (tx, rx) = oneshot::channel();
                assert!(w.hold(tx));
                rx
            })
            .collect();
        let (tx, mut extra) = oneshot::channel();
        assert!(!w.hold(tx), "not held");
        assert_eq!(extra.try_recv(), Err(oneshot::error::TryRecvError::Closed));
        assert_eq!(w.len(), MAX_WAITERS);
        // A poll that gave up frees its place.
        held.pop();
        let (tx, mut late) = oneshot::channel();
        assert!(w.hold(tx));
        assert_eq!(late.try_recv(), Err(oneshot::error::TryRecvError::Empty), "held");
        w.wake();
        assert!(held.iter_mut().all(|rx| rx.try_recv() == Err(oneshot::error::TryRecvError::Closed)));
        assert!(!w.prune());
    }
}
