//! The cluster engine's side of the admin API ([`crate::engine::admin`]): pages of the
//! index read with their records, and an operator's end as one more transition.

use super::ClusterEngine;
use super::index;
use crate::engine::EngineError;
use crate::engine::admin::{AttemptId, AttemptInfo, Filter, Page};
use crate::engine::persist::Snapshot;
use crate::engine::persist::seal::RecordId;
use crate::engine::state::{Ending, Event, Phase};

/// Index entries read per round of a listing (a filter may skip many).
const ROUND: usize = 200;
/// Rounds one listing may take: a filter that admits almost nothing answers a shorter
/// page with a cursor instead of reading the whole index in one request.
const MAX_ROUNDS: usize = 20;

impl ClusterEngine {
    /// What an operator sees of the stored attempt `snap`, made on `node`.
    fn info(&self, snap: &Snapshot, node: Option<String>) -> AttemptInfo {
        let now = self.0.clock.now_ms();
        let st = &snap.state;
        // Past its deadline an attempt is over, whatever the record says (as for polls).
        let over = st.phase == Phase::Expired || now >= st.expires_at_ms;
        AttemptInfo {
            id: AttemptId::of(&snap.poll),
            app: snap.app.clone(),
            phase: if over { Phase::Expired } else { st.phase },
            ending: st.ending.or(over.then_some(Ending::Timeout)),
            created_ms: st.created_ms,
            scanned_ms: st.scanned_ms,
            trail: st.trail.clone(),
            expires_at_ms: st.expires_at_ms,
            openid: st.openid.clone(),
            kind: snap.poll.kind(),
            provider_key: crate::engine::admin::provider_key(&snap.poll),
            made_on: node.filter(|n| !n.is_empty()),
            client_ip: st.requester.as_ref().map(|r| r.ip.clone()),
            mode: snap.scene.mode(),
        }
    }

    async fn load(&self, id: &RecordId) -> Result<Option<Snapshot>, EngineError> {
        self.seen(self.0.records.load(id, None).await)
    }

    /// One page of the live attempts `filter` admits, in deadline order from `cursor`.
    pub async fn list(&self, filter: &Filter, cursor: Option<&str>, limit: usize) -> Result<Page, EngineError> {
        let mut after = match cursor.map(|c| c.strip_prefix("c:")) {
            None => None,
            Some(Some(m)) => Some(m.to_string()),
            // Another engine's cursor: nothing after it.
            Some(None) => return Ok(Page::default()),
        };
        let mut page = Page::default();
        for _ in 0..MAX_ROUNDS {
            let now = self.0.clock.now_ms();
            let (members, more) = self.seen(self.0.index.page(after.as_deref(), ROUND, now).await)?;
            let last_round = !more;
            for m in members {
                after = Some(m.clone());
                let Some(id) = index::record_of(&m) else { continue };
                let Some(snap) = self.load(&id).await? else { continue };
                let info = self.info(&snap, None);
                if info.phase == Phase::Expired || !filter.admits(&info) {
                    continue;
                }
                page.attempts.push(info);
                if page.attempts.len() >= limit {
                    page.next = Some(format!("c:{m}"));
                    return Ok(page);
                }
            }
            if last_round {
                return Ok(page);
            }
        }
        page.next = after.map(|m| format!("c:{m}"));
        Ok(page)
    }

    /// The attempt `id`, ended ones included while Redis keeps their record.
    pub async fn inspect(&self, id: AttemptId) -> Result<Option<AttemptInfo>, EngineError> {
        let Some((rec, node)) = self.seen(self.0.index.find(id).await)? else { return Ok(None) };
        Ok(self.load(&rec).await?.map(|s| self.info(&s, Some(node))))
    }

    /// Ends the live attempt `id` (`None`: none such, or already over): one `End`
    /// transition, whose commit wakes its polls and streams on every node.
    pub async fn end(&self, id: AttemptId) -> Result<Option<AttemptInfo>, EngineError> {
        let Some((rec, node)) = self.seen(self.0.index.find(id).await)? else { return Ok(None) };
        let Some(snap) = self.load(&rec).await? else { return Ok(None) };
        let before = self.info(&snap, Some(node));
        if before.phase == Phase::Expired {
            return Ok(None);
        }
        let (o, _) = self.transition(&rec, Some(&snap.poll), &Event::End).await?;
        if o.ending != Some(Ending::Ended) {
            return Ok(None);
        }
        Ok(Some(AttemptInfo { phase: o.phase, ending: o.ending, ..before }))
    }
}
