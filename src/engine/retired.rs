//! The single-node engine's memory of code mode scenes whose attempts ended: a login code
//! is not issued again within an attempt lifetime of its end (docs/api.md "Accounts that
//! cannot make QR codes"), so a code read off an old screen never logs into a new attempt.
//!
//! Bounded like [`super::tombstones`]: entries leave at their deadline, and never more
//! than [`MAX`] are kept (the oldest go first; every entry was a live attempt, which the
//! live cap already bounds).

use std::collections::{BTreeMap, HashMap};

use crate::ids::Scene;

/// The most retired scenes kept at once.
pub const MAX: usize = 100_000;

#[derive(Default)]
pub struct Retired {
    until: HashMap<(String, Scene), u64>,
    by_deadline: BTreeMap<u64, Vec<(String, Scene)>>,
}

impl Retired {
    /// Keeps (`app`, `scene`) from being issued again until `until_ms`.
    pub fn insert(&mut self, app: &str, scene: &Scene, until_ms: u64, now_ms: u64) {
        self.prune(now_ms);
        if until_ms <= now_ms {
            return;
        }
        while self.until.len() >= MAX {
            let Some((_, oldest)) = self.by_deadline.pop_first() else { break };
            for k in oldest {
                self.until.remove(&k);
            }
        }
        let k = (app.to_string(), scene.clone());
        if self.until.insert(k.clone(), until_ms).is_none() {
            self.by_deadline.entry(until_ms).or_default().push(k);
        }
    }

    /// Whether (`app`, `scene`) ended too recently to be issued again.
    pub fn holds(&self, app: &str, scene: &Scene, now_ms: u64) -> bool {
        self.until.get(&(app.to_string(), scene.clone())).is_some_and(|u| *u > now_ms)
    }

    fn prune(&mut self, now_ms: u64) {
        while let Some(entry) = self.by_deadline.first_entry() {
            if *entry.key() > now_ms {
                break;
            }
            for k in entry.remove() {
                self.until.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retired_scene_is_held_until_its_deadline_and_only_for_its_app() {
        let mut r = Retired::default();
        let s = Scene::parse("c_0123").unwrap();
        r.insert("a", &s, 2_000, 1_000);
        assert!(r.holds("a", &s, 1_999));
        assert!(!r.holds("b", &s, 1_500), "a scene belongs to its app");
        assert!(!r.holds("a", &s, 2_000));
        r.insert("a", &Scene::parse("c_9").unwrap(), 3_000, 2_500);
        assert!(!r.until.contains_key(&("a".to_string(), s)), "pruned at its deadline");
    }
}
