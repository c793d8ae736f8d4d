//! How the engine's types appear as metric labels. The metrics catalogue owns its label
//! sets; the engine decides which one each of its events is (so `metrics` never imports
//! the engine).

use super::state::{Ending, Event, Phase};
use crate::metrics::{Finish, State};

impl From<Phase> for State {
    fn from(p: Phase) -> Self {
        match p {
            Phase::Loop => State::Loop,
            Phase::NotReg => State::NotReg,
            Phase::Reg => State::Reg,
            Phase::Expired => State::Expired,
            Phase::Scanned => State::Scanned,
        }
    }
}

/// How an attempt that ended for `why`, by `event`, finished; `scanned`: whether anyone
/// had scanned it (a scanned attempt that timed out was abandoned, not just expired).
pub fn finish(why: Ending, event: &Event, scanned: bool) -> Finish {
    match (why, event) {
        (Ending::Consumed, Event::Bound { .. }) => Finish::Bound,
        (Ending::Consumed, _) => Finish::Reg,
        (Ending::Timeout, _) if scanned => Finish::Abandoned,
        (Ending::Timeout, _) => Finish::Expired,
        (Ending::Discarded, _) => Finish::Discarded,
        (Ending::Denied, _) => Finish::Denied,
        (Ending::Ended, _) => Finish::Ended,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::UserRef;

    #[test]
    fn endings_map_to_outcomes() {
        let user = UserRef { id: "u".into(), phone: None };
        let cases = [
            (Ending::Consumed, Event::Claim, true, Finish::Reg),
            (Ending::Consumed, Event::Bound { user }, true, Finish::Bound),
            (Ending::Timeout, Event::Timeout, false, Finish::Expired),
            (Ending::Timeout, Event::Claim, true, Finish::Abandoned),
            (Ending::Discarded, Event::Discard, false, Finish::Discarded),
            (Ending::Denied, Event::Deny { ticket: [0; 32] }, true, Finish::Denied),
            (Ending::Ended, Event::End, true, Finish::Ended),
        ];
        for (why, ev, scanned, want) in cases {
            assert_eq!(finish(why, &ev, scanned), want, "{why:?} {ev:?}");
        }
    }

    #[test]
    fn every_phase_has_its_state_label() {
        for p in [Phase::Loop, Phase::NotReg, Phase::Reg, Phase::Expired, Phase::Scanned] {
            assert_eq!(State::from(p).label(), p.name());
        }
    }
}
