//! Each user's newest logins in memory, for `/me`, on a node that is the only writer of
//! the login audit (a single node: `cluster.enabled = false`).
//!
//! Every row this process records goes into its user's entry as it is recorded, so an
//! entry never misses a row of this process. What an entry cannot know are the rows
//! stored before the process started: a new entry is *partial* until one read has
//! merged it with the database (and the write-behind queue), and is *complete* from then
//! on; a complete entry answers `/me` with no query. Several nodes write the audit in a
//! cluster, so there the cache stays off and every read asks the database.
//!
//! Bounded by two generations (as the account cache): when the current map is full it
//! becomes the old one and the older one is dropped; a dropped entry is simply partial
//! again the next time.

use std::collections::HashMap;
use std::sync::Mutex;

use super::LoginRow;

/// Rows kept per user: `/me` shows five.
pub const KEEP: usize = 5;
/// Users per generation (so at most twice this many are kept).
const GENERATION: usize = 50_000;

#[derive(Default)]
struct Entry {
    /// Newest first, at most [`KEEP`].
    rows: Vec<LoginRow>,
    complete: bool,
}

impl Entry {
    /// Adds `rows` not already present, keeping the newest [`KEEP`], newest first. Rows
    /// of the same second keep their order of arrival: a row just recorded goes before
    /// the ones held (`newest`), rows read from the database after them. (Two identical
    /// rows of one user in the same second show as one, as the queue merge does.)
    fn merge(&mut self, rows: impl IntoIterator<Item = LoginRow>, newest: bool) {
        for r in rows {
            if !self.rows.contains(&r) {
                if newest { self.rows.insert(0, r) } else { self.rows.push(r) }
            }
        }
        // Stable: among rows of the same second, the order above stays.
        self.rows.sort_by_key(|r| std::cmp::Reverse(r.at));
        self.rows.truncate(KEEP);
    }
}

#[derive(Default)]
struct Maps {
    cur: HashMap<String, Entry>,
    old: HashMap<String, Entry>,
}

impl Maps {
    fn entry(&mut self, user_id: &str) -> &mut Entry {
        if !self.cur.contains_key(user_id) {
            let e = self.old.remove(user_id).unwrap_or_default();
            if self.cur.len() >= GENERATION {
                self.old = std::mem::take(&mut self.cur);
            }
            self.cur.insert(user_id.to_string(), e);
        }
        self.cur.get_mut(user_id).expect("inserted above")
    }
}

#[derive(Default)]
pub struct RecentCache(Mutex<Maps>);

impl RecentCache {
    fn maps(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A row this process recorded.
    pub fn recorded(&self, user_id: &str, row: &LoginRow) {
        self.maps().entry(user_id).merge([row.clone()], true);
    }

    /// The newest `n` rows, if the entry is complete (`n` ≤ [`KEEP`]).
    pub fn get(&self, user_id: &str, n: usize) -> Option<Vec<LoginRow>> {
        if n > KEEP {
            return None;
        }
        let maps = self.maps();
        let e = maps.cur.get(user_id).or_else(|| maps.old.get(user_id)).filter(|e| e.complete)?;
        Some(e.rows.iter().take(n).cloned().collect())
    }

    /// Completes the entry with what the database and the queue held (read after the
    /// entry may have started: every row recorded meanwhile is in it already).
    pub fn complete(&self, user_id: &str, read: Vec<LoginRow>, n: usize) -> Vec<LoginRow> {
        let mut maps = self.maps();
        let e = maps.entry(user_id);
        e.merge(read, false);
        e.complete = true;
        e.rows.iter().take(n).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(at: i64) -> LoginRow {
        LoginRow { app: "a".into(), how: "scan".into(), ip: "ip".into(), user_agent: "ua".into(), at }
    }

    #[test]
    fn partial_until_read_once_then_kept_up_to_date() {
        let c = RecentCache::default();
        c.recorded("u", &row(10));
        assert_eq!(c.get("u", 5), None, "rows from before the start are unknown");
        // The read found older rows, and the one recorded meanwhile again.
        let got = c.complete("u", vec![row(10), row(3), row(2)], 5);
        assert_eq!(got.iter().map(|r| r.at).collect::<Vec<_>>(), [10, 3, 2]);
        for at in 11..20 {
            c.recorded("u", &row(at));
        }
        let got = c.get("u", 5).unwrap();
        assert_eq!(got.iter().map(|r| r.at).collect::<Vec<_>>(), [19, 18, 17, 16, 15]);
        assert_eq!(c.get("u", 6), None, "more than is kept: ask the database");
        assert_eq!(c.get("other", 5), None);
    }

    #[test]
    fn rows_of_one_second_are_newest_first() {
        let c = RecentCache::default();
        c.complete("u", vec![row(7)], 5);
        let mut later = row(7);
        later.how = "bind".into();
        c.recorded("u", &later);
        let got = c.get("u", 5).unwrap();
        assert_eq!(got.iter().map(|r| r.how.as_str()).collect::<Vec<_>>(), ["bind", "scan"]);
    }

    #[test]
    fn bounded_by_two_generations() {
        let c = RecentCache::default();
        for i in 0..(2 * GENERATION + 10) {
            c.complete(&format!("u{i}"), vec![row(1)], 5);
        }
        let maps = c.maps();
        assert!(maps.cur.len() + maps.old.len() <= 2 * GENERATION);
        assert!(maps.cur.contains_key(&format!("u{}", 2 * GENERATION + 9)));
    }
}
