//! The single-node engine's memory of why an attempt ended, once the attempt itself has
//! left the table: an `expired` answer for a denied attempt keeps saying
//! `"reason": "denied"` until the attempt's own deadline, as the cluster's record does.
//!
//! Only endings with a reason are kept ([`Ending::reason`]), each until its attempt's
//! deadline, and never more than [`MAX`] at once (the oldest go first): every entry was
//! a live attempt, which the live cap already bounds.

use std::collections::{BTreeMap, HashMap};

use super::state::Ending;
use crate::ids::PollId;

/// The most endings kept at once.
pub const MAX: usize = 100_000;

#[derive(Default)]
pub struct Tombstones {
    by_poll: HashMap<PollId, (Ending, u64)>,
    by_deadline: BTreeMap<u64, Vec<PollId>>,
}

impl Tombstones {
    /// Remembers that `poll` ended for `ending` (if that has a reason), until `until_ms`.
    pub fn insert(&mut self, poll: PollId, ending: Ending, until_ms: u64, now_ms: u64) {
        self.prune(now_ms);
        if ending.reason().is_none() || until_ms <= now_ms {
            return;
        }
        while self.by_poll.len() >= MAX {
            let Some((_, oldest)) = self.by_deadline.pop_first() else { break };
            for p in oldest {
                self.by_poll.remove(&p);
            }
        }
        if self.by_poll.insert(poll.clone(), (ending, until_ms)).is_none() {
            self.by_deadline.entry(until_ms).or_default().push(poll);
        }
    }

    /// Why `poll` ended, while that is still told.
    pub fn get(&self, poll: &PollId, now_ms: u64) -> Option<Ending> {
        self.by_poll.get(poll).filter(|(_, until)| *until > now_ms).map(|(e, _)| *e)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_poll.len()
    }

    fn prune(&mut self, now_ms: u64) {
        while let Some(entry) = self.by_deadline.first_entry() {
            if *entry.key() > now_ms {
                break;
            }
            for p in entry.remove() {
                self.by_poll.remove(&p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_told_until_the_deadline_and_only_a_reason_is_kept() {
        let mut t = Tombstones::default();
        let (denied, used) = (PollId::generate(), PollId::generate());
        t.insert(denied.clone(), Ending::Denied, 1_000, 0);
        t.insert(used.clone(), Ending::Consumed, 1_000, 0);
        assert_eq!((t.get(&denied, 999), t.get(&used, 0)), (Some(Ending::Denied), None));
        assert_eq!(t.get(&denied, 1_000), None, "past the deadline it is an ordinary expiry");
        t.insert(PollId::generate(), Ending::Denied, 3_000, 2_000);
        assert_eq!(t.len(), 1, "the passed one was pruned");
    }
}
